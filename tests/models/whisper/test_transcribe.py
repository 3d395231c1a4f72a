"""The whole pipeline against openai-whisper's `transcribe()` on the same converted weights (fp32 CPU):
the temperature ladder, timestamp rules, segment parsing, seeking over 30 s windows, no-speech skipping,
prompt conditioning and word timestamps — every clip of ../shared/data/speech — and beam search.

Tolerances: tokens and segment boundaries are compared exactly (same ids, same 20 ms timestamp tokens);
avg_logprob and no_speech_prob to 1e-3 absolute; word times to 0.02 s, one timestamp step.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import whisper
from whisper.decoding import DecodingOptions

from models.batching import collect_transcription
from models.tasks import TranscribeOptions
from models.whisper.audio import log_mel_spectrogram
from models.whisper.constants import N_FRAMES, N_SAMPLES
from models.whisper.decoding import DecodeOptions, beam_search_decode, greedy_decode
from models.whisper.family import WhisperTranscriber
from models.whisper.transcribe import split_segments
from tests.support.audio import load_audio
from tests.support.whisper import load_tokenizer, load_whisper, openai_model

pytestmark = [pytest.mark.reference, pytest.mark.slow]

CLIPS = ("jfk", "beckett", "two_cities_16k")


@pytest.fixture(scope="module")
def pair(tiny_en_dir: Path) -> tuple[WhisperTranscriber, whisper.model.Whisper]:
    model = load_whisper(tiny_en_dir)
    return WhisperTranscriber(model, load_tokenizer(tiny_en_dir, model.config)), openai_model(tiny_en_dir)


def _reference(ref: whisper.model.Whisper, audio: np.ndarray, **kw: object) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return ref.transcribe(audio, fp16=False, language="en", **kw)


@pytest.mark.parametrize(
    ("name", "words"), [("jfk", True), ("beckett", True), ("two_cities_16k", False), ("two_cities_16k", True)]
)
def test_transcribe_matches_openai(pair: tuple, name: str, words: bool) -> None:
    ours_model, ref = pair
    audio = load_audio(name)
    expected = _reference(ref, audio, word_timestamps=words)
    got = collect_transcription(ours_model.transcribe_stream(audio, TranscribeOptions(word_timestamps=words)))
    exp_segments = [s for s in expected["segments"] if s["text"].strip()]
    assert [s.tokens for s in got.segments] == [s["tokens"] for s in exp_segments]
    assert [s.seek for s in got.segments] == [s["seek"] for s in exp_segments]
    for s, e in zip(got.segments, exp_segments, strict=True):
        assert s.text == e["text"]
        assert s.start == pytest.approx(e["start"], abs=0.021) and s.end == pytest.approx(e["end"], abs=0.021)
        assert s.avg_logprob == pytest.approx(e["avg_logprob"], abs=1e-3)
        assert s.no_speech_prob == pytest.approx(e["no_speech_prob"], abs=1e-3)
        assert s.temperature == e["temperature"]
        if words:
            assert [w.word for w in s.words] == [w["word"] for w in e["words"]]
            for w, ew in zip(s.words, e["words"], strict=True):
                assert w.start == pytest.approx(ew["start"], abs=0.021)
                assert w.end == pytest.approx(ew["end"], abs=0.021)
                assert w.probability == pytest.approx(ew["probability"], abs=1e-3)
    assert got.text == expected["text"].strip()


def test_prompt_matches_openai(pair: tuple) -> None:
    ours_model, ref = pair
    audio = load_audio("beckett")
    prompt = "and then she said nothing at all and we went home"
    expected = _reference(ref, audio, initial_prompt=prompt)
    got = collect_transcription(ours_model.transcribe_stream(audio, TranscribeOptions(prompt=prompt)))
    assert [s.tokens for s in got.segments] == [
        s["tokens"] for s in expected["segments"] if s["text"].strip()
    ]


def test_silence_yields_nothing(pair: tuple) -> None:
    ours_model, _ = pair
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16_000 * 8) * 1e-4).astype(np.float32)
    got = collect_transcription(ours_model.transcribe_stream(noise, TranscribeOptions()))
    assert got.segments == [] and got.text == ""
    assert got.info.duration == pytest.approx(8.0)


@pytest.mark.parametrize("name", ["jfk", "beckett"])
def test_beam_search_matches_openai(pair: tuple, name: str) -> None:
    ours_model, ref = pair
    audio = load_audio(name)
    mel = log_mel_spectrogram(mx.array(audio), 80, padding=N_SAMPLES)[:N_FRAMES]
    backend = ours_model.backend
    features = backend.encode(mel[None])
    tok = backend.tokenizer
    sot_seq = list(tok.sot_sequence_for("en", "transcribe"))
    ours = beam_search_decode(backend.session(features), [sot_seq], [0], tok, DecodeOptions(beam_size=5))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        exp = whisper.decode(
            ref,
            whisper.log_mel_spectrogram(audio, 80, padding=N_SAMPLES)[:, :N_FRAMES],
            DecodingOptions(language="en", beam_size=5, fp16=False),
        )
    assert ours.tokens == exp.tokens
    assert ours.avg_logprob == pytest.approx(exp.avg_logprob, abs=1e-3)
    greedy = greedy_decode(backend.session(features), [sot_seq], [0], tok, DecodeOptions())[0]
    assert greedy.tokens[:3] == ours.tokens[:3]


def test_split_segments_rules() -> None:
    tb = 1000  # timestamp_begin of a toy vocabulary
    # <0.00> a b <1.00><1.00> c <2.00>: two segments, the window ends on a closed pair → seek to 2.00 s
    segs, seek, single = split_segments(
        [tb, 1, 2, tb + 50, tb + 50, 3, tb + 100], tb, seek=0, segment_size=3000
    )
    assert [(s.start, s.end, s.tokens) for s in segs] == [
        (0.0, 1.0, [tb, 1, 2, tb + 50]),
        (1.0, 2.0, [tb + 50, 3, tb + 100]),
    ]
    assert single is True and seek == 3000
    # a trailing unfinished segment: seek to the last complete timestamp
    segs, seek, single = split_segments([tb, 1, tb + 40, tb + 40, 2], tb, seek=100, segment_size=3000)
    assert single is False and seek == 100 + 40 * 2 and len(segs) == 1 and segs[0].start == 1.0
    # no timestamp pairs at all: one segment over the window
    segs, seek, _ = split_segments([tb, 5, 6], tb, seek=0, segment_size=1100)
    assert (segs[0].start, segs[0].end, seek) == (0.0, 11.0, 1100)
