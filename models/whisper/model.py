"""The Whisper network in MLX (arithmetic only: no file I/O, no tokenizer).

Follows openai/whisper ``model.py`` and mlx-examples ``mlx_whisper/whisper.py``; parameter names are
mlx-examples' (``encoder.blocks.N.attn.query``, ``mlp1``/``mlp2``, ``decoder.token_embedding`` …) plus
``encoder.positional_embedding``, which we keep as a weight because checkpoints ship it.

Decoding API, built for a step function that ``mx.compile`` can wrap (static shapes, no Python state):

    features = model.embed_audio(mel)               # [B, n_frames, n_mels] → [B, n_audio_ctx, D]
    xkv = model.cross_kv(features)                  # per decoder layer (k, v), computed once per window
    cache = model.init_cache(batch_size)            # per layer (k, v) buffers of n_text_ctx positions
    logits, cache, qk = model.decode(tokens, xkv, cache, offset)

Heads layout everywhere: ``[B, n_head, T, head_dim]``. ``offset`` (int or int32 scalar array) is the
number of positions already in the cache; ``decode`` writes the new keys/values at ``offset`` with
``slice_update`` and masks the unwritten tail, so shapes never change from one step to the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from models.whisper.config import WhisperConfig

KV = tuple[mx.array, mx.array]
# (tokens [B, 1], cross_kv, cache, offset scalar, pad [B] | None) -> (logits [B, 1, n_vocab], cache)
Step = Callable[[mx.array, list[KV], list[KV], mx.array, mx.array | None], tuple[mx.array, list[KV]]]


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> mx.array:
    """openai's encoder position table ``[length, channels]``: sin | cos halves at geometric timescales."""
    if channels % 2:
        raise ValueError(f"channels must be even, got {channels}")
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = np.exp(-log_increment * np.arange(channels // 2, dtype=np.float32))
    scaled = np.arange(length, dtype=np.float32)[:, None] * inv_timescales[None, :]
    return mx.array(np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32))


class MultiHeadAttention(nn.Module):
    """Whisper attention: the key projection has no bias; softmax(q·kᵀ / √head_dim)·v."""

    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.scale = (n_state // n_head) ** -0.5
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def split(self, x: mx.array) -> mx.array:
        """``[B, T, D]`` → ``[B, n_head, T, head_dim]``."""
        b, t, _ = x.shape
        return x.reshape(b, t, self.n_head, -1).transpose(0, 2, 1, 3)

    def keys_values(self, x: mx.array) -> KV:
        """Keys and values of ``x`` ``[B, T, D]``, each ``[B, n_head, T, head_dim]``."""
        return self.split(self.key(x)), self.split(self.value(x))

    def attend(self, q: mx.array, k: mx.array, v: mx.array, mask: mx.array | None = None) -> mx.array:
        """Heads ``q`` ``[B, H, Tq, Dh]`` over ``k, v`` ``[B, H, Tk, Dh]`` → projected output ``[B, Tq, D]``."""
        o = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        b, _, t, _ = o.shape
        return self.out(o.transpose(0, 2, 1, 3).reshape(b, t, -1))

    def __call__(self, x: mx.array) -> mx.array:
        """Unmasked self-attention (the encoder's): ``[B, T, D]`` → ``[B, T, D]``."""
        k, v = self.keys_values(x)
        return self.attend(self.split(self.query(x)), k, v)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int, cross_attention: bool = False) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = nn.LayerNorm(n_state)
        if cross_attention:
            self.cross_attn = MultiHeadAttention(n_state, n_head)
            self.cross_attn_ln = nn.LayerNorm(n_state)
        self.mlp1 = nn.Linear(n_state, 4 * n_state)
        self.mlp2 = nn.Linear(4 * n_state, n_state)
        self.mlp_ln = nn.LayerNorm(n_state)

    def mlp(self, x: mx.array) -> mx.array:
        return self.mlp2(nn.gelu(self.mlp1(self.mlp_ln(x))))

    def __call__(self, x: mx.array) -> mx.array:
        """Encoder block: ``[B, T, D]`` → ``[B, T, D]``."""
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(x)

    def decode(
        self,
        x: mx.array,
        cross_kv: KV,
        cache: KV,
        offset: mx.array,
        mask: mx.array,
        qk_heads: mx.array | None,
    ) -> tuple[mx.array, KV, mx.array | None]:
        """Decoder block step: ``x`` ``[B, L, D]`` at positions ``offset …``; returns (x, cache, qk)."""
        h = self.attn_ln(x)
        k_new, v_new = self.attn.keys_values(h)
        start = offset.reshape(1)
        k = mx.slice_update(cache[0], k_new.astype(cache[0].dtype), start, axes=(2,))
        v = mx.slice_update(cache[1], v_new.astype(cache[1].dtype), start, axes=(2,))
        x = x + self.attn.attend(self.attn.split(self.attn.query(h)), k, v, mask)

        q = self.cross_attn.split(self.cross_attn.query(self.cross_attn_ln(x)))
        x = x + self.cross_attn.attend(q, *cross_kv)
        qk = None
        if qk_heads is not None:  # pre-softmax scores of the requested heads, as openai's QKs
            qh = mx.take(q, qk_heads, axis=1) * self.cross_attn.scale
            kh = mx.take(cross_kv[0], qk_heads, axis=1)
            qk = (qh @ kh.swapaxes(-1, -2)).astype(mx.float32)
        return x + self.mlp(x), (k, v), qk


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int, n_ctx: int, n_state: int, n_head: int, n_layer: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.positional_embedding = sinusoids(n_ctx, n_state)
        self.blocks = [ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer)]
        self.ln_post = nn.LayerNorm(n_state)

    def __call__(self, mel: mx.array) -> mx.array:
        """``mel`` ``[B, 2·t, n_mels]`` → features ``[B, t, n_state]``: t = n_ctx for a whole 30-s window, or
        fewer positions for the start of one (whisper.cpp's ``audio_ctx``: the first t position embeddings)."""
        n_ctx, n_mels = self.positional_embedding.shape[0], self.conv1.weight.shape[-1]
        frames = mel.shape[1]
        if mel.ndim != 3 or mel.shape[2] != n_mels or frames % 2 or not 0 < frames <= 2 * n_ctx:
            raise ValueError(f"mel must be [batch, 2·t ≤ {2 * n_ctx}, {n_mels}], got {tuple(mel.shape)}")
        x = nn.gelu(self.conv1(mel.astype(self.conv1.weight.dtype)))
        x = nn.gelu(self.conv2(x))
        x = x + self.positional_embedding[: frames // 2]
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, n_vocab: int, n_ctx: int, n_state: int, n_head: int, n_layer: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(n_vocab, n_state)
        self.positional_embedding = mx.zeros((n_ctx, n_state))
        self.blocks = [ResidualAttentionBlock(n_state, n_head, cross_attention=True) for _ in range(n_layer)]
        self.ln = nn.LayerNorm(n_state)
        # With `projection_copy` (the MLX backend turns it on), `refresh_projection` keeps a row-contiguous
        # copy of the tied embedding for the logits, re-made whenever weights are replaced
        # (`Whisper.update`); without it `project` multiplies by the transposed embedding directly. The CPU
        # backend reads the embedding itself: there the copy would only cost memory (80 MB for tiny.en).
        self.projection_copy = False
        self._proj: mx.array | None = None
        self._proj_source: mx.array | None = None

    def refresh_projection(self) -> None:
        """Re-make the ``[D, n_vocab]`` row-contiguous copy of the (tied) token embedding used for logits."""
        emb = self.token_embedding
        if isinstance(emb, nn.QuantizedEmbedding) or not self.projection_copy:
            self._proj = self._proj_source = None
            return
        self._proj_source = emb.weight
        self._proj = mx.contiguous(emb.weight.T)
        mx.eval(self._proj)

    def project(self, x: mx.array) -> mx.array:
        """Hidden states ``[B, L, D]`` → logits ``[B, L, n_vocab]`` through the tied embedding."""
        emb = self.token_embedding
        if isinstance(emb, nn.QuantizedEmbedding):
            return emb.as_linear(x)
        if self._proj is not None and self._proj_source is emb.weight:
            return x @ self._proj
        return x @ emb.weight.T  # the copy is stale (weights replaced without `update`): stay correct


@dataclass(frozen=True)
class _Alignment:
    """Alignment heads as sorted (layer, head) pairs, with each layer's head indices ready for `mx.take`."""

    pairs: tuple[tuple[int, int], ...]

    def heads(self, layer: int) -> mx.array | None:
        selected = [h for lay, h in self.pairs if lay == layer]
        return mx.array(selected, dtype=mx.int32) if selected else None


class Whisper(nn.Module):
    """Encoder–decoder; ``dtype`` float32 (CPU default) or float16/bfloat16 (GPU)."""

    def __init__(self, config: WhisperConfig, dtype: mx.Dtype = mx.float32) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = AudioEncoder(c.n_mels, c.n_audio_ctx, c.n_audio_state, c.n_audio_head, c.n_audio_layer)
        self.decoder = TextDecoder(c.n_vocab, c.n_text_ctx, c.n_text_state, c.n_text_head, c.n_text_layer)
        if c.alignment_heads is not None:
            pairs = sorted(set(c.alignment_heads))
        else:  # openai's default: every head of the last half of the decoder layers
            pairs = [
                (layer, h)
                for layer in range(c.n_text_layer // 2, c.n_text_layer)
                for h in range(c.n_text_head)
            ]
        # A plain object, not a dict/list: nn.Module would otherwise walk into it as a child container.
        self._alignment = _Alignment(tuple(pairs))
        if dtype != mx.float32:
            self.set_dtype(dtype)

    # Keep the decoder's projection copy in step with its embedding whenever parameters are replaced
    # (load_weights, set_dtype, apply) or modules swapped (nn.quantize).
    def update(self, parameters: dict, strict: bool = True) -> Whisper:  # type: ignore[override]
        super().update(parameters, strict=strict)
        self.decoder.refresh_projection()
        return self

    def update_modules(self, modules: dict, strict: bool = True) -> Whisper:
        super().update_modules(modules, strict=strict)
        self.decoder.refresh_projection()
        return self

    @property
    def dtype(self) -> mx.Dtype:
        return self.encoder.conv1.weight.dtype

    @property
    def alignment_heads(self) -> list[tuple[int, int]]:
        """(layer, head) pairs, sorted; the order of the ``qk`` rows that ``decode`` returns."""
        return list(self._alignment.pairs)

    def embed_audio(self, mel: mx.array) -> mx.array:
        """Log-mel ``[B, 2 * n_audio_ctx, n_mels]`` → audio features ``[B, n_audio_ctx, n_audio_state]``."""
        return self.encoder(mel)

    def cross_kv(self, features: mx.array) -> list[KV]:
        """Per decoder layer, cross-attention ``(k, v)`` ``[B, n_text_head, n_audio_ctx, head_dim]``."""
        features = features.astype(self.dtype)
        # Contiguous, not the strided views `split` makes: every decode step reads them (a strided K/V
        # costs a copy per step and layer inside attention: 19 → 14 ms/token for tiny.en on a CPU).
        kv = [block.cross_attn.keys_values(features) for block in self.decoder.blocks]
        return [(mx.contiguous(k), mx.contiguous(v)) for k, v in kv]

    def init_cache(self, batch_size: int, length: int | None = None) -> list[KV]:
        """Empty self-attention caches: per layer ``(k, v)`` zeros ``[B, n_text_head, length, head_dim]``.

        ``length`` (default ``n_text_ctx``) bounds ``offset + tokens`` over a decode; it is also the key
        length every step attends over (masked past ``offset``), so a shorter cache is a faster one.
        """
        c = self.config
        shape = (batch_size, c.n_text_head, length or c.n_text_ctx, c.head_dim)
        return [
            (mx.zeros(shape, dtype=self.dtype), mx.zeros(shape, dtype=self.dtype))
            for _ in range(c.n_text_layer)
        ]

    def decode(
        self,
        tokens: mx.array,
        cross_kv: list[KV],
        cache: list[KV],
        offset: int | mx.array = 0,
        *,
        pad: mx.array | None = None,
        return_qk: bool = False,
    ) -> tuple[mx.array, list[KV], mx.array | None]:
        """Run the decoder on ``tokens`` ``[B, L]`` (int) at positions ``offset … offset + L - 1``.

        Returns float32 logits ``[B, L, n_vocab]``, the updated caches, and — with ``return_qk`` — the
        pre-softmax cross-attention scores of the alignment heads ``[B, n_alignment_heads, L,
        n_audio_ctx]`` (rows in :attr:`alignment_heads` order; word timing softmaxes them over the audio
        frames it keeps). The caller guarantees ``offset + L <= cache length``.

        ``pad`` ``[B]`` (int) batches rows whose prompts differ in length: row ``b``'s prompt is left-padded
        with ``pad[b]`` filler tokens, which no position attends to, and its positions count from its
        first real token, so each row computes exactly what it would alone.
        """
        dec = self.decoder
        length = tokens.shape[-1]
        offset = (
            mx.array(offset, dtype=mx.int32) if not isinstance(offset, mx.array) else offset.astype(mx.int32)
        )
        positions = offset + mx.arange(length, dtype=mx.int32)
        capacity = cache[0][0].shape[2]
        slots = mx.arange(capacity, dtype=mx.int32)
        mask = slots[None, :] <= positions[:, None]  # [L, capacity]
        if pad is None:
            x = dec.token_embedding(tokens) + mx.take(dec.positional_embedding, positions, axis=0)
        else:
            pad = pad.astype(mx.int32)[:, None]  # [B, 1]
            row_positions = mx.maximum(positions[None, :] - pad, 0)  # [B, L]
            x = dec.token_embedding(tokens) + dec.positional_embedding[row_positions]
            mask = mask[None, None] & (slots[None, None, None, :] >= pad[:, :, None, None])  # [B, 1, L, cap]
        new_cache: list[KV] = []
        scores: list[mx.array] = []
        for i, block in enumerate(dec.blocks):
            heads = self._alignment.heads(i) if return_qk else None
            x, kv, qk = block.decode(x, cross_kv[i], cache[i], offset, mask, heads)
            new_cache.append(kv)
            if qk is not None:
                scores.append(qk)
        logits = dec.project(dec.ln(x)).astype(mx.float32)
        return logits, new_cache, (mx.concatenate(scores, axis=1) if return_qk else None)

    def make_step(self, compile: bool = False) -> Step:
        """A one-token decode step ``(tokens, cross_kv, cache, offset, pad) -> (logits, cache)``.

        ``tokens`` ``[B, 1]`` int32; ``cross_kv`` as from `cross_kv`; ``cache`` as from `init_cache` or the
        previous step; ``offset`` an int32 scalar ``mx.array`` (positions already cached); ``pad`` ``[B]``
        int32 or None (see `decode`). Returns lazy float32 logits ``[B, 1, n_vocab]`` and the new cache.
        Drop every reference to the old cache before evaluating, so the cache update reuses its buffers.

        ``compile`` wraps the step in ``mx.compile`` (one traced graph per shape and ``pad`` kind; new batch
        sizes retrace): the MLX backend compiles on a GPU, where launch overhead dominates a step.
        """

        def step(
            tokens: mx.array, cross_kv: list[KV], cache: list[KV], offset: mx.array, pad: mx.array | None
        ) -> tuple[mx.array, list[KV]]:
            logits, new_cache, _ = self.decode(tokens, cross_kv, cache, offset, pad=pad)
            return logits, new_cache

        if not compile:
            return step

        plain = mx.compile(lambda t, x, c, o: step(t, x, c, o, None))
        padded = mx.compile(step)

        def compiled(
            tokens: mx.array, cross_kv: list[KV], cache: list[KV], offset: mx.array, pad: mx.array | None
        ) -> tuple[mx.array, list[KV]]:
            if pad is None:
                return plain(tokens, cross_kv, cache, offset)
            return padded(tokens, cross_kv, cache, offset, pad)

        return compiled

    def logits(self, tokens: mx.array, features: mx.array) -> mx.array:
        """Full-sequence decoder pass without a prior cache: ``[B, L]`` tokens → ``[B, L, n_vocab]``."""
        cache = self.init_cache(tokens.shape[0], tokens.shape[-1])
        return self.decode(tokens, self.cross_kv(features), cache, 0)[0]

    def __call__(self, mel: mx.array, tokens: mx.array) -> mx.array:
        return self.logits(tokens, self.embed_audio(mel))

    @property
    def is_multilingual(self) -> bool:
        return self.config.is_multilingual

    @property
    def num_languages(self) -> int:
        return self.config.num_languages
