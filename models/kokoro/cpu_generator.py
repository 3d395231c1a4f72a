"""Kokoro's iSTFTNet generator in numpy, for MLX's Linux CPU backend (`choose_backend` in `family.py`).

Why: on the CPU the generator is ~85 % of Kokoro's time, and nearly all of it is 1-D convolutions over
long sequences (the last stage runs 128 channels at 1/5 of the sample rate, kernels 3 to 11, dilations 1 to
5), where MLX's CPU backend is slow (../shared/docs/MLX-CPU.md); `models.cpu.conv` runs them as a direct C
kernel at the FMA peak or im2col + OpenBLAS sgemm (bench/conv_cpu.py), and each AdaIN + Snake activation
before them as one vectorised pass (its sin² was ~15 % of the time as numpy passes).

Same arithmetic as `decoder.Generator` on the same parameters (read once from the MLX module), float32;
parity-tested against it in tests/models/kokoro/test_cpu_generator.py. The harmonic source and the final
inverse STFT stay the MLX code (cheap, and the same functions on every backend).
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from dsp.spectral import istft
from models.cpu.conv import (
    ConvTransposeWeight,
    ConvWeight,
    adain_snake,
    conv1d,
    conv_transpose1d,
    conv_weight,
)
from models.cpu.ops import host_params, serial_blas
from models.kokoro.blocks import IN_EPS
from models.kokoro.decoder import Generator


class _Params:
    """The generator's parameters as numpy arrays, conv weights laid out (K, C_in, C_out) for `models.cpu.conv`."""

    def __init__(self, gen: Generator, bf16: bool) -> None:
        self.p = host_params(gen)
        self.bf16 = bf16

    def conv(self, name: str) -> tuple[ConvWeight, np.ndarray | None]:
        return conv_weight(self.p[f"{name}.weight"], self.bf16), self.p.get(f"{name}.bias")


class CPUGenerator:
    """`decoder.Generator` in numpy (batch of one): (x, s, har) → audio."""

    def __init__(self, gen: Generator, bf16: bool = False) -> None:
        self.gen = gen
        prm = _Params(gen, bf16)
        p = prm.p
        self.n_fft, self.hop, self.num_kernels = gen.n_fft, gen.hop, gen.num_kernels
        self.ups = []
        for i, up in enumerate(gen.ups):
            self.ups.append(
                ConvTransposeWeight(p[f"ups.{i}.weight"], p[f"ups.{i}.bias"], up.stride, up.padding, bf16)
            )
        self.noise_convs = []
        for i, nc in enumerate(gen.noise_convs):
            w, b = prm.conv(f"noise_convs.{i}")
            stride, pad = (nc.stride, nc.padding) if hasattr(nc, "stride") else (1, 0)
            self.noise_convs.append((w, b, stride, pad))
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
        return adain_snake(x, gamma, beta, alpha, IN_EPS)

    def _run_resblock(self, x: np.ndarray, s: np.ndarray, layers: list[tuple]) -> np.ndarray:
        for fc1, a1, conv1, fc2, a2, conv2 in layers:
            w, b, d, pad = conv1
            y = conv1d(self._adain_snake(x, s, fc1, a1), w, b, dilation=d, padding=pad)
            w, b, d, pad = conv2
            y = conv1d(self._adain_snake(y, s, fc2, a2), w, b, dilation=d, padding=pad)
            x = y + x
        return x

    def __call__(self, x: mx.array, s: mx.array, har: mx.array) -> mx.array:
        """Same contract as `Generator.__call__` (batch of one)."""
        with serial_blas():  # OpenBLAS's spinning threads would fight the conv kernel's OpenMP team
            return self._run(x, s, har)

    def _run(self, x: mx.array, s: mx.array, har: mx.array) -> mx.array:
        xs, ss, hs = np.array(x[0], np.float32), np.array(s[0], np.float32), np.array(har[0], np.float32)
        last = len(self.ups) - 1
        for i, up in enumerate(self.ups):
            w, b, stride, pad = self.noise_convs[i]
            x_source = self._run_resblock(conv1d(hs, w, b, padding=pad, stride=stride), ss, self.noise_res[i])
            xs = conv_transpose1d(xs, up, slope=0.1)
            if i == last:
                xs = np.concatenate([xs[1:2], xs])
            xs += x_source
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            acc = self._run_resblock(xs, ss, blocks[0])
            for block in blocks[1:]:
                acc += self._run_resblock(xs, ss, block)
            acc *= np.float32(1 / self.num_kernels)
            xs = acc
        w, b, pad = self.conv_post
        y = conv1d(xs, w, b, padding=pad, slope=0.01)
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
