"""Windows of different requests decoded together give exactly what each gives alone, and concurrent
transcriptions on the MLX worker share encoder and decoder passes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import mlx.core as mx
import pytest

from models.batching import collect_transcription
from models.tasks import Segment, TranscribeOptions
from models.whisper.audio import log_mel_spectrogram
from models.whisper.constants import FALLBACK_TEMPERATURES, N_FRAMES, N_SAMPLES
from models.whisper.family import WhisperTranscriber
from models.whisper.transcribe import LoopOptions, WindowJob, decode_windows
from models.worker import MLXWorker
from tests.support.audio import load_audio
from tests.support.whisper import load_tokenizer, load_whisper

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def transcriber(tiny_en_dir: Path) -> WhisperTranscriber:
    model = load_whisper(tiny_en_dir)
    return WhisperTranscriber(model, load_tokenizer(tiny_en_dir, model.config))


def _job(
    transcriber: WhisperTranscriber, name: str, prefix: tuple[int, ...], beam: int | None = None
) -> WindowJob:
    mel = log_mel_spectrogram(mx.array(load_audio(name)), 80, padding=N_SAMPLES)[:N_FRAMES]
    return WindowJob(mel, prefix, "en", "transcribe", FALLBACK_TEMPERATURES, beam, seed=0)


@pytest.mark.parametrize("beam", [None, 5])
def test_batched_windows_equal_single_windows(transcriber: WhisperTranscriber, beam: int | None) -> None:
    tok = transcriber.backend.tokenizer
    prompt = tuple([tok.sot_prev, *tok.encode(" and then she said nothing at all and we went home")])
    jobs = [
        _job(transcriber, "jfk", (), beam),
        _job(transcriber, "beckett", prompt, beam),  # a longer prompt: this row is left-padded less
        _job(transcriber, "two_cities_16k", (), beam),
    ]
    if beam:
        jobs = jobs[:2]  # beam search costs 5 rows per window on this CPU: two requests show it
    loop = LoopOptions()
    together = decode_windows(transcriber.backend, jobs, loop)
    alone = [decode_windows(transcriber.backend, [j], loop)[0] for j in jobs]
    for t, a in zip(together, alone, strict=True):
        assert t.decoded.tokens == a.decoded.tokens and t.decoded.tokens
        assert t.decoded.avg_logprob == pytest.approx(a.decoded.avg_logprob, abs=1e-4)
        assert t.decoded.no_speech_prob == pytest.approx(a.decoded.no_speech_prob, abs=1e-4)


async def test_concurrent_requests_share_passes_on_the_worker(transcriber: WhisperTranscriber) -> None:
    names = ["jfk", "beckett", "two_cities_16k"]
    expected = [
        collect_transcription(transcriber.transcribe_stream(load_audio(n), TranscribeOptions())).text
        for n in names
    ]
    worker = MLXWorker()
    worker.start()
    try:

        async def run(name: str) -> str:
            stream = await worker.stream(transcriber.transcribe_stream, load_audio(name), TranscribeOptions())
            return "".join([s.text async for s in stream if isinstance(s, Segment)]).strip()

        got = await asyncio.gather(*(run(n) for n in names))
    finally:
        await worker.stop()
    assert got == expected
    assert worker.largest_batch == 3  # the first windows of all three requests shared one pass
