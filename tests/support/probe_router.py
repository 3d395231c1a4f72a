"""Extra routes mounted only in tests: drive the real worker and provider with the tiny MLX model over
real HTTP, to observe queueing (429) and cancellation when a client disconnects."""

from __future__ import annotations

import contextlib
import json

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from models.provider import ModelProvider
from server.deps import get_provider, until_disconnect

router = APIRouter(prefix="/probe")


@router.post("/forward")
async def forward(
    request: Request,
    model: str = "tiny-a",
    delay: float = 0.0,
    provider: ModelProvider = Depends(get_provider),
) -> dict:
    async with provider.use(model) as runner:
        x = np.ones((1, runner.dim), np.float32)
        y = await until_disconnect(request, provider.worker.run(runner.forward, x, delay))
    return {"sum": float(y.sum())}


@router.get("/steps")
async def steps(
    n: int = 10, delay: float = 0.0, model: str = "tiny-a", provider: ModelProvider = Depends(get_provider)
) -> StreamingResponse:
    # Hold the model for the whole stream; everything that can fail is checked before the 200.
    stack = contextlib.AsyncExitStack()
    runner = await stack.enter_async_context(provider.use(model))
    try:
        stream = await provider.worker.stream(runner.steps, n, delay)
    except BaseException:
        await stack.aclose()
        raise

    async def body():
        async with stack:
            async for v in stream:
                yield json.dumps({"v": v}) + "\n"

    return StreamingResponse(body(), media_type="application/x-ndjson")


@router.get("/state")
async def state(model: str = "tiny-a", provider: ModelProvider = Depends(get_provider)) -> dict:
    res = provider._resident.get(model)
    runner = res.model if res else None
    return {
        "cancelled_jobs": provider.worker.cancelled_jobs,
        "steps_done": runner.steps_done if runner else None,
        "closed": runner.closed.is_set() if runner else None,
        "depth": provider.worker.depth,
    }
