"""1-D convolutions in numpy for the vocoders' CPU paths (Piper's HiFi-GAN, Kokoro's iSTFTNet generator).

Channels last: x (T, C). A conv's weight is a `ConvWeight` (K, C_in, C_out), made once at load from MLX's
(C_out, K, C_in). Two implementations of the same sums:
- the optional C kernel (`_conv.c`, an implicit GEMM that reads the input in place, ~220 GFLOP/s on this
  2-core EPYC at every vocoder shape, bench/conv_cpu.py) when it is built, and
- im2col + OpenBLAS sgemm otherwise (a strided view, copied block by block so a block stays in cache).
Transposed convolutions run through the same kernel as polyphase convs (`ConvTransposeWeight`). Both paths
are parity-tested against torch (tests/models/cpu/test_conv.py).

A weight made with `bf16=True` keeps a bfloat16 copy instead, and its convs round their input to bfloat16
and sum the products in float32 (`conv1d_bf16` in `_conv.c`): on a CPU with AVX-512 BF16 ~1.7-1.8x the
float32 kernel at the vocoders' shapes, with ~2.3e-3 relative error per conv (bench/conv_cpu.py; what it
does to the audio is measured per family in tests/models/piper/test_cpu_decoder.py and
tests/models/kokoro/test_cpu_generator.py). Without the kernel such a weight runs in float32.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

try:  # a compiled extension: typed as Any
    _cv: Any = importlib.import_module("models.cpu._conv")
except ImportError:  # not built (no compiler at install time): sgemm everywhere
    _cv = None

ROWS = 2048  # im2col rows per sgemm: a block of (ROWS, k·c_in) float32 (≤ 12 MB) stays in cache
PANEL = 16  # the C kernel's output channels per register tile
_THREADS = max(1, min(os.cpu_count() or 1, 8, 1 if _cv is None else int(_cv.max_threads())))
_use_c = True


def available() -> bool:
    """The C kernel is built and importable."""
    return _cv is not None


def bf16_available() -> bool:
    """The C kernel's bfloat16 path runs here (built, and the CPU has AVX-512 BF16)."""
    return _cv is not None and bool(_cv.bf16_simd())


def describe(bf16: bool = False) -> str:
    """How the convolutions run here, for a backend reason (`bf16`: weights made with bf16=True)."""
    if _cv is None:
        return "im2col + OpenBLAS sgemm"
    if bf16:
        how = "AVX-512 BF16" if bf16_available() else "portable C"
        return f"the C conv kernel, bfloat16 products summed in float32 ({how})"
    return "the C conv kernel"


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (uint16), rounded to nearest even, as the C kernel rounds its input."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32)
    return ((u + (np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1)))) >> 16).astype(np.uint16)


def use_c_kernel(flag: bool) -> bool:
    """Force the sgemm path everywhere (False) or allow the C kernel again (True); returns the previous
    setting. For tests and benchmarks."""
    global _use_c
    before = _use_c
    _use_c = bool(flag)
    return before


