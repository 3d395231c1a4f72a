"""Kokoro's iSTFTNet generator in numpy, for MLX's Linux CPU backend (`choose_backend` in `family.py`).

Why: on the CPU the generator is ~85 % of Kokoro's time, and nearly all of it is 1-D convolutions over
long sequences (the last stage runs 128 channels at 1/5 of the sample rate, kernels 3 to 11, dilations 1 to
5). MLX's CPU backend reaches ~90 GFLOP/s on them as per-tap matmuls (its own conv1d is far slower on
these shapes, ../shared/docs/MLX-CPU.md); numpy's OpenBLAS sgemm on an im2col view reaches ~165 GFLOP/s
on this 2-core machine (measured in bench/kokoro_cpu.py).

Same arithmetic as `decoder.Generator` on the same parameters (read once from the MLX module), float32;
parity-tested against it in tests/models/kokoro/test_cpu_generator.py. The harmonic source and the final
inverse STFT stay the MLX code (cheap, and the same functions on every backend).
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from dsp.spectral import istft
from models.kokoro.blocks import IN_EPS
from models.kokoro.decoder import Generator

ROWS = 2048  # im2col rows per sgemm: a block of (ROWS, k·c_in) float32 (≤ 12 MB) stays in cache


def _conv(
    x: np.ndarray,
    w2: np.ndarray,
    bias: np.ndarray | None,
    k: int,
    dilation: int,
    padding: int,
    stride: int = 1,
) -> np.ndarray:
    """x (T, c_in) → (T', c_out) for weight `w2` laid out (k·c_in, c_out)."""
    c_in = x.shape[1]
    xp = np.pad(x, ((padding, padding), (0, 0))) if padding else np.ascontiguousarray(x)
    t_out = (xp.shape[0] - dilation * (k - 1) - 1) // stride + 1
    row, col = xp.strides
    cols = np.lib.stride_tricks.as_strided(xp, (t_out, k, c_in), (stride * row, dilation * row, col))
    out = np.empty((t_out, w2.shape[1]), np.float32)
    for a in range(0, t_out, ROWS):
        b = min(a + ROWS, t_out)
        np.matmul(cols[a:b].reshape(b - a, k * c_in), w2, out=out[a:b])
    if bias is not None:
        out += bias
    return out


class _Params:
    """The generator's parameters as numpy arrays, conv weights pre-laid-out for `_conv`."""

    def __init__(self, gen: Generator) -> None:
        flat: dict[str, mx.array] = dict(tree_flatten(gen.parameters()))
        self.p = {k: np.array(v, np.float32) for k, v in flat.items()}

    def conv(self, name: str) -> tuple[np.ndarray, np.ndarray | None, int]:
        w = self.p[f"{name}.weight"]  # (c_out, k, c_in)
        c_out, k, c_in = w.shape
        return (
            np.ascontiguousarray(w.transpose(1, 2, 0).reshape(k * c_in, c_out)),
            self.p.get(f"{name}.bias"),
            k,
        )


class CPUGenerator:
    """`decoder.Generator` in numpy (batch of one): (x, s, har) → audio."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        prm = _Params(gen)
        p = prm.p
        self.n_fft, self.hop, self.num_kernels = gen.n_fft, gen.hop, gen.num_kernels
        self.ups = []
        for i, up in enumerate(gen.ups):
            w = p[f"ups.{i}.weight"]  # (c_in, k, c_out)
            self.ups.append(
                (w.reshape(w.shape[0], -1), p[f"ups.{i}.bias"], up.stride, up.padding, w.shape[1], w.shape[2])
            )
        self.noise_convs = []
        for i, nc in enumerate(gen.noise_convs):
            w2, b, k = prm.conv(f"noise_convs.{i}")
            stride, pad = (nc.stride, nc.padding) if hasattr(nc, "stride") else (1, 0)
            self.noise_convs.append((w2, b, k, stride, pad))
        self.noise_res = [self._resblock(prm, f"noise_res.{i}", r) for i, r in enumerate(gen.noise_res)]
        self.resblocks = [self._resblock(prm, f"resblocks.{i}", r) for i, r in enumerate(gen.resblocks)]
        self.conv_post = (*prm.conv("conv_post"), gen.conv_post.padding)

    @staticmethod
    def _resblock(prm: _Params, name: str, block: object) -> list[tuple]:
        p = prm.p
        layers = []
        for j, (c1, c2) in enumerate(zip(block.convs1, block.convs2, strict=True)):  # type: ignore[attr-defined]
            layers.append(
                (
                    (p[f"{name}.adain1.{j}.fc.weight"].T.copy(), p[f"{name}.adain1.{j}.fc.bias"]),
                    p[f"{name}.alpha1.{j}"],
                    (*prm.conv(f"{name}.convs1.{j}"), c1.dilation, c1.padding),
                    (p[f"{name}.adain2.{j}.fc.weight"].T.copy(), p[f"{name}.adain2.{j}.fc.bias"]),
                    p[f"{name}.alpha2.{j}"],
                    (*prm.conv(f"{name}.convs2.{j}"), c2.dilation, c2.padding),
                )
            )
        return layers

    @staticmethod
    def _adain_snake(
        x: np.ndarray, s: np.ndarray, fc: tuple[np.ndarray, np.ndarray], alpha: np.ndarray
    ) -> np.ndarray:
        gamma, beta = np.split(s @ fc[0] + fc[1], 2)
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        scale = (1 + gamma) / np.sqrt(var + IN_EPS)
        y = x * scale + (beta - mean * scale)
        t = np.sin(alpha * y)
        t *= t
        t *= 1 / alpha
        t += y
        return t

    def _run_resblock(self, x: np.ndarray, s: np.ndarray, layers: list[tuple]) -> np.ndarray:
        for fc1, a1, conv1, fc2, a2, conv2 in layers:
            w2, b, k, d, pad = conv1
            y = _conv(self._adain_snake(x, s, fc1, a1), w2, b, k, d, pad)
            w2, b, k, d, pad = conv2
            y = _conv(self._adain_snake(y, s, fc2, a2), w2, b, k, d, pad)
            x = y + x
        return x

    @staticmethod
    def _conv_transpose(x: np.ndarray, up: tuple) -> np.ndarray:
        w, b, stride, padding, k, c_out = up
        t = x.shape[0]
        m = k // stride
        y = (x @ w).reshape(t, m, stride, c_out)
        out = np.zeros((t + m - 1, stride, c_out), np.float32)
        for j in range(m):
            out[j : j + t] += y[:, j]
        out = out.reshape(-1, c_out)
        length = (t + m - 1) * stride - 2 * padding
        return out[padding : padding + length] + b

    def __call__(self, x: mx.array, s: mx.array, har: mx.array) -> mx.array:
        """Same contract as `Generator.__call__` (batch of one)."""
        xs, ss, hs = np.array(x[0], np.float32), np.array(s[0], np.float32), np.array(har[0], np.float32)
        last = len(self.ups) - 1
        for i, up in enumerate(self.ups):
            xs = np.maximum(xs, 0.1 * xs)
            w2, b, k, stride, pad = self.noise_convs[i]
            x_source = self._run_resblock(_conv(hs, w2, b, k, 1, pad, stride), ss, self.noise_res[i])
            xs = self._conv_transpose(xs, up)
            if i == last:
                xs = np.concatenate([xs[1:2], xs])
            xs += x_source
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            acc = self._run_resblock(xs, ss, blocks[0])
            for block in blocks[1:]:
                acc += self._run_resblock(xs, ss, block)
            acc *= np.float32(1 / self.num_kernels)
            xs = acc
        w2, b, k, pad = self.conv_post
        y = _conv(np.maximum(xs, 0.01 * xs), w2, b, k, 1, pad)
        n_freq = self.n_fft // 2 + 1
        mag = np.exp(y[:, :n_freq])
        phase = np.sin(y[:, n_freq:])
        spec = mx.array((mag * np.cos(phase) + 1j * (mag * np.sin(phase))).T[None].astype(np.complex64))
        return istft(spec, self.hop, "hann", n_fft=self.n_fft)


def generator_flops(frames: int, gen: Generator) -> float:
    """Multiply-adds ×2 of the generator's convolutions for `frames` input frames (for benchmarks)."""
    total = 0.0
    length = frames
    for i, up in enumerate(gen.ups):
        c_in, k, c_out = up.weight.shape
        total += 2 * length * c_in * k * c_out
        length *= up.stride
        for block in [*gen.resblocks[i * gen.num_kernels : (i + 1) * gen.num_kernels], gen.noise_res[i]]:
            for conv in [*block.convs1, *block.convs2]:
                co, kk, ci = conv.weight.shape
                total += 2 * length * co * kk * ci
    return total + 2 * math.prod(gen.conv_post.weight.shape) * length
