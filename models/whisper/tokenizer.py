"""Whisper's tokenizer on the Hugging Face `tokenizers` library and a checkpoint's `tokenizer.json`.

Token ids equal openai-whisper's (tiktoken) for both vocabularies: English-only (GPT-2 BPE, 50257
tokens, `<|endoftext|>` = 50256) and multilingual (50258, `<|endoftext|>` = 50257). Special-token ids
are read from the file by name; timestamp tokens `<|0.00|>` … `<|30.00|>` are not in most
`tokenizer.json` files, so they are numbered from `timestamp_begin = <|notimestamps|> + 1` in 20 ms
steps, as openai does.
"""

from __future__ import annotations

import bisect
import json
import string
from collections.abc import Sequence
from functools import cache, cached_property
from pathlib import Path

from tokenizers import Tokenizer

from models.whisper.constants import TIME_PRECISION

# Whisper's languages, in token order: language i has token id `sot + 1 + i`.
LANGUAGES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip

# Lower-case language name (and a few aliases) → code.
TO_LANGUAGE_CODE: dict[str, str] = {
    **{name: code for code, name in LANGUAGES.items()},
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}  # fmt: skip

TASKS = ("transcribe", "translate")
_NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}


def _bpe_parts(token: str, vocab: dict[str, int], max_rank: int) -> list[str]:
    """tiktoken's BPE of ``token`` using only merges into tokens ranked below ``max_rank``."""
    parts = list(token)
    while len(parts) > 1:
        ranks = [vocab.get(parts[i] + parts[i + 1], max_rank) for i in range(len(parts) - 1)]
        best = min(range(len(ranks)), key=ranks.__getitem__)
        if ranks[best] >= max_rank:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def repair_bpe_merges(spec: dict) -> list[str]:
    """Add the merges a byte-level BPE ``tokenizer.json`` lacks for tokens of its vocabulary; returns them.

    openai/whisper's multilingual ``tokenizer.json`` (Hugging Face, also used by faster-whisper) lacks
    the first merge, ``Ġ t`` → ``Ġt`` (id 256), so " tried" encodes as ``Ġ t ried`` instead of tiktoken's
    ``Ġtried``. In a tiktoken vocabulary a token's id is its merge rank: a missing merge is the pair that
    tiktoken's own BPE, restricted to lower ranks, leaves for that token; it is inserted at its rank.
    """
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        return []
    vocab: dict[str, int] = model["vocab"]
    merges = model["merges"]
    as_pairs = bool(merges) and not isinstance(merges[0], str)
    pairs = [tuple(m) if as_pairs else tuple(m.split(" ", 1)) for m in merges]
    produced = {a + b for a, b in pairs}
    ids = [vocab.get(a + b, -1) for a, b in pairs]
    if ids != sorted(ids):  # merges not in rank order: not a tiktoken-derived vocabulary
        return []
    added = []
    for token, rank in sorted(vocab.items(), key=lambda kv: kv[1]):
        if rank < 256 or len(token) < 2 or token in produced:
            continue
        parts = _bpe_parts(token, vocab, rank)
        if len(parts) != 2:
            continue
        at = bisect.bisect_left(ids, rank)
        ids.insert(at, rank)
        merges.insert(at, list(parts) if as_pairs else " ".join(parts))
        added.append(" ".join(parts))
    return added


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: the printable stand-in character → the raw byte."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def normalize_language(language: str | None) -> str | None:
    """A language code from a code or an English name (case-insensitive); None stays None."""
    if language is None:
        return None
    key = language.lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(f"unsupported language {language!r}")


