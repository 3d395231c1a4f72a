"""Whisper's text decoder in numpy, for float32 decoding on the CPU.

A decode step is ~25 small operations per layer on a handful of rows. MLX's CPU backend costs tens of
microseconds per evaluated graph (a 384 × 1536 product: 141 µs through MLX, 32 µs through numpy), and
the step is memory-bound: tiny.en reads 80 MB of output projection, 33 MB of layer weights and 18 MB of
audio keys/values per token. numpy runs it with microseconds of overhead per operation and BLAS
``gemv``: on tiny.en (2 cores) a greedy step takes ~7 ms instead of ~13 ms eager MLX, ~3 ms of it the
projection. The arithmetic is the MLX model's (`Whisper.decode`), on zero-copy views of the same
weights; `tests/models/whisper/test_host.py` holds the two to float32 rounding.

`HostSession` implements `decoding.Session` over it. Beam rows keep pointing at their audio's
cross-attention keys and values instead of copying them per beam: the rows of one audio are multiplied
against its keys together, so five beams read the 1500-frame keys once per step, not five times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from models.layers.cpu import HostLinear, HostNorm, gelu_into, host_view
from models.whisper.decoding import left_pad
from models.whisper.model import KV, MultiHeadAttention, ResidualAttentionBlock, Whisper

HostKV = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Attention:
    query: HostLinear
    key: HostLinear
    value: HostLinear
    out: HostLinear
    n_head: int
    scale: np.float32

    @classmethod
    def of(cls, attn: MultiHeadAttention) -> _Attention:
        lin = HostLinear.of
        return cls(
            lin(attn.query),
            lin(attn.key),
            lin(attn.value),
            lin(attn.out),
            attn.n_head,
            np.float32(attn.scale),
        )

    def heads(self, x: np.ndarray) -> np.ndarray:
        """``[B, L, D]`` → ``[B, H, L, Dh]`` (a view)."""
        b, t, _ = x.shape
        return x.reshape(b, t, self.n_head, -1).transpose(0, 2, 1, 3)

    def merge(self, o: np.ndarray) -> np.ndarray:
        """``[B, H, L, Dh]`` → projected ``[B, L, D]``."""
        b, _, t, _ = o.shape
        return self.out(o.transpose(0, 2, 1, 3).reshape(b, t, -1))


def _softmax_into(s: np.ndarray) -> np.ndarray:
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


@dataclass(frozen=True)
class _Block:
    attn: _Attention
    attn_ln: HostNorm
    cross: _Attention
    cross_ln: HostNorm
    mlp_ln: HostNorm
    mlp1: HostLinear
    mlp2: HostLinear

    @classmethod
    def of(cls, block: ResidualAttentionBlock) -> _Block:
        return cls(
            _Attention.of(block.attn),
            HostNorm.of(block.attn_ln),
            _Attention.of(block.cross_attn),
            HostNorm.of(block.cross_attn_ln),
            HostNorm.of(block.mlp_ln),
            HostLinear.of(block.mlp1),
            HostLinear.of(block.mlp2),
        )

    def __call__(
        self,
        x: np.ndarray,
        cache: HostKV,
        offset: int,
        mask: np.ndarray | None,
        cross: HostKV,
        audio_rows: list[tuple[int, np.ndarray]],
    ) -> np.ndarray:
        length = x.shape[1]
        end = offset + length
        # self-attention over the cache, new keys/values written in place
        a = self.attn
        h = self.attn_ln(x)
        cache[0][:, :, offset:end] = a.heads(a.key(h))
        cache[1][:, :, offset:end] = a.heads(a.value(h))
        s = (a.heads(a.query(h)) * a.scale) @ cache[0][:, :, :end].swapaxes(-1, -2)  # [B, H, L, end]
        if mask is not None:
            s += mask
        x = x + a.merge(_softmax_into(s) @ cache[1][:, :, :end])

        # cross-attention: the rows of each audio against its keys in one product
        c = self.cross
        q = c.heads(c.query(self.cross_ln(x))) * c.scale  # [B, H, L, Dh]
        o = np.empty_like(q)
        hh, dh = q.shape[1], q.shape[3]
        for audio, rows in audio_rows:
            qa = q[rows].transpose(1, 0, 2, 3).reshape(hh, len(rows) * length, dh)  # [H, n·L, Dh]
            sa = _softmax_into(qa @ cross[0][audio].swapaxes(-1, -2))
            oa = (sa @ cross[1][audio]).reshape(hh, len(rows), length, dh)
            o[rows] = oa.transpose(1, 0, 2, 3)
        x = x + c.merge(o)
        return x + self.mlp2(gelu_into(self.mlp1(self.mlp_ln(x))))


class HostDecoder:
    """The decoder's arithmetic in numpy over views of a float32 `Whisper`'s parameters."""

    @staticmethod
    def supports(model: Whisper) -> bool:
        """float32 with plain (not quantized) layers: what the numpy arithmetic covers."""
        quantized = (nn.QuantizedLinear, nn.QuantizedEmbedding)
        plain = not any(isinstance(m, quantized) for _, m in model.decoder.named_modules())
        return model.dtype == mx.float32 and plain

    def __init__(self, model: Whisper) -> None:
        dec = model.decoder
        self.embedding = host_view(dec.token_embedding.weight)  # [V, D]; also the output projection
        self.positions = host_view(dec.positional_embedding)
        self.blocks = [_Block.of(b) for b in dec.blocks]
        self.ln = HostNorm.of(dec.ln)
        cfg = model.config
        self.cache_shape = (cfg.n_text_head, cfg.head_dim)

    def init_cache(self, batch: int, capacity: int) -> list[HostKV]:
        shape = (batch, *self.cache_shape[:1], capacity, self.cache_shape[1])
        return [(np.zeros(shape, np.float32), np.zeros(shape, np.float32)) for _ in self.blocks]

    def hidden(
        self,
        tokens: np.ndarray,
        cross: list[HostKV],
        audio_of_row: np.ndarray,
        cache: list[HostKV],
        offset: int,
        pad: np.ndarray | None,
    ) -> np.ndarray:
        """Final-normed hidden states ``[B, L, D]`` of ``tokens`` ``[B, L]`` at positions ``offset …``
        (``pad`` as in `Whisper.decode`); writes the new keys/values into ``cache``."""
        length = tokens.shape[1]
        positions = offset + np.arange(length)
        end = offset + length
        mask = None
        if pad is None:
            x = self.embedding[tokens] + self.positions[positions]
        else:
            row_positions = np.maximum(positions[None, :] - pad[:, None], 0)  # [B, L]
            x = self.embedding[tokens] + self.positions[row_positions]
        slots = np.arange(end)
        allowed = slots[None, :] <= positions[:, None]  # [L, end]: causal
        if pad is not None:
            # filler positions see no real key; let each see itself so its (unused) output stays finite
            allowed = (allowed & (slots[None, :] >= pad[:, None, None]))[:, None] | (
                slots[None, :] == positions[:, None]
            )
        if length > 1 or pad is not None:
            mask = np.where(allowed, np.float32(0.0), np.float32(-np.inf)).astype(np.float32)
        audio_rows = [(int(a), np.flatnonzero(audio_of_row == a)) for a in np.unique(audio_of_row)]
        for block, kv, xkv in zip(self.blocks, cache, cross, strict=True):
            x = block(x, kv, offset, mask, xkv, audio_rows)
        return self.ln(x)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Hidden ``[..., D]`` → logits ``[..., V]`` through the tied embedding (``gemv``/``gemm`` with the
        embedding transposed in BLAS, no copy)."""
        return x @ self.embedding.T


