"""Kokoro's phoneme-level BERT (PL-BERT): ALBERT, one transformer layer shared by all its repeats.

Parameter names are Hugging Face `AlbertModel`'s (`embeddings.*`, `encoder.embedding_hidden_mapping_in`,
`encoder.albert_layer_groups.0.albert_layers.0.*`) so hexgrad's checkpoint loads by name. Post-LayerNorm
blocks, "gelu_new" (tanh) activation, LayerNorm eps 1e-12, as `AlbertConfig`'s defaults.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

LN_EPS = 1e-12


class AlbertEmbeddings(nn.Module):
    def __init__(self, vocab: int, dim: int, max_positions: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.position_embeddings = nn.Embedding(max_positions, dim)
        self.token_type_embeddings = nn.Embedding(2, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=LN_EPS)

    def __call__(self, ids: mx.array) -> mx.array:
        t = ids.shape[1]
        x = (
            self.word_embeddings(ids)
            + self.position_embeddings.weight[:t]
            + self.token_type_embeddings.weight[0]
        )
        return self.LayerNorm(x)


class AlbertAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.dense = nn.Linear(dim, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=LN_EPS)

    def __call__(self, x: mx.array, bias: mx.array | None) -> mx.array:
        b, t, d = x.shape
        h = self.heads

        def split(y: mx.array) -> mx.array:
            return y.reshape(b, t, h, d // h).transpose(0, 2, 1, 3)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        ctx = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(d // h), mask=bias)
        return self.LayerNorm(x + self.dense(ctx.transpose(0, 2, 1, 3).reshape(b, t, d)))


class AlbertLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.attention = AlbertAttention(dim, heads)
        self.ffn = nn.Linear(dim, ffn)
        self.ffn_output = nn.Linear(ffn, dim)
        self.full_layer_layer_norm = nn.LayerNorm(dim, eps=LN_EPS)

    def __call__(self, x: mx.array, bias: mx.array | None) -> mx.array:
        x = self.attention(x, bias)
        return self.full_layer_layer_norm(x + self.ffn_output(nn.gelu_approx(self.ffn(x))))


class AlbertGroup(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.albert_layers = [AlbertLayer(dim, heads, ffn)]


class AlbertEncoder(nn.Module):
    def __init__(self, embed: int, dim: int, heads: int, ffn: int, layers: int) -> None:
        super().__init__()
        self.layers = layers
        self.embedding_hidden_mapping_in = nn.Linear(embed, dim)
        self.albert_layer_groups = [AlbertGroup(dim, heads, ffn)]

    def __call__(self, x: mx.array, bias: mx.array | None) -> mx.array:
        x = self.embedding_hidden_mapping_in(x)
        layer = self.albert_layer_groups[0].albert_layers[0]
        for _ in range(self.layers):
            x = layer(x, bias)
        return x


class Albert(nn.Module):
    def __init__(
        self, vocab: int, embed: int, dim: int, heads: int, ffn: int, layers: int, max_positions: int
    ) -> None:
        super().__init__()
        self.embeddings = AlbertEmbeddings(vocab, embed, max_positions)
        self.encoder = AlbertEncoder(embed, dim, heads, ffn, layers)

    def __call__(self, ids: mx.array, mask: mx.array | None = None) -> mx.array:
        """ids (B, T) int, mask (B, T) bool (True = a real token) → (B, T, dim)."""
        bias = None
        if mask is not None:
            bias = mx.where(mask, 0.0, -1e9).astype(mx.float32)[:, None, None, :]
        return self.encoder(self.embeddings(ids), bias)
