"""`create_app(settings)`: builds the FastAPI app. No work happens at import time; the lifespan starts
the MLX worker and the model provider (preloading what settings name) and stops them cleanly.

Nothing this module imports at the top imports mlx: `create_app` preloads the fast BLAS first
(`dsp.blas.ensure_fast_blas`, which only works before the first `import mlx`), then imports what needs mlx.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from dsp.blas import ensure_fast_blas
from models.families import builtin_models
from models.registry import ModelSpec, Registry, merge_specs
from server.errors import install_error_handlers, openapi_without_422
from server.metrics import Metrics
from server.middleware import AuthMiddleware, BodyLimitMiddleware, RequestContextMiddleware
from server.settings import Settings

log = logging.getLogger(__name__)

API_VERSION = "0.1.0"


def build_registry(settings: Settings, extra: Iterable[ModelSpec] = ()) -> Registry:
    return Registry([*merge_specs(builtin_models(), settings.models), *extra])


def create_app(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    extra_routers: Iterable[APIRouter] = (),
) -> FastAPI:
    # Explicitly, before anything below imports mlx (a no-op when the CLI already did it). When mlx was
    # imported earlier the status says so, and the startup log line reports it.
    blas = ensure_fast_blas()
    from models.provider import ModelProvider
    from models.worker import MLXWorker
    from server.routers import health, models, realtime, separations, speech, transcriptions

    settings = settings or Settings()
    registry = registry or build_registry(settings)
    metrics = Metrics()
    worker = MLXWorker(max_queue=settings.queue_depth)
    provider = ModelProvider(
        registry,
        worker,
        cache_dir=settings.cache_dir,
        idle_ttl=settings.idle_ttl,
        memory_budget=settings.memory_budget_bytes,
        pinned=[*settings.preload, *(s.id for s in registry.list() if s.default_for)],
        on_load=lambda spec, seconds, _n: metrics.load_seconds.labels(spec.id).observe(seconds),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "starting: MLX worker, %d models registered, BLAS: %s",
            len(registry.list()),
            blas.library or blas.reason,
        )
        await provider.start(preload=settings.preload)
        try:
            yield
        finally:
            log.info("stopping: draining the MLX worker")
            await provider.stop()

    app = FastAPI(
        title="mlx-audio-server",
        version=API_VERSION,
        description="OpenAI-compatible audio inference on MLX: transcription, translation, speech, "
        "separation and realtime transcription.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.provider = provider
    app.state.metrics = metrics
    install_error_handlers(app)
    app.openapi = lambda: openapi_without_422(FastAPI.openapi(app))  # type: ignore[method-assign]
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(transcriptions.router)
    app.include_router(speech.router)
    app.include_router(realtime.router)
    app.include_router(separations.router)
    for r in extra_routers:
        app.include_router(r)

    # Added inside-out: the last added runs first. CORS outermost so preflights never need a key.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_upload_bytes + 1024 * 1024,  # the form's other fields and framing
        per_path={"/v1/audio/separations": settings.max_separation_upload_bytes + 1024 * 1024},
    )
    key = settings.api_key.get_secret_value() if settings.api_key else None
    app.add_middleware(AuthMiddleware, api_key=key)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    return app
