from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from server.app import build_registry, create_app
from server.settings import Settings
from tests.support import probe_router
from tests.support.live import serve
from tests.support.tiny_family import tiny_spec, write_tiny_model


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {name: write_tiny_model(root / name, seed=i) for i, name in enumerate(["a", "b", "c"])}


@pytest.fixture
def live_server(tmp_path: Path, tiny_dirs: dict[str, Path]) -> Callable[..., AbstractContextManager[str]]:
    """Factory: `with live_server(api_key=..., queue_depth=...) as base_url:` runs a real server."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[str]:
        settings = Settings(cache_dir=tmp_path / "cache", **overrides)
        extra = [
            tiny_spec("tiny-a", tiny_dirs["a"]),
            tiny_spec("tiny-b", tiny_dirs["b"]),
            tiny_spec("org/tiny-c", tiny_dirs["c"], aliases=("tiny-c",)),
        ]
        app = create_app(
            settings, registry=build_registry(settings, extra), extra_routers=[probe_router.router]
        )
        with serve(app) as base:
            yield base

    return start


@pytest.fixture
def server_url(live_server: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    with live_server() as base:
        yield base
