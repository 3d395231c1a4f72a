"""/v1/audio/speech on the embedded Piper voice through a real server: every format decodes as one file of
the right rate, OpenAI voice names and `{"id": ...}` work, audio streams (the first bytes arrive while the
rest is still being synthesized), SSE carries the same audio and usage, a client that goes away stops the
work, and our own Whisper understands what was said."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from dsp.audio_io import decode, decode_pcm16
from server.app import create_app
from server.settings import Settings
from tests.support.data import wer
from tests.support.live import serve
from tests.support.metrics import metric

pytestmark = pytest.mark.slow

SENTENCE = "The quick brown fox jumps over the lazy dog."
LONG = " ".join(
    [
        "It was a bright cold day in April, and the clocks were striking thirteen.",
        "Winston Smith slipped quickly through the glass doors of Victory Mansions.",
        "The hallway smelt of boiled cabbage and old rag mats.",
        "At one end of it a coloured poster had been tacked to the wall.",
        "It depicted simply an enormous face, more than a metre wide.",
        "Winston made for the stairs, since the lift was seldom working.",
    ]
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(Settings(cache_dir=tmp_path_factory.mktemp("cache")))) as base:
        yield base


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0, timeout=600) as c:
        yield c


def _decoded(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    w = decode_pcm16(data, 24_000) if fmt == "pcm" else decode(data, channels=1)
    return w.samples[:, 0], w.sample_rate


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_format_is_one_decodable_file(client: openai.OpenAI, fmt: str) -> None:
    data = client.audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format=fmt
    ).read()
    audio, rate = _decoded(data, fmt)
    if fmt == "pcm":
        assert rate == 24_000
    seconds = len(audio) / rate
    assert 1.5 < seconds < 6.0  # a short sentence, spoken
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.02 and np.isfinite(audio).all()


def test_whisper_understands_the_default_voice(client: openai.OpenAI) -> None:
    """Round trip: our speech, then our transcription of it (WER on normalised text)."""
    from models.text.normalize import normalize_text

    text = "Doctor Smith bought 3 apples and 12 pears on Monday. Is that all, Mary?"
    wav = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav").read()
    heard = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", wav)).text
    assert wer(normalize_text(text), normalize_text(heard)) <= 0.10, heard


def test_voices_and_voice_forms(base_url: str, client: openai.OpenAI) -> None:
    listed = httpx.get(f"{base_url}/v1/audio/voices", timeout=300).json()
    assert listed["object"] == "list" and listed["data"]
    voice = listed["data"][0]
    assert voice["model"].startswith("piper-") and voice["language"] == "en-US"
    assert voice["id"] == "piper-en_US-joe-medium" and voice["name"] == "en_US-joe-medium"
    info = httpx.get(f"{base_url}/v1/models/tts-1").json()
    assert (
        info["loaded"]
        and info["backend"] == "cpu"
        and info["backend_reason"].startswith("CPU: the Piper model in numpy")
        and info["backend_reason"].endswith("sentences 1 at a time")
    )
    by_name = client.audio.speech.create(model="tts-1", voice="nova", input="Hello.", response_format="wav")
    body = {"model": "tts-1", "input": "Hello.", "voice": {"id": voice["id"]}, "response_format": "wav"}
    by_id = httpx.post(f"{base_url}/v1/audio/speech", json=body, timeout=300)
    assert by_id.status_code == 200 and by_id.headers["content-type"] == "audio/wav"
    assert (
        by_id.content == by_name.read()
    )  # OpenAI names map to the voice; synthesis is deterministic per call
    r = httpx.post(f"{base_url}/v1/audio/speech", json={**body, "voice": "nobody"}, timeout=300)
    assert r.status_code == 400 and r.json()["error"]["param"] == "voice"
    assert voice["id"] in r.json()["error"]["message"]  # the error names the voices there are


def test_audio_streams_while_synthesizing(base_url: str) -> None:
    body = {"model": "tts-1", "input": LONG, "voice": "alloy", "response_format": "pcm"}
    with httpx.stream("POST", f"{base_url}/v1/audio/speech", json=body, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
        chunks = r.iter_bytes()
        first = next(chunks)
        assert len(first) > 0
        # the first sentence is out while the worker still synthesizes the rest
        assert metric(base_url, "mlx_audio_queue_depth") >= 1
        rest = b"".join(chunks)
    audio = decode_pcm16(first + rest, 24_000).samples[:, 0]
    assert len(audio) / 24_000 > 15  # six sentences


def test_sse_carries_the_same_audio_and_usage(base_url: str) -> None:
    body = {"model": "tts-1", "input": SENTENCE, "voice": "alloy", "response_format": "pcm"}
    plain = httpx.post(f"{base_url}/v1/audio/speech", json=body, timeout=300).content
    events = []
    with httpx.stream(
        "POST", f"{base_url}/v1/audio/speech", json={**body, "stream_format": "sse"}, timeout=300
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and events[-1]["type"] == "speech.audio.done"
    assert b"".join(base64.b64decode(e["audio"]) for e in deltas) == plain
    usage = events[-1]["usage"]
    assert usage["input_tokens"] > 10 and usage["output_tokens"] > 10
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_a_client_that_leaves_stops_the_synthesis(base_url: str) -> None:
    before = metric(base_url, "mlx_audio_worker_jobs_cancelled")
    body = {"model": "tts-1", "input": LONG * 3, "voice": "alloy", "response_format": "mp3"}
    with httpx.stream("POST", f"{base_url}/v1/audio/speech", json=body, timeout=300) as r:
        next(r.iter_bytes())
    for _ in range(600):  # the cancellation lands at the worker's next step, after the batch in hand
        if metric(base_url, "mlx_audio_worker_jobs_cancelled") > before:
            break
        time.sleep(0.1)
    assert metric(base_url, "mlx_audio_worker_jobs_cancelled") > before
    assert httpx.post(
        f"{base_url}/v1/audio/speech", json={**body, "input": "Still here."}, timeout=300
    ).is_success


def test_text_that_speaks_nothing_is_a_400(base_url: str) -> None:
    for text in ("🙂🙂🙂", "\x00\x01\x02"):
        r = httpx.post(
            f"{base_url}/v1/audio/speech",
            json={"model": "tts-1", "input": text, "voice": "alloy"},
            timeout=300,
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "input", r.text


def test_concurrent_requests_sound_as_they_do_alone(base_url: str) -> None:
    """Sentences of concurrent requests share the worker's batches; each still gets its own audio."""
    import concurrent.futures

    texts = [LONG, "Mary had a little lamb. Its fleece was white as snow. And everywhere that Mary went."]

    def pcm(text: str) -> np.ndarray:
        body = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm"}
        r = httpx.post(f"{base_url}/v1/audio/speech", json=body, timeout=600)
        assert r.status_code == 200
        return decode_pcm16(r.content, 24_000).samples[:, 0]

    alone = [pcm(t) for t in texts]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(pcm, texts * 2))
    for got, want in zip(together, alone * 2, strict=True):
        assert len(got) == len(want)
        assert np.abs(got - want).max() <= 3 / 32768  # float rounding of padded batches, then 16-bit
