"""A Piper voice as users download it: one voice of rhasspy/piper-voices (`en/en_US/joe/medium/…`), named
by `files` patterns so that only its two files are fetched from the local stand-in of the Hub, converted
once and spoken through the OpenAI SDK; our Whisper understands it."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from models.sources import resolve_source
from models.text.normalize import normalize_text
from server.app import create_app
from server.settings import Settings
from tests.support.data import wer
from tests.support.fake_hub import FakeHub, point_hub_at
from tests.support.live import serve

pytestmark = pytest.mark.slow

REPO = "rhasspy/piper-voices"
VOICE = "en/en_US/joe/medium/en_US-joe-medium"
TEXT = "Please call Stella and ask her to bring these things with her from the store."


def test_one_voice_of_piper_voices_from_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.piper import PIPER_JOE

    joe = resolve_source(PIPER_JOE, tmp_path / "pkg")
    onnx = next(joe.glob("*.onnx"))
    files = {
        f"{VOICE}.onnx": onnx.read_bytes(),
        f"{VOICE}.onnx.json": onnx.with_name(onnx.name + ".json").read_bytes(),
        # another voice of the same repo, which must not be fetched
        "en/en_GB/alan/low/en_GB-alan-low.onnx": b"not fetched",
        "en/en_GB/alan/low/en_GB-alan-low.onnx.json": b"{}",
        "voices.json": b"{}",
    }
    model = {
        "id": "piper-joe-hub",
        "family": "piper",
        "task": "speech",
        "format": "piper",
        "repo": REPO,
        "files": [f"{VOICE}.onnx", f"{VOICE}.onnx.json"],
    }
    with FakeHub() as hub:
        hub.add_repo(REPO, files)
        point_hub_at(monkeypatch, tmp_path, hub.url)
        settings = Settings(cache_dir=tmp_path / "cache", models=[model])
        with (
            serve(create_app(settings)) as base,
            openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=300) as client,
        ):
            voices = client.get(
                "/audio/voices", cast_to=object, options={"params": {"model": "piper-joe-hub"}}
            )
            assert [v["id"] for v in voices["data"]] == ["piper-joe-hub"]  # type: ignore[index]
            wav = client.audio.speech.create(
                model="piper-joe-hub", voice="alloy", input=TEXT, response_format="wav"
            ).read()
            heard = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", wav)).text
        assert wer(normalize_text(TEXT), normalize_text(heard)) <= 0.10, heard
        fetched = {path for _method, path in hub.requests if "/resolve/" in path}  # HEAD then GET
    assert sorted(p.rsplit("/", 1)[-1] for p in fetched) == [
        "en_US-joe-medium.onnx",
        "en_US-joe-medium.onnx.json",
    ]