class WhisperTokenizer:
    """Text ↔ token ids plus Whisper's special tokens and the start-of-transcript prompt: the one tokenizer
    type of the family (decoding reads its special tokens and suppression lists; the long-form loop its
    prompts, text and word splits).

    ``multilingual`` and ``num_languages`` come from the model (``WhisperConfig.is_multilingual``,
    ``.num_languages``). As in openai-whisper, a multilingual tokenizer defaults to English
    transcription, and an English-only one ignores ``language``/``task`` (its prompt is just
    ``<|startoftranscript|>``).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        multilingual: bool,
        num_languages: int = 99,
        language: str | None = None,
        task: str | None = None,
    ) -> None:
        self._tok = tokenizer
        self._prompts: dict[tuple[str | None, str], tuple[int, ...]] = {}
        self.multilingual = multilingual
        self.num_languages = num_languages
        self.language: str | None = None
        self.task: str | None = None
        if multilingual:
            self.language = normalize_language(language) or "en"
            self.task = task or "transcribe"
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        expected_eot = 50257 if multilingual else 50256
        if self.eot != expected_eot:
            raise ValueError(
                f"tokenizer's <|endoftext|> is {self.eot}, expected {expected_eot} for a "
                f"{'multilingual' if multilingual else 'English-only'} vocabulary"
            )
        if self.translate != self.sot + 1 + num_languages:
            raise ValueError(
                f"tokenizer does not hold {num_languages} language tokens between sot and translate"
            )

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: object) -> WhisperTokenizer:
        """Load ``tokenizer.json`` (a file, or a model directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        spec = json.loads(path.read_text(encoding="utf-8"))
        repair_bpe_merges(spec)
        return cls(Tokenizer.from_str(json.dumps(spec)), **kwargs)  # type: ignore[arg-type]

    def with_options(self, *, language: str | None = None, task: str | None = None) -> WhisperTokenizer:
        """The same vocabulary with another language and/or task (None keeps the current one); cheap."""
        return WhisperTokenizer(
            self._tok,
            multilingual=self.multilingual,
            num_languages=self.num_languages,
            language=language or self.language,
            task=task or self.task,
        )

    def _special(self, *names: str) -> int:
        for name in names:
            token_id = self._tok.token_to_id(name)
            if token_id is not None:
                return token_id
        raise KeyError(f"special token {names[0]} is not in this tokenizer")

    # -- special tokens -------------------------------------------------------------------------------
    @cached_property
    def eot(self) -> int:
        return self._special("<|endoftext|>")

    @cached_property
    def sot(self) -> int:
        return self._special("<|startoftranscript|>")

    @cached_property
    def translate(self) -> int:
        return self._special("<|translate|>")

    @cached_property
    def transcribe(self) -> int:
        return self._special("<|transcribe|>")

    @cached_property
    def sot_lm(self) -> int:
        return self._special("<|startoflm|>")

    @cached_property
    def sot_prev(self) -> int:
        return self._special("<|startofprev|>")

    @cached_property
    def no_speech(self) -> int:
        return self._special("<|nospeech|>", "<|nocaptions|>")  # renamed in later tokenizer files

    @cached_property
    def no_timestamps(self) -> int:
        return self._special("<|notimestamps|>")

    @cached_property
    def timestamp_begin(self) -> int:
        """Id of ``<|0.00|>``; timestamp ``t`` seconds is ``timestamp_begin + round(t / 0.02)``."""
        return self.no_timestamps + 1

    @cached_property
    def all_language_codes(self) -> tuple[str, ...]:
        return tuple(LANGUAGES)[: self.num_languages]

    @cached_property
    def all_language_tokens(self) -> tuple[int, ...]:
        return tuple(self.to_language_token(code) for code in self.all_language_codes)

    def to_language_token(self, language: str) -> int:
        """Language ``i`` of :data:`LANGUAGES` is token ``sot + 1 + i`` (by position, as openai defines it:
        older tokenizer files spell a few codes differently, e.g. ``<|iw|>`` for Hebrew)."""
        code = normalize_language(language)
        if code not in self.all_language_codes:
            raise KeyError(f"language {language!r} is not in this tokenizer")
        return self.sot + 1 + self.all_language_codes.index(code)

    @property
    def language_token(self) -> int:
        if self.language is None:
            raise ValueError("this tokenizer has no language configured")
        return self.to_language_token(self.language)

    @cached_property
    def sot_sequence(self) -> tuple[int, ...]:
        """``<|startoftranscript|>`` [, language] [, task]: the decoder's prompt."""
        seq = [self.sot]
        if self.language is not None:
            seq.append(self.language_token)
        if self.task is not None:
            seq.append(self.transcribe if self.task == "transcribe" else self.translate)
        return tuple(seq)

    @cached_property
    def sot_sequence_including_notimestamps(self) -> tuple[int, ...]:
        return (*self.sot_sequence, self.no_timestamps)

    def sot_sequence_for(self, language: str | None, task: str) -> tuple[int, ...]:
        """The prompt for another language and task (as `with_options(...).sot_sequence`), cached."""
        key = (language, task)
        if key not in self._prompts:
            self._prompts[key] = self.with_options(language=language, task=task).sot_sequence
        return self._prompts[key]

    @cached_property
    def languages(self) -> dict[str, str]:
        """The languages this model knows: code → full lower-case name (English only: just "en")."""
        codes = self.all_language_codes if self.multilingual else ("en",)
        return {c: LANGUAGES[c] for c in codes}

    @cached_property
    def blank(self) -> tuple[int, ...]:
        """The tokens of " ": suppressed at a window's first sampled position (openai's SuppressBlank)."""
        return tuple(self.encode(" "))

    @cached_property
    def suppress(self) -> tuple[int, ...]:
        """Tokens never sampled: non-speech symbols and the task/special tokens (openai's SuppressTokens
        with ``suppress_tokens="-1"``), sorted."""
        ids = {*self.non_speech_tokens, self.transcribe, self.translate, self.sot, self.sot_prev, self.sot_lm}
        ids.add(self.no_speech)
        return tuple(sorted(ids))

    # -- text -----------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Text → BPE ids, without special tokens added (special-token strings in ``text`` map to their ids)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, token_ids: Sequence[int]) -> str:
        """Ids → text; timestamp tokens are dropped, other special tokens are spelled out."""
        ids = [int(t) for t in token_ids if t < self.timestamp_begin]
        return self._tok.decode(ids, skip_special_tokens=False)

    def text(self, token_ids: Sequence[int]) -> str:
        """The text of a decoded sequence: every special and timestamp token dropped."""
        return self._tok.decode([int(t) for t in token_ids if t < self.eot], skip_special_tokens=False)

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (byte-level BPE: a token may hold part of a UTF-8 character)."""
        table = _byte_decoder()
        return bytes(table[c] for c in self._tok.id_to_token(token) or "" if c in table)

    def decode_with_timestamps(self, token_ids: Sequence[int]) -> str:
        """Ids → text with timestamp tokens written as ``<|1.08|>``."""
        parts: list[str] = []
        run: list[int] = []
        for t in token_ids:
            if t >= self.timestamp_begin:
                if run:
                    parts.append(self._tok.decode(run, skip_special_tokens=False))
                    run = []
                parts.append(f"<|{(t - self.timestamp_begin) * TIME_PRECISION:.2f}|>")
            else:
                run.append(int(t))
        if run:
            parts.append(self._tok.decode(run, skip_special_tokens=False))
        return "".join(parts)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Ids of symbols that mark non-speech (♪, brackets, speaker tags), openai's ``suppress_tokens="-1"``."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += [
            "<<",
            ">>",
            "<<<",
            ">>>",
            "--",
            "---",
            "-(",
            "-[",
            "('",
            '("',
            "((",
            "))",
            "(((",
            ")))",
            "[[",
            "]]",
            "{{",
            "}}",
            "♪♪",
            "♪♪♪",
        ]
        # Miscellaneous symbols U+2640..U+267F share their first UTF-8 bytes: suppressing the first token is safe.
        miscellaneous = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + sorted(miscellaneous):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in miscellaneous:
                    result.add(tokens[0])
        return tuple(sorted(result))

    # -- words (for word-level timestamps) ------------------------------------------------------------
    def split_to_word_tokens(
        self, tokens: Sequence[int], language: str | None = None
    ) -> tuple[list[str], list[list[int]]]:
        """Group text tokens into words: on spaces, or on unicode boundaries for languages without spaces
        (``language``, default this tokenizer's)."""
        if (language or self.language) in _NO_SPACE_LANGUAGES:
            return self.split_tokens_on_unicode(tokens)
        return self.split_tokens_on_spaces(tokens)

    def split_tokens_on_unicode(self, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
        full = self.decode_with_timestamps(tokens)
        replacement = "\ufffd"
        words: list[str] = []
        word_tokens: list[list[int]] = []
        current: list[int] = []
        offset = 0
        for token in tokens:
            current.append(int(token))
            decoded = self.decode_with_timestamps(current)
            if replacement not in decoded or full[offset + decoded.index(replacement)] == replacement:
                words.append(decoded)
                word_tokens.append(current)
                current = []
                offset += len(decoded)
        return words, word_tokens

    def split_tokens_on_spaces(self, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
        words: list[str] = []
        word_tokens: list[list[int]] = []
        subwords, subword_tokens = self.split_tokens_on_unicode(tokens)
        for subword, sub_tokens in zip(subwords, subword_tokens, strict=True):
            special = sub_tokens[0] >= self.eot
            with_space = subword.startswith(" ")
            punctuation = subword.strip() in string.punctuation
            if special or with_space or punctuation or not words:
                words.append(subword)
                word_tokens.append(sub_tokens)
            else:
                words[-1] += subword
                word_tokens[-1].extend(sub_tokens)
        return words, word_tokens
