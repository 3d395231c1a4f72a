"""/v1/audio/speech request validation, before any model is involved: every malformed request gets the
OpenAI envelope with the right status and `param` (the SDK raises `BadRequestError`/`NotFoundError`), and
the server keeps serving."""

from __future__ import annotations

import httpx
import openai
import pytest


def _post(base: str, body: object, **kw: object) -> httpx.Response:
    return httpx.post(f"{base}/v1/audio/speech", json=body, timeout=30, **kw)  # type: ignore[arg-type]


def _error(r: httpx.Response, status: int, param: str | None, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param
    if code is not None:
        assert err["code"] == code
    return err


GOOD = {"model": "tts-1", "input": "Hello there.", "voice": "alloy"}


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"input": ""}, "input", "invalid_value"),
        ({"input": " \n\t "}, "input", "invalid_value"),
        ({"input": "x" * 4097}, "input", "string_above_max_length"),
        ({"speed": 4.5}, "speed", "invalid_value"),
        ({"speed": 0.1}, "speed", "invalid_value"),
        ({"response_format": "ogg"}, "response_format", "invalid_value"),
        ({"stream_format": "chunks"}, "stream_format", "invalid_value"),
        ({"voice": {"name": "alloy"}}, "voice", None),
        ({"voice": 7}, "voice", "invalid_value"),
        ({"colour": "blue"}, "colour", None),
    ],
)
def test_invalid_fields_answer_400(server_url: str, change: dict, param: str, code: str | None) -> None:
    _error(_post(server_url, {**GOOD, **change}), 400, param, code)
    assert httpx.get(f"{server_url}/health").status_code == 200


def test_missing_fields_and_bodies(server_url: str) -> None:
    for field in ("model", "input", "voice"):
        body = {k: v for k, v in GOOD.items() if k != field}
        _error(_post(server_url, body), 400, field, "missing_required_parameter")
    r = httpx.post(f"{server_url}/v1/audio/speech", content=b"input=hi", timeout=30)
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_content_type"


def test_unknown_model(server_url: str) -> None:
    err = _error(_post(server_url, {**GOOD, "model": "no-such-voice"}), 404, "model")
    assert "no-such-voice" in err["message"]
    with openai.OpenAI(base_url=f"{server_url}/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as info:
            client.audio.speech.create(model="tts-1", input="Hi.", voice="alloy", speed=9)
        assert info.value.body["param"] == "speed"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            client.audio.speech.create(model="no-such-voice", input="Hi.", voice="alloy")
    r = httpx.get(f"{server_url}/v1/audio/voices", params={"model": "no-such-voice"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


def test_openai_names_without_a_default_model_say_so() -> None:
    """A registry with no speech model: `tts-1` names the missing default, not an unknown model."""
    from models.errors import ModelNotFound
    from models.families import builtin_models
    from models.registry import Registry

    registry = Registry([s for s in builtin_models() if s.task != "speech"])
    with pytest.raises(ModelNotFound, match="No model is configured for speech: 'tts-1' stands for"):
        registry.for_task("tts-1", "speech")
    assert registry.for_task("whisper-1", "transcription").id == "whisper-tiny.en"
