"""/v1/models through the official OpenAI SDK and raw HTTP against a real uvicorn server."""

from __future__ import annotations

import httpx
import openai
import pytest


@pytest.fixture
def client():
    made: list[openai.OpenAI] = []

    def make(base: str, key: str = "sk-anything") -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_list_models_has_the_registry(server_url: str, client) -> None:
    models = client(server_url).models.list()
    by_id = {m.id: m for m in models.data}
    assert {"whisper-tiny.en", "whisper-base", "tiny-a", "org/tiny-c"} <= set(by_id)
    tiny_en = by_id["whisper-tiny.en"].model_dump()
    assert tiny_en["object"] == "model" and tiny_en["owned_by"] == "openai"
    assert tiny_en["task"] == "transcription" and tiny_en["loaded"] is False
    assert {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"} <= set(tiny_en["aliases"])
    assert "translation" in by_id["whisper-base"].model_dump()["capabilities"]


def test_retrieve_by_id_alias_and_slashed_id(server_url: str, client) -> None:
    c = client(server_url)
    assert c.models.retrieve("whisper-1").id == "whisper-tiny.en"
    m = c.models.retrieve("org/tiny-c")  # the SDK percent-encodes the '/'
    assert m.id == "org/tiny-c" and m.model_dump()["aliases"] == ["tiny-c"]
    raw = httpx.get(f"{server_url}/v1/models/org/tiny-c").json()
    assert raw["id"] == "org/tiny-c"


def test_unknown_model_is_a_404_envelope(server_url: str, client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(server_url).models.retrieve("no-such-model")
    assert info.value.status_code == 404
    assert info.value.body == {
        "message": "The model 'no-such-model' does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_load_and_unload(server_url: str, client) -> None:
    c = client(server_url)
    loaded = c.post("/models", body={"model": "tiny-c"}, cast_to=httpx.Response).json()
    assert loaded["id"] == "org/tiny-c" and loaded["loaded"] is True
    assert c.models.retrieve("org/tiny-c").model_dump()["loaded"] is True
    # load is idempotent
    assert c.post("/models", body={"model": "org/tiny-c"}, cast_to=httpx.Response).json()["loaded"] is True
    deleted = c.models.delete("org/tiny-c")
    assert deleted.id == "org/tiny-c" and deleted.deleted is True
    assert c.models.delete("org/tiny-c").deleted is False  # it was no longer resident
    assert c.models.retrieve("tiny-c").model_dump()["loaded"] is False


def test_delete_unknown_model_404(server_url: str, client) -> None:
    with pytest.raises(openai.NotFoundError):
        client(server_url).models.delete("ghost")


def test_health_ready_and_metrics(server_url: str, client) -> None:
    assert httpx.get(f"{server_url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server_url}/ready", timeout=120)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert body["models"]["whisper-tiny.en"] in ("available", "loaded")
    httpx.post(f"{server_url}/v1/models", json={"model": "tiny-a"})
    text = httpx.get(f"{server_url}/metrics").text
    assert 'mlx_audio_resident_model_bytes{model="tiny-a"}' in text
    assert "mlx_audio_queue_depth" in text
    assert 'mlx_audio_model_load_seconds_count{model="tiny-a"} 1.0' in text
    assert 'mlx_audio_requests_total{method="POST",route="/v1/models",status="200"} 1.0' in text


def test_request_id_is_echoed_or_generated(server_url: str, client) -> None:
    r = httpx.get(f"{server_url}/v1/models", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r2 = httpx.get(f"{server_url}/v1/models", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r2.headers["x-request-id"].startswith("req_")
