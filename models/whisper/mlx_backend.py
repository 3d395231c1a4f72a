"""The MLX backend: Whisper's encoder and decoder as the MLX model (`model.py`) computes them, on whatever
device MLX runs (Metal, CUDA, or the CPU when asked), and the protocols every backend implements.

A backend is chosen once per loaded model (`models.whisper.family.choose_backend`); the long-form loop
(`transcribe.py`) and the decoding strategies (`decoding.py`) only ever see these protocols:

- `Backend.encode(mel)` → per-layer cross-attention keys/values of a batch of windows (opaque to the loop);
- `Backend.session(features)` → a `Session`: decoder rows sharing one forward pass per step;
- `Backend.alignment(...)` → cross-attention scores for word timestamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import mlx.core as mx
import numpy as np

from models.whisper.config import WhisperConfig
from models.whisper.constants import SAMPLE_LEN
from models.whisper.model import KV, Whisper
from models.whisper.tokenizer import WhisperTokenizer


class Session(Protocol):
    """A batch of decoder rows sharing one forward pass per step. Rows may come from different requests:
    each carries its own prompt, so the batch is left-padded."""

    n_vocab: int
    n_text_ctx: int
    host_logits: bool  # logit rules and token choice in numpy on the host (else MLX masks on the device)

    def prefill(
        self, prompts: Sequence[Sequence[int]], sot_index: Sequence[int]
    ) -> tuple[mx.array, mx.array]:
        """Run each row's initial tokens. Returns (logits at each row's last position [B, V],
        logits at each row's <|startoftranscript|> position [B, V]), float32."""
        ...

    def step(self, tokens: mx.array) -> mx.array:
        """Append one token per row [B]; return the next-token logits [B, V] float32."""
        ...

    def reorder(self, index: mx.array) -> None:
        """Keep rows `index` [B'] (beam search): caches and the batch are gathered along rows."""
        ...


class Backend(Protocol):
    """How a loaded Whisper computes: named, with the reason it was chosen (load log, `GET /v1/models`)."""

    name: str
    reason: str
    config: WhisperConfig
    tokenizer: WhisperTokenizer
    compiled: bool  # kernels are compiled on first use: warm up at load
    max_batch: int  # windows of concurrent requests decoded together
    host_nbytes: int  # host memory held beside the MLX weights (counted in the model's size)

    def encode(self, mel: mx.array) -> Any:
        """[B, 3000, n_mels] → the audio features the sessions attend to (one entry per window)."""
        ...

    def session(self, features: Any) -> Session: ...

    def alignment(
        self, features: Any, tokens: Sequence[int], n_text: int
    ) -> tuple[np.ndarray, np.ndarray]: ...


def left_pad(prompts: Sequence[Sequence[int]], filler: int) -> tuple[list[list[int]], list[int]]:
    """Prompts of different lengths as rows of one batch: each left-padded with ``filler`` (any id: the
    session masks padded positions out). Returns (rows, pad per row)."""
    length = max(len(p) for p in prompts)
    pads = [length - len(p) for p in prompts]
    return [[filler] * n + list(p) for n, p in zip(pads, prompts, strict=True)], pads


