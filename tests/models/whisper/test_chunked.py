"""`chunking_strategy` for Whisper: speech regions → ≤ 30-s chunks decoded as one batch, on real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.batching import collect_transcription
from models.tasks import TranscribeOptions
from models.whisper import chunked
from models.whisper import transcribe as loop
from models.whisper.family import WhisperTranscriber
from tests.support.audio import load_audio
from tests.support.data import REFERENCE, wer
from tests.support.whisper import load_tokenizer, load_whisper

SR = 16_000


def test_speech_chunks_pack_split_and_clip() -> None:
    s = SR  # one second
    regions = [
        (-5, 2 * s),
        (3 * s, 10 * s),
        (9 * s, 12 * s),
        (20 * s, 29 * s),
        (31 * s, 38 * s),
        (41 * s, 120 * s),
    ]
    chunks = chunked.speech_chunks(regions, n_samples=100 * s, max_samples=30 * s)
    assert chunks == [
        # overlapping regions (padding) merged, clipped at 0; cut at the 2-s pause once 30 s would not fit
        [(0, 2 * s), (3 * s, 12 * s), (20 * s, 29 * s)],
        [(31 * s, 38 * s)],
        [(41 * s, 71 * s)],  # 59 s of speech (clipped to the audio's end at 100 s) cut into 30-s pieces
        [(71 * s, 100 * s)],
    ]
    # the cut goes to the longest pause in the chunk's second half, not just before the overflow
    talk = [(0, 10 * s), (10 * s + 1600, 18 * s), (23 * s, 27 * s), (27 * s + 800, 29 * s), (30 * s, 40 * s)]
    assert [c[-1] for c in chunked.speech_chunks(talk, 40 * s, max_samples=30 * s)] == [
        (10 * s + 1600, 18 * s),
        (30 * s, 40 * s),
    ]
    assert chunked.speech_chunks([], 10 * s) == []
    assert chunked.speech_chunks([(5 * s, 5 * s)], 10 * s) == []  # empty regions vanish
    for chunk in chunked.speech_chunks([(0, 25 * s), (26 * s, 95 * s)], 95 * s):
        assert sum(e - b for b, e in chunk) <= 30 * s


def test_speech_map_moves_times_onto_the_file() -> None:
    m = chunked.SpeechMap(((2 * SR, 5 * SR), (10 * SR, 12 * SR)))  # 3 s + 2 s of speech
    assert len(m.audio(np.arange(20 * SR, dtype=np.float32))) == 5 * SR
    assert m.to_file(0.0) == 2.0
    assert m.to_file(1.5) == 3.5
    assert m.to_file(3.5) == 10.5  # 0.5 s into the second region
    assert m.to_file(9.0) == 12.0  # past the speech: its end


@pytest.fixture(scope="module")
def transcriber(tiny_en_dir: Path) -> WhisperTranscriber:
    model = load_whisper(tiny_en_dir)
    return WhisperTranscriber(model, load_tokenizer(tiny_en_dir, model.config))


@pytest.mark.slow
def test_chunks_of_one_file_decode_together(
    transcriber: WhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    gap = np.zeros(3 * SR, np.float32)
    clips = [load_audio("jfk"), load_audio("beckett"), load_audio("jfk")]
    audio = np.concatenate([clips[0], gap, clips[1], gap, clips[2]])
    starts = np.cumsum([0] + [len(c) + len(gap) for c in clips[:-1]])
    speech = tuple((int(b), int(b) + len(c)) for b, c in zip(starts, clips, strict=True))

    batch_sizes: list[int] = []
    real = loop.decode_windows

    def counting(backend, jobs, loop):  # type: ignore[no-untyped-def]
        batch_sizes.append(len(jobs))
        return real(backend, jobs, loop)

    monkeypatch.setattr(loop, "decode_windows", counting)  # what every window request calls
    result = collect_transcription(
        transcriber.transcribe_stream(audio, TranscribeOptions(language="en", speech=speech))
    )
    n_chunks = len(chunked.speech_chunks(speech, len(audio)))
    assert n_chunks == 2  # jfk + beckett fit one window; the second jfk starts another
    assert batch_sizes == [2]  # both chunks in one encoder pass and one decoder batch
    assert wer(" ".join([REFERENCE["jfk"], REFERENCE["beckett"], REFERENCE["jfk"]]), result.text) <= 0.1
    # timestamps are on the file's timeline: the second jfk is told from its own chunk
    last_jfk = [s for s in result.segments if s.start >= starts[2] / SR - 0.5]
    assert last_jfk and "country" in " ".join(s.text for s in last_jfk)
    assert all(s.end <= len(audio) / SR + 0.5 for s in result.segments)
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    assert result.segments[0].seek == 0 and last_jfk[0].seek == starts[2] // 160
    # nothing lands in the silence between the clips
    gaps = [(b / SR - 3.0, b / SR) for b in starts[1:]]
    assert not [s for s in result.segments for g0, g1 in gaps if g0 + 0.2 < s.start < g1 - 0.2]


@pytest.mark.slow
def test_no_speech_gives_an_empty_transcript(transcriber: WhisperTranscriber) -> None:
    audio = load_audio("jfk")
    result = collect_transcription(transcriber.transcribe_stream(audio, TranscribeOptions(speech=())))
    assert result.text == "" and result.info.language == "en"
    assert result.info.duration == pytest.approx(len(audio) / SR)
