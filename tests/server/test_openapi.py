"""openapi/openapi.json is generated from create_app(); this fails when it drifts."""

from __future__ import annotations

import json
from pathlib import Path

from server.openapi import generate, render

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_spec_matches_the_app() -> None:
    assert SPEC.read_text() == render(), "openapi/openapi.json is out of date: run `make openapi`"


def test_spec_covers_the_routes() -> None:
    spec = json.loads(SPEC.read_text())
    paths = spec["paths"]
    assert {"/health", "/ready", "/v1/models", "/v1/models/{model}"} <= set(paths)
    assert {"get", "post"} <= set(paths["/v1/models"]) and {"get", "delete"} <= set(
        paths["/v1/models/{model}"]
    )
    assert generate()["info"]["title"] == "mlx-audio-server"


def test_spec_documents_400_envelopes_not_422() -> None:
    spec = json.loads(SPEC.read_text())
    text = SPEC.read_text()
    assert '"422"' not in text and "HTTPValidationError" not in text
    bad = spec["paths"]["/v1/models"]["post"]["responses"]["400"]
    assert bad["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    error = spec["components"]["schemas"]["ErrorResponse"]["properties"]["error"]
    assert error["required"] == ["message", "type", "param", "code"]
