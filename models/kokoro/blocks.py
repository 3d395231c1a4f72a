"""StyleTTS 2's style-conditioned blocks, shared by Kokoro's prosody predictor and its decoder.

Channels last: (B, T, C). Names follow hexgrad's `kokoro.istftnet` so weights load by name. An optional
`mask` (B, T, 1) of 0/1 makes a padded row behave as if it stood alone: instance-norm statistics over its
own frames, and zeros past its end before every convolution (what torch's zero padding sees).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from models.layers.conv import DilatedConv1d

IN_EPS = 1e-5  # nn.InstanceNorm1d / LayerNorm default


def leaky_relu(x: mx.array, slope: float) -> mx.array:
    return mx.maximum(x, slope * x)


def masked(x: mx.array, mask: mx.array | None) -> mx.array:
    return x if mask is None else x * mask


class AdaIN1d(nn.Module):
    """Instance norm over time (no affine: Kokoro's InstanceNorm1d keeps its initial weight 1, bias 0),
    then (1 + γ)·x + β with γ, β from the style vector."""

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(style_dim, 2 * channels)

    def __call__(self, x: mx.array, s: mx.array, mask: mx.array | None = None) -> mx.array:
        gamma, beta = mx.split(self.fc(s)[:, None, :], 2, axis=-1)
        if mask is None:
            mean = mx.mean(x, axis=1, keepdims=True)
            var = mx.var(x, axis=1, keepdims=True)
        else:
            n = mx.maximum(mx.sum(mask, axis=1, keepdims=True), 1.0)
            mean = mx.sum(x * mask, axis=1, keepdims=True) / n
            var = mx.sum(mx.square(x - mean) * mask, axis=1, keepdims=True) / n
        return (1 + gamma) * ((x - mean) * mx.rsqrt(var + IN_EPS)) + beta


class DepthwiseUpsample(nn.Module):
    """torch ConvTranspose1d(C, C, 3, stride=2, groups=C, padding=1, output_padding=1): T → 2T.

    Output frame 2t is x[t]·w1; frame 2t+1 is x[t]·w2 + x[t+1]·w0 (x past the end is 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = mx.zeros((3, channels))  # torch (C, 1, 3) → taps first
        self.bias = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        b, t, c = x.shape
        w = self.weight
        nxt = mx.concatenate([x[:, 1:], mx.zeros((b, 1, c), x.dtype)], axis=1)
        even = x * w[1]
        odd = x * w[2] + nxt * w[0]
        return mx.stack([even, odd], axis=2).reshape(b, 2 * t, c) + self.bias


def upsample2(x: mx.array) -> mx.array:
    """Nearest-neighbour ×2 along time."""
    b, t, c = x.shape
    return mx.broadcast_to(x[:, :, None], (b, t, 2, c)).reshape(b, 2 * t, c)


class AdainResBlk1d(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, style_dim: int, *, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = DilatedConv1d(dim_in, dim_out, 3, padding=1)
        self.conv2 = DilatedConv1d(dim_out, dim_out, 3, padding=1)
        self.norm1 = AdaIN1d(style_dim, dim_in)
        self.norm2 = AdaIN1d(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = DilatedConv1d(dim_in, dim_out, 1, bias=False)
        if upsample:
            self.pool = DepthwiseUpsample(dim_in)

    def __call__(self, x: mx.array, s: mx.array, mask: mx.array | None = None) -> mx.array:
        """mask is the input's; an upsampling block's output mask is `upsample2(mask)`."""
        out_mask = upsample2(mask) if (mask is not None and self.upsample) else mask
        y = leaky_relu(self.norm1(x, s, mask), 0.2)
        if self.upsample:  # frame 2t+1 reads x[t+1]: zero past the row's end, as torch's padding
            y = masked(self.pool(masked(y, mask)), out_mask)
        y = self.conv1(masked(y, out_mask))
        y = leaky_relu(self.norm2(y, s, out_mask), 0.2)
        y = self.conv2(masked(y, out_mask))
        sc = upsample2(x) if self.upsample else x
        if self.learned_sc:
            sc = self.conv1x1(sc)
        return (y + sc) * (1 / math.sqrt(2))


def snake(x: mx.array, alpha: mx.array) -> mx.array:
    return x + (1 / alpha) * mx.square(mx.sin(alpha * x))


class AdaINResBlock1(nn.Module):
    """HiFi-GAN's ResBlock1 with AdaIN and Snake activations (three dilated convs, each followed by one
    undilated conv, residual after each pair)."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], style_dim: int) -> None:
        super().__init__()
        k = kernel_size
        self.convs1 = [
            DilatedConv1d(channels, channels, k, dilation=d, padding=d * (k - 1) // 2) for d in dilations
        ]
        self.convs2 = [DilatedConv1d(channels, channels, k, padding=(k - 1) // 2) for _ in dilations]
        self.adain1 = [AdaIN1d(style_dim, channels) for _ in dilations]
        self.adain2 = [AdaIN1d(style_dim, channels) for _ in dilations]
        self.alpha1 = [mx.ones((channels,)) for _ in dilations]
        self.alpha2 = [mx.ones((channels,)) for _ in dilations]

    def __call__(self, x: mx.array, s: mx.array, mask: mx.array | None = None) -> mx.array:
        for c1, c2, n1, n2, a1, a2 in zip(
            self.convs1, self.convs2, self.adain1, self.adain2, self.alpha1, self.alpha2, strict=True
        ):
            y = c1(masked(snake(n1(x, s, mask), a1), mask))
            y = c2(masked(snake(n2(y, s, mask), a2), mask))
            x = y + x
        return x
