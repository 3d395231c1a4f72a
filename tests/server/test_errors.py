"""The one table: every domain error reaches the client as the envelope with its status (and
Retry-After where the client should come back), from a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter

from models import errors as E
from server.app import create_app
from server.errors import STATUS_TABLE
from server.settings import Settings
from tests.support.live import serve

router = APIRouter(prefix="/raise")
CASES = {cls.__name__: cls for cls in STATUS_TABLE}


@router.get("/{name}")
async def raise_it(name: str) -> None:
    raise CASES[name](f"{name} happened", param="p")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(cache_dir=Path(tmp_path_factory.mktemp("cache")))
    with serve(create_app(settings, extra_routers=[router])) as url:
        yield url


EXPECTED = {
    "InvalidRequest": 400,
    "EmptyInput": 400,
    "InvalidField": 400,
    "ModelNotFound": 404,
    "VoiceNotFound": 404,
    "PayloadTooLarge": 413,
    "UnsupportedMedia": 415,
    "ModelInUse": 409,
    "QueueFull": 429,
    "Unavailable": 503,
    "Cancelled": 499,
    "WeightsError": 500,
}


def test_table_covers_every_domain_error() -> None:
    defined = {c.__name__ for c in vars(E).values() if isinstance(c, type) and issubclass(c, E.DomainError)}
    assert defined - {"DomainError"} == set(EXPECTED) == set(CASES)


@pytest.mark.parametrize(("name", "status"), sorted(EXPECTED.items()))
def test_status_and_envelope(base: str, name: str, status: int) -> None:
    r = httpx.get(f"{base}/raise/{name}")
    assert r.status_code == status
    err = r.json()["error"]
    assert err["message"] == f"{name} happened" and err["param"] == "p" and err["code"] == CASES[name].code
    assert err["type"] == (
        "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    )
    if name == "QueueFull":
        assert r.headers["retry-after"] == "1"
    elif name == "Unavailable":
        assert r.headers["retry-after"] == "5"
    else:
        assert "retry-after" not in r.headers
