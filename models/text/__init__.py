"""The text front end shared by the speech families (Piper, Kokoro): no MLX, no family imports.

- `normalize_text(text, lang="en")` — numbers, dates, times, money, units, abbreviations → words;
- `split_sentences(text, max_chars=300)` / `SentenceStream` — sentences as soon as they are certain;
- `phonemize(text, voice="en-us")` — espeak-ng IPA per sentence, as Piper makes it.
"""

from __future__ import annotations

from models.text.normalize import normalize_text
from models.text.phonemize import phonemize
from models.text.sentences import DEFAULT_MAX_CHARS, SentenceStream, split_sentences

__all__ = ["DEFAULT_MAX_CHARS", "SentenceStream", "normalize_text", "phonemize", "split_sentences"]
