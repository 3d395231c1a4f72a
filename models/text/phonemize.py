"""IPA phonemes from espeak-ng, the way Piper makes them (`piper/phonemize_espeak.py` + `espeakbridge.c`).

espeak-ng is the shared library bundled by `espeakng-loader` (library and data), called through ctypes.
Piper's bridge uses `espeak_TextToPhonemesWithTerminator`, which that library lacks: we call
`espeak_TextToPhonemes` clause by clause and read each clause's terminator from the text it consumed
(`_terminator`, following espeak-ng's `ReadClause`). Output per sentence, as Piper: the clause's IPA with
`(lang)` switch flags removed, then its terminator (`.?!,:;`), a space after `,:;`, NFD-decomposed.

espeak-ng keeps global state (voice, an unread character between calls): one lock serialises every use.
"""

from __future__ import annotations

import ctypes
import re
import threading
import unicodedata

from models.errors import InvalidRequest

# speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of exit() on a bad data path
ESPEAK_CHARS_AUTO = 0  # as Piper: UTF-8, or Latin-1 where the bytes are not UTF-8
ESPEAK_PHONEMES_IPA = 0x02  # IPA, no separator between phonemes, words separated by spaces
ESPEAK_PHONEMES_TIE = 0x80  # bits 8-23 hold a tie character put inside phonemes of several letters
TIE = "\u0361"  # COMBINING DOUBLE INVERTED BREVE, "a͡ɪ": one phoneme, two letters

_LANG_FLAG = re.compile(r"\([^)]+\)")  # "(fr)bɔ̃ʒuːɹ(en)": the language switches around foreign words
# C0 controls but tab/newline/CR, and DEL: espeak-ng reads U+0001 as the start of an embedded command
# (voice change, punctuation mode) and NUL would end the C string.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Clause terminators as espeak-ng classifies them (ucd properties → CLAUSE_*), mapped as Piper maps
# them: only the six plain types get a symbol; sentence types end a sentence.
_PLAIN = {".": (".", True), "?": ("?", True), "!": ("!", True), ",": (",", False), ":": (":", False)}
_PLAIN |= {";": (";", False), "–": (";", False), "—": (";", False)}  # en and em dash: "extended dash"
# Optional-space-after forms (CJK, full width): a sentence end or a clause, without a symbol.
_OTHER_SENTENCE = set("。？！．｡")
_ELLIPSIS = "…"


class _Espeak:
    """The loaded library; `lock` must be held around every call (espeak-ng is one global instance)."""

    def __init__(self) -> None:
        import espeakng_loader  # the shared library and its data, installed with the project

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        data = espeakng_loader.get_data_path().encode()
        if lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, ESPEAK_INITIALIZE_DONT_EXIT) < 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data.decode()}")
        self.lib = lib
        self.voice: str | None = None

    def set_voice(self, voice: str) -> None:
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                self.voice = None
                raise InvalidRequest(f"unknown espeak-ng voice {voice!r}", param="voice")
            self.voice = voice

    def clauses(self, text: str, mode: int = ESPEAK_PHONEMES_IPA) -> list[tuple[str, str, bool]]:
        """(IPA, consumed text, last) per clause. The consumed text of all but the last clause ends with
        the first character of the next clause: espeak-ng reads one ahead and keeps it for the next call."""
        raw = text.encode()
        buf = ctypes.create_string_buffer(raw)
        base = ctypes.addressof(buf)
        ptr = ctypes.c_void_p(base)
        out: list[tuple[bytes, int, int]] = []
        start = 0
        # Always run to the end of the text: stopping early would leave espeak-ng's unread character behind.
        while ptr.value is not None:
            ipa = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), ESPEAK_CHARS_AUTO, mode)
            end = len(raw) if ptr.value is None else ptr.value - base
            out.append((ipa or b"", start, end))
            start = end
        return [
            (ipa.decode(errors="replace"), raw[a:b].decode(errors="replace"), i == len(out) - 1)
            for i, (ipa, a, b) in enumerate(out)
        ]


_LOCK = threading.Lock()
_ESPEAK: _Espeak | None = None


def _terminator(consumed: str, last: bool) -> tuple[str, bool]:
    """(Piper's terminator symbol, ends a sentence) for a clause, from the text espeak-ng consumed for it."""
    body = consumed if last else consumed[:-1]  # drop the look-ahead character (the next clause's first)
    stripped = body.rstrip()
    paragraph = body[len(stripped) :].count("\n") > 1  # a blank line after the clause: CLAUSE_PARAGRAPH
    if not any(ch.isalnum() for ch in stripped):
        return "", last or paragraph  # punctuation before any letter or digit ends no clause
    if stripped.endswith(("...", _ELLIPSIS)):
        return "", paragraph  # an ellipsis: a clause without symbol
    tail = stripped[-1:]
    if tail in ("?", "!"):
        run = len(stripped) - len(stripped.rstrip("?!"))
        tail = stripped[-run]  # "?!!" is a question: the first of the run decides
    if tail in _PLAIN:
        symbol, sentence = _PLAIN[tail]
        return ("", True) if paragraph else (symbol, sentence)
    if tail in _OTHER_SENTENCE:
        return "", True
    return "", last or paragraph


def phonemize(text: str, voice: str = "en-us", *, tie: bool = False) -> list[str]:
    """IPA for `text` as espeak-ng voice `voice` ("en-us", "en-gb", "fr-fr", ...), one string per sentence,
    identical to Piper's phonemizer (`EspeakPhonemizer.phonemize`, its codepoints joined). Normalise numbers
    first (`normalize_text`) where the voice's language is English. `tie` joins the letters of one phoneme
    with `TIE` ("a͡ɪ", "t͡ʃ"), as phonemizer's `tie=True` does, for front ends that map phonemes rather
    than letters (Kokoro). Raises `InvalidRequest` where nothing is pronounceable (empty, emoji or control
    characters only) or the voice is unknown."""
    global _ESPEAK
    clean = _CONTROL.sub(" ", text)
    if not any(
        ch.isalnum() for ch in clean
    ):  # emoji, symbols, punctuation: espeak-ng would name or drop them
        raise InvalidRequest("the input has nothing to pronounce (no letters or digits)", param="input")
    with _LOCK:
        if _ESPEAK is None:
            _ESPEAK = _Espeak()
        _ESPEAK.set_voice(voice)
        mode = ESPEAK_PHONEMES_IPA | (ESPEAK_PHONEMES_TIE | ord(TIE) << 8 if tie else 0)
        clauses = _ESPEAK.clauses(clean, mode)

    sentences: list[str] = []
    current = ""
    for ipa, consumed, last in clauses:
        symbol, end_of_sentence = _terminator(consumed, last)
        current += _LANG_FLAG.sub("", ipa) + symbol + (" " if symbol in (",", ":", ";") else "")
        if end_of_sentence:
            sentences.append(unicodedata.normalize("NFD", current))
            current = ""
    if current:
        sentences.append(unicodedata.normalize("NFD", current))
    if not any(ch.isalpha() for s in sentences for ch in s):
        raise InvalidRequest("the input has nothing to pronounce (no letters or digits)", param="input")
    return sentences
