"""The CPU backends: float32 Whisper on the CPU with its encoder (`cpu_encoder.py`) and decode step
(here) in numpy over the MLX model's own weights, plus the optional C kernels (`models.cpu.kernels`).

A decode step is ~25 small operations per layer on a handful of rows. MLX's CPU backend costs tens of
microseconds per evaluated graph (a 384 × 1536 product: 141 µs through MLX, 32 µs through numpy), and
the step is memory-bound: tiny.en reads 80 MB of output projection, 33 MB of layer weights and 18 MB of
audio keys/values per token. numpy runs it with microseconds of overhead per operation and BLAS
``gemv``: on tiny.en (2 cores) a greedy step takes ~7 ms instead of ~13 ms eager MLX, ~3 ms of it the
projection. The arithmetic is the MLX model's (`Whisper.decode`), on zero-copy views of the same
weights; `tests/models/whisper/test_cpu_backend.py` holds the two to float32 rounding.

`CPUSession` implements `mlx_backend.Session` over it. Beam rows keep pointing at their audio's
cross-attention keys and values instead of copying them per beam: the rows of one audio are multiplied
against its keys together, so five beams read the 1500-frame keys once per step, not five times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from models.cpu import kernels
from models.cpu.ops import HostLinear, HostNorm, gelu_into, host_view
from models.whisper.constants import SAMPLE_LEN
from models.whisper.cpu_encoder import CPUEncoder
from models.whisper.mlx_backend import Session, alignment, left_pad
from models.whisper.model import KV, MultiHeadAttention, ResidualAttentionBlock, Whisper
from models.whisper.tokenizer import WhisperTokenizer

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
    def of(cls, attn: MultiHeadAttention, half: bool, cross: bool = False) -> _Attention:
        """``half``: exact float16 copies for the step's products; not for the cross-attention keys and
        values, which the encoder computes once per window."""

        def lin(layer: nn.Linear, step: bool = True) -> HostLinear:
            return HostLinear.of(layer, half and step)

        return cls(
            lin(attn.query),
            lin(attn.key, not cross),
            lin(attn.value, not cross),
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
    if kernels.softmax_(s):
        return s
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
    fused: bool  # a step's attention in the C kernels (else numpy products)

    @classmethod
    def of(cls, block: ResidualAttentionBlock, half: bool, fused: bool) -> _Block:
        return cls(
            _Attention.of(block.attn, half),
            HostNorm.of(block.attn_ln),
            _Attention.of(block.cross_attn, half, cross=True),
            HostNorm.of(block.cross_attn_ln),
            HostNorm.of(block.mlp_ln),
            HostLinear.of(block.mlp1, half),
            HostLinear.of(block.mlp2, half),
            fused,
        )

    def __call__(
        self,
        x: np.ndarray,
        cache: HostKV,
        offset: int,
        mask: np.ndarray | None,
        cross: HostKV,
        audio_rows: list[tuple[int, np.ndarray]],
        starts: np.ndarray | None,
    ) -> np.ndarray:
        length = x.shape[1]
        end = offset + length
        # self-attention over the cache, new keys/values written in place
        a = self.attn
        h = self.attn_ln(x)
        cache[0][:, :, offset:end] = a.heads(a.key(h))
        cache[1][:, :, offset:end] = a.heads(a.value(h))
        if length == 1 and self.fused:  # a step: one query per row, fused over the cached keys
            b, hh, cap, dh = cache[0].shape
            q = a.query(h).reshape(b * hh, 1, dh)  # one position: the heads are consecutive slices
            kv = (cache[0].reshape(b * hh, cap, dh), cache[1].reshape(b * hh, cap, dh))
            x = x + a.out(kernels.attend(q, *kv, float(a.scale), end, starts).reshape(b, 1, -1))
        else:
            s = (a.heads(a.query(h)) * a.scale) @ cache[0][:, :, :end].swapaxes(-1, -2)  # [B, H, L, end]
            if mask is not None:
                s += mask
            x = x + a.merge(_softmax_into(s) @ cache[1][:, :, :end])
        x = x + self._cross(self.cross_ln(x), cross, audio_rows)
        return x + self.mlp2(gelu_into(self.mlp1(self.mlp_ln(x))))

    def _cross(self, h: np.ndarray, cross: HostKV, audio_rows: list[tuple[int, np.ndarray]]) -> np.ndarray:
        """Cross-attention: the rows of each audio against its keys in one product (beams of one audio
        read its keys once)."""
        c = self.cross
        b, length, d = h.shape
        hh = c.n_head
        dh = d // hh
        if length == 1 and self.fused:
            q = c.query(h)  # [B, 1, D]
            out = np.empty((b, d), np.float32)
            for audio, rows in audio_rows:
                qa = q[rows].reshape(len(rows), hh, dh).transpose(1, 0, 2)  # [H, n, Dh]
                keys, values = cross[0][audio], cross[1][audio]
                oa = kernels.attend(qa, keys, values, float(c.scale), keys.shape[1])
                out[rows] = oa.transpose(1, 0, 2).reshape(len(rows), d)
            return c.out(out.reshape(b, 1, d))
        q = c.heads(c.query(h)) * c.scale  # [B, H, L, Dh]
        o = np.empty_like(q)
        for audio, rows in audio_rows:
            qa = q[rows].transpose(1, 0, 2, 3).reshape(hh, len(rows) * length, dh)  # [H, n·L, Dh]
            sa = _softmax_into(qa @ cross[0][audio].swapaxes(-1, -2))
            oa = (sa @ cross[1][audio]).reshape(hh, len(rows), length, dh)
            o[rows] = oa.transpose(1, 0, 2, 3)
        return c.merge(o)


class CPUDecoder:
    """The decoder's arithmetic in numpy over views of a float32 `Whisper`'s parameters."""

    def __init__(self, model: Whisper, half: bool | None = None) -> None:
        """``half``: keep exact float16 copies of the weights for the step's few-row products
        (`kernels.half_exact`; default: where the C kernels make them pay). A step's attention runs in
        the C kernels where they are built (decided here, once)."""
        dec = model.decoder
        half = kernels.fast_half() if half is None else half
        fused = kernels.available()
        self.embedding = host_view(dec.token_embedding.weight)  # [V, D]
        # the output projection through the tied embedding, as a bias-free linear layer over it
        self.output = HostLinear(self.embedding, None, kernels.half_exact(self.embedding) if half else None)
        self.positions = host_view(dec.positional_embedding)
        self.blocks = [_Block.of(b, half, fused) for b in dec.blocks]
        self.ln = HostNorm.of(dec.ln)
        cfg = model.config
        self.cache_shape = (cfg.n_text_head, cfg.head_dim)
        halves = [self.output.half] + [
            lin.half
            for b in self.blocks
            for lin in (
                b.attn.query,
                b.attn.key,
                b.attn.value,
                b.attn.out,
                b.cross.query,
                b.cross.out,
                b.mlp1,
                b.mlp2,
            )
        ]
        self.extra_nbytes = sum(h.nbytes for h in halves if h is not None)

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
        # a step's keys of row b start after its left padding: [pad[b], end) for each of its heads
        starts = None if pad is None else np.repeat(pad.astype(np.int64), self.cache_shape[0])
        for block, kv, xkv in zip(self.blocks, cache, cross, strict=True):
            x = block(x, kv, offset, mask, xkv, audio_rows, starts)
        return self.ln(x)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Hidden ``[..., D]`` → logits ``[..., V]`` through the tied embedding: its exact float16 copy for
        the few rows of a step (half the bytes of this memory-bound product), else ``gemv``/``gemm`` with
        the embedding transposed in BLAS, no copy (`HostLinear`)."""
        return self.output(x)