class ConvWeight:
    """A conv's weight (K, C_in, C_out) float32, with the C kernel's packed copy: panels (⌈C_out/16⌉, K·C_in,
    16), zero past C_out, so each register tile reads one contiguous stream. With `bf16` (and the kernel
    built) the bfloat16 copy instead: panels (⌈C_out/16⌉, K·⌈C_in/2⌉, 32), each row the pairs
    (W[j, 2q, n], W[j, 2q+1, n]) of 16 output channels; the kernel's portable C runs them where the CPU
    lacks AVX-512 BF16 (slowly: models ask for bf16 only where `bf16_available`). Made once, at load."""

    def __init__(self, w: np.ndarray, bf16: bool = False) -> None:
        self.w = np.ascontiguousarray(w, np.float32)
        k, c_in, c_out = self.w.shape
        self.panels: np.ndarray | None = None
        self.pairs: np.ndarray | None = None
        p = -(-c_out // PANEL)
        if bf16 and _cv is not None:
            q = -(-c_in // 2)
            full = np.zeros((k, 2 * q, p * PANEL), np.float32)
            full[:, :c_in, :c_out] = self.w
            h = bf16_bits(full).reshape(k, q, 2, p, PANEL)  # (tap, pair, member, panel, lane)
            self.pairs = np.ascontiguousarray(h.transpose(3, 0, 1, 4, 2).reshape(p, k * q, 2 * PANEL))
        elif _cv is not None:
            flat = np.zeros((k * c_in, p * PANEL), np.float32)
            flat[:, :c_out] = self.w.reshape(k * c_in, c_out)
            self.panels = np.ascontiguousarray(flat.reshape(k * c_in, p, PANEL).transpose(1, 0, 2))

    @property
    def shape(self) -> tuple[int, int, int]:
        k, c_in, c_out = self.w.shape
        return k, c_in, c_out

    @classmethod
    def from_mlx(cls, w: np.ndarray, bf16: bool = False) -> ConvWeight:
        """From MLX's conv layout (C_out, K, C_in)."""
        return cls(np.asarray(w, np.float32).transpose(1, 2, 0), bf16)


def conv_weight(w: np.ndarray, bf16: bool = False) -> ConvWeight:
    """MLX's conv weight (C_out, K, C_in) → a `ConvWeight` (`bf16`: as `ConvWeight`'s)."""
    return ConvWeight.from_mlx(w, bf16)


def _prepare(x: np.ndarray, padding: int, slope: float | None) -> np.ndarray:
    """x, activated (leaky ReLU) and zero-padded, float32 C-contiguous."""
    x = np.ascontiguousarray(x, np.float32)
    if slope is None and not padding:
        return x
    out = np.empty((x.shape[0] + 2 * padding, x.shape[1]), np.float32)
    if _cv is not None and _use_c and slope is not None:
        _cv.leaky_pad(x, float(slope), out, _THREADS)
        return out
    out[:padding] = 0
    out[x.shape[0] + padding :] = 0
    body = out[padding : padding + x.shape[0]]
    if slope is None:
        body[...] = x
    else:
        np.multiply(x, np.float32(slope), out=body)
        np.maximum(body, x, out=body)
    return out


def conv1d(
    x: np.ndarray,
    weight: ConvWeight,
    bias: np.ndarray | None = None,
    *,
    dilation: int = 1,
    padding: int = 0,
    stride: int = 1,
    residual: np.ndarray | None = None,
    slope: float | None = None,
) -> np.ndarray:
    """torch's conv1d (zero padding, one group) channels last: x (T, C_in), weight (K, C_in, C_out) →
    (T', C_out). `slope`: the input goes through leaky_relu(·, slope) first (with the padding, in one pass).
    `residual` (T', C_out) float32 C-contiguous is added, in place: the result is written into it (a
    residual step `x = x + conv(act(x))` without a temporary)."""
    k, c_in, c_out = weight.shape
    if x.ndim != 2 or x.shape[1] != c_in:
        raise ValueError(f"conv1d: input {x.shape} for a weight {weight.shape}")
    xp = _prepare(x, padding, slope)
    t_out = max((xp.shape[0] - dilation * (k - 1) - 1) // stride + 1, 0)
    if residual is not None and (
        residual.shape != (t_out, c_out) or residual.dtype != np.float32 or not residual.flags.c_contiguous
    ):
        raise ValueError(
            f"conv1d: residual {residual.shape} {residual.dtype} for an output ({t_out}, {c_out})"
        )
    out = np.empty((t_out, c_out), np.float32) if residual is None else residual
    if t_out == 0:
        return out
    if _cv is not None and _use_c and weight.pairs is not None:
        _cv.conv1d_bf16(xp, weight.pairs, bias, residual, out, dilation, stride, _THREADS)
        return out
    if _cv is not None and _use_c and weight.panels is not None:
        _cv.conv1d(xp, weight.panels, bias, residual, out, dilation, stride, _THREADS)
        return out
    row, col = xp.strides
    cols = np.lib.stride_tricks.as_strided(xp, (t_out, k, c_in), (stride * row, dilation * row, col))
    w2 = weight.w.reshape(k * c_in, c_out)
    block = np.empty((min(ROWS, t_out), c_out), np.float32) if residual is not None else None
    for a in range(0, t_out, ROWS):
        b = min(a + ROWS, t_out)
        lhs = cols[a:b].reshape(b - a, k * c_in)
        if block is None:
            np.matmul(lhs, w2, out=out[a:b])
        else:
            np.matmul(lhs, w2, out=block[: b - a])
            out[a:b] += block[: b - a]
    if bias is not None:
        out += bias
    return out


class ConvTransposeWeight:
    """torch's ConvTranspose1d (kernel K a multiple of the stride s, m = K / s) as a polyphase conv: output
    frame u·s + r is Σ_j x[u − j] · W[:, j·s + r, :], a conv of m taps over x (zero-padded m − 1 each side)
    whose s·C_out outputs are the s phases of each frame — the same `conv1d`, no overlap-add."""

    def __init__(
        self, w: np.ndarray, bias: np.ndarray, stride: int, padding: int, bf16: bool = False
    ) -> None:
        c_in, k, c_out = w.shape  # as `models.layers.conv.ConvTranspose1d` keeps it
        if k % stride:
            raise ValueError(f"kernel_size {k} must be a multiple of stride {stride}")
        self.m, self.stride, self.padding, self.c_out = k // stride, stride, padding, c_out
        taps = np.asarray(w, np.float32).reshape(c_in, self.m, stride * c_out)[:, ::-1]  # tap j' = m − 1 − j
        self.weight = ConvWeight(taps.transpose(1, 0, 2), bf16)
        self.bias = np.tile(np.asarray(bias, np.float32), stride)


def conv_transpose1d(x: np.ndarray, ct: ConvTransposeWeight, slope: float | None = None) -> np.ndarray:
    """x (T, C_in) → ((T − 1)·stride + K − 2·padding, C_out); `slope` as in `conv1d`."""
    t = x.shape[0]
    y = conv1d(x, ct.weight, ct.bias, padding=ct.m - 1, slope=slope)  # (T + m − 1, s·C_out)
    length = (t + ct.m - 1) * ct.stride - 2 * ct.padding
    return y.reshape(-1, ct.c_out)[ct.padding : ct.padding + length]


def adain_snake(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, alpha: np.ndarray, eps: float
) -> np.ndarray:
    """iSTFTNet's activation before each of its resblock convolutions: instance norm of x (T, C) over time,
    y = (1 + γ)·x̂ + β, then Snake y + sin²(α·y)/α — one pass in the C kernel (a vectorised sin²), several
    numpy passes without it. gamma, beta, alpha (C,); a new float32 array."""
    x = np.ascontiguousarray(x, np.float32)
    if _cv is not None and _use_c and x.shape[0] > 0:
        out = np.empty_like(x)
        f32 = [np.ascontiguousarray(a, np.float32) for a in (gamma, beta, alpha)]
        _cv.adain_snake(x, *f32, float(eps), out, _THREADS)
        return out
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    scale = (1 + gamma) / np.sqrt(var + np.float32(eps))
    y = x * scale + (beta - mean * scale)
    t = np.sin(alpha * y)
    t *= t
    t *= 1 / alpha
    t += y
    return t
