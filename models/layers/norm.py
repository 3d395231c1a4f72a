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
