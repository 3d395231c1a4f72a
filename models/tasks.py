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
    # Speech regions [(start, end), ...] in samples, from a voice-activity detector: when given, the
    # audio is cut into independent ≤ 30-s chunks along them, decoded as one batch (OpenAI's
    # `chunking_strategy`); None = one block, decoded window after window with seeking.
    speech: tuple[tuple[int, int], ...] | None = None
    # A draft (live transcription's partial hypotheses): each window encoded only as far as it holds audio,
    # plus a margin (whisper.cpp's `audio_ctx`), greedy at temperature 0 without the fallback ladder. Much
    # cheaper for short audio, not identical to the full decode; its effect is measured in docs/benchmarks.md.
    draft: bool = False


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
    window_seconds: float  # audio one decoding window holds: `TranscribeOptions.speech` chunks fit in it
    multilingual: bool

    def check(self, options: TranscribeOptions) -> None:
        """Raise `InvalidRequest` for options this model cannot honour (unknown language, translation
        on an English-only model, ...). Cheap, no MLX work: called on the event loop before a 200."""
        ...

    def transcribe_stream(self, audio: np.ndarray, options: TranscribeOptions) -> Iterator[Any]:
        """Yield one TranscriptionInfo first, then Segments in time order as they are decoded.
        `audio`: mono float32 at `sample_rate`. Runs on the MLX worker thread, which also answers the
        `models.batching.Batched` requests it may yield (elsewhere: `models.batching.drive`)."""
        ...


# --- voice activity detection ------------------------------------------------------------------------


@dataclass(frozen=True)
class VadOptions:
    """How speech probabilities become speech regions (Silero's `get_speech_timestamps` parameters; the
    OpenAI `server_vad` fields map to threshold, `silence_duration_ms` and `prefix_padding_ms`)."""

    threshold: float = 0.5  # speech starts above this probability and ends below threshold − 0.15
    min_speech_ms: int = 250  # shorter speech regions are dropped
    min_silence_ms: int = 100  # a region ends after this much silence
    speech_pad_ms: int = 30  # added at both ends of every region
    max_speech_s: float = float("inf")  # longer regions are split (at a silence where possible)
    # Set: the detector hears a copy of the audio raised toward this integrated loudness (LUFS; boost only,
    # capped, peak-limited: `dsp.loudness.normalize_loudness`), so quiet speech is not taken for silence.
    # The regions are still sample ranges of the audio as sent. None: the detector hears the audio as sent.
    loudness_lufs: float | None = None

    @classmethod
    def for_windows(
        cls,
        window_s: float,
        *,
        threshold: float = 0.5,
        silence_ms: int = 100,
        pad_ms: int = 300,
        loudness_lufs: float | None = None,
    ) -> VadOptions:
        """Options for cutting a file into windows of `window_s` (Whisper: 30 s): long speech is split so
        that a region with its padding at both ends fits one window."""
        pad_ms = min(pad_ms, 2_000)
        max_speech = max(1.0, window_s - 2 * pad_ms / 1000)
        return cls(
            threshold=threshold,
            min_silence_ms=silence_ms,
            speech_pad_ms=pad_ms,
            max_speech_s=max_speech,
            loudness_lufs=loudness_lufs,
        )


@dataclass(frozen=True)
class TurnOptions:
    """Turn detection over live audio (the OpenAI Realtime `server_vad` fields)."""

    threshold: float = 0.5  # speech starts at this probability, and stops below threshold − 0.15
    prefix_padding_ms: int = 300  # a turn's audio starts this long before its first speech window
    silence_duration_ms: int = 500  # a turn stops after this much silence


@dataclass(frozen=True)
class SpeechStarted:
    start: int  # the turn's first sample (prefix padding included), counted from the stream's start


@dataclass(frozen=True)
class SpeechStopped:
    end: int  # the turn's last sample + 1: where silence had lasted `silence_duration_ms`


class TurnStream(Protocol):
    """Turn events from audio appended piece by piece (mono float32 at the detector's `sample_rate`)."""

    samples: int  # appended so far

    def append(self, audio: np.ndarray) -> list[SpeechStarted | SpeechStopped]: ...

    def configure(self, options: TurnOptions) -> None: ...

    def reset(self) -> None: ...


