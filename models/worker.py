"""The one thread that owns all MLX work.

MLX streams belong to the thread that created them, and a single accelerator is best fed by one
serialized queue. Requests submit jobs from asyncio and await a result (`run`) or an async stream of
chunks (`stream`: the job is a generator the worker advances one step at a time, round-robin with other
streams, so long jobs interleave and a cancelled one stops between steps). The one batching hook: a
stream may yield a `models.batching.Batched` request, and the worker computes the requests with the same
key from all active streams together, sharing a forward pass. A full queue raises `QueueFull` (429); a
client that goes away cancels its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from models.batching import NO_REPLY, Batched, compute
from models.errors import Cancelled, QueueFull, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
_END = object()


@dataclass(eq=False)
class _Job:
    kind: str  # "call" | "stream"
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any] | None = None
    outbox: asyncio.Queue[Any] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0  # stream chunks produced but not yet consumed (guarded by the worker's lock)
    waiting: Batched | None = None  # a stream's pending batch request
    reply: Any = NO_REPLY  # the result to send into the stream at its next step

    def deliver(self, value: Any = None, exc: BaseException | None = None) -> None:
        def _set() -> None:
            if self.future is None or self.future.done():
                return
            if exc is not None:
                self.future.set_exception(exc)
            else:
                self.future.set_result(value)

        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(_set)

    def push(self, item: Any) -> None:
        assert self.outbox is not None
        try:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)
        except RuntimeError:
            self.cancelled.set()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class MLXWorker:
    """Runs callables on one dedicated thread. Create and start it once per process (or per test)."""

    def __init__(
        self,
        max_queue: int = 64,
        *,
        stream_buffer: int = 8,
        items_per_round: int = 8,
        name: str = "mlx-worker",
    ) -> None:
        self.max_queue = max_queue
        self.stream_buffer = stream_buffer
        self.items_per_round = items_per_round
        self.name = name
        self._pending: deque[_Job] = deque()
        self._active: list[tuple[_Job, Iterator[Any]]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._running = 0  # a call/batch job taken off the queue and executing now
        self.completed = 0
        self.cancelled_jobs = 0
        self.batches_run = 0
        self.largest_batch = 0

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    async def stop(self, *, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop accepting work; with `drain`, let queued and running jobs finish first."""
        with self._cond:
            self._stopping = True
            if not drain:
                for job in self._pending:
                    job.cancelled.set()
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, timeout)

    @property
    def depth(self) -> int:
        """Jobs queued or running (streams count until they finish)."""
        with self._cond:
            return len(self._pending) + len(self._active) + self._running

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident if self._thread else None

    # --- submission (asyncio side) ---------------------------------------------------------------

    def _submit(self, job: _Job) -> None:
        with self._cond:
            if self._stopping or self._thread is None:
                raise Unavailable("The server is shutting down.", retry_after=5)
            if len(self._pending) + len(self._active) + self._running >= self.max_queue:
                raise QueueFull(
                    f"The server is busy ({self.max_queue} jobs queued); retry shortly.", retry_after=1
                )
            self._pending.append(job)
            self._cond.notify_all()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the worker thread and return its result."""
        loop = asyncio.get_running_loop()
        job = _Job("call", fn, args, kwargs, loop, future=loop.create_future())
        self._submit(job)
        return await self._await(job)

    async def _await(self, job: _Job) -> Any:
        assert job.future is not None
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled.set()
            raise

    async def stream(self, gen_fn: Callable[..., Iterator[T]], *args: Any, **kwargs: Any) -> AsyncIterator[T]:
        """Run the generator `gen_fn(*args, **kwargs)` on the worker; yield its items here as produced.

        Closing the async iterator early (or cancelling the consumer) closes the generator on the worker
        thread before its next step, so its `finally` blocks run there.
        """
        loop = asyncio.get_running_loop()
        job = _Job("stream", gen_fn, args, kwargs, loop, outbox=asyncio.Queue())
        self._submit(job)
        return self._consume(job)

    async def _consume(self, job: _Job) -> AsyncIterator[Any]:
        assert job.outbox is not None
        try:
            while True:
                item = await job.outbox.get()
                with self._cond:
                    job.in_flight -= 1
                    self._cond.notify_all()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            if not job.cancelled.is_set():
                with self._cond:
                    job.cancelled.set()
                    self._cond.notify_all()

    # --- the worker thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._runnable():
                    if self._stopping and not self._active:
                        return
                    self._cond.wait(timeout=0.5 if self._active else None)
                new_streams = self._take_new_streams()  # they all join this round
                job = self._pending.popleft() if self._pending else None
                self._running = int(job is not None)
            for stream_job in new_streams:
                self._start(stream_job)
            if job is not None:
                self._start(job)
                with self._cond:
                    self._running = 0
            self._step_streams()

    def _take_new_streams(self) -> list[_Job]:
        """Pop every queued stream job (call with the lock held)."""
        new = [j for j in self._pending if j.kind == "stream"]
        if new:
            self._pending = deque(j for j in self._pending if j.kind != "stream")
        return new

    def _runnable(self) -> bool:
        """Any active stream that may advance: cancelled ones (to be closed) or ones below their buffer."""
        return any(j.cancelled.is_set() or j.in_flight < self.stream_buffer for j, _ in self._active)

    def _start(self, job: _Job) -> None:
        if job.cancelled.is_set():
            self._finish_cancelled(job)
            return
        if job.kind == "call":
            try:
                job.deliver(job.fn(*job.args, **job.kwargs))
            except BaseException as exc:
                job.deliver(exc=exc)
            self.completed += 1
            return
        try:
            gen = iter(job.fn(*job.args, **job.kwargs))
        except BaseException as exc:
            job.push(_Failure(exc))
            job.push(_END)
            return
        with self._cond:
            self._active.append((job, gen))

    def _finish_cancelled(self, job: _Job) -> None:
        self.cancelled_jobs += 1
        job.deliver(exc=Cancelled("cancelled before it ran"))

    def _step_streams(self) -> None:
        """Advance every active stream (round-robin), then run the batch requests they are waiting on.

        A stream runs until it yields a `Batched` request, finishes, fills its buffer, or has produced
        `items_per_round` items; requests with the same key from different streams are then computed
        together in one call, and each stream receives its own result at its next step.
        """
        with self._cond:
            active = list(self._active)
        for job, gen in active:
            if job.cancelled.is_set():
                self._close(job, gen, cancelled=True)
                continue
            self._run_until_request(job, gen)
        # streams that arrived meanwhile (e.g. while the last batch ran) join this round's batches
        with self._cond:
            late = self._take_new_streams()
        for job in late:
            self._start(job)
        with self._cond:
            active = list(self._active)
        for job, gen in active:
            if job in late:
                self._run_until_request(job, gen)
        self._run_batches(
            [job for job, _ in active if job.waiting is not None and not job.cancelled.is_set()]
        )

    def _run_until_request(self, job: _Job, gen: Iterator[Any]) -> None:
        for _ in range(self.items_per_round):
            if job.waiting is not None or not self._advance(job, gen):
                break

    def _advance(self, job: _Job, gen: Iterator[Any]) -> bool:
        """One step of `gen`; False when it cannot or should not go on this round."""
        with self._cond:
            if job.in_flight >= self.stream_buffer:
                return False  # the consumer is slow: don't run ahead of it
        try:
            if job.reply is not NO_REPLY:
                reply, job.reply = job.reply, NO_REPLY
                resume = gen.throw if isinstance(reply, _Failure) else gen.send  # type: ignore[attr-defined]
                item = resume(reply.exc if isinstance(reply, _Failure) else reply)
            else:
                item = next(gen)
        except StopIteration:
            self._push_counted(job, _END)
            self._close(job, gen, cancelled=False)
            return False
        except BaseException as exc:
            self._push_counted(job, _Failure(exc))
            self._push_counted(job, _END)
            self._close(job, gen, cancelled=False)
            return False
        if isinstance(item, Batched):
            job.waiting = item
            return False
        self._push_counted(job, item)
        return True

    def _push_counted(self, job: _Job, item: Any) -> None:
        with self._cond:
            job.in_flight += 1
        job.push(item)

    def _run_batches(self, waiting: list[_Job]) -> None:
        """Group the waiting streams' items by key, compute each group in chunks of `max_batch`, and
        hand every stream its reply (a failed chunk fails the streams that had items in it)."""
        requests: dict[_Job, Batched] = {}
        groups: dict[Hashable, list[tuple[_Job, int, Any]]] = {}
        for job in waiting:
            assert job.waiting is not None
            requests[job] = job.waiting
            for i, payload in enumerate(job.waiting.items()):
                groups.setdefault(job.waiting.key, []).append((job, i, payload))
        results: dict[_Job, list[Any]] = {job: [None] * len(r.items()) for job, r in requests.items()}
        failed: dict[_Job, BaseException] = {}
        for entries in groups.values():
            first = requests[entries[0][0]]
            limit = max(1, first.max_batch)
            for start in range(0, len(entries), limit):
                chunk = entries[start : start + limit]
                self.batches_run += 1
                self.largest_batch = max(self.largest_batch, len(chunk))
                try:
                    out = compute(first.fn, [payload for _, _, payload in chunk])
                except BaseException as exc:
                    for job, _, _ in chunk:
                        failed.setdefault(job, exc)
                    continue
                for (job, i, _), r in zip(chunk, out, strict=True):
                    results[job][i] = r
        for job, request in requests.items():
            job.waiting = None
            job.reply = _Failure(failed[job]) if job in failed else request.reply(results[job])

    def _close(self, job: _Job, gen: Iterator[Any], *, cancelled: bool) -> None:
        if cancelled:
            self.cancelled_jobs += 1
            try:
                gen.close()  # type: ignore[attr-defined]
            except Exception:
                log.exception("error while closing a cancelled stream")
        else:
            self.completed += 1
        with self._cond:
            self._active = [(j, g) for j, g in self._active if j is not job]
            self._cond.notify_all()
