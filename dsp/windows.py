"""Analysis/synthesis windows as MLX arrays.

Computed in float64 with numpy and cast once, so a float32 window is within 1 ulp of scipy's. ``periodic``
windows (the default, ``scipy.signal.get_window(..., fftbins=True)``, ``torch.hann_window``) are for
STFT analysis; symmetric ones (``periodic=False``, ``numpy.hanning``) are for filter design.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

WINDOWS = ("hann", "hamming", "rectangular")


def _cosine_window_np(n: int, a0: float, periodic: bool) -> np.ndarray:
    """``a0 - (1 - a0) * cos(2π k / M)`` for k in [0, n), M = n (periodic) or n - 1 (symmetric)."""
    if n < 0:
        raise ValueError(f"window length must be non-negative, got {n}")
    if n <= 1:
        return np.ones(n, dtype=np.float64)
    denom = n if periodic else n - 1
    k = np.arange(n, dtype=np.float64)
    return a0 - (1.0 - a0) * np.cos(2.0 * np.pi * k / denom)


def hann(n: int, *, periodic: bool = True, dtype: mx.Dtype = mx.float32) -> mx.array:
    """Hann window of length ``n``: shape [n]."""
    return mx.array(_cosine_window_np(n, 0.5, periodic), dtype=dtype)


def hamming(n: int, *, periodic: bool = True, dtype: mx.Dtype = mx.float32) -> mx.array:
    """Hamming window (0.54 − 0.46 cos) of length ``n``: shape [n]."""
    return mx.array(_cosine_window_np(n, 0.54, periodic), dtype=dtype)


def rectangular(n: int, *, dtype: mx.Dtype = mx.float32) -> mx.array:
    """All-ones window of length ``n``: shape [n]."""
    return mx.ones((n,), dtype=dtype)


def get_window(name: str, n: int, *, periodic: bool = True, dtype: mx.Dtype = mx.float32) -> mx.array:
    """A window by name (one of ``WINDOWS``; ``"hanning"``/``"boxcar"``/``"ones"`` accepted as synonyms)."""
    key = {"hanning": "hann", "boxcar": "rectangular", "ones": "rectangular"}.get(name, name)
    if key == "hann":
        return hann(n, periodic=periodic, dtype=dtype)
    if key == "hamming":
        return hamming(n, periodic=periodic, dtype=dtype)
    if key == "rectangular":
        return rectangular(n, dtype=dtype)
    raise ValueError(f"unknown window {name!r}; expected one of {WINDOWS}")