@runtime_checkable
class VoiceActivityDetector(Protocol):
    sample_rate: int  # the rate `audio` must be at (Hz), mono float32

    def stream(self, options: TurnOptions) -> TurnStream:
        """A live stream's turn detector: state carried across appends, each append's own work only."""
        ...

    def speech_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Probability of speech for each consecutive window of the audio (float32, one per window)."""
        ...

    def speech_segments(self, audio: np.ndarray, options: VadOptions) -> list[tuple[int, int]]:
        """Speech regions as sample ranges [start, end), in order, not overlapping (after normalising the
        loudness of a copy when `options.loudness_lufs` is set)."""
        ...


# --- speech --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """A voice a speech model offers (`GET /v1/audio/voices`)."""

    id: str
    name: str
    language: str | None = None  # BCP-47 where known ("en-US")
    gender: Literal["female", "male"] | None = None


@dataclass(frozen=True)
class SpeechOptions:
    voice: str  # a voice id of the model, or an OpenAI voice name (`Synthesizer.check` resolves it)
    speed: float = 1.0  # 0.25 … 4.0; 2.0 speaks twice as fast
    instructions: str | None = None  # style prompt; models that cannot follow one ignore it (logged)


@dataclass(frozen=True)
class SpeechUsage:
    """Yielded last by `synthesize_stream`: what the request consumed and produced."""

    input_tokens: int  # the model's input symbols (phoneme ids, text tokens)
    output_tokens: int  # audio frames the model produced (its own frame rate)


@runtime_checkable
class Synthesizer(Protocol):
    sample_rate: int  # of the float32 mono chunks `synthesize_stream` yields (Hz)

    def voices(self) -> list[Voice]: ...

    def check(self, text: str, options: SpeechOptions) -> SpeechOptions:
        """Raise `InvalidRequest` for what this model cannot speak (unknown voice: the message names the
        available ones; text that yields no phonemes); return the options with the voice resolved to one
        of `voices()`. Cheap: called on the event loop before a 200."""
        ...

    def synthesize_stream(self, text: str, options: SpeechOptions) -> Iterator[Any]:
        """Yield float32 mono chunks at `sample_rate`, in order, as soon as each is synthesized (a sentence
        or so at a time), then one `SpeechUsage`. Runs on the MLX worker thread, which also answers the
        `models.batching.Batched` requests it may yield."""
        ...


# --- separation ----------------------------------------------------------------------------------------


class SeparationNetwork(Protocol):
    """One separation network as its family builds it: a forward pass over a batch of fixed-length segments.

    The long-input strategy (overlapping segments, transition weights, the shift trick, bags of networks,
    batching segments across requests) is shared code, `models/separation.py`; a family provides only this.
    """

    sources: tuple[str, ...]  # the stems, in the network's output order ("drums", "bass", "other", "vocals")
    sample_rate: int  # Hz of the audio it takes and returns
    channels: int  # audio channels it takes and returns (2 for every published model)
    segment: int  # samples per segment: the length one forward pass takes and returns

    def __call__(self, mix: Any) -> Any:
        """`mix`: mx.array float32 [batch, channels, segment] → mx.array [batch, len(sources), channels,
        segment], the estimated stems of each segment (pure MLX; no files, no device checks)."""
        ...


@dataclass(frozen=True)
class SeparateOptions:
    stems: tuple[str, ...] | None = None  # the stems wanted (a subset of `Separator.sources`); None = all
    overlap: float = 0.25  # fraction of a segment shared by neighbours (demucs' default)
    shifts: int = 0  # random time shifts averaged (demucs' shift trick; 0 = off)


@dataclass(frozen=True)
class SeparationProgress:
    """Yielded by `separate_stream` as segments complete (for logs and /metrics on long jobs)."""

    done: int  # segments computed so far
    total: int  # segments the job needs


@runtime_checkable
class Separator(Protocol):
    sources: tuple[str, ...]
    sample_rate: int  # of the audio `separate_stream` takes and returns (Hz)
    channels: int

    def separate_stream(self, audio: np.ndarray, options: SeparateOptions) -> Iterator[Any]:
        """`audio`: float32 [channels, samples] at `sample_rate`. Yield `SeparationProgress` as segments
        complete, then one dict stem → float32 [channels, samples], for `options.stems` (all by default).
        Runs on the MLX worker thread, which answers the `models.batching.Batched` requests it yields (the
        segments of concurrent jobs share forward passes); peak memory is bounded by the segment batch,
        not the input's length."""
        ...
