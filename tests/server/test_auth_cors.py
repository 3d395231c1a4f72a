"""API key (Bearer; WebSocket subprotocol) and CORS, on a real server."""

from __future__ import annotations

import httpx
import openai
import pytest
from pydantic import ValidationError

from server.settings import Settings

KEY = "sk-test-0123456789"


def test_api_key_required_when_configured(live_server) -> None:
    with live_server(api_key=KEY) as base:
        with (
            pytest.raises(openai.AuthenticationError) as info,
            openai.OpenAI(base_url=f"{base}/v1", api_key="sk-wrong", max_retries=0) as bad,
        ):
            bad.models.list()
        assert info.value.status_code == 401
        assert info.value.body["code"] == "invalid_api_key"
        assert info.value.body["message"] == "Incorrect API key provided."

        r = httpx.get(f"{base}/v1/models")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "didn't provide an API key" in r.json()["error"]["message"]
        assert httpx.get(f"{base}/metrics").status_code == 401
        assert httpx.get(f"{base}/ready").status_code == 401

        with openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0) as good:
            ok = good.models.list()
        assert any(m.id == "whisper-tiny.en" for m in ok.data)
        assert httpx.get(f"{base}/health").status_code == 200  # liveness stays open


def test_any_key_accepted_without_configuration(server_url: str) -> None:
    for key in ("sk-whatever", "x"):
        with openai.OpenAI(base_url=f"{server_url}/v1", api_key=key, max_retries=0) as c:
            assert c.models.list().data
    assert httpx.get(f"{server_url}/v1/models").status_code == 200


def test_non_loopback_bind_requires_a_key(tmp_path) -> None:
    with pytest.raises(ValidationError, match="set an API key"):
        Settings(host="0.0.0.0", cache_dir=tmp_path)
    assert Settings(host="0.0.0.0", api_key=KEY, cache_dir=tmp_path).api_key is not None
    assert Settings(host="::1", cache_dir=tmp_path).api_key is None
    assert Settings(host="localhost", cache_dir=tmp_path).api_key is None


def test_cors_closed_by_default(server_url: str) -> None:
    r = httpx.options(
        f"{server_url}/v1/models",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(f"{server_url}/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_open_to_configured_origins(live_server) -> None:
    with live_server(cors_origins=["https://app.example"], api_key=KEY) as base:
        pre = httpx.options(
            f"{base}/v1/models",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        r = httpx.get(
            f"{base}/v1/models", headers={"Origin": "https://app.example", "Authorization": f"Bearer {KEY}"}
        )
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.get(
            f"{base}/v1/models", headers={"Origin": "https://other.example", "Authorization": f"Bearer {KEY}"}
        )
        assert "access-control-allow-origin" not in other.headers
