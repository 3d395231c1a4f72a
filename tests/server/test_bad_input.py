"""Every malformed request gets an OpenAI-style envelope with the right status; the server keeps serving."""

from __future__ import annotations

import socket

import httpx
import openai
import pytest


def assert_envelope(
    r: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err


@pytest.fixture
def alive(server_url: str):
    yield server_url
    # after every bad request the server still serves real work
    assert httpx.get(f"{server_url}/health").status_code == 200
    r = httpx.post(f"{server_url}/probe/forward", params={"model": "tiny-b"})
    assert r.status_code == 200 and r.json()["sum"] != 0


def test_malformed_json(alive: str) -> None:
    r = httpx.post(f"{alive}/v1/models", content=b'{"model": ', headers={"content-type": "application/json"})
    err = assert_envelope(r, 400, "invalid_json")
    assert "JSON" in err["message"]


def test_json_that_is_not_an_object(alive: str) -> None:
    assert_envelope(httpx.post(f"{alive}/v1/models", json=["tiny-a"]), 400)


def test_wrong_content_type(alive: str) -> None:
    r = httpx.post(
        f"{alive}/v1/models",
        content=b"model=tiny-a",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_envelope(r, 415, "unsupported_content_type")


def test_missing_field(alive: str) -> None:
    err = assert_envelope(
        httpx.post(f"{alive}/v1/models", json={}), 400, "missing_required_parameter", "model"
    )
    assert "'model'" in err["message"]


def test_out_of_range_and_unknown_fields(alive: str) -> None:
    # OpenAI answers 400 for a value outside a field's range or type (never FastAPI's 422)
    assert_envelope(httpx.post(f"{alive}/v1/models", json={"model": ""}), 400, "invalid_value", "model")
    assert_envelope(
        httpx.post(f"{alive}/v1/models", json={"model": "x" * 300}), 400, "invalid_value", "model"
    )
    assert_envelope(httpx.post(f"{alive}/v1/models", json={"model": 5}), 400, "invalid_value", "model")
    err = assert_envelope(
        httpx.post(f"{alive}/v1/models", json={"model": "tiny-a", "x": 1}), 400, "unknown_parameter", "x"
    )
    assert err["message"] == "Unrecognized request argument supplied: 'x'."


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2),
        ("response_format", "docx"),
        ("language", "english"),
        ("timestamp_granularities", ["x"]),
    ],
)
def test_invalid_values_are_bad_requests_for_the_sdk(alive: str, field: str, value: object) -> None:
    client = openai.OpenAI(base_url=f"{alive}/v1", api_key="local", max_retries=0)
    with client, pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", b"RIFF"), extra_body={field: value}
        )
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["param"], body["code"]) == ("invalid_request_error", field, "invalid_value")
    assert body["message"].startswith(f"Invalid value for '{field}': ")


def test_unknown_model(alive: str) -> None:
    assert_envelope(httpx.post(f"{alive}/v1/models", json={"model": "nope"}), 404, "model_not_found", "model")


def test_unknown_route_and_method(alive: str) -> None:
    assert_envelope(httpx.get(f"{alive}/v1/nothing-here"), 404, "not_found")
    assert_envelope(httpx.put(f"{alive}/v1/models"), 405, "method_not_allowed")


def test_oversized_body_by_content_length(live_server) -> None:
    with live_server(max_upload_mb=1) as base:
        r = httpx.post(
            f"{base}/v1/models",
            content=b"x" * (3 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
        assert_envelope(r, 413, "payload_too_large")
        assert httpx.get(f"{base}/v1/models").status_code == 200


def test_oversized_chunked_body(live_server) -> None:
    def chunks():
        for _ in range(40):
            yield b"y" * (128 * 1024)

    with live_server(max_upload_mb=1) as base:
        r = httpx.post(f"{base}/v1/models", content=chunks(), headers={"content-type": "application/json"})
        assert_envelope(r, 413, "payload_too_large")
        assert httpx.get(f"{base}/v1/models").status_code == 200


def test_garbage_http_does_not_kill_the_server(alive: str) -> None:
    host, port = alive.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"\x16\x03\x01garbage that is not http\r\n\r\n")
        s.recv(1024)
