"""The optional C kernels (`models/cpu/_kernels.c`), for float32 inference on the CPU.

Built by ``pip install`` where a C compiler with OpenMP is present (``optional`` in pyproject.toml, so
an install without one still succeeds); every caller falls back to the numpy path when `available()` is
false. What each buys, measured on the 2-core CI machine (`docs/benchmarks.md`):

- `linear_half`: ``x @ w.T + b`` over float16 weights widened to float32 in registers (F16C). Whisper's
  published weights are float16, so their float32 copies are exact (`half_exact` checks it, weight by
  weight): the products are the float32 model's, to summation order, while a memory-bound decode step
  reads half the bytes. Few-row products (beams, batched requests) read each weight block once.
- `softmax_`, `gelu_`, `layer_norm`: vectorised float32 passes that numpy runs as several ufunc calls
  (softmax: max, subtract, exp, sum, divide) or with tens of microseconds of overhead on short rows.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

try:  # a compiled extension: typed as Any
    _hk: Any = importlib.import_module("models.cpu._kernels")
except ImportError:  # not built (no compiler or OpenMP at install time): numpy paths everywhere
    _hk = None

# Rows up to which `linear_half` beats float32 BLAS here: one pass over the weights for all rows. Above it
# (prefill of long prompts, the encoder's row chunks) sgemm's blocking wins.
SMALL_ROWS = 64
# Work (weights or keys read) below which one thread does it: a team's start and barrier (µs) outweigh a
# product this small, and a core taken by another process can stall a team for a scheduler slice.
_PARALLEL_ELEMENTS = 1 << 16


def available() -> bool:
    """The C kernels are built and importable."""
    return _hk is not None


def fast_half() -> bool:
    """float16-weight products run at memory speed here (AVX2 + FMA + F16C): worth keeping half copies."""
    return _hk is not None and bool(_hk.simd())


_THREADS = max(1, min(os.cpu_count() or 1, 8, 1 if _hk is None else int(_hk.max_threads())))


def threads() -> int:
    """Threads for the decoder's products: one per core, at most 8 (as the worker pool)."""
    return _THREADS


def half_exact(weight: np.ndarray) -> np.ndarray | None:
    """A C-contiguous float16 copy of a float32 ``weight`` if every value survives the round trip (the
    checkpoint was float16, as Whisper's are) and the kernels can use it; else None (keep float32)."""
    if not fast_half() or weight.dtype != np.float32 or weight.ndim != 2 or weight.shape[1] % 8:
        return None
    with np.errstate(over="ignore"):
        half = np.ascontiguousarray(weight, dtype=np.float16)
    if not np.array_equal(half.astype(np.float32), weight):
        return None
    return half


def linear_half(
    x: np.ndarray, half: np.ndarray, bias: np.ndarray | None, out: np.ndarray | None = None
) -> np.ndarray:
    """``x [..., K] @ half[N, K].T + bias`` in float32 → ``[..., N]`` (into ``out`` if given, C-contiguous)."""
    assert _hk is not None
    xc = np.ascontiguousarray(x, dtype=np.float32)
    shape = (*x.shape[:-1], half.shape[0])
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous {shape}, got {out.shape}")
    _hk.linear_f16(xc, half, bias, out, threads() if half.size >= _PARALLEL_ELEMENTS else 1)
    return out


def softmax_(s: np.ndarray) -> bool:
    """Softmax over the last axis of a C-contiguous float32 array, in place, in this thread; False (and
    nothing done) when the kernels are missing or the array does not qualify."""
    if _hk is None or s.dtype != np.float32 or not s.flags.c_contiguous or not s.flags.writeable:
        return False
    _hk.softmax_rows(s, 1)
    return True


def gelu_(x: np.ndarray) -> bool:
    """Exact-erf GELU of a C-contiguous float32 array, in place, in this thread; False when not done."""
    if _hk is None or x.dtype != np.float32 or not x.flags.c_contiguous or not x.flags.writeable:
        return False
    _hk.gelu(x, 1)
    return True


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray | None:
    """LayerNorm over the last axis into a new array, or None when the kernels are missing."""
    if _hk is None or x.dtype != np.float32:
        return None
    xc = np.ascontiguousarray(x)
    out = np.empty_like(xc)
    _hk.layer_norm(xc, weight, bias, eps, out)
    return out


def attend(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, end: int, start: np.ndarray | None = None
) -> np.ndarray:
    """Single-query attention over cached keys: ``q [G, R, Dh]`` against ``k, v [G, T, Dh]`` (C-contiguous,
    keys ``[start[g], end)`` of group g) → ``[G, R, Dh]``, groups split over threads. Callers check
    `available()`."""
    assert _hk is not None
    qc = np.ascontiguousarray(q, dtype=np.float32)
    out = np.empty_like(qc)
    starts = None if start is None else np.ascontiguousarray(start, dtype=np.int64)
    work = qc.shape[0] * int(end) * qc.shape[2]
    _hk.attend(
        qc, k, v, out, float(scale), starts, int(end), threads() if work >= _PARALLEL_ELEMENTS // 2 else 1
    )
    return out


def top_logprobs(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``k`` largest entries of each row of float32 ``x [R, V]`` (largest first, ties to the lower
    index, as ``argmax``) and their log-probabilities under the row's softmax, in one pass per row instead
    of a full log-softmax and a partition; None when the kernels are missing."""
    if _hk is None or not 1 <= k <= min(64, x.shape[-1]):
        return None
    xc = np.ascontiguousarray(x, dtype=np.float32)
    index = np.empty((xc.shape[0], k), np.int64)
    logprob = np.empty((xc.shape[0], k), np.float32)
    _hk.log_softmax_top(xc, k, index, logprob)
    return index, logprob
