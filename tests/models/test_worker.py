"""The MLX worker: one thread, results and streams, 429 on a full queue, cancellation, batching."""

from __future__ import annotations

import asyncio
import threading

import mlx.core as mx
import numpy as np
import pytest

from models.errors import Cancelled, QueueFull
from models.worker import MLXWorker


@pytest.fixture
async def worker():
    w = MLXWorker(max_queue=4)
    w.start()
    yield w
    await w.stop()


def _matmul(n: int) -> tuple[float, int]:
    a = mx.arange(n * n, dtype=mx.float32).reshape(n, n) / (n * n)
    out = (a @ a.T).sum()
    mx.eval(out)
    return out.item(), threading.get_ident()


async def test_run_executes_mlx_on_the_worker_thread(worker: MLXWorker) -> None:
    value, tid = await worker.run(_matmul, 16)
    a = np.arange(256, dtype=np.float32).reshape(16, 16) / 256
    assert value == pytest.approx(float((a @ a.T).sum()), rel=1e-5)
    assert tid == worker.thread_id != threading.get_ident()
    _, tid2 = await worker.run(_matmul, 8)
    assert tid2 == tid


async def test_exceptions_reach_the_caller(worker: MLXWorker) -> None:
    def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await worker.run(boom)
    assert (await worker.run(_matmul, 4))[0] > 0  # still serving


async def _blocked(worker: MLXWorker) -> tuple[threading.Event, asyncio.Task]:
    gate = threading.Event()
    started = threading.Event()

    def hold() -> str:
        started.set()
        gate.wait(10)
        return "held"

    task = asyncio.ensure_future(worker.run(hold))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    return gate, task


async def test_full_queue_raises_queue_full(worker: MLXWorker) -> None:
    gate, held = await _blocked(worker)
    queued = [asyncio.ensure_future(worker.run(_matmul, 4)) for _ in range(3)]
    await asyncio.sleep(0)
    assert worker.depth == 4
    with pytest.raises(QueueFull) as info:
        await worker.run(_matmul, 4)
    assert info.value.retry_after >= 1
    gate.set()
    assert await held == "held"
    assert all(v > 0 for v, _ in await asyncio.gather(*queued))
    assert (await worker.run(_matmul, 4))[0] > 0  # accepts work again


async def test_cancelled_queued_job_never_runs(worker: MLXWorker) -> None:
    gate, held = await _blocked(worker)
    ran = threading.Event()
    job = asyncio.ensure_future(worker.run(ran.set))
    await asyncio.sleep(0.01)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    gate.set()
    await held
    await worker.run(lambda: None)
    assert not ran.is_set()
    assert worker.cancelled_jobs == 1


async def test_stream_yields_in_order_and_interleaves(worker: MLXWorker) -> None:
    order: list[str] = []

    def gen(tag: str, n: int):
        for i in range(n):
            order.append(tag)
            yield (tag, i, _matmul(4)[0])

    worker.stream_buffer = 100
    s1 = await worker.stream(gen, "a", 30)
    s2 = await worker.stream(gen, "b", 30)
    got1 = [x async for x in s1]
    got2 = [x async for x in s2]
    assert [i for _, i, _ in got1] == list(range(30)) and [i for _, i, _ in got2] == list(range(30))
    # round-robin: neither stream ran to completion before the other started
    assert order.index("b") < len(order) - order[::-1].index("a") - 1


async def test_closing_a_stream_closes_the_generator_on_the_worker(worker: MLXWorker) -> None:
    steps: list[int] = []
    closed_on: list[int] = []

    def gen():
        try:
            for i in range(10_000):
                steps.append(i)
                yield i
        finally:
            closed_on.append(threading.get_ident())

    stream = await worker.stream(gen)
    async for i in stream:
        if i == 3:
            break
    await stream.aclose()
    await worker.run(lambda: None)  # let the worker take the close
    for _ in range(50):
        if closed_on:
            break
        await asyncio.sleep(0.01)
    assert closed_on == [worker.thread_id]
    assert len(steps) < 100  # bounded by the stream buffer, not run to the end
    assert worker.cancelled_jobs == 1


