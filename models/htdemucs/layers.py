"""The convolutional layers of HTDemucs in MLX: demucs's `HEncLayer`, `HDecLayer` (`demucs/hdemucs.py`),
`DConv` and `LayerScale` (`demucs/demucs.py`, `demucs/transformer.py`), named as demucs names them so that
a checkpoint's keys are ours.

Layouts are channels last: the frequency branch is [B, F, T, C] (demucs: [B, C, F, T]), the time branch
[B, T, C] (demucs: [B, C, T]). A frequency layer's [K, 1] convolution runs over F with T alongside;
its DConv runs over T for each frequency row.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

from models.htdemucs.config import HTDemucsConfig
from models.layers.conv import ConvTranspose1d, DilatedConv1d
from models.layers.norm import GroupNorm


def glu(x: mx.array) -> mx.array:
    """torch's F.glu over the channels (the last axis here)."""
    a, b = mx.split(x, 2, axis=-1)
    return a * mx.sigmoid(b)


class Pointwise(nn.Module):
    """A 1×1 convolution (torch Conv1d/Conv2d with kernel 1) as a matmul; weight (c_out, c_in)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = mx.zeros((out_channels, in_channels))
        self.bias = mx.zeros((out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return x @ self.weight.T + self.bias


class FreqConvTranspose(ConvTranspose1d):
    """torch ConvTranspose2d(c_in, c_out, [K, 1], [S, 1]) over F of a [B, F, T, C] input."""

    def __call__(self, x: mx.array) -> mx.array:
        b, f, t, c = x.shape
        y = super().__call__(x.transpose(0, 2, 1, 3).reshape(b * t, f, c))
        return y.reshape(b, t, y.shape[1], y.shape[2]).transpose(0, 2, 1, 3)


class LayerScale(nn.Module):
    """demucs's LayerScale: a learnt per-channel scale of a residual branch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return x * self.scale


class DConv(nn.Module):
    """demucs's DConv residual branch (as HTDemucs builds it: GroupNorm, GELU, no LSTM or attention):
    per layer d, x + LayerScale(GLU(GN(1×1(GELU(GN(conv3 dilated 2^d (x))))))). x: [N, T, C]."""

    def __init__(self, channels: int, compress: float, depth: int) -> None:
        super().__init__()
        hidden = int(channels / compress)
        self.layers: list[list[Any]] = []
        for d in range(abs(depth)):
            dilation = 2**d if depth > 0 else 1
            self.layers.append(
                [
                    DilatedConv1d(channels, hidden, 3, dilation=dilation, padding=dilation),
                    GroupNorm(1, hidden),
                    nn.GELU(),
                    Pointwise(hidden, 2 * channels),
                    GroupNorm(1, 2 * channels),
                    nn.Identity(),  # GLU, applied in __call__ (demucs's nn.GLU(1) has no parameters)
                    LayerScale(channels),
                ]
            )

    def __call__(self, x: mx.array) -> mx.array:
        for conv, norm1, _, proj, norm2, _, scale in self.layers:
            y = nn.gelu(norm1(conv(x)))
            x = x + scale(glu(norm2(proj(y))))
        return x


def _norm(groups: int, channels: int, use: bool) -> nn.Module:
    return GroupNorm(groups, channels) if use else nn.Identity()


def _rewrite(chin: int, chout: int, context: int, freq: bool) -> nn.Module:
    """The layer's "rewrite" convolution, kernel 1 + 2·context ([k, k] on the frequency branch)."""
    k = 1 + 2 * context
    if k == 1:
        return Pointwise(chin, chout)
    if freq:
        return nn.Conv2d(chin, chout, k, padding=context)
    return DilatedConv1d(chin, chout, k, padding=context)


def _rows(y: mx.array, fn: Any) -> mx.array:
    """Apply a [N, T, C] function to each frequency row of a [B, F, T, C] array."""
    b, f, t, c = y.shape
    out = fn(y.reshape(b * f, t, c))
    return out.reshape(b, f, t, out.shape[-1])