class HostSession:
    """`decoding.Session` on `HostDecoder`: numpy caches, logits handed back as MLX arrays."""

    def __init__(
        self, decoder: HostDecoder, cross_kv: list[KV], n_vocab: int, n_text_ctx: int, sample_len: int
    ):
        self.decoder = decoder
        self.cross = [(host_view(k), host_view(v)) for k, v in cross_kv]
        self.audio_of_row = np.arange(self.cross[0][0].shape[0])
        self.n_vocab = n_vocab
        self.n_text_ctx = n_text_ctx
        self.sample_len = sample_len
        self.cache: list[HostKV] = []
        self.offset = 0
        self.pad: np.ndarray | None = None

    def prefill(
        self, prompts: Sequence[Sequence[int]], sot_index: Sequence[int]
    ) -> tuple[mx.array, mx.array]:
        rows, pads = left_pad(prompts, self.n_vocab - 1)
        tokens = np.array(rows, np.int64)
        self.pad = np.array(pads) if any(pads) else None
        b, length = tokens.shape
        self.cache = self.decoder.init_cache(b, min(self.n_text_ctx, length + self.sample_len))
        x = self.decoder.hidden(tokens, self.cross, self.audio_of_row, self.cache, 0, self.pad)
        self.offset = length
        rows = np.arange(b)
        at_sot = [n + i for n, i in zip(pads, sot_index, strict=True)]
        logits = self.decoder.project(np.concatenate([x[:, -1], x[rows, at_sot]]))  # only the two rows used
        return mx.array(logits[:b]), mx.array(logits[b:])

    def step(self, tokens: mx.array) -> mx.array:
        toks = np.asarray(tokens, dtype=np.int64)[:, None]
        x = self.decoder.hidden(toks, self.cross, self.audio_of_row, self.cache, self.offset, self.pad)
        self.offset += 1
        return mx.array(self.decoder.project(x[:, -1]))

    def reorder(self, index: mx.array) -> None:
        idx = np.asarray(index, dtype=np.int64)
        if idx.shape[0] == self.audio_of_row.shape[0] and np.array_equal(idx, np.arange(idx.shape[0])):
            return
        if self.cache and idx.shape[0] == self.cache[0][0].shape[0]:
            for k, v in self.cache:  # gather only the written part, in place
                k[:, :, : self.offset] = k[idx, :, : self.offset]
                v[:, :, : self.offset] = v[idx, :, : self.offset]
        else:
            self.cache = [(k[idx], v[idx]) for k, v in self.cache]
        self.audio_of_row = self.audio_of_row[idx]
        if self.pad is not None:
            self.pad = self.pad[idx]