async def test_stream_error_is_raised_to_the_consumer(worker: MLXWorker) -> None:
    def gen():
        yield 1
        raise RuntimeError("mid-stream")

    stream = await worker.stream(gen)
    got = []
    with pytest.raises(RuntimeError, match="mid-stream"):
        async for x in stream:
            got.append(x)
    assert got == [1]


async def test_stop_drains_queued_jobs() -> None:
    w = MLXWorker(max_queue=8)
    w.start()
    jobs = [asyncio.ensure_future(w.run(_matmul, 8)) for _ in range(5)]
    await asyncio.sleep(0)
    await w.stop(drain=True)
    assert len(await asyncio.gather(*jobs)) == 5


async def test_stop_without_drain_cancels_queued_jobs() -> None:
    w = MLXWorker(max_queue=8)
    w.start()
    gate, held = await _blocked(w)
    queued = asyncio.ensure_future(w.run(_matmul, 8))
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(w.stop(drain=False))
    await asyncio.sleep(0.01)
    gate.set()
    await stopping
    await held
    with pytest.raises(Cancelled):
        await queued


async def test_streams_share_batched_requests() -> None:
    """Streams that yield `Batched` requests get them computed together, each receiving its own result."""
    from models.batching import Batched, drive

    calls: list[list[tuple[str, int]]] = []

    def square(items: list[tuple[str, int]]) -> list[int]:
        calls.append(list(items))
        x = mx.array([v for _, v in items], dtype=mx.float32)
        return [int(v) for v in (x * x).tolist()]

    def gen(tag: str, n: int):
        for i in range(n):
            got = yield Batched("sq", (tag, i), square, max_batch=8)
            yield (tag, got)

    w = MLXWorker(max_queue=8)
    w.start()
    try:
        gate, held = await _blocked(w)  # start all three streams in the same round
        streams = [asyncio.ensure_future(w.stream(gen, t, 4)) for t in "abc"]
        await asyncio.sleep(0.05)
        gate.set()
        await held
        its = [await s for s in streams]
        results = []
        for it in its:
            results.append([x async for x in it])
    finally:
        await w.stop()
    for tag, got in zip("abc", results, strict=True):
        assert got == [(tag, i * i) for i in range(4)]
    assert len(calls) == 4 and all(sorted(t for t, _ in c) == ["a", "b", "c"] for c in calls)
    assert w.largest_batch == 3
    # outside the worker, drive() answers requests one by one
    assert list(drive(gen("z", 3))) == [("z", 0), ("z", 1), ("z", 4)]


async def test_a_stream_can_ask_for_many_items_at_once() -> None:
    """`Batched(many=True)`: one stream's items are computed in chunks of `max_batch`, sharing chunks with
    another stream's items, and come back in order."""
    from models.batching import Batched, drive

    calls: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [int(v) for v in (mx.array(items) * 2).tolist()]

    def many(values: list[int]):
        got = yield Batched("x2", values, double, max_batch=3, many=True)
        yield got

    def one(value: int):
        got = yield Batched("x2", value, double, max_batch=3)
        yield got

    w = MLXWorker(max_queue=8)
    w.start()
    try:
        gate, held = await _blocked(w)
        streams = [
            asyncio.ensure_future(w.stream(many, [1, 2, 3, 4, 5])),
            asyncio.ensure_future(w.stream(one, 100)),
        ]
        await asyncio.sleep(0.05)
        gate.set()
        await held
        results = []
        for s in streams:
            results.append([x async for x in await s])
    finally:
        await w.stop()
    assert results == [[[2, 4, 6, 8, 10]], [200]]
    assert sorted(len(c) for c in calls) == [3, 3]  # six items in two full chunks, not one call per item
    assert sorted(v for c in calls for v in c) == [1, 2, 3, 4, 5, 100]
    calls.clear()
    assert list(drive(many([7, 8, 9, 10]))) == [[14, 16, 18, 20]]
    assert calls == [[7, 8, 9], [10]]  # drive() honours max_batch too


async def test_failed_batch_is_raised_in_each_stream() -> None:
    from models.batching import Batched

    def boom(items: list[int]) -> list[int]:
        raise ValueError("batch failed")

    def gen():
        try:
            yield Batched("k", 1, boom)
        except ValueError as exc:
            yield f"caught {exc}"

    w = MLXWorker()
    w.start()
    try:
        assert [x async for x in await w.stream(gen)] == ["caught batch failed"]
    finally:
        await w.stop()
