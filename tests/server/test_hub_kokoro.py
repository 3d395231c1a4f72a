"""Kokoro as users download it from Hugging Face, end to end: hexgrad/Kokoro-82M's layout (config.json,
kokoro-v1_0.pth, voices/*.pt) and the same weights as one safetensors file (kokoro-mlx's layout), served by
the local stand-in of the Hub, fetched by huggingface_hub, converted once (the .pth through the restricted
unpickler) and spoken through the OpenAI SDK; our Whisper understands both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from models.text.normalize import normalize_text
from server.app import create_app
from server.settings import Settings
from tests.support.data import wer
from tests.support.fake_hub import FakeHub, point_hub_at
from tests.support.kokoro import kokoro_state_dict, write_hexgrad_repo
from tests.support.live import serve

pytestmark = [pytest.mark.slow, pytest.mark.reference]

REPOS = {"hexgrad/Kokoro-82M": False, "someone/Kokoro-82M-safetensors": True}  # repo → safetensors layout
MODELS = [
    {
        "id": "kokoro-hexgrad",
        "family": "kokoro",
        "task": "speech",
        "format": "kokoro",
        "repo": "hexgrad/Kokoro-82M",
    },
    {
        "id": "kokoro-st",
        "family": "kokoro",
        "task": "speech",
        "format": "kokoro-safetensors",
        "repo": "someone/Kokoro-82M-safetensors",
    },
]
TEXT = "The library opens at 9 on Saturday, Mister Brown."


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    state = kokoro_state_dict()
    with FakeHub() as fake:
        for repo_id, safetensors in REPOS.items():
            folder = write_hexgrad_repo(state, tmp_path / repo_id.replace("/", "--"), safetensors=safetensors)
            fake.add_repo(
                repo_id,
                {
                    str(p.relative_to(folder)): p.read_bytes()
                    for p in sorted(folder.rglob("*"))
                    if p.is_file()
                },
            )
        point_hub_at(monkeypatch, tmp_path, fake.url)
        yield fake


def test_kokoro_repos_from_the_hub_speak(hub: FakeHub, tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache", models=MODELS)
    with (
        serve(create_app(settings)) as base,
        openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=600) as client,
    ):
        for model in ("kokoro-hexgrad", "kokoro-st"):
            wav = client.audio.speech.create(
                model=model, voice="af_heart", input=TEXT, response_format="wav"
            ).read()
            heard = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", wav)).text
            assert wer(normalize_text(TEXT), normalize_text(heard)) <= 0.10, (model, heard)
    downloaded = [path for _method, path in hub.requests if "/resolve/" in path]
    assert any(p.endswith("/kokoro-v1_0.pth") for p in downloaded)
    assert any(p.endswith("/kokoro-v1_0.safetensors") for p in downloaded)
    assert any(p.endswith("/voices/af_heart.pt") for p in downloaded)