class MLXSession:
    """`Session` on the MLX model: per-layer KV caches as MLX arrays, one (optionally compiled) step."""

    def __init__(
        self, model: Whisper, cross_kv: list[KV], step_fn: Any, *, fixed_capacity: bool, host_logits: bool
    ) -> None:
        self.model = model
        self.cross_kv = cross_kv
        self.audio_of_row = np.arange(cross_kv[0][0].shape[0])  # the audio whose keys each row holds
        self.step_fn = step_fn
        # A compiled step retraces for every new cache shape: keep one capacity; eager, a shorter cache is
        # cheaper to attend over.
        self.fixed_capacity = fixed_capacity
        self.host_logits = host_logits
        self.n_vocab = model.config.n_vocab
        self.n_text_ctx = model.config.n_text_ctx
        self.cache: list[KV] = []
        self.offset = 0
        self.pad: mx.array | None = None

    def prefill(
        self, prompts: Sequence[Sequence[int]], sot_index: Sequence[int]
    ) -> tuple[mx.array, mx.array]:
        rows, pads = left_pad(prompts, self.n_vocab - 1)
        tokens = mx.array(rows)
        self.pad = mx.array(pads) if any(pads) else None
        b, length = tokens.shape
        capacity = self.n_text_ctx if self.fixed_capacity else min(self.n_text_ctx, length + SAMPLE_LEN)
        self.cache = self.model.init_cache(b, capacity)
        logits, self.cache, _ = self.model.decode(tokens, self.cross_kv, self.cache, 0, pad=self.pad)
        self.offset = length
        at_sot = logits[mx.arange(b), mx.array([n + i for n, i in zip(pads, sot_index, strict=True)])]
        return logits[:, -1], at_sot

    def step(self, tokens: mx.array) -> mx.array:
        cache, self.cache = self.cache, []  # drop our reference so the update can reuse the buffers
        offset = mx.array(self.offset, dtype=mx.int32)
        logits, self.cache = self.step_fn(
            tokens[:, None].astype(mx.int32), self.cross_kv, cache, offset, self.pad
        )
        del cache
        self.offset += 1
        return logits[:, -1]

    def reorder(self, index: mx.array) -> None:
        self.cache = [(k[index], v[index]) for k, v in self.cache]
        # Beam search first expands each audio to its beams, then only reorders rows within an audio:
        # the audio keys/values (1500 frames per row and layer) are gathered only when a row's audio changes.
        audio = self.audio_of_row[np.asarray(index, dtype=np.int64)]
        if not np.array_equal(audio, self.audio_of_row):
            self.cross_kv = [(k[index], v[index]) for k, v in self.cross_kv]
            self.audio_of_row = audio
        if self.pad is not None:
            self.pad = self.pad[index]


def alignment(
    model: Whisper, features: list[KV], tokens: Sequence[int], n_text: int, eot: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-attention scores of the alignment heads and the text tokens' probabilities for
    `tokens` = [*sot_sequence, <|notimestamps|>, *text (n_text), <|endoftext|>] (one row), through the MLX
    model (every backend: word timing runs once per window, not per step)."""
    n_sot = len(tokens) - n_text - 2
    cache = model.init_cache(1, len(tokens))
    logits, _, qk = model.decode(mx.array([list(tokens)]), features, cache, 0, return_qk=True)
    assert qk is not None
    text = mx.array(list(tokens[n_sot + 1 : n_sot + 1 + n_text]))
    rows = logits[0, n_sot : n_sot + n_text, :eot]
    probs = mx.softmax(rows, axis=-1)[mx.arange(n_text), text]
    scores = qk[0, :, n_sot : len(tokens) - 1]  # rows that predict each text token and the EOT
    return np.array(scores), np.array(probs)


class MLXBackend:
    """The MLX model end to end. ``compiled``: the decode step under ``mx.compile`` with a fixed-capacity
    cache (a GPU, where launch overhead dominates); ``host_logits``: token choice in numpy (MLX on the
    CPU, where its scalar elementwise passes over the vocabulary are slow)."""

    host_nbytes = 0

    def __init__(
        self,
        model: Whisper,
        tokenizer: WhisperTokenizer,
        *,
        compiled: bool,
        host_logits: bool,
        max_batch: int,
        reason: str,
    ) -> None:
        self.name = "mlx-compiled" if compiled else "mlx"
        self.reason = reason
        self.model = model
        self.config = model.config
        self.tokenizer = tokenizer
        self.compiled = compiled
        self.host_logits = host_logits
        self.max_batch = max_batch
        model.decoder.projection_copy = True  # the logits read a row-contiguous copy of the embedding
        model.decoder.refresh_projection()
        self.step_fn = model.make_step(compile=compiled)

    def encode(self, mel: mx.array) -> list[KV]:
        """[B, 3000, n_mels] → per-layer cross-attention K/V of the audio features (computed once per
        window), each ``[B, n_text_head, n_audio_ctx, head_dim]``."""
        kv = self.model.cross_kv(self.model.embed_audio(mel))
        mx.eval(kv)
        return kv

    def session(self, features: list[KV]) -> Session:
        return MLXSession(
            self.model,
            features,
            self.step_fn,
            fixed_capacity=self.compiled,
            host_logits=self.host_logits,
        )

    def alignment(
        self, features: list[KV], tokens: Sequence[int], n_text: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return alignment(self.model, features, tokens, n_text, self.tokenizer.eot)
