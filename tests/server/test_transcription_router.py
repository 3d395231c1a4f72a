"""The transcription router's plumbing, through a real server with probe transcribers that report what
they were handed (`tests.support.probe_transcriber`): the upload is decoded at the model's sample rate and
`chunking_strategy` cuts it into the model's window; failures after the 200 arrive in-band as the one
error envelope; `stream=true` with a format that cannot stream is refused before anything is decoded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from dsp.resample import resample
from server.app import build_registry, create_app
from server.settings import Settings
from tests.support.audio import load_audio, wav_bytes
from tests.support.data import speech
from tests.support.live import serve
from tests.support.probe_transcriber import probe_spec

TONE = wav_bytes(0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * 16_000) / 16_000))  # 2 s at 16 kHz


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("probes")
    settings = Settings(cache_dir=root / "cache")
    probes = [
        probe_spec("probe-8k", root, sample_rate=8_000, window_seconds=4.0),
        probe_spec("probe-16k", root, sample_rate=16_000, window_seconds=4.0),
        probe_spec("probe-16k-30s", root, sample_rate=16_000, window_seconds=30.0),
        probe_spec("probe-idle", root, sample_rate=16_000, window_seconds=30.0),
    ]
    with serve(create_app(settings, registry=build_registry(settings, probes))) as base:
        yield base


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0, timeout=300) as c:
        yield c


def _segments(client: openai.OpenAI, model: str, audio: bytes, **kw: Any) -> list[Any]:
    v = client.audio.transcriptions.create(
        model=model, file=("a.wav", audio), response_format="verbose_json", **kw
    )
    return list(v.segments or [])


def test_upload_is_decoded_at_the_model_rate(client: openai.OpenAI) -> None:
    (seg8,) = _segments(client, "probe-8k", TONE)
    (seg16,) = _segments(client, "probe-16k", TONE)
    assert seg8.text.strip() == "16000 samples at 8000 Hz."
    assert seg16.text.strip() == "32000 samples at 16000 Hz."
    assert seg8.end == seg16.end == 2.0


def test_chunks_fit_the_model_window(client: openai.OpenAI) -> None:
    # 44 s at 16 kHz; the detector finds a 9-s stretch of speech near the end (32.7 s … 42.1 s)
    audio = speech("two_cities_16k.wav").read_bytes()
    short = _segments(client, "probe-16k", audio, chunking_strategy="auto")
    long = _segments(client, "probe-16k-30s", audio, chunking_strategy="auto")
    # the regions the transcriber gets fit its window, with 300 ms of padding at both ends
    assert max(s.end - s.start for s in long) > 9.0
    assert max(s.end - s.start for s in short) <= 4.0 - 0.6 + 1e-3
    assert len(short) > len(long) >= 10
    assert short[0].start == long[0].start and short[-1].end == long[-1].end <= 44.0


def test_speech_regions_come_back_at_the_model_rate(client: openai.OpenAI) -> None:
    # An 8-kHz upload: the 16-kHz model gets it upsampled; the 8-kHz model as sent, while the detector
    # (16 kHz) hears it upsampled the same way. Same regions in seconds, half the samples.
    audio = wav_bytes(resample(load_audio("two_cities_16k"), 16_000, 8_000), rate=8_000)
    at_16k = _segments(client, "probe-16k", audio, chunking_strategy="auto")
    at_8k = _segments(client, "probe-8k", audio, chunking_strategy="auto")
    assert len(at_8k) == len(at_16k) >= 10
    for s8, s16 in zip(at_8k, at_16k, strict=True):
        assert (s8.start, s8.end) == pytest.approx((s16.start, s16.end), abs=1e-3)
        assert int(s8.text.split()[0]) == pytest.approx(int(s16.text.split()[0]) / 2, abs=1)


def _sse_events(base_url: str, **data: str) -> list[dict[str, Any]]:
    r = httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        files={"file": ("a.wav", TONE)},
        data={"model": "probe-16k", "stream": "true", **data},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]


def test_a_bug_mid_stream_arrives_in_band_as_the_envelope(base_url: str, client: openai.OpenAI) -> None:
    events = _sse_events(base_url, prompt="fail:1")
    assert events == [
        {"type": "transcript.text.delta", "delta": "32000 samples at 16000 Hz."},
        {
            "error": {
                "message": "The server had an error while transcribing.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    ]
    stream = client.audio.transcriptions.create(
        model="probe-16k", file=("a.wav", TONE), stream=True, prompt="fail:0"
    )
    with pytest.raises(openai.APIError, match="had an error while transcribing"):
        list(stream)
    assert _segments(client, "probe-16k", TONE)[0].text.strip() == "32000 samples at 16000 Hz."


def test_a_domain_error_mid_stream_keeps_its_type_and_code(base_url: str) -> None:
    events = _sse_events(base_url, prompt="refuse:1")
    assert [e["type"] for e in events[:-1]] == ["transcript.text.delta"]
    assert events[-1] == {
        "error": {
            "message": "The probe transcriber refused on purpose.",
            "type": "server_error",
            "param": None,
            "code": "unavailable",
        }
    }


@pytest.mark.parametrize("fmt", ["verbose_json", "srt", "vtt"])
def test_stream_refuses_formats_that_cannot_stream(base_url: str, client: openai.OpenAI, fmt: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model="probe-idle",
            file=("a.wav", TONE),
            stream=True,
            response_format=fmt,  # type: ignore[arg-type]
        )
    err = info.value.body
    assert isinstance(err, dict)
    assert (err["type"], err["param"], err["code"]) == (
        "invalid_request_error",
        "stream",
        "unsupported_value",
    )
    assert f"'{fmt}'" in err["message"]
    # refused before the model was acquired or the upload decoded: undecodable bytes give the same 400
    r = httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        files={"file": ("a.wav", b"this is not audio" * 10)},
        data={"model": "probe-idle", "stream": "true", "response_format": fmt},
        timeout=60,
    )
    assert r.status_code == 400
    assert r.json() == {"error": err}
    assert httpx.get(f"{base_url}/v1/models/probe-idle").json()["loaded"] is False
    # and the server keeps serving, streams included
    events = list(client.audio.transcriptions.create(model="probe-16k", file=("a.wav", TONE), stream=True))
    assert events[-1].type == "transcript.text.done" and events[-1].text == "32000 samples at 16000 Hz."


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_stream_accepts_json_and_text(base_url: str, fmt: str) -> None:
    events = _sse_events(base_url, response_format=fmt)
    assert [e["type"] for e in events] == ["transcript.text.delta", "transcript.text.done"]
    assert events[-1]["text"] == "32000 samples at 16000 Hz."
