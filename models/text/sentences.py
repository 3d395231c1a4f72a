"""Sentences for streaming synthesis: the first can be spoken while the rest is still being read or written.

A sentence ends after `.`, `!`, `?` or `…` (with any closing quotes or brackets) followed by whitespace and a
character that is not a lower-case letter, unless the word before is an abbreviation or initials ("Dr.",
"e.g.", "U.S."); a blank line ends one too. A period between digits ("3.14"), in a URL or an e-mail address
is never followed by whitespace, so never splits. A sentence longer than `max_chars` is cut at the last `;`
or `:` within the limit, else the last `,`, else the last space, else at the limit.

`SentenceStream` is the core (it yields a sentence once no later text can change it); `split_sentences`
feeds it the whole text at once, so both give the same pieces. Pieces are whitespace-collapsed, and joined
with spaces they give back the input, whitespace collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

DEFAULT_MAX_CHARS = 300

_TERMINATORS = ".!?…"
_CLOSERS = "\"')]}’”»"
# Words after which a period does not end a sentence (compared lower-case, without the final period).
_NO_END = frozenset(
    [
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "st",
        "mt",
        "jr",
        "sr",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "no",
        "nos",
        "fig",
        "figs",
        "approx",
        "dept",
        "est",
        "inc",
        "ltd",
        "co",
        "corp",
        "ave",
        "rd",
    ]
)
_INITIALS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")  # "U.S", "J.R.R", "a.m": letters joined by periods


def _collapse(piece: str) -> str:
    return " ".join(piece.split())


class SentenceStream:
    """Feed text as it arrives; get sentences as soon as they are certain.

    >>> s = SentenceStream()
    >>> s.feed("Hello there. How a"), s.feed("re you? Fine"), s.flush()
    (['Hello there.'], ['How are you?'], ['Fine'])
    """

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be at least 1")
        self.max_chars = max_chars
        self._buf = ""

    def feed(self, chunk: str) -> list[str]:
        """Add text; return the sentences it completed (possibly none)."""
        self._buf += chunk
        return list(self._drain(final=False))

    def flush(self) -> list[str]:
        """The end of the text: return what is left, split as `split_sentences` would."""
        out = list(self._drain(final=True))
        self._buf = ""
        return out

    def _drain(self, final: bool) -> Iterator[str]:
        while True:
            self._buf = self._buf.lstrip()
            cut = _next_cut(self._buf, self.max_chars, final)
            if cut is None:
                return
            piece, self._buf = _collapse(self._buf[:cut]), self._buf[cut:]
            if piece:
                yield piece


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """`text` as sentences (and clauses of over-long sentences), each at most `max_chars` characters long."""
    stream = SentenceStream(max_chars)
    return stream.feed(text) + stream.flush()


def _next_cut(buf: str, max_chars: int, final: bool) -> int | None:
    """End of the first piece of `buf` (which starts with a non-space), or None until more text decides it."""
    if not buf:
        return None
    end = _sentence_end(buf, final)
    if end is not None and len(buf[:end].rstrip()) <= max_chars:
        return end
    if end is None and len(buf.rstrip()) <= max_chars:
        return None  # the sentence may still end within the limit
    return _soft_cut(buf, max_chars)  # too long, whatever follows: decided by the first max_chars + 1


def _sentence_end(buf: str, final: bool) -> int | None:
    """Index after the first sentence's trailing whitespace; None if undecided (or, with final, the end)."""
    i, n = 0, len(buf)
    while i < n:
        c = buf[i]
        if c in _TERMINATORS:
            j = i
            while j < n and (buf[j] in _TERMINATORS or buf[j] in _CLOSERS):
                j += 1
            k = j
            while k < n and buf[k].isspace():
                k += 1
            if k == n and not final:
                return None  # what follows (space? lower case?) is not known yet
            if k == n or (k > j and _ends_here(buf, i, buf[k], "\n" in buf[j:k])):
                return k
            i = j
            continue
        if c == "\n":
            k = i
            while k < n and buf[k].isspace():
                k += 1
            if k == n and not final:
                return None  # a blank line may be coming
            if buf[i:k].count("\n") > 1:
                return k
            i = k
            continue
        i += 1
    return n if final else None


def _ends_here(buf: str, i: int, following: str, newline: bool) -> bool:
    """Does the terminator at buf[i] end the sentence, given the first non-space character after it?"""
    if newline:
        return True
    if following.islower():
        return False
    if buf[i] != ".":
        return True
    word = buf[:i].rsplit(None, 1)[-1] if buf[:i].strip() else ""
    word = word.lstrip("\"'([{‘“«")
    return not (word.lower() in _NO_END or _INITIALS.fullmatch(word))


def _soft_cut(buf: str, max_chars: int) -> int:
    """Cut an over-long sentence within `max_chars`: after `;`/`:`, else `,`, else a space, else hard."""
    head = buf[: max_chars + 1]  # the character after the limit tells whether a mark is followed by space
    for marks in (";:", ","):
        best = max((head.rfind(m + " ", 0, max_chars) for m in marks), default=-1)
        best = max(best, *(head.rfind(m + "\n", 0, max_chars) for m in marks))
        if best > 0:
            return best + 1
    space = max(head.rfind(" ", 0, max_chars + 1), head.rfind("\n", 0, max_chars + 1))
    return space if space > 0 else max_chars
