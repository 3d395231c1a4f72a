"""Normalisation layers shared by families."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


class ChannelNorm(nn.Module):
    """Layer norm over channels (the last axis here) with parameters named gamma and beta, as VITS's
    `modules.LayerNorm` and StyleTTS's `LayerNorm` name them; eps 1e-5."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = mx.ones((channels,))
        self.beta = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return mx.fast.layer_norm(x, self.gamma, self.beta, self.eps)


def _chunk_for(n: int, longest: int) -> int:
    """The longest chunk ≤ `longest` that divides n (no padding copy), `longest` if none is ≥ longest / 4."""
    return next((c for c in range(longest, longest // 4 - 1, -1) if n % c == 0), longest)


def mean_var(x: mx.array, ddof: int = 0, chunk: int = 1024) -> tuple[mx.array, mx.array]:
    """Mean and variance over the last axis ([..., N] → [...] each), accurate in float32 for any N.

    MLX's CPU reductions accumulate float32 in order: `mx.var` over 2.75M values (HTDemucs's spectrogram
    normalisation) is off by ~2e-3 relative, enough to cap a network's parity at ~60 dB. Here sums run in
    chunks of at most `chunk` values and then over the chunk sums, and the variance is taken around the mean
    (two passes): ~2e-7 relative, as torch's."""
    n = x.shape[-1]
    if n <= chunk:
        mean = mx.mean(x, axis=-1)
        return mean, mx.sum(mx.square(x - mean[..., None]), axis=-1) / max(n - ddof, 1)

    def total(v: mx.array) -> mx.array:  # a tree of chunk sums: no float32 sum runs over more than `chunk`
        while v.shape[-1] > chunk:
            size = _chunk_for(v.shape[-1], chunk)
            pad = -v.shape[-1] % size
            if pad:
                v = mx.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, pad)])
            v = v.reshape(*v.shape[:-1], -1, size).sum(-1)
        return v.sum(-1)

    mean = total(x) / n
    var = total(mx.square(x - mean[..., None])) / max(n - ddof, 1)
    return mean, var


class GroupNorm(nn.Module):
    """torch's `nn.GroupNorm(groups, channels)` for channels-last input of any rank ([B, ..., C]): each
    group's mean and (biased) variance over all its channels and positions (`mean_var`: accurate over long
    groups); weight and bias per channel."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"{channels} channels do not split into {groups} groups")
        self.groups, self.eps = groups, eps
        self.weight = mx.ones((channels,))
        self.bias = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        shape, g = x.shape, self.groups
        if g == 1:
            flat = x.reshape(shape[0], 1, -1)
        else:
            flat = x.reshape(shape[0], -1, g, shape[-1] // g).transpose(0, 2, 1, 3).reshape(shape[0], g, -1)
        mean, var = mean_var(flat)
        scale = mx.rsqrt(var + self.eps)  # [B, G]
        per_channel = (shape[0], *([1] * (x.ndim - 2)), g, 1)
        y = x.reshape(*shape[:-1], g, shape[-1] // g)
        y = (y - mean.reshape(per_channel)) * scale.reshape(per_channel)
        return y.reshape(shape) * self.weight + self.bias
