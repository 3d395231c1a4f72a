"""Whisper's audio encoder in numpy, for float32 on the CPU.

MLX's CPU device runs each encoder operation as its own graph evaluation on one stream thread, with
OpenBLAS threads that keep spinning between products while numpy's kernels (softmax, GELU) want the same
cores. Here one pool of workers (`models.cpu.ops.pool`, single-threaded BLAS each) does everything,
in three phases per layer: row chunks (layer norm and the q/k/v products), (window, head) pairs
(attention), row chunks again (output projection, MLP with GELU, residuals). Everything a row chunk
touches stays in cache between its products, and nothing spins. On tiny.en (2 cores) a 30-s window
takes ~0.34 s instead of ~0.42 s through MLX (`docs/benchmarks.md`).

It also computes the decoder's cross-attention keys and values (`cross_kv`), for every decoder layer in
the same row phase. The arithmetic is `Whisper.embed_audio` + `Whisper.cross_kv`, on zero-copy views of
the same weights; `tests/models/whisper/test_cpu_backend.py` holds the two to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.cpu.ops import HostLinear, HostNorm, attend, gelu_into, host_view, parallel_rows
from models.whisper.model import ResidualAttentionBlock, Whisper

_CHUNK = 256  # rows per task (tiny.en, 2 cores: 64 → 0.38 s/window, 128 → 0.36, 256 → 0.34, 512 → 0.39)


@dataclass(frozen=True)
class _Conv:
    """A kernel-3, padding-1 ``nn.Conv1d`` as row chunks of (im2col ``[n, 3·C]``) @ ``W[out, 3·C]ᵀ``."""

    weight: np.ndarray  # MLX layout [out, kernel, in] viewed as [out, kernel·in]
    bias: np.ndarray
    stride: int

    @classmethod
    def of(cls, conv: object, stride: int) -> _Conv:
        w = host_view(conv.weight)  # type: ignore[attr-defined]
        return cls(w.reshape(w.shape[0], -1), host_view(conv.bias), stride)  # type: ignore[attr-defined]

    def rows(self, padded: np.ndarray, rows: slice, out: np.ndarray) -> None:
        """Output rows ``rows`` of one window from its input padded by one zero row at each end."""
        s = self.stride
        cols = np.concatenate(
            [padded[rows.start * s + k : (rows.stop - 1) * s + k + 1 : s] for k in range(3)], axis=1
        )
        np.matmul(cols, self.weight.T, out=out)
        out += self.bias
        gelu_into(out)


@dataclass(frozen=True)
class _Block:
    attn_ln: HostNorm
    query: HostLinear
    key: HostLinear
    value: HostLinear
    out: HostLinear
    mlp_ln: HostNorm
    mlp1: HostLinear
    mlp2: HostLinear

    @classmethod
    def of(cls, b: ResidualAttentionBlock) -> _Block:
        lin = HostLinear.of
        a = b.attn
        return cls(
            HostNorm.of(b.attn_ln),
            lin(a.query),
            lin(a.key),
            lin(a.value),
            lin(a.out),
            HostNorm.of(b.mlp_ln),
            lin(b.mlp1),
            lin(b.mlp2),
        )


class CPUEncoder:
    """`Whisper.embed_audio` followed by `Whisper.cross_kv`, in numpy over the model's float32 weights."""

    def __init__(self, model: Whisper) -> None:
        enc = model.encoder
        self.conv1 = _Conv.of(enc.conv1, stride=1)
        self.conv2 = _Conv.of(enc.conv2, stride=2)
        self.positions = host_view(enc.positional_embedding)
        self.blocks = [_Block.of(b) for b in enc.blocks]
        self.ln_post = HostNorm.of(enc.ln_post)
        self.cross = [
            (HostLinear.of(b.cross_attn.key), HostLinear.of(b.cross_attn.value)) for b in model.decoder.blocks
        ]
        cfg = model.config
        self.n_head = cfg.n_audio_head
        self.scale = float((cfg.n_audio_state // cfg.n_audio_head) ** -0.5)
        self.n_ctx, self.width = cfg.n_audio_ctx, cfg.n_audio_state

    def __call__(self, mel: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Log-mel ``[B, 2·n_audio_ctx, n_mels]`` → per decoder layer, cross-attention ``(k, v)`` of the
        audio features, each ``[B, n_audio_ctx, D]`` (heads are ``D``'s ``n_head`` consecutive slices)."""
        b, frames, _ = mel.shape
        t, d = frames // 2, self.width
        if frames % 2 or not 0 < t <= self.n_ctx:
            raise ValueError(f"mel must have an even number of frames ≤ {2 * self.n_ctx}, got {frames}")
        x = self._front(np.ascontiguousarray(mel, dtype=np.float32)).reshape(b * t, d)
        q, k, v, o = (np.empty((b * t, d), np.float32) for _ in range(4))
        heads = (b, t, self.n_head, d // self.n_head)
        for blk in self.blocks:

            def qkv(rows: slice, blk: _Block = blk) -> None:
                h = blk.attn_ln(x[rows])
                blk.query(h, out=q[rows])
                blk.key(h, out=k[rows])
                blk.value(h, out=v[rows])

            def mlp(rows: slice, blk: _Block = blk) -> None:
                x[rows] += blk.out(o[rows])
                h = blk.mlp1(blk.mlp_ln(x[rows]))
                gelu_into(h)
                x[rows] += blk.mlp2(h)

            parallel_rows(qkv, b * t, _CHUNK)
            qh, kh, vh = (a.reshape(heads).transpose(0, 2, 1, 3) for a in (q, k, v))
            attend(qh, kh, vh, self.scale, o.reshape(heads))
            parallel_rows(mlp, b * t, _CHUNK)

        out = [(np.empty((b, t, d), np.float32), np.empty((b, t, d), np.float32)) for _ in self.cross]

        def cross_kv(rows: slice) -> None:
            f = self.ln_post(x[rows])
            for (key, value), (ko, vo) in zip(self.cross, out, strict=True):
                key(f, out=ko.reshape(b * t, d)[rows])
                value(f, out=vo.reshape(b * t, d)[rows])

        parallel_rows(cross_kv, b * t, _CHUNK)
        return out

    def _front(self, mel: np.ndarray) -> np.ndarray:
        """The two GELU convolutions plus the position table: ``[B, 2T, n_mels]`` → ``[B, T, D]``."""
        b, frames, _ = mel.shape
        t, d = frames // 2, self.width
        pad1 = np.pad(mel, ((0, 0), (1, 1), (0, 0)))
        h = np.empty((b, frames + 2, d), np.float32)  # conv1's output, already padded for conv2
        h[:, 0], h[:, -1] = 0.0, 0.0
        x = np.empty((b, t, d), np.float32)
        for i in range(b):

            def conv1(r: slice, i: int = i) -> None:
                self.conv1.rows(pad1[i], r, h[i, 1 + r.start : 1 + r.stop])

            def conv2(r: slice, i: int = i) -> None:
                self.conv2.rows(h[i], r, x[i, r])

            parallel_rows(conv1, frames, 256)
            parallel_rows(conv2, t, _CHUNK)
        x += self.positions[:t]
        return x
