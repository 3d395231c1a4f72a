"""Task protocols and typed results shared by the server and the model families.

A family's loaded object implements one of these protocols. Every method runs on the MLX worker thread;
streaming methods are generators that the worker advances one step at a time, so segments/chunks reach
the client as they are produced and a cancelled request stops between steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

Task = Literal["transcription", "translation", "speech", "separation", "vad", "test"]


# --- transcription / translation -------------------------------------------------------------------


@dataclass(frozen=True)
class TranscribeOptions:
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None  # ISO-639-1; None = detect (multilingual) or the model's only language
    prompt: str | None = None
    temperature: float = 0.0  # 0 = the automatic fallback ladder (0.0, 0.2, ... 1.0)
    word_timestamps: bool = False
    logprobs: bool = False
    beam_size: int | None = None  # None = greedy


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(frozen=True)
class TranscriptionInfo:
    """Known before the first segment: the language (code and full lower-case name) and the duration."""

    language: str
    language_name: str
    duration: float


@dataclass(frozen=True)
class Transcription:
    info: TranscriptionInfo
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


@runtime_checkable
class Transcriber(Protocol):
    sample_rate: int  # the rate `audio` must be at (Hz), mono float32
    multilingual: bool

    def check(self, options: TranscribeOptions) -> None:
        """Raise `InvalidRequest` for options this model cannot honour (unknown language, translation
        on an English-only model, ...). Cheap, no MLX work: called on the event loop before a 200."""
        ...

    def transcribe_stream(self, audio: np.ndarray, options: TranscribeOptions) -> Iterator[Any]:
        """Yield one TranscriptionInfo first, then Segments in time order as they are decoded.
        `audio`: mono float32 at `sample_rate`. Runs on the MLX worker thread, which also answers the
        `models.worker.Batched` requests it may yield (elsewhere: `models.worker.drive`)."""
        ...


def collect_transcription(events: Iterator[Any]) -> Transcription:
    """The non-streaming fold over `transcribe_stream` (outside the worker: batch requests run inline)."""
    from models.worker import drive

    info: TranscriptionInfo | None = None
    segments: list[Segment] = []
    for ev in drive(events):
        if isinstance(ev, TranscriptionInfo):
            info = ev
        else:
            segments.append(ev)
    if info is None:
        raise RuntimeError("transcriber yielded no TranscriptionInfo")
    return Transcription(info=info, segments=segments)
