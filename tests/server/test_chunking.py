"""`chunking_strategy` through a real server: Silero VAD cuts a long upload into ≤ 30-s chunks that are
decoded as one batch; driven with the OpenAI SDK and raw multipart, on real weights."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from server.app import create_app
from server.settings import Settings
from tests.server.test_transcriptions import _metric, wav_bytes
from tests.support.data import REFERENCE, speech, wer
from tests.support.live import serve

pytestmark = pytest.mark.slow

SR = 16_000
GAP_S = 3.0


def _pcm(name: str) -> np.ndarray:
    import wave

    with wave.open(str(speech(name))) as w:
        assert w.getframerate() == SR
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


@pytest.fixture(scope="module")
def long_file() -> tuple[bytes, list[float], str]:
    """jfk, beckett, two_cities, jfk with 3 s of silence between: (wav bytes, clip starts in s, reference)."""
    names = ["jfk.wav", "beckett.wav", "two_cities_16k.wav", "jfk.wav"]
    gap = np.zeros(int(GAP_S * SR), np.float32)
    parts, starts, t = [], [], 0.0
    for name in names:
        pcm = _pcm(name)
        starts.append(t)
        parts += [pcm, gap]
        t += (len(pcm) + len(gap)) / SR
    reference = " ".join(REFERENCE[n.removesuffix(".wav").removesuffix("_16k")] for n in names)
    return wav_bytes(np.concatenate(parts[:-1])), starts, reference


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(
        create_app(Settings(cache_dir=tmp_path_factory.mktemp("cache"), max_audio_seconds=600))
    ) as base:
        yield base


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0, timeout=600) as c:
        yield c


def test_auto_chunks_one_file_into_a_batch(
    base_url: str, client: openai.OpenAI, long_file: tuple[bytes, list[float], str]
) -> None:
    audio, starts, reference = long_file
    assert _metric(base_url, "mlx_audio_worker_largest_batch") == 0  # nothing decoded on this server yet
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("long.wav", audio), chunking_strategy="auto", response_format="verbose_json"
    )
    assert wer(reference, result.text) <= 0.1, result.text
    # one request, several chunks: they shared passes on the worker
    assert _metric(base_url, "mlx_audio_worker_largest_batch") >= 2
    segments = result.segments or []
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    assert segments[-1].end <= result.duration + 0.5
    # the last clip's words are placed on the file's timeline, after the third gap
    tail = [s for s in segments if s.start >= starts[3] - 0.5]
    assert tail and "country" in " ".join(s.text for s in tail).lower()


def test_server_vad_fields_and_words(
    client: openai.OpenAI, long_file: tuple[bytes, list[float], str]
) -> None:
    audio, starts, reference = long_file
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("long.wav", audio),
        chunking_strategy={
            "type": "server_vad",
            "threshold": 0.6,
            "prefix_padding_ms": 200,
            "silence_duration_ms": 400,
        },
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert wer(reference, result.text) <= 0.1, result.text
    words = result.words or []
    americans = [w for w in words if "americans" in w.word.lower()]
    assert len(americans) == 2  # once per jfk, each near 1.8 s into its clip
    for w, clip_start in zip(americans, (starts[0], starts[3]), strict=True):
        assert w.start == pytest.approx(clip_start + 1.8, abs=0.6)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))


def test_curl_dialect_and_streaming(base_url: str, long_file: tuple[bytes, list[float], str]) -> None:
    audio, _, reference = long_file
    fields = {
        "model": "whisper-1",
        "chunking_strategy[type]": "server_vad",
        "chunking_strategy[threshold]": "0.5",
        "stream": "true",
    }
    events = []
    with httpx.stream(
        "POST",
        f"{base_url}/v1/audio/transcriptions",
        data=fields,
        files={"file": ("a.wav", audio)},
        timeout=600,
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    deltas = [e for e in events if e["type"] == "transcript.text.delta"]
    assert len(deltas) >= 4 and events[-1]["type"] == "transcript.text.done"
    assert wer(reference, events[-1]["text"]) <= 0.1


def test_silence_is_an_empty_transcript(client: openai.OpenAI) -> None:
    quiet = wav_bytes(np.random.default_rng(0).normal(0, 1e-4, 20 * SR).astype(np.float32))
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("q.wav", quiet), chunking_strategy="auto"
    )
    assert result.text == ""


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ('{"type": "server_vad", "threshold": 1.5}', 422),
        ('{"type": "server_vad", "silence_duration_ms": -1}', 422),
        ('{"type": "nearest_pause"}', 422),
        ('{"type": "server_vad", "threshold": ', 422),  # a form field that is not JSON: a bad value
        ("sometimes", 422),
    ],
)
def test_bad_chunking_strategy(base_url: str, value: str, status: int) -> None:
    r = httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        data={"model": "whisper-1", "chunking_strategy": value},
        files={"file": ("jfk.wav", speech("jfk.wav").read_bytes())},
        timeout=60,
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == "chunking_strategy" and err["message"]
    # and the server keeps serving
    ok = httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        data={"model": "whisper-1", "response_format": "text"},
        files={"file": ("jfk.wav", speech("jfk.wav").read_bytes())},
        timeout=120,
    )
    assert ok.status_code == 200 and "country" in ok.text


def test_translations_take_a_chunking_strategy(client: openai.OpenAI) -> None:
    gap = np.zeros(2 * SR, np.float32)
    audio = wav_bytes(np.concatenate([_pcm("jfk.wav"), gap, _pcm("jfk.wav")]))
    with pytest.warns(DeprecationWarning):  # the SDK marks translations.create deprecated
        result = client.audio.translations.create(
            model="whisper-1", file=("jfk2.wav", audio), extra_body={"chunking_strategy": "auto"}
        )
    assert wer(REFERENCE["jfk"] + " " + REFERENCE["jfk"], result.text) <= 0.15, result.text
