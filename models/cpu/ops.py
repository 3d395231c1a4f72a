"""numpy building blocks for float32 inference on the CPU, over zero-copy views of MLX weights.

MLX's CPU backend runs elementwise ops as scalar, single-threaded loops (``mx.exp`` ≈ 17 ns/element) and
costs tens of microseconds per evaluated graph, so a family's CPU backend runs its network in numpy
instead: `HostLinear` and `HostNorm` view an MLX module's parameters (``np.asarray`` of an evaluated
array is a view); `attend`, `gelu_into` and `parallel_rows` split work over one small thread pool whose
workers run single-threaded BLAS (coarse-grained parallelism, no spinning BLAS threads fighting over a
shared machine). Where the optional C kernels are built (`models.cpu.kernels`) the hot loops use them;
otherwise the numpy code here gives the same results.

Nothing here decides *whether* a model runs on the CPU path: a family's backend choice does, once, at load.
"""

from __future__ import annotations

import ctypes
import glob
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from models.cpu import kernels

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()

# Abramowitz & Stegun 7.1.26: erfc(z) ≈ t·P(t)·exp(-z²), t = 1 / (1 + p·z), |error in erf| ≤ 1.5e-7.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
# Elements per numpy call in GELU: 256 KiB scratch buffers (L2); smaller blocks lose to GIL hand-offs.
_GELU_BLOCK = 65_536


_NO_SETTER = object()
_blas_setter: object = None  # numpy's OpenBLAS `openblas_set_num_threads_local`, found on first use


def _numpy_blas_setter() -> Callable[[int], int] | None:
    """numpy's bundled OpenBLAS thread-count setter (returns the previous count), or None."""
    global _blas_setter
    if _blas_setter is None:
        _blas_setter = _NO_SETTER
        pattern = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*.so*")
        for path in glob.glob(pattern):
            try:
                fn = ctypes.CDLL(path).openblas_set_num_threads_local
            except (OSError, AttributeError):
                continue
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            _blas_setter = fn
            break
    return None if _blas_setter is _NO_SETTER else _blas_setter  # type: ignore[return-value]


@contextmanager
def serial_blas() -> Iterator[None]:
    """numpy's BLAS single-threaded within the block, then back to what it was (best effort).

    Pool workers each run their own products: a multi-threaded BLAS inside each would oversubscribe the
    cores (6 heads of attention: 184 ms instead of 67 ms). OpenBLAS's thread count is process-wide
    (its ``_local`` setter only returns the old value), so it is lowered around the pool's work, not in
    the workers: everywhere else (the decoder's memory-bound products) numpy keeps all its threads."""
    setter = _numpy_blas_setter()
    if setter is None:
        yield
        return
    before = setter(1)
    try:
        yield
    finally:
        setter(max(before, 1))


def pool() -> ThreadPoolExecutor:
    """The shared worker pool: one thread per core, at most 8."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = max(1, min(os.cpu_count() or 1, 8))
            _POOL = ThreadPoolExecutor(workers, "cpu-kernels")
        return _POOL


def _attend_one(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, out: np.ndarray) -> None:
    """One head: ``q`` ``[Tq, Dh]``, ``k, v`` ``[Tk, Dh]`` → ``out`` ``[Tq, Dh]`` (written in place)."""
    s = (q * np.float32(scale)) @ k.T  # [Tq, Tk]
    if kernels.softmax_(s):  # one vectorised pass per row, normalised in place
        np.matmul(s, v, out=out)
        return
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    denom = s.sum(axis=-1, keepdims=True)
    np.divide(s @ v, denom, out=out)  # normalise the [Tq, Dh] result, not the [Tq, Tk] weights


def attend(qn: np.ndarray, kn: np.ndarray, vn: np.ndarray, scale: float, out: np.ndarray) -> None:
    """Unmasked softmax attention in numpy, (batch, head) pairs in parallel on the pool.

    ``qn`` ``[B, H, Tq, Dh]``, ``kn, vn`` ``[B, H, Tk, Dh]`` (float32, any strides whose last one is 1) →
    ``out`` ``[B, Tq, H, Dh]``, written in place."""
    b, h = qn.shape[:2]
    jobs = [(i, j) for i in range(b) for j in range(h)]
    if len(jobs) == 1 or qn.shape[2] * kn.shape[2] < 65_536:  # small problems: the pool's overhead dominates
        for i, j in jobs:
            _attend_one(qn[i, j], kn[i, j], vn[i, j], scale, out[i, :, j])
        return
    with serial_blas():
        done = pool().map(lambda ij: _attend_one(qn[ij], kn[ij], vn[ij], scale, out[ij[0], :, ij[1]]), jobs)
        for _ in done:  # re-raise any worker exception
            pass


def _gelu_rows(x: np.ndarray, out: np.ndarray) -> None:
    """Exact-erf GELU of a flat float32 block ``x`` into ``out`` (same shape), ``_GELU_BLOCK`` at a time.

    gelu(x) = x·Φ(x) = max(x, 0) − |x|·½·erfc(|x|/√2), with erfc from A&S 7.1.26 (absolute error of
    ½·erfc ≤ 7.5e-8, so the result is within ~1e-7·|x| of the exact GELU)."""
    n = x.shape[0]
    a = np.empty(_GELU_BLOCK, np.float32)
    t = np.empty(_GELU_BLOCK, np.float32)
    p = np.empty(_GELU_BLOCK, np.float32)
    coef = [np.float32(0.5 * c) for c in _AS_A]  # ½ folded into the polynomial
    k = np.float32(_AS_P / math.sqrt(2.0))
    for s in range(0, n, _GELU_BLOCK):
        xs = x[s : s + _GELU_BLOCK]
        m = xs.shape[0]
        am, tm, pm, om = a[:m], t[:m], p[:m], out[s : s + m]
        np.abs(xs, out=am)
        np.multiply(am, k, out=tm)
        tm += np.float32(1.0)
        np.reciprocal(tm, out=tm)
        np.multiply(tm, coef[4], out=pm)  # Horner: t·(a1 + t·(a2 + … t·a5))
        for c in coef[3::-1]:
            pm += c
            pm *= tm
        np.multiply(am, am, out=tm)  # reuse t: exp(-x²/2)
        tm *= np.float32(-0.5)
        np.exp(tm, out=tm)
        pm *= tm
        pm *= am  # |x|·½·erfc(|x|/√2)
        np.maximum(xs, np.float32(0.0), out=om)
        om -= pm


def gelu_into(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU of a C-contiguous float32 numpy array, in place, in this thread; returns ``x``."""
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        raise TypeError("gelu_into needs a C-contiguous float32 array")
    if kernels.gelu_(x):
        return x
    flat = x.reshape(-1)
    _gelu_rows(flat, flat)
    return x


