"""Request-scoped dependencies: the app's settings, registry, provider and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from models.provider import ModelProvider
from models.registry import Registry
from server.metrics import Metrics
from server.settings import Settings

T = TypeVar("T")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_provider(request: Request) -> ModelProvider:
    return request.app.state.provider


def get_registry(request: Request) -> Registry:
    return request.app.state.provider.registry


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


@dataclasses.dataclass(frozen=True)
class Deps:
    """What an audio endpoint works with, as one dependency."""

    provider: ModelProvider
    settings: Settings
    metrics: Metrics


def get_deps(request: Request) -> Deps:
    state = request.app.state
    return Deps(state.provider, state.settings, state.metrics)


async def until_disconnect(request: Request, work: Awaitable[T], poll: float = 0.1) -> T:
    """Await `work`, cancelling it (and so its worker job) if the client disconnects first."""
    task = asyncio.ensure_future(work)

    async def _watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(poll)
        task.cancel()

    watcher = asyncio.ensure_future(_watch())
    try:
        return await task
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def require_json(request: Request) -> None:
    """JSON endpoints answer 415 to any other declared content type (before the body is parsed)."""
    from server.errors import ApiError

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(
            415,
            f"Unsupported content type '{ctype or 'none'}': send the body as application/json.",
            code="unsupported_content_type",
        )