class HEncLayer(nn.Module):
    def __init__(
        self, chin: int, chout: int, layer: dict[str, Any], cfg: HTDemucsConfig, *, freq: bool, empty: bool
    ) -> None:
        """One encoder layer of either branch. `layer` is `HTDemucsConfig.layers()[index]`; the time branch
        always uses the config's kernel_size and stride with padding."""
        super().__init__()
        self.freq, self.empty = freq, empty
        ker = layer["kernel_size"] if freq else cfg.kernel_size
        self.stride = layer["stride"] if freq else cfg.stride
        pad = ker // 4 if (layer["pad"] or not freq) else 0
        if freq:
            self.conv: nn.Module = nn.Conv2d(chin, chout, (ker, 1), stride=(self.stride, 1), padding=(pad, 0))
        else:
            self.conv = nn.Conv1d(chin, chout, ker, stride=self.stride, padding=pad)
        if empty:
            return
        self.norm1 = _norm(cfg.norm_groups, chout, layer["norm"])
        if cfg.rewrite:
            self.rewrite = _rewrite(chout, 2 * chout, cfg.context_enc, freq)
            self.norm2 = _norm(cfg.norm_groups, 2 * chout, layer["norm"])
        if cfg.dconv_mode & 1:
            self.dconv = DConv(chout, cfg.dconv_comp, cfg.dconv_depth)

    def __call__(self, x: mx.array, inject: mx.array | None = None) -> mx.array:
        """Frequency: [B, F, T, C] → [B, F / stride, T, chout] (`inject`, [B, T, chout], added when F is 1).
        Time: [B, L, C] → [B, ceil(L / stride), chout]."""
        if not self.freq and x.shape[1] % self.stride:
            x = mx.pad(x, [(0, 0), (0, self.stride - x.shape[1] % self.stride), (0, 0)])
        y = self.conv(x)
        if self.empty:
            return y
        if inject is not None:
            y = y + inject[:, None]
        y = nn.gelu(self.norm1(y))
        if "dconv" in self:
            y = _rows(y, self.dconv) if self.freq else self.dconv(y)
        if "rewrite" in self:
            y = glu(self.norm2(self.rewrite(y)))
        return y


class HDecLayer(nn.Module):
    def __init__(
        self,
        chin: int,
        chout: int,
        layer: dict[str, Any],
        cfg: HTDemucsConfig,
        *,
        freq: bool,
        empty: bool,
        last: bool,
    ) -> None:
        super().__init__()
        self.freq, self.empty, self.last = freq, empty, last
        ker = layer["kernel_size"] if freq else cfg.kernel_size
        stride = layer["stride"] if freq else cfg.stride
        self.pad = ker // 4 if (layer["pad"] or not freq) else 0
        self.conv_tr = (FreqConvTranspose if freq else ConvTranspose1d)(chin, chout, ker, stride, 0)
        self.norm2 = _norm(cfg.norm_groups, chout, layer["norm"])
        if empty:
            return
        if cfg.rewrite:
            self.rewrite = _rewrite(chin, 2 * chin, cfg.context, freq)
            self.norm1 = _norm(cfg.norm_groups, 2 * chin, layer["norm"])
        if cfg.dconv_mode & 2:
            self.dconv = DConv(chin, cfg.dconv_comp, cfg.dconv_depth)

    def __call__(self, x: mx.array, skip: mx.array | None, length: int) -> tuple[mx.array, mx.array]:
        """Returns (output, the input of the transposed convolution). Frequency: [B, F, T, chin] →
        [B, F · stride, T, chout]; time: [B, T, chin] → [B, length, chout]."""
        if not self.empty:
            assert skip is not None
            x = x + skip
            y = glu(self.norm1(self.rewrite(x))) if "rewrite" in self else x
            if "dconv" in self:
                y = _rows(y, self.dconv) if self.freq else self.dconv(y)
        else:
            y = x
        z = self.norm2(self.conv_tr(y))
        if self.freq:
            if self.pad:
                z = z[:, self.pad : -self.pad]
        else:
            z = z[:, self.pad : self.pad + length]
        if not self.last:
            z = nn.gelu(z)
        return z, y


class ScaledEmbedding(nn.Module):
    """demucs's frequency embedding (`hdemucs.ScaledEmbedding`): the table times `scale`."""

    def __init__(self, num_embeddings: int, dim: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.embedding = nn.Embedding(num_embeddings, dim)

    def table(self) -> mx.array:
        """[num_embeddings, dim]: row f is frequency f's embedding."""
        return self.embedding.weight * self.scale