class CPUSession:
    """`Session` on `CPUDecoder`: numpy caches, logits handed back as MLX arrays."""

    def __init__(
        self, decoder: CPUDecoder, cross_kv: list[KV], n_vocab: int, n_text_ctx: int, sample_len: int
    ):
        self.decoder = decoder
        self.host_logits = True
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
        at_sot = [n + i for n, i in zip(pads, sot_index, strict=True)]
        logits = self.decoder.project(
            np.concatenate([x[:, -1], x[np.arange(b), at_sot]])
        )  # only the two rows used
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


def unsupported(model: Whisper) -> str | None:
    """Why the numpy arithmetic cannot run `model` (it covers float32 with plain layers), or None."""
    if model.dtype != mx.float32:
        return f"{model.dtype} weights (the CPU backend computes in float32)"
    quantized = (nn.QuantizedLinear, nn.QuantizedEmbedding)
    if any(isinstance(m, quantized) for _, m in model.named_modules()):
        return "quantized layers (the CPU backend covers plain float32 layers)"
    return None


class CPUBackend:
    """float32 Whisper on the CPU: `CPUEncoder` for the windows, `CPUSession` for the decode steps, the
    MLX model for word alignment (once per window). Named by what its decode step runs on:
    ``cpu-f16-kernels`` (the C kernels over exact float16 copies of float16-exact weights),
    ``cpu-kernels`` (the C kernels over float32 weights) or ``cpu-numpy`` (no C kernels built)."""

    compiled = False
    max_batch = 4  # the CPU is compute-bound: wider batches only delay the first results

    def __init__(self, model: Whisper, tokenizer: WhisperTokenizer, *, half: bool, reason: str) -> None:
        why_not = unsupported(model)
        if why_not is not None:
            raise ValueError(f"the CPU backend cannot run this model: {why_not}")
        self.model = model
        self.config = model.config
        self.tokenizer = tokenizer
        self.encoder = CPUEncoder(model)
        self.decoder = CPUDecoder(model, half=half)
        # The step's float16 copies, made now so that the load counts them (the rest are views).
        self.host_nbytes = self.decoder.extra_nbytes
        if not kernels.available():
            self.name = "cpu-numpy"
        else:
            self.name = "cpu-f16-kernels" if self.host_nbytes else "cpu-kernels"
        self.reason = reason

    def encode(self, mel: mx.array) -> list[KV]:
        """[B, 2·t, n_mels] → per-layer cross-attention K/V ``[B, n_text_head, t, head_dim]`` (t = n_audio_ctx
        for a whole window), head-major: each decode step reads every head's keys as one contiguous block."""
        c = self.config
        b, t, d = mel.shape[0], mel.shape[1] // 2, c.n_text_state
        heads = (b, t, c.n_text_head, d // c.n_text_head)

        def head_major(a: np.ndarray) -> mx.array:  # `mx.array` keeps numpy's strides: copy first
            return mx.array(np.ascontiguousarray(a.reshape(heads).transpose(0, 2, 1, 3)))

        kv = [(head_major(k), head_major(v)) for k, v in self.encoder(np.asarray(mel))]
        mx.eval(kv)
        return kv

    def session(self, features: list[KV]) -> Session:
        return CPUSession(self.decoder, features, self.config.n_vocab, self.config.n_text_ctx, SAMPLE_LEN)

    def alignment(
        self, features: list[KV], tokens: Sequence[int], n_text: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return alignment(self.model, features, tokens, n_text, self.tokenizer.eot)