def host_layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """LayerNorm over the last axis of a float32 numpy array (as ``nn.LayerNorm``)."""
    fast = kernels.layer_norm(x, weight, bias, eps)
    if fast is not None:
        return fast
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = np.einsum("...i,...i->...", centered, centered)[..., None] / np.float32(x.shape[-1])
    centered *= 1.0 / np.sqrt(var + np.float32(eps))
    centered *= weight
    centered += bias
    return centered


def host_params(module: nn.Module, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A module's parameters by dotted name as float32 numpy copies (names starting with `skip` left out):
    what a family's CPU path reads once, at load."""
    flat: dict[str, mx.array] = dict(tree_flatten(module.parameters()))
    return {k: np.array(v, np.float32) for k, v in flat.items() if not k.startswith(skip)}


def host_view(a: mx.array) -> np.ndarray:
    """Zero-copy float32 numpy view of an MLX array (evaluated first; strides kept)."""
    mx.eval(a)
    out = np.asarray(a)
    if out.dtype != np.float32:
        raise TypeError(f"host kernels are float32-only, got {out.dtype}")
    return out


@dataclass(frozen=True)
class HostLinear:
    """``nn.Linear`` in numpy over views of its parameters (BLAS reads the ``[out, in]`` weight transposed,
    no copy). With ``half`` (an exact float16 copy of the weight, `kernels.half_exact`), products of at most
    `kernels.SMALL_ROWS` rows read that instead: the same values, half the bytes."""

    weight: np.ndarray
    bias: np.ndarray | None
    half: np.ndarray | None = None

    @classmethod
    def of(cls, layer: nn.Linear, half: bool = False) -> HostLinear:
        weight = host_view(layer.weight)
        bias = host_view(layer.bias) if "bias" in layer else None
        return cls(weight, bias, kernels.half_exact(weight) if half else None)

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self.half is not None and x.size <= kernels.SMALL_ROWS * x.shape[-1]:
            return kernels.linear_half(x, self.half, self.bias, out)
        y = np.matmul(x, self.weight.T, out=out)
        if self.bias is not None:
            y += self.bias
        return y


@dataclass(frozen=True)
class HostNorm:
    """``nn.LayerNorm`` in numpy over views of its parameters."""

    weight: np.ndarray
    bias: np.ndarray
    eps: float

    @classmethod
    def of(cls, layer: nn.LayerNorm) -> HostNorm:
        return cls(host_view(layer.weight), host_view(layer.bias), float(layer.eps))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return host_layer_norm(x, self.weight, self.bias, self.eps)


def row_chunks(n_rows: int, chunk: int) -> list[slice]:
    """``[0, n_rows)`` cut into slices of at most ``chunk`` rows."""
    return [slice(s, min(s + chunk, n_rows)) for s in range(0, n_rows, chunk)]


def parallel_rows(fn: Callable[[slice], None], n_rows: int, chunk: int = 128) -> None:
    """Run ``fn(rows)`` over row chunks on the pool, each worker with single-threaded BLAS: row-wise work
    (layer norms, projections, MLPs) splits across cores without BLAS threads of its own."""
    slices = row_chunks(n_rows, chunk)
    if len(slices) == 1:
        fn(slices[0])
        return
    with serial_blas():
        for _ in pool().map(fn, slices):  # re-raise any worker exception
            pass
