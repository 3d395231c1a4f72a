"""A Piper voice as `models.tasks.Synthesizer`: text → normalised sentences (`models.text`) → espeak-ng IPA
in the voice's language → phoneme ids → the VITS model, through the shared sentence loop (`models.speech`)."""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Generator
from typing import Any

import mlx.core as mx
import numpy as np

from models.errors import InvalidRequest
from models.piper.family import PiperVoice
from models.speech import (
    OPENAI_VOICES,
    nothing_to_speak,
    sentence_stream,
    split_first_clause,
    unknown_voice,
)
from models.tasks import SpeechOptions, Voice
from models.text.normalize import normalize_text
from models.text.phonemize import phonemize
from models.text.sentences import split_sentences

log = logging.getLogger(__name__)

HOP = 256  # audio samples per decoder frame (the usage's output tokens)
# Sentences synthesized together (of one request or several): on a GPU a batch fills the device; on the
# CPU, compute-bound, padding to the longest sentence only costs (bench/speech_rtf.py, this 2-core CPU:
# 1.9x real time for a 2-minute text as one batch, 5.1x one sentence at a time).
GPU_BATCH, CPU_BATCH = 8, 1


class PiperSynthesizer:
    def __init__(self, voice: PiperVoice, name: str) -> None:
        self.voice = voice
        self.name = name
        self.sample_rate = voice.sample_rate
        gpu = mx.default_device() == mx.gpu
        self.max_batch = GPU_BATCH if gpu else CPU_BATCH  # chosen once, at load
        self.details = dict(voice.details)
        reason = self.details.get("backend_reason") or f"the MLX model on {'the GPU' if gpu else 'the CPU'}"
        self.details["backend_reason"] = f"{reason}; sentences {self.max_batch} at a time"
        # `check` (on the event loop, before the 200) and `synthesize_stream` (on the worker) need the same
        # phoneme ids: the recent texts' are kept, so espeak-ng reads a request's text once
        self._phoneme_ids = functools.lru_cache(maxsize=16)(self._read_phoneme_ids)
        lang = voice.config.espeak_voice
        self._language = lang[:2] + lang[2:].upper() if len(lang) == 5 else lang
        # a one-speaker voice is named after the model; a multi-speaker one offers its speakers
        self._voices = [
            Voice(id=name, name=name.removeprefix("piper-"), language=self._language)
            if v == "default"
            else Voice(id=v, name=v, language=self._language)
            for v in voice.voices
        ]

    def voices(self) -> list[Voice]:
        return list(self._voices)

    def _speaker(self, voice: str) -> str | None:
        ids = [v.id for v in self._voices]
        if voice in ids:
            return None if len(ids) == 1 else voice
        if voice.lower() in OPENAI_VOICES:
            return None if len(ids) == 1 else ids[OPENAI_VOICES.index(voice.lower()) % len(ids)]
        raise unknown_voice(voice, self.name, ids)

    def _read_phoneme_ids(self, text: str) -> tuple[tuple[int, ...], ...]:
        """Each sentence's phoneme ids (normalised, split, phonemized; the first sentence's first clause on
        its own, for early audio); `InvalidRequest` when none."""
        normalized = normalize_text(text, lang=self.voice.config.espeak_voice[:2])
        spoken: list[str] = []
        for sentence in split_sentences(normalized):
            try:
                spoken += phonemize(sentence, voice=self.voice.config.espeak_voice)
            except InvalidRequest:  # a sentence of emoji or symbols only: nothing to say there
                continue
        ids = []
        for phonemes in split_first_clause(spoken):
            seq = self.voice.phoneme_ids(phonemes)
            if len(seq) > 3:  # more than ^ _ $: something to say
                ids.append(tuple(seq))
        if not ids:
            raise nothing_to_speak()
        return tuple(ids)

    def check(self, text: str, options: SpeechOptions) -> SpeechOptions:
        self._speaker(options.voice)
        self._phoneme_ids(text)
        if options.instructions:
            log.info("%s: 'instructions' ignored (a Piper voice has no style prompt)", self.name)
        return options

    def synthesize_stream(self, text: str, options: SpeechOptions) -> Generator[Any, Any, None]:
        speaker = self._speaker(options.voice)
        length_scale = self.voice.config.length_scale / options.speed
        sentences = [list(seq) for seq in self._phoneme_ids(text)]
        key = ("piper", id(self), speaker, length_scale)

        def synthesize(batch: list[list[int]]) -> list[np.ndarray]:
            # the voice's own noise, seeded by each sentence's ids: the same sentence gives the same audio,
            # alone or batched with other requests' sentences
            seeds = [zlib.crc32(np.asarray(ids, np.int32).tobytes()) for ids in batch]
            return self.voice.synthesize(batch, speaker=speaker, length_scale=length_scale, seed=seeds)

        yield from sentence_stream(
            key, sentences, synthesize, self.max_batch, hop=HOP, input_tokens=sum(len(s) for s in sentences)
        )
