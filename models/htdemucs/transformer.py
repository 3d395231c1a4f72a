"""HTDemucs's cross-domain transformer in MLX (`demucs/transformer.py`: `CrossTransformerEncoder` with its
`MyTransformerEncoderLayer` and `CrossTransformerEncoderLayer`), inference only, as HTDemucs configures it:
pre-norm layers (`norm_first`), layer norms, an optional GroupNorm(1) over all tokens at the end of each layer
(`norm_out`), layer scale, dense attention, the "sin" 1-D and 2-D position embeddings.

Layers alternate: even indices self-attention in each branch, odd ones cross-attention (the spectral tokens
attend to the time tokens and vice versa), swapped with `cross_first`. Parameter names are demucs's (torch's
`nn.MultiheadAttention`: `in_proj_weight` [3C, C], `in_proj_bias`, `out_proj`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from models.htdemucs.config import HTDemucsConfig
from models.htdemucs.layers import LayerScale
from models.layers.norm import GroupNorm


@lru_cache(maxsize=16)
def sin_embedding(length: int, dim: int, max_period: float) -> np.ndarray:
    """demucs's `create_sin_embedding` (shift 0) as [length, dim] float32: cos then sin of pos / period^(i /
    (dim/2 - 1)), in float32 as torch computes it."""
    half = dim // 2
    pos = np.arange(length, dtype=np.float32)[:, None]
    period = (np.float32(max_period) ** (np.arange(half, dtype=np.float32) / np.float32(half - 1))).astype(
        np.float32
    )
    phase = (pos / period[None]).astype(np.float32)
    return np.concatenate([np.cos(phase), np.sin(phase)], axis=-1).astype(np.float32)


@lru_cache(maxsize=16)
def sin_embedding_2d(dim: int, height: int, width: int, max_period: float) -> np.ndarray:
    """demucs's `create_2d_sin_embedding` as tokens [width · height, dim] in (t, f) order: the first half of
    the channels encodes the time position (interleaved sin, cos), the second half the frequency."""
    if dim % 4:
        raise ValueError(f"the 2-D position embedding needs dim divisible by 4, got {dim}")
    half = dim // 2
    div = np.exp(np.arange(0.0, half, 2, dtype=np.float32) * np.float32(-(math.log(max_period) / half)))
    div = div.astype(np.float32)
    pe = np.zeros((width, height, dim), np.float32)
    w = (np.arange(width, dtype=np.float32)[:, None] * div[None]).astype(np.float32)  # [width, half / 2]
    h = (np.arange(height, dtype=np.float32)[:, None] * div[None]).astype(np.float32)
    pe[:, :, 0:half:2] = np.sin(w)[:, None, :]
    pe[:, :, 1:half:2] = np.cos(w)[:, None, :]
    pe[:, :, half::2] = np.sin(h)[None, :, :]
    pe[:, :, half + 1 :: 2] = np.cos(h)[None, :, :]
    return pe.reshape(width * height, dim)


class MultiheadAttention(nn.Module):
    """torch's nn.MultiheadAttention (batch first, no masks, no dropout) with its parameter names."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = mx.zeros((3 * dim, dim))
        self.in_proj_bias = mx.zeros((3 * dim,))
        self.out_proj = nn.Linear(dim, dim)

    def __call__(self, q: mx.array, kv: mx.array) -> mx.array:
        """q: [B, T, C], kv: [B, S, C] → [B, T, C]."""
        b, t, c = q.shape
        h = self.heads
        wq, wk, wv = mx.split(self.in_proj_weight, 3)
        bq, bk, bv = mx.split(self.in_proj_bias, 3)

        def heads(x: mx.array, w: mx.array, bias: mx.array) -> mx.array:
            return (x @ w.T + bias).reshape(b, x.shape[1], h, c // h).transpose(0, 2, 1, 3)

        out = mx.fast.scaled_dot_product_attention(
            heads(q, wq, bq), heads(kv, wk, bk), heads(kv, wv, bv), scale=(c // h) ** -0.5
        )
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(b, t, c))


class _Layer(nn.Module):
    """What the self- and cross-attention layers share: the feed-forward block, layer scales, norms."""

    def __init__(self, dim: int, cfg: HTDemucsConfig, norms: int) -> None:
        super().__init__()
        hidden = int(dim * cfg.t_hidden_scale)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        for i in range(1, norms + 1):
            setattr(self, f"norm{i}", nn.LayerNorm(dim, eps=1e-5))
        self.gelu = cfg.t_gelu
        self.gamma_1 = LayerScale(dim) if cfg.t_layer_scale else nn.Identity()
        self.gamma_2 = LayerScale(dim) if cfg.t_layer_scale else nn.Identity()
        if cfg.t_norm_out:
            self.norm_out = GroupNorm(1, dim)

    def feed_forward(self, x: mx.array) -> mx.array:
        y = self.linear1(x)
        return self.linear2(nn.gelu(y) if self.gelu else nn.relu(y))

    def finish(self, x: mx.array) -> mx.array:
        return self.norm_out(x) if "norm_out" in self else x


class SelfAttentionLayer(_Layer):
    """demucs's MyTransformerEncoderLayer (norm_first)."""

    def __init__(self, dim: int, cfg: HTDemucsConfig) -> None:
        super().__init__(dim, cfg, norms=2)
        self.self_attn = MultiheadAttention(dim, cfg.t_heads)

    def __call__(self, x: mx.array) -> mx.array:
        y = self.norm1(x)
        x = x + self.gamma_1(self.self_attn(y, y))
        x = x + self.gamma_2(self.feed_forward(self.norm2(x)))
        return self.finish(x)


class CrossAttentionLayer(_Layer):
    """demucs's CrossTransformerEncoderLayer (norm_first): queries from x, keys and values from `other`."""

    def __init__(self, dim: int, cfg: HTDemucsConfig) -> None:
        super().__init__(dim, cfg, norms=3)
        self.cross_attn = MultiheadAttention(dim, cfg.t_heads)

    def __call__(self, x: mx.array, other: mx.array) -> mx.array:
        x = x + self.gamma_1(self.cross_attn(self.norm1(x), self.norm2(other)))
        x = x + self.gamma_2(self.feed_forward(self.norm3(x)))
        return self.finish(x)


class CrossTransformerEncoder(nn.Module):
    def __init__(self, dim: int, cfg: HTDemucsConfig) -> None:
        super().__init__()
        if dim % cfg.t_heads:
            raise ValueError(f"transformer width {dim} does not split into {cfg.t_heads} heads")
        self.max_period, self.weight_pos_embed = cfg.t_max_period, cfg.t_weight_pos_embed
        self.classic_parity = 1 if cfg.t_cross_first else 0
        self.norm_in: nn.Module = nn.LayerNorm(dim, eps=1e-5) if cfg.t_norm_in else nn.Identity()
        self.norm_in_t: nn.Module = nn.LayerNorm(dim, eps=1e-5) if cfg.t_norm_in else nn.Identity()
        self.layers: list[nn.Module] = []
        self.layers_t: list[nn.Module] = []
        for idx in range(cfg.t_layers):
            kind = SelfAttentionLayer if idx % 2 == self.classic_parity else CrossAttentionLayer
            self.layers.append(kind(dim, cfg))
            self.layers_t.append(kind(dim, cfg))

    def __call__(self, x: mx.array, xt: mx.array) -> tuple[mx.array, mx.array]:
        """x: the spectral branch [B, F, T1, C]; xt: the time branch [B, T2, C]; both returned so shaped."""
        b, fr, t1, c = x.shape
        x = x.transpose(0, 2, 1, 3).reshape(b, t1 * fr, c)  # tokens in (t, f) order, as demucs's
        x = self.norm_in(x) + self.weight_pos_embed * mx.array(sin_embedding_2d(c, fr, t1, self.max_period))
        xt = self.norm_in_t(xt) + self.weight_pos_embed * mx.array(
            sin_embedding(xt.shape[1], c, self.max_period)
        )
        for idx, (layer, layer_t) in enumerate(zip(self.layers, self.layers_t, strict=True)):
            if idx % 2 == self.classic_parity:
                x, xt = layer(x), layer_t(xt)
            else:
                x, xt = layer(x, xt), layer_t(xt, x)
        return x.reshape(b, t1, fr, c).transpose(0, 2, 1, 3), xt
