"""Piper's frame-rate half — the residual coupling flow in reverse and the HiFi-GAN generator — in numpy,
for MLX's Linux CPU backend (chosen once at load, `family.choose_backend`).

Why (profile of a 4.5-s sentence on this 2-core EPYC, MLX CPU path, docs/benchmarks.md): the generator
took ~0.45 s and the flow ~0.09 s of ~0.6 s. The generator is 1-D convolutions with 32 to 128 channels
over 10^3 to 10^5 frames, where MLX's CPU backend reaches 16-80 GFLOP/s (../shared/docs/MLX-CPU.md);
`models.cpu.conv` runs them as a direct C kernel at ~200 (or im2col + sgemm without it). Half of the
flow's time was MLX's scalar tanh and sigmoid in the WaveNet gates, which numpy vectorises.

Same arithmetic as `model.Flow.reverse` and `model.Generator` on the same parameters (read once from the
MLX modules), float32, one row at a time (a row alone is what the masked batch computes for it);
parity-tested against the MLX model in tests/models/piper/test_cpu_decoder.py.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from models.cpu.conv import ConvTransposeWeight, ConvWeight, conv1d, conv_transpose1d, conv_weight
from models.cpu.ops import host_params, serial_blas
from models.piper.model import LRELU_SLOPE, Flow, Generator

Conv = tuple[ConvWeight, np.ndarray | None, int, int]  # weight, bias, dilation, padding


class CPUGenerator:
    """`model.Generator` in numpy, one row."""

    def __init__(self, gen: Generator, bf16: bool = False) -> None:
        p = host_params(gen)
        self.num_kernels = gen.num_kernels
        self.rates = gen.rates

        def conv(name: str, layer: Any) -> Conv:
            # nn.Conv1d and DilatedConv1d both keep `dilation` and `padding`
            return (
                conv_weight(p[f"{name}.weight"], bf16),
                p.get(f"{name}.bias"),
                layer.dilation,
                layer.padding,
            )

        self.conv_pre = conv("conv_pre", gen.conv_pre)
        self.cond = conv("cond", gen.cond) if "cond" in gen else None
        self.ups = [
            ConvTransposeWeight(p[f"ups.{i}.weight"], p[f"ups.{i}.bias"], up.stride, up.padding, bf16)
            for i, up in enumerate(gen.ups)
        ]
        self.resblocks: list[list[list[Conv]]] = []
        for i, block in enumerate(gen.resblocks):
            name = f"resblocks.{i}"
            if "convs" in block:  # ResBlock2: one conv per residual step
                steps = [[conv(f"{name}.convs.{j}", c)] for j, c in enumerate(block.convs)]
            else:  # ResBlock1: a dilated conv then a plain one per step
                steps = [
                    [conv(f"{name}.convs1.{j}", c1), conv(f"{name}.convs2.{j}", c2)]
                    for j, (c1, c2) in enumerate(zip(block.convs1, block.convs2, strict=True))
                ]
            self.resblocks.append(steps)
        self.conv_post = conv("conv_post", gen.conv_post)

    def _resblock(self, x: np.ndarray, steps: list[list[Conv]]) -> np.ndarray:
        """x + step(x), step by step; each step's last conv adds into a copy of x in place."""
        out = x.copy()
        for convs in steps:
            y = out
            for c in convs[:-1]:
                w, b, d, pad = c
                y = conv1d(y, w, b, dilation=d, padding=pad, slope=LRELU_SLOPE)
            w, b, d, pad = convs[-1]
            conv1d(y, w, b, dilation=d, padding=pad, slope=LRELU_SLOPE, residual=out)
        return out

    def row(self, z: np.ndarray, g: np.ndarray | None) -> np.ndarray:
        """z (T, inter), g (1, gin) or None → audio (T·hop,)."""
        w, b, d, pad = self.conv_pre
        x = conv1d(z, w, b, dilation=d, padding=pad)
        if self.cond is not None and g is not None:
            w, b, d, pad = self.cond
            x += conv1d(g, w, b, dilation=d, padding=pad)
        for i, up in enumerate(self.ups):
            x = conv_transpose1d(x, up, slope=LRELU_SLOPE)
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            acc = self._resblock(x, blocks[0])
            for block in blocks[1:]:
                acc += self._resblock(x, block)
            x = acc
            x *= np.float32(1 / self.num_kernels)
        w, b, d, pad = self.conv_post
        return np.tanh(conv1d(x, w, b, dilation=d, padding=pad, slope=0.01)[:, 0])


