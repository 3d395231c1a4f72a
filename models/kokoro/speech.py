"""Kokoro as `models.tasks.Synthesizer`: text → Kokoro phonemes per sentence in the voice's language
(`g2p.py`) → token ids → the model, with the voice's style row for each sentence's length, through the
shared sentence loop (`models.speech`).

Rows carry their own style and speed, so one batch may mix voices, speeds and requests.
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from models.errors import InvalidRequest
from models.kokoro.g2p import language_of, sentences
from models.kokoro.model import HOP, Kokoro
from models.speech import (
    OPENAI_VOICES,
    nothing_to_speak,
    sentence_stream,
    split_first_clause,
    unknown_voice,
)
from models.tasks import SpeechOptions, Voice

log = logging.getLogger(__name__)

# OpenAI's names → Kokoro v1.0 voices of a similar character (used when the voice is loaded).
OPENAI_TO_KOKORO = {
    "alloy": "af_alloy", "ash": "am_adam", "ballad": "bm_george", "coral": "af_heart", "echo": "am_echo",
    "fable": "bm_fable", "onyx": "am_onyx", "nova": "af_nova", "sage": "af_sarah", "shimmer": "af_bella",
    "verse": "am_michael", "marin": "af_river", "cedar": "am_liam",
}  # fmt: skip
GPU_BATCH, CPU_BATCH = 8, 1
PAD = 0  # token id of the boundary pad, before and after every utterance


@dataclass(frozen=True)
class Row:
    ids: tuple[int, ...]  # with the boundary pads
    voice: str
    speed: float


class KokoroSynthesizer:
    sample_rate = 24000

    def __init__(
        self,
        model: Kokoro,
        styles: dict[str, np.ndarray],
        name: str,
        *,
        backend: str = "mlx",
        reason: str = "",
    ) -> None:
        if not styles:
            raise InvalidRequest(f"{name}: no voices (set options.voices_dir to a directory of voice packs)")
        self.model = model
        self.name = name
        self.vocab = model.config.vocab
        self.max_tokens = int(model.config.plbert["max_position_embeddings"]) - 2  # without the two pads
        self.styles = {
            k: np.asarray(v, np.float32).reshape(v.shape[0], -1) for k, v in sorted(styles.items())
        }
        gpu = mx.default_device() == mx.gpu
        self.max_batch = GPU_BATCH if gpu else CPU_BATCH
        self.details = {
            "backend": backend,
            "device": str(mx.default_device()),
            "sample_rate": self.sample_rate,
            "voices": len(self.styles),
            "backend_reason": f"{reason or 'the MLX model'}; sentences {self.max_batch} at a time",
        }
        self._voices = []
        for v in self.styles:
            try:
                bcp47 = language_of(v)[1]
            except InvalidRequest:
                bcp47 = None
            gender = {"f": "female", "m": "male"}.get(v[1:2])
            self._voices.append(Voice(id=v, name=v, language=bcp47, gender=gender))  # type: ignore[arg-type]
        self._ids = functools.lru_cache(maxsize=16)(self._read_ids)

    def voices(self) -> list[Voice]:
        return list(self._voices)

    def _voice(self, voice: str) -> str:
        if voice in self.styles:
            language_of(voice)  # refuses a language this server cannot read
            return voice
        name = voice.lower()
        if name in OPENAI_VOICES:
            mapped = OPENAI_TO_KOKORO[name]
            if mapped in self.styles:
                return mapped
            ids = list(self.styles)
            return ids[OPENAI_VOICES.index(name) % len(ids)]
        raise unknown_voice(voice, self.name, list(self.styles))

    def _read_ids(self, text: str, voice: str) -> tuple[tuple[int, ...], ...]:
        rows = []
        for phonemes in split_first_clause(sentences(text, voice)):
            ids = [self.vocab[p] for p in phonemes if p in self.vocab]
            while ids:  # longer than the context: cut at the last word boundary that fits
                cut = len(ids)
                if cut > self.max_tokens:
                    space = self.vocab[" "]
                    cut = max(
                        (i for i in range(1, self.max_tokens + 1) if ids[i - 1] == space),
                        default=self.max_tokens,
                    )
                rows.append((PAD, *ids[:cut], PAD))
                ids = ids[cut:]
        if not rows:
            raise nothing_to_speak()
        return tuple(rows)

    def check(self, text: str, options: SpeechOptions) -> SpeechOptions:
        voice = self._voice(options.voice)
        self._ids(text, voice)
        if options.instructions:
            log.info("%s: 'instructions' ignored (Kokoro voices are fixed style vectors)", self.name)
        return options

    def synthesize(self, rows: list[Row], *, noise_scale: float = 1.0) -> list[np.ndarray]:
        """One batch of rows → audio per row. The noise of a row is seeded by its ids and voice: the same
        sentence gives the same audio, alone or batched."""
        lengths = [len(r.ids) for r in rows]
        step = self.model.token_bucket
        ids = np.zeros((len(rows), -(-max(lengths) // step) * step), np.int32)  # masked past each row
        for i, r in enumerate(rows):
            ids[i, : len(r.ids)] = r.ids
        # the style for an utterance of n phonemes is row n - 1 of the pack (n without the pads)
        style = np.stack(
            [self.styles[r.voice][min(len(r.ids) - 2, len(self.styles[r.voice])) - 1] for r in rows]
        )
        seeds = [zlib.crc32(np.asarray(r.ids, np.int32).tobytes() + r.voice.encode()) for r in rows]
        out = self.model(
            mx.array(ids),
            mx.array(np.array(lengths, np.int32)),
            mx.array(style),
            mx.array(np.array([r.speed for r in rows], np.float32)),
            noise_scale=noise_scale,
            seeds=seeds,
        )
        return out.audio

    def synthesize_stream(self, text: str, options: SpeechOptions) -> Generator[Any, Any, None]:
        voice = self._voice(options.voice)
        rows = [Row(ids, voice, options.speed) for ids in self._ids(text, voice)]
        yield from sentence_stream(
            ("kokoro", id(self)),
            rows,
            self.synthesize,
            self.max_batch,
            hop=HOP,
            input_tokens=sum(len(r.ids) for r in rows),
        )
