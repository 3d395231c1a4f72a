"""Our tokenizer (HF `tokenizers` + tokenizer.json) against openai-whisper's (tiktoken): same ids."""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from whisper.tokenizer import LANGUAGES as OPENAI_LANGUAGES
from whisper.tokenizer import TO_LANGUAGE_CODE as OPENAI_TO_CODE
from whisper.tokenizer import get_tokenizer as _openai_get_tokenizer

from models.whisper.tokenizer import (
    LANGUAGES,
    TO_LANGUAGE_CODE,
    WhisperTokenizer,
    normalize_language,
    repair_bpe_merges,
)
from tests.support.data import REFERENCE

TEXTS = [
    "And so my fellow Americans, ask not what your country can do for you.",
    " Ever tried. Ever failed. No matter. Try again.",
    "It's 3:45pm — we'll meet at 221B Baker St. (2nd floor)!",
    "  two  spaces\tand a tab\nnew line",
    "Grüße aus Köln, ça va? ¿Qué tal? Привет, как дела?",
    "你好，世界。日本語のテキストです。안녕하세요",
    "♪ la la ♪ [MUSIC] (laughs) <<quote>> 🎉👍",
    "",
    *REFERENCE.values(),
]


@functools.cache
def get_tokenizer(multilingual: bool, **kwargs: object) -> object:
    """openai-whisper's tokenizer; its first use per vocabulary leaves a file unclosed (a ResourceWarning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return _openai_get_tokenizer(multilingual, **kwargs)


@pytest.fixture(scope="module", params=["tiny.en", "base"])
def pair(request: pytest.FixtureRequest) -> tuple[WhisperTokenizer, object]:
    """(ours, openai's) for the English-only and the multilingual vocabulary."""
    multilingual = request.param == "base"
    model_dir: Path = request.getfixturevalue("base_dir" if multilingual else "tiny_en_dir")
    ours = WhisperTokenizer.from_file(model_dir, multilingual=multilingual, num_languages=99)
    return ours, get_tokenizer(multilingual, num_languages=99)


def test_language_tables_match_openai() -> None:
    assert LANGUAGES == OPENAI_LANGUAGES
    assert list(LANGUAGES) == list(OPENAI_LANGUAGES)  # order defines token ids
    assert TO_LANGUAGE_CODE == OPENAI_TO_CODE
    assert len(LANGUAGES) == 100
    assert normalize_language("Mandarin") == "zh" and normalize_language("EN") == "en"
    with pytest.raises(ValueError, match="unsupported"):
        normalize_language("klingon")


def test_encode_matches_tiktoken(pair: tuple[WhisperTokenizer, object]) -> None:
    ours, ref = pair
    for text in TEXTS:
        assert ours.encode(text) == ref.encode(text), text


def test_special_tokens_match(pair: tuple[WhisperTokenizer, object]) -> None:
    ours, ref = pair
    for name in (
        "eot",
        "sot",
        "sot_prev",
        "sot_lm",
        "no_speech",
        "no_timestamps",
        "timestamp_begin",
        "transcribe",
        "translate",
    ):
        assert getattr(ours, name) == getattr(ref, name), name
    # openai orders these two by a set's iteration order; the pairs are what matter.
    ours_pairs = dict(zip(ours.all_language_codes, ours.all_language_tokens, strict=True))
    assert ours_pairs == dict(zip(ref.all_language_codes, ref.all_language_tokens, strict=True))
    assert len(ours_pairs) == 99
    assert ours.sot_sequence == ref.sot_sequence
    assert ours.sot_sequence_including_notimestamps == ref.sot_sequence_including_notimestamps
    assert ours.non_speech_tokens == ref.non_speech_tokens


@pytest.mark.parametrize(
    ("language", "task"), [("en", "transcribe"), ("de", "translate"), ("Japanese", None), (None, "translate")]
)
def test_sot_sequence_for_language_and_task(base_dir: Path, language: str | None, task: str | None) -> None:
    ours = WhisperTokenizer.from_file(base_dir, multilingual=True, language=language, task=task)
    ref = get_tokenizer(True, num_languages=99, language=language, task=task)
    assert ours.sot_sequence == ref.sot_sequence
    assert ours.language_token == ref.language_token
    assert (
        ours.with_options(language="fr").sot_sequence
        == get_tokenizer(True, language="fr", task=task).sot_sequence
    )


def test_english_only_ignores_language_and_task(tiny_en_dir: Path) -> None:
    ours = WhisperTokenizer.from_file(tiny_en_dir, multilingual=False, language="de", task="translate")
    assert ours.sot_sequence == (50257,)
    assert ours.language is None and ours.task is None
    with pytest.raises(ValueError, match="no language"):
        _ = ours.language_token


def test_decode_matches_openai(pair: tuple[WhisperTokenizer, object]) -> None:
    ours, ref = pair
    for text in TEXTS:
        ids = ref.encode(text)
        assert ours.decode(ids) == ref.decode(ids) == text
        # A prefix that cuts a multi-byte character: both replace the partial bytes.
        assert ours.decode(ids[:-1]) == ref.decode(ids[:-1])
    ts = ref.timestamp_begin
    seq = [
        *ref.sot_sequence,
        ts,
        *ref.encode(" Hello world."),
        ts + 54,
        ts + 60,
        *ref.encode(" Bye."),
        ts + 1500,
        ref.eot,
    ]
    assert ours.decode(seq) == ref.decode(seq)
    assert ours.decode_with_timestamps(seq) == ref.decode_with_timestamps(seq)
    assert "<|1.08|>" in ours.decode_with_timestamps(seq)


def test_split_to_word_tokens_matches_openai(base_dir: Path) -> None:
    for language in ("en", "ja"):
        ours = WhisperTokenizer.from_file(base_dir, multilingual=True, language=language)
        ref = get_tokenizer(True, num_languages=99, language=language)
        tokens = [*ref.encode(" Don't stop—believing, 12.5% of 東京タワー!"), ref.eot]
        assert ours.split_to_word_tokens(tokens) == ref.split_to_word_tokens(tokens)


def test_wrong_vocabulary_and_language_are_rejected(tiny_en_dir: Path, base_dir: Path) -> None:
    with pytest.raises(ValueError, match="endoftext"):
        WhisperTokenizer(Tokenizer.from_file(str(tiny_en_dir / "tokenizer.json")), multilingual=True)
    ours = WhisperTokenizer.from_file(base_dir, multilingual=True, num_languages=99)
    with pytest.raises(KeyError):
        ours.to_language_token("yue")  # the 100th language exists only in large-v3's vocabulary
    with pytest.raises(ValueError, match="task"):
        WhisperTokenizer.from_file(base_dir, multilingual=True, task="summarize")


def test_bpe_repair_adds_only_the_missing_first_merge(ct2_tiny_en: Path, ct2_base: Path) -> None:
    multilingual = json.loads((ct2_base / "tokenizer.json").read_text(encoding="utf-8"))
    assert "Ġ t" not in multilingual["model"]["merges"]
    assert repair_bpe_merges(multilingual) == ["Ġ t"]
    assert multilingual["model"]["merges"][0] == "Ġ t"
    english = json.loads((ct2_tiny_en / "tokenizer.json").read_text(encoding="utf-8"))
    assert repair_bpe_merges(english) == []
