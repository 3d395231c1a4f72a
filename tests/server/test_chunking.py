"""`chunking_strategy` through a real server: Silero VAD cuts a long upload into ≤ 30-s chunks that are
decoded as one batch; driven with the OpenAI SDK and raw multipart, on real weights."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from server.app import create_app
from server.settings import Settings
from tests.support.audio import wav_bytes
from tests.support.data import REFERENCE, normalize, speech, wer
from tests.support.live import serve
from tests.support.metrics import metric

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
    assert metric(base_url, "mlx_audio_worker_largest_batch") == 0  # nothing decoded on this server yet
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("long.wav", audio), chunking_strategy="auto", response_format="verbose_json"
    )
    assert wer(reference, result.text) <= 0.1, result.text
    # one request, several chunks: they shared passes on the worker
    assert metric(base_url, "mlx_audio_worker_largest_batch") >= 2
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


QUIET_DB = -40.0  # jfk.wav at −55 LUFS: Silero on the samples as sent keeps 5.7 of its 10.1 s of speech


def test_auto_normalises_loudness_before_the_vad(client: openai.OpenAI) -> None:
    """ "auto" finds the speech of a clip 40 dB down as of the clip as recorded. `server_vad` with "auto"'s
    settings (threshold 0.5, 300 ms padding, 100 ms of silence), which hears the audio as sent, is what
    "auto" did before it normalised loudness: it loses the first five seconds."""
    pcm = _pcm("jfk.wav")
    quiet = wav_bytes(pcm * 10 ** (QUIET_DB / 20))
    kwargs: dict[str, Any] = {"model": "whisper-1", "response_format": "verbose_json"}
    loud = client.audio.transcriptions.create(
        file=("jfk.wav", wav_bytes(pcm)), chunking_strategy="auto", **kwargs
    )
    got = client.audio.transcriptions.create(file=("quiet.wav", quiet), chunking_strategy="auto", **kwargs)
    assert wer(REFERENCE["jfk"], got.text) == 0.0, got.text
    assert normalize(got.text) == normalize(loud.text)
    spans = [(s.start, s.end) for s in got.segments or []]
    want = [(s.start, s.end) for s in loud.segments or []]
    assert len(spans) == len(want) >= 1
    for (s, e), (ws, we) in zip(spans, want, strict=True):
        assert s == pytest.approx(ws, abs=0.1) and e == pytest.approx(we, abs=0.1)
    assert spans[0][0] < 1.0  # "And so my fellow Americans" at 0.3 s is kept
    as_sent = client.audio.transcriptions.create(
        file=("quiet.wav", quiet),
        chunking_strategy={
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 100,
        },
        **kwargs,
    )
    assert "fellow americans" not in normalize(as_sent.text), as_sent.text
    assert wer(REFERENCE["jfk"], as_sent.text) > 0.3
    assert (as_sent.segments or [])[0].start > 4.5


def test_silence_is_an_empty_transcript(client: openai.OpenAI) -> None:
    quiet = wav_bytes(np.random.default_rng(0).normal(0, 1e-4, 20 * SR).astype(np.float32))
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("q.wav", quiet), chunking_strategy="auto"
    )
    assert result.text == ""


@pytest.mark.parametrize(
    "value",
    [
        '{"type": "server_vad", "threshold": 1.5}',
        '{"type": "server_vad", "silence_duration_ms": -1}',
        '{"type": "nearest_pause"}',
        '{"type": "server_vad", "threshold": ',  # a form field that is not JSON: a bad value
        "sometimes",
    ],
)
def test_bad_chunking_strategy(base_url: str, value: str) -> None:
    r = httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        data={"model": "whisper-1", "chunking_strategy": value},
        files={"file": ("jfk.wav", speech("jfk.wav").read_bytes())},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_value"
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
