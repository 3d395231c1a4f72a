"""Kokoro's text side: the acoustic text encoder and the prosody predictor (durations, F0 and energy).

Channels last (B, T, C); names follow hexgrad's `kokoro.modules` so weights load by name. Padded rows are
exact: LSTMs take per-row lengths (torch's pack_padded semantics) and masks zero what lies past a row's end.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from models.kokoro.blocks import IN_EPS, AdainResBlk1d, leaky_relu, masked
from models.layers.conv import DilatedConv1d
from models.layers.lstm import BiLSTM
from models.layers.norm import ChannelNorm


class TextEncoder(nn.Module):
    """Phoneme embedding → depth × (conv k, LayerNorm, LeakyReLU 0.2) → BiLSTM: the decoder's content."""

    def __init__(self, channels: int, kernel_size: int, depth: int, n_symbols: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, channels)
        pad = (kernel_size - 1) // 2
        self.cnn = [
            [DilatedConv1d(channels, channels, kernel_size, padding=pad), ChannelNorm(channels)]
            for _ in range(depth)
        ]
        self.lstm = BiLSTM(channels, channels // 2)

    def __call__(self, ids: mx.array, lengths: mx.array, mask: mx.array) -> mx.array:
        x = masked(self.embedding(ids), mask)
        for conv, norm in self.cnn:
            x = masked(leaky_relu(norm(conv(x)), 0.2), mask)
        return self.lstm(x, lengths)


class AdaLayerNorm(nn.Module):
    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(style_dim, 2 * channels)

    def __call__(self, x: mx.array, s: mx.array) -> mx.array:
        gamma, beta = mx.split(self.fc(s)[:, None, :], 2, axis=-1)
        return (1 + gamma) * mx.fast.layer_norm(x, None, None, IN_EPS) + beta


class DurationEncoder(nn.Module):
    """n_layer × (BiLSTM, AdaLayerNorm), the style vector concatenated to every step before each LSTM."""

    def __init__(self, style_dim: int, d_model: int, n_layer: int) -> None:
        super().__init__()
        self.lstms: list[nn.Module] = []
        for _ in range(n_layer):
            self.lstms += [BiLSTM(d_model + style_dim, d_model // 2), AdaLayerNorm(style_dim, d_model)]

    def __call__(self, x: mx.array, s: mx.array, lengths: mx.array, mask: mx.array) -> mx.array:
        style = mx.broadcast_to(s[:, None, :], (*x.shape[:2], s.shape[-1]))
        x = masked(mx.concatenate([x, style], axis=-1), mask)
        for block in self.lstms:
            if isinstance(block, AdaLayerNorm):
                x = masked(mx.concatenate([block(x, s), style], axis=-1), mask)
            else:
                x = block(x, lengths)
        return x


class LinearNorm(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear_layer = nn.Linear(dim_in, dim_out)

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear_layer(x)


class ProsodyPredictor(nn.Module):
    def __init__(self, style_dim: int, d_hid: int, n_layer: int, max_dur: int) -> None:
        super().__init__()
        half = d_hid // 2
        self.text_encoder = DurationEncoder(style_dim, d_hid, n_layer)
        self.lstm = BiLSTM(d_hid + style_dim, half)
        self.duration_proj = LinearNorm(d_hid, max_dur)
        self.shared = BiLSTM(d_hid + style_dim, half)
        self.F0 = [
            AdainResBlk1d(d_hid, d_hid, style_dim),
            AdainResBlk1d(d_hid, half, style_dim, upsample=True),
            AdainResBlk1d(half, half, style_dim),
        ]
        self.N = [
            AdainResBlk1d(d_hid, d_hid, style_dim),
            AdainResBlk1d(d_hid, half, style_dim, upsample=True),
            AdainResBlk1d(half, half, style_dim),
        ]
        self.F0_proj = DilatedConv1d(half, 1, 1)
        self.N_proj = DilatedConv1d(half, 1, 1)

    def durations(self, d: mx.array, lengths: mx.array, speed: mx.array) -> mx.array:
        """d (B, T, d_hid + style) → expected frames per token (B, T), before rounding."""
        logits = self.duration_proj(self.lstm(d, lengths))
        return mx.sum(mx.sigmoid(logits), axis=-1) / speed[:, None]

    def f0_n(self, en: mx.array, s: mx.array, lengths: mx.array, mask: mx.array) -> tuple[mx.array, mx.array]:
        """Frame-level features en (B, F, d_hid + style) → F0 and energy curves (B, 2F)."""
        x = self.shared(en, lengths)
        f0, n, m = x, x, mask
        for f0_block, n_block in zip(self.F0, self.N, strict=True):
            f0, n = f0_block(f0, s, m), n_block(n, s, m)
            if f0_block.upsample:
                m = mx.repeat(m, 2, axis=1)
        return self.F0_proj(f0)[..., 0], self.N_proj(n)[..., 0]
