"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from models.provider import ModelProvider
from models.sources import resolve_source
from server.deps import get_metrics, get_provider
from server.metrics import Metrics

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. Never requires an API key."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(provider: ModelProvider = Depends(get_provider)) -> JSONResponse:
    """Readiness: every default model is resident or its weights are available locally."""
    states: dict[str, str] = {}
    ok = True
    defaults = {s.id: s for s in provider.registry.list() if s.default_for}
    for spec in defaults.values():
        if provider.is_loaded(spec.id):
            states[spec.id] = "loaded"
            continue
        try:
            await asyncio.to_thread(resolve_source, spec.source, provider.cache_dir)
            states[spec.id] = "available"
        except Exception as exc:
            ok = False
            states[spec.id] = f"unavailable: {exc}"
    body = {"status": "ready" if ok else "not_ready", "models": states, "queue_depth": provider.worker.depth}
    return JSONResponse(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "5"})


@router.get("/metrics", include_in_schema=False)
async def metrics(
    provider: ModelProvider = Depends(get_provider), m: Metrics = Depends(get_metrics)
) -> Response:
    w = provider.worker
    m.queue_depth.set(w.depth)
    m.jobs_completed.set(w.completed)
    m.jobs_cancelled.set(w.cancelled_jobs)
    m.batches.set(w.batches_run)
    m.largest_batch.set(w.largest_batch)
    m.resident_models.set(len(provider.resident()))
    m.resident_bytes.clear()
    for r in provider.resident():
        m.resident_bytes.labels(r.spec.id).set(r.nbytes)
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
