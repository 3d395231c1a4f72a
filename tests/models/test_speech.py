"""The shared speech helpers (`models/speech.py`): the first clause on its own for early audio; and what
every voice streams joins without clicks."""

from __future__ import annotations

import numpy as np
import pytest

from models.batching import drive
from models.families import builtin_models, get_family
from models.registry import override_spec
from models.speech import FIRST_CLAUSE_MIN, split_first_clause
from models.tasks import SpeechOptions
from models.weights import model_dir
from tests.support.data import data_file

TEXT = (
    "The quick brown fox jumps over the lazy dog, and nobody seems to mind. It was a bright cold day in "
    "April. The clocks were striking thirteen!"
)


def test_the_first_sentence_is_cut_after_its_first_long_enough_clause() -> None:
    first = "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps, ænd nˈObədi sˈimz tə mˈInd; ˈɔl ɹˈIt."
    assert split_first_clause([first, "nˈɛkst."]) == [
        "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps,",
        "ænd nˈObədi sˈimz tə mˈInd; ˈɔl ɹˈIt.",
        "nˈɛkst.",
    ]


def test_short_clauses_and_later_sentences_are_left_whole() -> None:
    assert split_first_clause(["hˈI, ðˈɛɹ.", "wˈʌn, tˈu, θɹˈi, fˈɔɹ, fˈIv, sˈɪks."]) == [
        "hˈI, ðˈɛɹ.",
        "wˈʌn, tˈu, θɹˈi, fˈɔɹ, fˈIv, sˈɪks.",
    ]
    # the first cut that leaves enough on both sides wins
    head = "a" * FIRST_CLAUSE_MIN
    assert split_first_clause([f"ab, {head}, {head}"]) == [f"ab, {head},", head]
    assert split_first_clause([]) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model_id", "voice"), [("piper-en_US-joe-medium", "alloy"), ("kokoro-82m", "af_heart")]
)
def test_no_click_where_sentences_join(
    tmp_path_factory: pytest.TempPathFactory, model_id: str, voice: str
) -> None:
    """Every chunk a voice streams starts and ends near silence, so the joined audio has no step there: the
    jump across each join stays under 1 % of the signal's own 99.9th-percentile sample-to-sample step (the
    models measured ~1e-5 of full scale at joins vs steps of ~0.1 inside speech)."""
    spec = next(s for s in builtin_models() if s.id == model_id)
    if model_id == "kokoro-82m":
        spec = override_spec(
            spec, {"options": {"voices_dir": str(data_file("kokoro-voices/af_heart.pt").parent)}}
        )
    synth = get_family(spec.family).load(model_dir(spec, tmp_path_factory.mktemp("cache")), spec)
    chunks = [
        c
        for c in drive(synth.synthesize_stream(TEXT, SpeechOptions(voice=voice)))
        if isinstance(c, np.ndarray)
    ]
    assert len(chunks) == 4  # the first sentence's two clauses, then two sentences
    audio = np.concatenate(chunks)
    typical = np.percentile(np.abs(np.diff(audio)), 99.9)
    assert typical > 0.02  # speech
    for end in np.cumsum([len(c) for c in chunks])[:-1]:
        assert abs(audio[end] - audio[end - 1]) < 0.01 * typical
