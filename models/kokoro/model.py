"""Kokoro-82M (hexgrad, StyleTTS 2 + iSTFTNet) in MLX: phoneme ids and a 256-d voice style → 24 kHz audio.

The pipeline is `kokoro.model.KModel.forward_with_tokens`: PL-BERT (ALBERT) → duration encoder → durations;
each token's features repeated for its frames → F0 and energy curves; the acoustic text encoder, aligned
the same way, → the decoder. The style's first 128 values condition the decoder, the last 128 the prosody.

Rows of a batch are independent (per-row lengths and masks in the text and prosody stages), so a request's
audio does not depend on what it is batched with. Where MLX runs the generator (the GPU) the decoder takes
a batch in one masked pass (`Decoder.batch`); with the numpy generator (the CPU) it runs one row at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from models.kokoro.albert import Albert
from models.kokoro.config import KokoroConfig
from models.kokoro.decoder import Decoder
from models.kokoro.prosody import ProsodyPredictor, TextEncoder
from models.layers.lstm import length_mask

HOP = 600  # output samples per frame of the text-aligned features (2 · 10 · 6 · 5)


@dataclass
class KokoroOutput:
    audio: list[np.ndarray]  # float32 (n,) per row
    durations: list[np.ndarray]  # int frames per input token, per row


class Kokoro(nn.Module):
    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        self.config = config
        p = config.plbert
        self.bert = Albert(
            vocab=config.n_token,
            embed=int(p.get("embedding_size", 128)),
            dim=p["hidden_size"],
            heads=p["num_attention_heads"],
            ffn=p["intermediate_size"],
            layers=p["num_hidden_layers"],
            max_positions=p["max_position_embeddings"],
        )
        self.bert_encoder = nn.Linear(p["hidden_size"], config.hidden_dim)
        self.predictor = ProsodyPredictor(config.style_dim, config.hidden_dim, config.n_layer, config.max_dur)
        self.text_encoder = TextEncoder(
            config.hidden_dim, config.text_encoder_kernel_size, config.n_layer, config.n_token
        )
        self.decoder = Decoder(config)
        # the token and frame axes padded up to multiples of these (1: none; set at load by
        # `family.choose_backend`), so a GPU sees a few shapes, not one per sentence length (each new shape
        # costs MLX new convolution plans); padded rows take the masked batch path, same audio
        self.token_bucket = 1
        self.frame_bucket = 1

    def encode(
        self, ids: mx.array, lengths: mx.array, style: mx.array, speed: mx.array
    ) -> tuple[mx.array, mx.array, mx.array]:
        """ids (B, T) → (frames per token (B, T) before rounding, prosody features d, text features t_en)."""
        mask = length_mask(lengths, ids.shape[1])
        s = style[:, self.config.style_dim :]
        d_en = self.bert_encoder(self.bert(ids, mask))
        mask3 = mask[..., None].astype(mx.float32)
        d = self.predictor.text_encoder(d_en, s, lengths, mask3)
        frames = self.predictor.durations(d, lengths, speed)
        t_en = self.text_encoder(ids, lengths, mask3)
        return frames, d, t_en

    def __call__(
        self,
        ids: mx.array,
        lengths: mx.array,
        style: mx.array,
        speed: mx.array,
        *,
        noise_scale: float = 1.0,
        seeds: list[int] | None = None,
    ) -> KokoroOutput:
        """ids (B, T) int32 (rows padded past `lengths`), style (B, 256), speed (B,) → audio per row.

        `noise_scale` 0 is deterministic; otherwise row b's noise comes from `seeds[b]` (random if None)."""
        frames, d, t_en = self.encode(ids, lengths, style, speed)
        mx.eval(frames, d, t_en)
        n_tokens = np.array(lengths).tolist()
        rounded = np.maximum(np.rint(np.array(frames, np.float32)), 1).astype(np.int64)
        durations = [rounded[b, : n_tokens[b]] for b in range(len(n_tokens))]
        n_frames = [int(x.sum()) for x in durations]
        width = -(-max(n_frames) // self.frame_bucket) * self.frame_bucket
        index = np.zeros((len(n_tokens), width), np.int32)
        for b, dur in enumerate(durations):
            index[b, : n_frames[b]] = np.repeat(np.arange(len(dur)), dur)
        idx = mx.array(index)[..., None]
        frame_lengths = mx.array(n_frames)
        fmask = length_mask(frame_lengths, index.shape[1])[..., None].astype(mx.float32)
        en = mx.take_along_axis(d, idx, axis=1) * fmask
        asr = mx.take_along_axis(t_en, idx, axis=1) * fmask
        f0, n = self.predictor.f0_n(en, style[:, self.config.style_dim :], frame_lengths, fmask)
        keys = [
            None if not noise_scale or seeds is None else mx.random.key(seeds[b])
            for b in range(len(n_frames))
        ]
        padded = len(n_frames) > 1 or width > n_frames[0]
        if padded and self.decoder.cpu_generator is None:  # one masked pass for the batch
            rows = self.decoder.batch(
                asr, f0, n, style[:, : self.config.style_dim], n_frames, noise_scale=noise_scale, keys=keys
            )
            return KokoroOutput(audio=[np.array(r, np.float32) for r in rows], durations=durations)
        audio = []
        for b, nf in enumerate(n_frames):
            wav = self.decoder(
                asr[b : b + 1, :nf],
                f0[b : b + 1, : 2 * nf],
                n[b : b + 1, : 2 * nf],
                style[b : b + 1, : self.config.style_dim],
                noise_scale=noise_scale,
                key=keys[b],
            )
            audio.append(np.array(wav[0], np.float32))
        return KokoroOutput(audio=audio, durations=durations)
