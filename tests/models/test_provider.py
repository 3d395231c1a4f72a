"""The ModelProvider with a small real MLX model: single-flight loads, TTL and budget eviction, refusing
to unload a model in use, pinning, and the strict weights path."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from models.errors import ModelInUse, ModelNotFound, WeightsError
from models.provider import ModelProvider
from models.registry import Registry
from models.worker import MLXWorker
from tests.support.tiny_family import TinyFamily, family, tiny_spec, write_tiny_model


@pytest.fixture
def fam() -> TinyFamily:
    f = family()
    f.loads, f.load_delay = 0, 0.0
    return f


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(
        [
            tiny_spec("tiny-a", write_tiny_model(tmp_path / "a", seed=1)),
            tiny_spec("tiny-b", write_tiny_model(tmp_path / "b", seed=2)),
            tiny_spec("org/tiny-c", write_tiny_model(tmp_path / "c", seed=3), aliases=("c",)),
            tiny_spec("broken", tmp_path / "missing"),
        ]
    )


async def make(registry: Registry, tmp_path: Path, **kw) -> ModelProvider:
    p = ModelProvider(registry, MLXWorker(max_queue=16), cache_dir=tmp_path / "cache", **kw)
    await p.start()
    return p


async def test_single_flight_loading(registry: Registry, fam: TinyFamily, tmp_path: Path) -> None:
    fam.load_delay = 0.3
    p = await make(registry, tmp_path, idle_ttl=0)
    try:
        results = await asyncio.gather(*(p.load("tiny-a") for _ in range(5)), p.load("tiny-a"))
        assert fam.loads == 1 and p.loads == 1
        assert all(r is results[0] for r in results)
        assert p.is_loaded("tiny-a") and not p.is_loaded("tiny-b")
        assert results[0].nbytes > 0
        # the real model computes: y = fc2(gelu(fc1 x)) on the worker
        y = await p.worker.run(results[0].model.forward, np.ones((1, 64), np.float32))
        assert y.shape == (1, 64) and np.isfinite(y).all() and np.abs(y).sum() > 0
    finally:
        await p.stop()


async def test_alias_and_slash_ids_resolve(registry: Registry, fam: TinyFamily, tmp_path: Path) -> None:
    p = await make(registry, tmp_path, idle_ttl=0)
    try:
        res = await p.load("c")
        assert res.spec.id == "org/tiny-c" and p.is_loaded("org/tiny-c")
        with pytest.raises(ModelNotFound):
            await p.load("nope")
        assert fam.loads == 1
    finally:
        await p.stop()


async def test_idle_ttl_eviction(registry: Registry, fam: TinyFamily, tmp_path: Path) -> None:
    p = await make(registry, tmp_path, idle_ttl=0.3, reap_interval=0.05)
    try:
        await p.load("tiny-a")
        async with p.use("tiny-b"):
            await asyncio.sleep(0.8)  # the reaper runs several times meanwhile
            assert not p.is_loaded("tiny-a")  # idle → unloaded by the background reaper
            assert p.is_loaded("tiny-b")  # in use → kept past its TTL
        assert ("tiny-a", "idle") in p.evictions
        # and evict_idle itself, deterministically:
        assert await p.evict_idle(now=time.monotonic() + 10) == ["tiny-b"]
        assert p.resident() == []
    finally:
        await p.stop()


async def test_memory_budget_evicts_least_recently_used(
    registry: Registry, fam: TinyFamily, tmp_path: Path
) -> None:
    p = await make(registry, tmp_path, idle_ttl=0)
    try:
        one = (await p.load("tiny-a")).nbytes
        p.memory_budget = int(one * 2.5)  # room for two models
        await p.load("tiny-b")
        await p.load("tiny-a")  # touch a: b is now least recently used
        await p.load("org/tiny-c")
        assert p.is_loaded("tiny-a") and p.is_loaded("org/tiny-c") and not p.is_loaded("tiny-b")
        assert p.evictions == [("tiny-b", "budget")]
        assert p.resident_bytes <= p.memory_budget
    finally:
        await p.stop()


async def test_budget_never_evicts_pinned_or_in_use(
    registry: Registry, fam: TinyFamily, tmp_path: Path
) -> None:
    p = await make(registry, tmp_path, idle_ttl=0, pinned=["tiny-a"])
    try:
        one = (await p.load("tiny-a")).nbytes
        p.memory_budget = int(one * 1.5)
        async with p.use("tiny-b"):
            await p.load("org/tiny-c")  # over budget, but a is pinned and b in use
            assert p.is_loaded("tiny-a") and p.is_loaded("tiny-b") and p.is_loaded("org/tiny-c")
        assert await p.evict_idle(now=time.monotonic() + 1e6) == []  # ttl 0 = never; pinned anyway
    finally:
        await p.stop()


async def test_unload_refused_while_in_use(registry: Registry, fam: TinyFamily, tmp_path: Path) -> None:
    p = await make(registry, tmp_path, idle_ttl=0)
    try:
        async with p.use("tiny-a") as model:
            with pytest.raises(ModelInUse) as info:
                await p.unload("tiny-a")
            assert "serving 1 request" in info.value.message
            y = await p.worker.run(model.forward, np.zeros((2, 64), np.float32))
            assert y.shape == (2, 64)
        assert await p.unload("tiny-a") is True
        assert await p.unload("tiny-a") is False
        assert not p.is_loaded("tiny-a")
        # loading again after an unload is a real second load
        await p.load("tiny-a")
        assert fam.loads == 2
    finally:
        await p.stop()


async def test_failed_load_is_reported_and_retried(
    registry: Registry, fam: TinyFamily, tmp_path: Path
) -> None:
    p = await make(registry, tmp_path, idle_ttl=0)
    try:
        for _ in range(2):  # a failure is not cached: each attempt really tries again
            with pytest.raises(WeightsError, match=r"does not exist|missing"):
                await p.load("broken")
        assert not p.is_loaded("broken")
        write_tiny_model(tmp_path / "missing")
        assert (await p.load("broken")).spec.id == "broken"
    finally:
        await p.stop()
