"""A small, real MLX model family for exercising the provider, worker and server.

It goes through the real loading path (config.json + model.safetensors on disk → strict load) and runs
real MLX compute. The family counts its loads so tests can prove single-flight loading.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from models.errors import WeightsError
from models.families import get_family, register_family
from models.registry import ModelSpec
from models.sources import LocalDir
from models.weights import load_into, read_config, read_safetensors

FAMILY_NAME = "tiny-mlp"


class TinyMLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(nn.gelu(self.fc1(x)))


class TinyRunner:
    """The loaded object: forward passes, a batched forward, and a stepwise generator."""

    def __init__(self, module: TinyMLP, dim: int) -> None:
        self.module, self.dim = module, dim
        self.steps_done = 0
        self.closed = threading.Event()

    def forward(self, x: np.ndarray, delay: float = 0.0) -> np.ndarray:
        if delay:
            time.sleep(delay)
        y = self.module(mx.array(x))
        mx.eval(y)
        return np.array(y)

    def forward_batch(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        y = np.array(self.module(mx.array(np.stack(xs))))
        return list(y)

    def steps(self, n: int, delay: float = 0.0) -> Iterator[float]:
        x = mx.ones((1, self.dim))
        try:
            for _ in range(n):
                if delay:
                    time.sleep(delay)
                x = self.module(x)
                x = x / mx.maximum(mx.abs(x).max(), 1e-6)
                mx.eval(x)
                self.steps_done += 1
                yield float(x.sum())
        finally:
            self.closed.set()


class TinyFamily:
    def __init__(self) -> None:
        self.loads = 0
        self.load_delay = 0.0

    def load(self, model_dir: Path, spec: ModelSpec) -> TinyRunner:
        self.loads += 1
        if self.load_delay:
            time.sleep(self.load_delay)
        cfg = read_config(model_dir)
        module = TinyMLP(cfg["dim"], cfg["hidden"])
        load_into(module, read_safetensors(model_dir))
        return TinyRunner(module, cfg["dim"])

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None:
        raise WeightsError(f"tiny-mlp has no {fmt} converter")


def family() -> TinyFamily:
    try:
        fam = get_family(FAMILY_NAME)
    except KeyError:
        fam = TinyFamily()
        register_family(FAMILY_NAME, fam)
    assert isinstance(fam, TinyFamily)
    return fam


def write_tiny_model(path: Path, dim: int = 64, hidden: int = 256, seed: int = 0) -> Path:
    """Write config.json + model.safetensors for a TinyMLP with seeded weights."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"dim": dim, "hidden": hidden}))
    rng = np.random.default_rng(seed)
    weights = {
        "fc1.weight": rng.standard_normal((hidden, dim), dtype=np.float32) / np.sqrt(dim),
        "fc1.bias": np.zeros(hidden, np.float32),
        "fc2.weight": rng.standard_normal((dim, hidden), dtype=np.float32) / np.sqrt(hidden),
        "fc2.bias": np.zeros(dim, np.float32),
    }
    mx.save_safetensors(str(path / "model.safetensors"), {k: mx.array(v) for k, v in weights.items()})
    return path


def tiny_spec(model_id: str, path: Path, **kw: object) -> ModelSpec:
    family()
    return ModelSpec(id=model_id, family=FAMILY_NAME, task="test", source=LocalDir(str(path)), **kw)  # type: ignore[arg-type]
