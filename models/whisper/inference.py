"""The model side of decoding: a `Backend` over the MLX `Whisper` module and its tokenizer, and a
`WhisperSession` that owns the self-attention KV caches of a batch of decoder rows."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

import mlx.core as mx
import numpy as np

from models.layers import cpu
from models.whisper.audio import N_SAMPLES, log_mel_spectrogram
from models.whisper.decoding import Session, SpecialTokens, left_pad
from models.whisper.host import HostDecoder, HostSession
from models.whisper.host_encoder import HostEncoder
from models.whisper.model import KV, Whisper
from models.whisper.tokenizer import LANGUAGES, WhisperTokenizer

SAMPLE_LEN = 224  # tokens a window may produce (openai: n_text_ctx // 2)


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: the printable stand-in character → the raw byte."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


class LoopTokenizer:
    """The tokenizer API the long-form loop uses, over `WhisperTokenizer`."""

    def __init__(self, tok: WhisperTokenizer) -> None:
        self.tok = tok
        self.eot, self.sot, self.sot_prev = tok.eot, tok.sot, tok.sot_prev
        self.no_timestamps, self.timestamp_begin = tok.no_timestamps, tok.timestamp_begin
        self.no_speech: int | None = tok.no_speech

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tok.decode([t for t in tokens if t < self.eot])

    @lru_cache(maxsize=256)  # noqa: B019  (one tokenizer per loaded model)
    def _for(self, language: str | None, task: str) -> WhisperTokenizer:
        return self.tok.with_options(language=language, task=task)

    def sot_sequence(self, language: str | None, task: str) -> list[int]:
        return list(self._for(language, task).sot_sequence)

    def split_to_word_tokens(
        self, tokens: Sequence[int], language: str | None = None
    ) -> tuple[list[str], list[list[int]]]:
        return self._for(language, "transcribe").split_to_word_tokens(tokens)

    def token_bytes(self, token: int) -> bytes:
        piece = self.tok._tok.id_to_token(token) or ""
        table = _byte_decoder()
        return bytes(table[c] for c in piece if c in table)


class WhisperSession:
    """Decoder rows sharing one forward pass per step. Prompts of different lengths are left-padded
    (`Whisper.decode(pad=...)` hides the filler), so rows from different requests can share a batch."""

    def __init__(self, model: Whisper, cross_kv: list[KV], step_fn: Any = None) -> None:
        self.model = model
        self.cross_kv = cross_kv
        self.audio_of_row = np.arange(cross_kv[0][0].shape[0])  # the audio whose keys each row holds
        self.step_fn = step_fn or model.make_step(compile=False)
        # A compiled step retraces for every new cache shape: keep one capacity on the GPU; on the CPU
        # (eager) a shorter cache is cheaper to attend over.
        self.fixed_capacity = mx.default_device() != mx.cpu
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


class WhisperBackend:
    """What `transcribe()` needs from a loaded Whisper: mel, encoder, sessions, language id, alignment."""

    def __init__(self, model: Whisper, tokenizer: WhisperTokenizer) -> None:
        self.model = model
        cfg = model.config
        self.config = cfg
        self.multilingual = cfg.is_multilingual
        self.n_text_ctx = cfg.n_text_ctx
        self.tokenizer = LoopTokenizer(tokenizer)
        self.base_tokenizer = tokenizer
        codes = tokenizer.all_language_codes if self.multilingual else ("en",)
        self.languages = {c: LANGUAGES[c] for c in codes}
        t = tokenizer
        suppress = {*t.non_speech_tokens, t.transcribe, t.translate, t.sot, t.sot_prev, t.sot_lm}
        if t.no_speech is not None:
            suppress.add(t.no_speech)
        self.special = SpecialTokens(
            eot=t.eot,
            sot=t.sot,
            sot_prev=t.sot_prev,
            no_timestamps=t.no_timestamps,
            timestamp_begin=t.timestamp_begin,
            no_speech=t.no_speech,
            blank=tuple(t.encode(" ")),
            suppress=tuple(sorted(suppress)),
        )
        self._lang_tokens = mx.array(list(t.all_language_tokens)) if self.multilingual else None
        self.step_fn = model.make_step()  # compiled on a GPU
        self._host: tuple[HostEncoder, HostDecoder] | None = None

    def _host_model(self) -> tuple[HostEncoder, HostDecoder] | None:
        """The numpy encoder and decoder for float32 on the CPU (made on first use), else None (GPU, other
        dtypes, quantized layers)."""
        if not cpu.on_cpu() or not HostDecoder.supports(self.model):
            return None
        if self._host is None:
            self._host = (HostEncoder(self.model), HostDecoder(self.model))
        return self._host

    def prepare_host(self) -> int:
        """Make the CPU path (where it applies) now rather than on first use; returns the bytes it holds
        beyond the MLX weights (the step's float16 copies: it views the rest)."""
        host = self._host_model()
        return 0 if host is None else host[1].extra_nbytes

    def log_mel(self, audio: np.ndarray) -> mx.array:
        """Mono 16 kHz float32 → [frames + 3000, n_mels] (30 s of zeros appended, as openai does)."""
        mel = log_mel_spectrogram(mx.array(audio), self.config.n_mels, padding=N_SAMPLES)
        mx.eval(mel)
        return mel

    def encode(self, mel: mx.array) -> list[KV]:
        """[B, 3000, n_mels] → per-layer cross-attention K/V of the audio features (computed once), each
        ``[B, n_text_head, n_audio_ctx, head_dim]``."""
        host = self._host_model()
        if host is None:
            kv = self.model.cross_kv(self.model.embed_audio(mel))
        else:  # head-major copies: each decode step reads every head's keys as one contiguous block
            b, t, d = mel.shape[0], self.config.n_audio_ctx, self.config.n_text_state
            heads = (b, t, self.config.n_text_head, d // self.config.n_text_head)

            def head_major(a: np.ndarray) -> mx.array:  # `mx.array` keeps numpy's strides: copy first
                return mx.array(np.ascontiguousarray(a.reshape(heads).transpose(0, 2, 1, 3)))

            kv = [(head_major(k), head_major(v)) for k, v in host[0](np.asarray(mel))]
        mx.eval(kv)
        return kv

    def session(self, features: list[KV]) -> Session:
        host = self._host_model()
        if host is not None:
            return HostSession(host[1], features, self.config.n_vocab, self.n_text_ctx, SAMPLE_LEN)
        return WhisperSession(self.model, features, self.step_fn)

    def detect_language(self, features: list[KV]) -> list[dict[str, float]]:
        assert self._lang_tokens is not None
        b = features[0][0].shape[0]
        session = self.session(features)
        logits, _ = session.prefill([[self.special.sot]] * b, [0] * b)
        probs = mx.softmax(logits[:, self._lang_tokens], axis=-1).tolist()
        codes = list(self.languages)
        return [dict(zip(codes, row, strict=True)) for row in probs]

    def alignment(
        self, features: list[KV], tokens: Sequence[int], n_text: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cross-attention scores of the alignment heads and the text tokens' probabilities for
        `tokens` = [*sot_sequence, <|notimestamps|>, *text (n_text), <|endoftext|>] (one row)."""
        n_sot = len(tokens) - n_text - 2
        cache = self.model.init_cache(1, len(tokens))
        logits, _, qk = self.model.decode(mx.array([list(tokens)]), features, cache, 0, return_qk=True)
        assert qk is not None
        text = mx.array(list(tokens[n_sot + 1 : n_sot + 1 + n_text]))
        rows = logits[0, n_sot : n_sot + n_text, : self.special.eot]
        probs = mx.softmax(rows, axis=-1)[mx.arange(n_text), text]
        scores = qk[0, :, n_sot : len(tokens) - 1]  # rows that predict each text token and the EOT
        return np.array(scores), np.array(probs)
