"""Queueing and cancellation over real HTTP: 429 with Retry-After on a full queue, and a client that
disconnects mid-stream cancels its job on the MLX worker."""

from __future__ import annotations

import asyncio
import time

import httpx


def test_full_queue_answers_429_with_retry_after(live_server) -> None:
    async def scenario(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            await c.post("/v1/models", json={"model": "tiny-a"})
            slow = [asyncio.ensure_future(c.post("/probe/forward", params={"delay": 1.0})) for _ in range(2)]
            await asyncio.sleep(0.4)  # both are on the worker (one running, one queued)
            extra = await asyncio.gather(*(c.post("/probe/forward") for _ in range(3)))
            return [*await asyncio.gather(*slow), *extra]

    with live_server(queue_depth=2) as base:
        responses = asyncio.run(scenario(base))
        slow, extra = responses[:2], responses[2:]
        assert [r.status_code for r in slow] == [200, 200]
        assert [r.status_code for r in extra] == [429, 429, 429]
        for r in extra:
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert r.json()["error"]["code"] == "queue_full"
        # the queue drained: work is accepted again
        assert httpx.post(f"{base}/probe/forward").status_code == 200


def test_disconnect_cancels_the_streaming_job(live_server) -> None:
    with live_server() as base:
        with httpx.stream("GET", f"{base}/probe/steps", params={"n": 100000, "delay": 0.002}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            first = [next(lines) for _ in range(3)]
        assert all('"v"' in line for line in first)
        state = {}
        for _ in range(100):
            state = httpx.get(f"{base}/probe/state").json()
            if state["closed"]:
                break
            time.sleep(0.05)
        assert state["closed"] is True and state["cancelled_jobs"] >= 1
        assert state["steps_done"] < 100000
        steps = state["steps_done"]
        time.sleep(0.2)
        assert httpx.get(f"{base}/probe/state").json()["steps_done"] == steps  # it really stopped


def test_disconnect_cancels_a_queued_job(live_server) -> None:
    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            await c.post("/v1/models", json={"model": "tiny-a"})
            blocker = asyncio.ensure_future(c.post("/probe/forward", params={"delay": 1.0}))
            await asyncio.sleep(0.3)
            victim = asyncio.ensure_future(c.post("/probe/forward", params={"delay": 5.0}))
            await asyncio.sleep(0.3)
            victim.cancel()  # the client goes away while its job waits in the queue
            assert (await blocker).status_code == 200

    with live_server() as base:
        asyncio.run(scenario(base))
        for _ in range(100):
            if httpx.get(f"{base}/probe/state").json()["cancelled_jobs"] >= 1:
                break
            time.sleep(0.05)
        assert httpx.get(f"{base}/probe/state").json()["cancelled_jobs"] >= 1
        assert httpx.post(f"{base}/probe/forward").status_code == 200
