"""One loading path for every family.

resolve source → (convert a reference format once, cached on disk) → read config → safetensors only
(never pickle) → the family's `sanitize()` renames keys by name → strict load with every shape checked
→ optional quantization → `mx.eval`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from models.errors import WeightsError
from models.families import get_family
from models.registry import ModelSpec
from models.sources import resolve_source, source_fingerprint

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".npy")
_COMPLETE = ".complete"


def model_dir(spec: ModelSpec, cache_dir: Path, *, progress: bool = False) -> Path:
    """Return a directory in our native layout for `spec`, converting (once, cached) if needed."""
    src = resolve_source(spec.source, cache_dir, progress=progress)
    if spec.format == "native":
        return src
    safe_id = re.sub(r"[^A-Za-z0-9._-]+", "--", spec.id)
    dst = Path(cache_dir).absolute() / "converted" / f"{safe_id}-{source_fingerprint(spec.source)}"
    if (dst / _COMPLETE).exists():
        return dst
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        get_family(spec.family).convert(src, spec.format, tmp)
        (tmp / _COMPLETE).write_text(json.dumps({"source": str(src), "format": spec.format}))
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s from %s in %.1fs → %s", spec.id, spec.format, time.perf_counter() - t0, dst)
    return dst


def read_config(path: Path) -> dict[str, Any]:
    cfg = Path(path) / "config.json"
    try:
        data = json.loads(cfg.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{cfg} is missing") from None
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{cfg} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{cfg} must hold a JSON object")
    return data


def read_safetensors(path: Path) -> dict[str, mx.array]:
    """All tensors of every `*.safetensors` file in `path` (a directory or one file). Never unpickles."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files or any(f.suffix != ".safetensors" for f in files):
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else [path.name]
        unsafe = [n for n in found if n.endswith(PICKLE_SUFFIXES)]
        hint = f" (refusing pickle-based files {unsafe}: convert them)" if unsafe else ""
        raise WeightsError(f"no .safetensors weights in {path}{hint}")
    weights: dict[str, mx.array] = {}
    for f in files:
        try:
            part = mx.load(str(f))
        except Exception as exc:
            raise WeightsError(f"cannot read {f.name}: {exc}") from None
        assert isinstance(part, dict)
        dup = weights.keys() & part.keys()
        if dup:
            raise WeightsError(f"tensor names repeated across shards: {sorted(dup)[:5]}")
        weights.update(part)
    return weights


def load_into(
    module: nn.Module,
    weights: dict[str, mx.array],
    *,
    sanitize: Callable[[dict[str, mx.array]], dict[str, mx.array]] | None = None,
    dtype: mx.Dtype | None = None,
) -> nn.Module:
    """Strictly load `weights` into `module`: every parameter present, no extra keys, every shape equal."""
    if sanitize is not None:
        weights = sanitize(weights)
    expected = dict(tree_flatten(module.parameters()))
    missing = sorted(expected.keys() - weights.keys())
    unexpected = sorted(weights.keys() - expected.keys())
    if missing or unexpected:
        raise WeightsError(
            f"weights do not match the model: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in weights.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    if bad:
        raise WeightsError("shape mismatch: " + "; ".join(bad[:8]))
    if dtype is not None:
        weights = {
            k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()
        }
    module.load_weights(list(weights.items()), strict=True)
    mx.eval(module.parameters())
    return module


def maybe_quantize(module: nn.Module, bits: int | None, group_size: int = 64) -> nn.Module:
    """Quantize Linear/Embedding layers whose input size divides `group_size` (no-op when bits is None)."""
    if bits is None:
        return module
    if bits not in (2, 3, 4, 6, 8):
        raise WeightsError(f"unsupported quantization: {bits} bits")

    def eligible(_path: str, layer: nn.Module) -> bool:
        return hasattr(layer, "to_quantized") and layer.weight.shape[-1] % group_size == 0

    nn.quantize(module, group_size=group_size, bits=bits, class_predicate=eligible)
    mx.eval(module.parameters())
    return module


def parameter_bytes(module: nn.Module) -> int:
    leaves = cast(list[tuple[str, Any]], tree_flatten(module.parameters()))
    return sum(v.nbytes for _, v in leaves if isinstance(v, mx.array))