def _dense(p: dict[str, np.ndarray], name: str) -> tuple[ConvWeight, np.ndarray]:
    """A 1x1 conv's weight and bias (run by the same kernel as the others: no BLAS thread pool spinning
    against the conv kernel's OpenMP team between calls)."""
    return conv_weight(p[f"{name}.weight"]), p[f"{name}.bias"]


class CPUFlow:
    """`model.Flow.reverse` in numpy, one row: mean-only couplings over gated WaveNets."""

    def __init__(self, flow: Flow) -> None:
        p = host_params(flow)
        self.layers = []
        for i, layer in enumerate(flow.layers):
            name = f"layers.{i}"
            wn = layer.enc
            convs = [
                (
                    conv_weight(p[f"{name}.enc.in_layers.{j}.weight"]),
                    p[f"{name}.enc.in_layers.{j}.bias"],
                    c.dilation,
                    c.padding,
                )
                for j, c in enumerate(wn.in_layers)
            ]
            res_skip = [_dense(p, f"{name}.enc.res_skip_layers.{j}") for j in range(len(wn.res_skip_layers))]
            cond = _dense(p, f"{name}.enc.cond_layer") if "cond_layer" in wn else None
            self.layers.append(
                (_dense(p, f"{name}.pre"), convs, res_skip, cond, _dense(p, f"{name}.post"), wn.hidden)
            )

    def row(self, x: np.ndarray, g: np.ndarray | None) -> np.ndarray:
        """x (T, inter) → (T, inter)."""
        for pre, convs, res_skip, cond, post, hid in reversed(self.layers):
            x = np.ascontiguousarray(x[:, ::-1])  # each coupling is followed by a channel flip
            half = x.shape[1] // 2
            h = conv1d(x[:, :half], *pre)
            g_all = None if cond is None or g is None else conv1d(g, *cond)
            out = None
            for j, ((w, b, d, pad), (rw, rb)) in enumerate(zip(convs, res_skip, strict=True)):
                x_in = conv1d(h, w, b, dilation=d, padding=pad)
                if g_all is not None:
                    x_in += g_all[:, 2 * hid * j : 2 * hid * (j + 1)]
                gate = np.tanh(x_in[:, :hid])
                gate *= _sigmoid(x_in[:, hid:])
                rs = conv1d(gate, rw, rb)
                if j < len(convs) - 1:
                    h = h + rs[:, :hid]
                    skip = rs[:, hid:]
                else:
                    skip = rs
                out = skip if out is None else out + skip
            assert out is not None
            x[:, half:] -= conv1d(out, *post)
        return x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(−x)) as 0.5 · (1 + tanh(x / 2)): one vectorised transcendental, no overflow."""
    y = np.tanh(x * np.float32(0.5))
    y += 1
    y *= np.float32(0.5)
    return y


class CPUDecoder:
    """The flow in reverse, then the generator: z_p (B, T, inter) → audio (B, T·hop), zero past each row's
    frames; what `Piper.__call__` runs after the durations on the CPU backend."""

    def __init__(self, flow: Flow, gen: Generator, bf16: bool = False) -> None:
        self.flow = CPUFlow(flow)
        self.gen = CPUGenerator(gen, bf16)

    def __call__(self, z_p: mx.array, g: mx.array | None, frames: list[int]) -> mx.array:
        zs = np.array(z_p, np.float32)
        gs = None if g is None else np.array(g, np.float32)
        b, t = zs.shape[:2]
        hop = int(np.prod(self.gen.rates))
        out = np.zeros((b, t * hop), np.float32)
        with serial_blas():  # OpenBLAS's spinning threads would fight the conv kernel's OpenMP team
            for i, n in enumerate(frames):
                gi = None if gs is None else gs[i]
                out[i, : n * hop] = self.gen.row(self.flow.row(zs[i, :n], gi), gi)
        return mx.array(out)
