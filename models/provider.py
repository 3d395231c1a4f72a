"""The async ModelProvider: lazy, single-flight loading; reference counts; idle-TTL and memory-budget
(LRU) eviction; pinning. Loads and unloads run on the MLX worker thread; the bookkeeping is guarded by
one asyncio lock on the event loop's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx

from models.errors import DomainError, ModelInUse, WeightsError
from models.families import get_family
from models.registry import ModelSpec, Registry
from models.weights import model_dir
from models.worker import MLXWorker

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Resident:
    spec: ModelSpec
    model: Any
    nbytes: int
    load_seconds: float
    refs: int = 0
    pinned: bool = False
    # what the family says about how it runs (e.g. {"backend": "cpu-f16-kernels", "backend_reason": ...})
    details: dict[str, str] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)


LoadHook = Callable[[ModelSpec, float, int], None]


class ModelProvider:
    def __init__(
        self,
        registry: Registry,
        worker: MLXWorker,
        *,
        cache_dir: Path,
        idle_ttl: float = 600.0,
        memory_budget: int = 0,
        pinned: Iterable[str] = (),
        reap_interval: float | None = None,
        on_load: LoadHook | None = None,
    ) -> None:
        self.registry = registry
        self.worker = worker
        self.cache_dir = Path(cache_dir).absolute()
        self.idle_ttl = idle_ttl
        self.memory_budget = memory_budget  # bytes; 0 = unlimited
        self._pinned = {registry.get(m).id for m in pinned}
        self.reap_interval = reap_interval or max(0.05, min(30.0, idle_ttl / 4 if idle_ttl > 0 else 30.0))
        self.on_load = on_load
        self._resident: dict[str, Resident] = {}
        self._loading: dict[str, asyncio.Future[Resident]] = {}
        self._lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self.loads = 0  # completed loads (for tests and metrics)
        self.evictions: list[tuple[str, str]] = []  # (model id, reason)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, preload: Iterable[str] = ()) -> None:
        self.worker.start()
        if self.idle_ttl > 0:
            self._reaper = asyncio.create_task(self._reap_forever(), name="model-reaper")
        for name in preload:
            await self.load(name)

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await self.worker.stop(drain=True)
        async with self._lock:
            self._resident.clear()
        gc.collect()
        mx.clear_cache()

    # --- queries ---------------------------------------------------------------------------------

    def is_loaded(self, name: str) -> bool:
        return self.registry.get(name).id in self._resident

    def resident_of(self, name: str) -> Resident | None:
        """The resident entry of a loaded model, or None."""
        return self._resident.get(self.registry.get(name).id)

    def resident(self) -> list[Resident]:
        return list(self._resident.values())

    @property
    def resident_bytes(self) -> int:
        return sum(r.nbytes for r in self._resident.values())

    # --- loading ---------------------------------------------------------------------------------

    async def load(self, name: str) -> Resident:
        """Load (once, even under concurrent calls) and return the resident model."""
        spec = self.registry.get(name)
        async with self._lock:
            res = self._resident.get(spec.id)
            if res is not None:
                res.last_used = time.monotonic()
                return res
            fut = self._loading.get(spec.id)
            if fut is None:
                fut = asyncio.ensure_future(self._load(spec))
                self._loading[spec.id] = fut
        return await asyncio.shield(fut)

    async def _load(self, spec: ModelSpec) -> Resident:
        try:
            model, nbytes, seconds = await self.worker.run(self._load_sync, spec)
            details = {str(k): str(v) for k, v in (getattr(model, "details", None) or {}).items()}
            res = Resident(spec, model, nbytes, seconds, pinned=spec.id in self._pinned, details=details)
            async with self._lock:
                self._resident[spec.id] = res
                self.loads += 1
            log.info("loaded %s (%.1f MB) in %.2fs", spec.id, nbytes / 1e6, seconds)
            if self.on_load is not None:
                self.on_load(spec, seconds, nbytes)
            await self._enforce_budget(keep=spec.id)
            return res
        finally:
            async with self._lock:
                self._loading.pop(spec.id, None)

    def _load_sync(self, spec: ModelSpec) -> tuple[Any, int, float]:
        t0 = time.perf_counter()
        before = mx.get_active_memory()
        try:
            path = model_dir(spec, self.cache_dir)
            model = get_family(spec.family).load(path, spec)
        except DomainError:
            raise
        except Exception as exc:
            log.exception("loading %s failed", spec.id)
            raise WeightsError(f"Loading model '{spec.id}' failed: {exc}") from exc
        nbytes = max(0, mx.get_active_memory() - before)
        nbytes = nbytes or int(getattr(model, "nbytes", 0))
        nbytes += int(getattr(model, "host_nbytes", 0))  # host memory a family holds beside MLX's
        return model, nbytes, time.perf_counter() - t0

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[Any]:
        """Hold a reference to a loaded model for the duration of a request (it cannot be unloaded)."""
        spec = self.registry.get(name)
        while True:
            await self.load(spec.id)
            async with self._lock:
                res = self._resident.get(spec.id)
                if res is not None:  # it may have been evicted between load() and here: load again
                    res.refs += 1
                    break
        try:
            yield res.model
        finally:
            res.refs -= 1
            res.last_used = time.monotonic()

    # --- unloading -------------------------------------------------------------------------------

    async def unload(self, name: str) -> bool:
        """Unload now. Returns False if it was not loaded; raises ModelInUse while requests hold it."""
        spec = self.registry.get(name)
        async with self._lock:
            res = self._resident.get(spec.id)
            if res is None:
                return False
            if res.refs > 0:
                raise ModelInUse(
                    f"The model '{spec.id}' is serving {res.refs} request(s); try again when they finish.",
                    param="model",
                )
            del self._resident[spec.id]
        await self._release(res, "requested")
        return True

    async def _release(self, res: Resident, reason: str) -> None:
        self.evictions.append((res.spec.id, reason))
        res.model = None
        log.info("unloaded %s (%s)", res.spec.id, reason)
        with contextlib.suppress(DomainError):  # shutting down: memory goes with the process
            await self.worker.run(_free_memory)

    async def evict_idle(self, now: float | None = None) -> list[str]:
        """Unload models idle for longer than the TTL (never pinned ones, never ones in use)."""
        if self.idle_ttl <= 0:  # 0 = keep models until asked or squeezed by the budget
            return []
        now = time.monotonic() if now is None else now
        async with self._lock:
            victims = [
                r
                for r in self._resident.values()
                if not r.pinned and r.refs == 0 and now - r.last_used >= self.idle_ttl
            ]
            for r in victims:
                del self._resident[r.spec.id]
        for r in victims:
            await self._release(r, "idle")
        return [r.spec.id for r in victims]

    async def _enforce_budget(self, keep: str) -> None:
        if self.memory_budget <= 0:
            return
        async with self._lock:
            victims: list[Resident] = []
            total = self.resident_bytes
            lru = sorted(self._resident.values(), key=lambda r: r.last_used)
            for r in lru:
                if total <= self.memory_budget:
                    break
                if r.spec.id == keep or r.pinned or r.refs > 0:
                    continue
                victims.append(r)
                total -= r.nbytes
                del self._resident[r.spec.id]
            if total > self.memory_budget:
                log.warning(
                    "resident models use %.1f MB, over the %.1f MB budget (in use or pinned)",
                    total / 1e6,
                    self.memory_budget / 1e6,
                )
        for r in victims:
            await self._release(r, "budget")

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            try:
                await self.evict_idle()
            except Exception:
                log.exception("idle eviction failed")


def _free_memory() -> None:
    gc.collect()
    mx.clear_cache()
