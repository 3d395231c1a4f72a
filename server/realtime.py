"""One OpenAI Realtime transcription session (`WS /v1/realtime?intent=transcription`), apart from the socket:
its configuration in both dialects (GA `session.update`, beta `transcription_session.update`), the input
audio buffer, turn detection, and the server events each client event produces.

Audio arrives as base64 pcm16 at 24 kHz (or G.711 μ-law / A-law at 8 kHz) and is resampled once, as it
arrives (soxr's streaming resampler), to the rate the voice-activity detector and the transcriber hear:
16 kHz. With `server_vad`, Silero VAD runs on each append's own windows (`models.tasks.TurnStream`) and a
turn is committed when it stops; with `turn_detection: null` the client commits. Each committed turn is
transcribed on the MLX worker in commit order (`Session.turns`, drained by the router). While a VAD turn is
open, its audio so far is re-decoded each second (`Session.partial`) and the words two successive
hypotheses agree on leave as deltas (`Agreement`, LocalAgreement-2), never retracted; the committed turn's
final decode adds the rest, then `…transcription.completed` carries the transcript and its usage. Errors
are events, never a close.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from dsp.g711 import decode_alaw, decode_ulaw
from dsp.resample import Resampler
from models.tasks import SpeechStarted, SpeechStopped, TurnOptions, TurnStream

RATE = 16_000  # what the detector and the transcriber hear
MIN_COMMIT_MS = 100  # OpenAI refuses to commit less than this
MAX_PROMPT_CHARS = 4096
PARTIAL_EVERY_S = 1.0  # an open turn is re-decoded each time this much more of it has arrived
Dialect = Literal["ga", "beta"]
Format = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
_BETA_FORMATS: dict[str, Format] = {
    "pcm16": "audio/pcm",
    "g711_ulaw": "audio/pcmu",
    "g711_alaw": "audio/pcma",
}
_INPUT_RATE = {"audio/pcm": 24_000, "audio/pcmu": 8_000, "audio/pcma": 8_000}
_ids = itertools.count(1)


class ClientError(Exception):
    """A client event that cannot be honoured: becomes an `error` event, the session goes on."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def event_id() -> str:
    return f"event_{next(_ids):06d}{uuid.uuid4().hex[:8]}"


def item_id() -> str:
    return f"item_{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True)
class Config:
    format: Format = "audio/pcm"
    rate: int = 24_000  # of audio/pcm input (the OpenAI protocol fixes 24 kHz; mlx-audio's clients choose)
    model: str = "whisper-1"
    language: str | None = None
    prompt: str = ""
    turns: TurnOptions | None = field(default_factory=TurnOptions)  # None: manual commits


@dataclass
class Turn:
    """A stretch of audio to transcribe: a committed turn, or (`partial`) the open turn so far."""

    item_id: str
    audio: np.ndarray  # float32 mono at RATE
    config: Config
    partial: bool = False


def _key(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


class Agreement:
    """LocalAgreement-2 (whisper_streaming) at word level for one turn: a word is emitted once two
    successive hypotheses agree on it and on everything before it (compared without case or punctuation),
    each hypothesis without its last word, and nothing emitted is taken back. `final` emits what the last
    decode adds after the agreed words."""

    def __init__(self) -> None:
        self.emitted: list[str] = []
        self._previous: list[str] = []

    def _delta(self, words: list[str]) -> str:
        if not words:
            return ""
        text = " ".join(words)
        return f" {text}" if self.emitted else text

    def update(self, hypothesis: str) -> str:
        """A new hypothesis of the whole turn so far → the delta text it settles ('' when none). Its last
        word is left out: the audio may end inside it ("ask" heard as "asked" half a word early)."""
        words = hypothesis.split()[:-1]
        agreed = 0
        for a, b in zip(self._previous, words, strict=False):  # as far as both go
            if _key(a) != _key(b):
                break
            agreed += 1
        self._previous = words
        if agreed <= len(self.emitted) or [_key(w) for w in words[: len(self.emitted)]] != [
            _key(w) for w in self.emitted
        ]:
            return ""
        delta = self._delta(words[len(self.emitted) : agreed])
        self.emitted = words[:agreed]
        return delta

    def final(self, transcript: str) -> str:
        """The turn's final transcript → the last delta: its words after as many as were emitted, when it
        begins with them up to one word in five (two hypotheses can agree on a word the whole turn hears
        otherwise: "asked" for "ask"); '' when it does not. Deltas are never retracted; `completed`
        carries the transcript."""
        words = transcript.split()
        n = len(self.emitted)
        differ = sum(_key(a) != _key(b) for a, b in zip(words[:n], self.emitted, strict=False))
        if len(words) < n or differ > n // 5:
            return ""
        delta = self._delta(words[n:])
        self.emitted = words
        return delta


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ClientError(f"{name} must be a number in [{low}, {high}]", "invalid_value", name)
    return float(value)


def _turn_detection(value: Any, current: TurnOptions | None, param: str) -> TurnOptions | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ClientError("turn_detection must be an object or null", "invalid_value", param)
    kind = value.get("type", "server_vad")
    if kind != "server_vad":
        raise ClientError(
            f"turn_detection.type {kind!r} is not supported (server_vad, or null for manual commits)",
            "invalid_value",
            f"{param}.type",
        )
    base = current or TurnOptions()
    return TurnOptions(
        threshold=_number(value.get("threshold", base.threshold), f"{param}.threshold", 0.0, 1.0),
        prefix_padding_ms=int(
            _number(
                value.get("prefix_padding_ms", base.prefix_padding_ms),
                f"{param}.prefix_padding_ms",
                0,
                10_000,
            )
        ),
        silence_duration_ms=int(
            _number(
                value.get("silence_duration_ms", base.silence_duration_ms),
                f"{param}.silence_duration_ms",
                0,
                10_000,
            )
        ),
    )


def _transcription(config: Config, value: Any, param: str) -> Config:
    if value is None:
        return config
    if not isinstance(value, dict):
        raise ClientError("transcription settings must be an object", "invalid_value", param)
    for key in ("model", "language", "prompt"):
        if key in value and value[key] is not None and not isinstance(value[key], str):
            raise ClientError(f"{key} must be a string", "invalid_value", f"{param}.{key}")
    if len(value.get("prompt") or "") > MAX_PROMPT_CHARS:
        raise ClientError(
            f"prompt is longer than {MAX_PROMPT_CHARS} characters", "invalid_value", f"{param}.prompt"
        )
    return replace(
        config,
        model=value.get("model") or config.model,
        language=value.get("language", config.language) or None,
        prompt=value.get("prompt", config.prompt) or "",
    )


def parse_update(config: Config, session: Any, dialect: Dialect) -> Config:
    """A `session.update` (GA) or `transcription_session.update` (beta) `session` object → the new config."""
    if not isinstance(session, dict):
        raise ClientError("session must be an object", "invalid_value", "session")
    if dialect == "beta":
        if "input_audio_format" in session:
            fmt = _BETA_FORMATS.get(session["input_audio_format"])
            if fmt is None:
                raise ClientError(
                    f"input_audio_format must be one of {', '.join(_BETA_FORMATS)}",
                    "invalid_value",
                    "session.input_audio_format",
                )
            config = replace(config, format=fmt)
        config = _transcription(
            config, session.get("input_audio_transcription"), "session.input_audio_transcription"
        )
        if "turn_detection" in session:
            config = replace(
                config,
                turns=_turn_detection(session["turn_detection"], config.turns, "session.turn_detection"),
            )
        return config
    if session.get("type", "transcription") != "transcription":
        raise ClientError(
            "this endpoint runs transcription sessions: session.type must be 'transcription'",
            "invalid_value",
            "session.type",
        )
    audio = session.get("audio") or {}
    source = audio.get("input") if isinstance(audio, dict) else None
    if source is None:
        return config
    if not isinstance(source, dict):
        raise ClientError("session.audio.input must be an object", "invalid_value", "session.audio.input")
    fmt = source.get("format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in _INPUT_RATE:
            raise ClientError(
                "session.audio.input.format.type must be audio/pcm, audio/pcmu or audio/pcma",
                "invalid_value",
                "session.audio.input.format.type",
            )
        if kind == "audio/pcm" and fmt.get("rate", 24_000) != 24_000:
            raise ClientError(
                "audio/pcm input is 24000 Hz", "invalid_value", "session.audio.input.format.rate"
            )
        config = replace(config, format=kind)
    config = _transcription(config, source.get("transcription"), "session.audio.input.transcription")
    if "turn_detection" in source:
        config = replace(
            config,
            turns=_turn_detection(
                source["turn_detection"], config.turns, "session.audio.input.turn_detection"
            ),
        )
    return config


def describe(session_id: str, config: Config, dialect: Dialect) -> dict[str, Any]:
    """The session object of `session.created` / `session.updated` (or the beta shape)."""
    t = config.turns
    detection = (
        None
        if t is None
        else {
            "type": "server_vad",
            "threshold": t.threshold,
            "prefix_padding_ms": t.prefix_padding_ms,
            "silence_duration_ms": t.silence_duration_ms,
        }
    )
    transcription = {"model": config.model, "language": config.language, "prompt": config.prompt}
    if dialect == "beta":
        beta_format = {v: k for k, v in _BETA_FORMATS.items()}[config.format]
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "input_audio_format": beta_format,
            "input_audio_transcription": transcription,
            "turn_detection": detection,
            "include": [],
        }
    fmt: dict[str, Any] = {"type": config.format}
    if config.format == "audio/pcm":
        fmt["rate"] = 24_000
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "type": "transcription",
        "audio": {
            "input": {
                "format": fmt,
                "transcription": transcription,
                "turn_detection": detection,
                "noise_reduction": None,
            }
        },
        "include": [],
    }


class Session:
    """The state of one socket. `handle(event)` → the server events it causes now; committed turns wait
    in `turns` for the router to transcribe them, in order."""

    def __init__(self, vad: TurnStream | None, *, max_seconds: float, model: str) -> None:
        self.id = f"sess_{uuid.uuid4().hex[:24]}"
        self.dialect: Dialect = "ga"
        self.config = Config(model=model)
        self.vad = vad
        self.max_samples = int(max_seconds * RATE)
        self._resampler = Resampler(self.config.rate, RATE)
        self._buffer: list[np.ndarray] = []  # 16-kHz audio since the last commit
        self._buffered = 0
        self._offset = 0  # where the buffer starts, in samples since the detector's last reset
        self._written = 0  # samples written in the session
        self._origin = 0  # session sample where the detector's count starts
        self._open_item: str | None = None  # the turn the VAD has started
        self.last_item: str | None = None
        self.turns: list[Turn] = []
        self.in_flight = 0  # committed turns whose transcript has not been sent yet
        self.partial: Turn | None = None  # the open turn so far, when it is due a re-decode (the latest only)
        self._partial_at = 0  # buffered samples of the open turn at its last partial
        if vad is not None and self.config.turns is not None:
            vad.configure(self.config.turns)

    def created(self) -> dict[str, Any]:
        return {"type": "session.created", "event_id": event_id(), "session": self.describe()}

    def describe(self) -> dict[str, Any]:
        return describe(self.id, self.config, self.dialect)

    def handle(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind in ("session.update", "transcription_session.update"):
            return self._update(event, "ga" if kind == "session.update" else "beta")
        if kind == "input_audio_buffer.append":
            return self._append(event.get("audio"))
        if kind == "input_audio_buffer.commit":
            return self._commit()
        if kind == "input_audio_buffer.clear":
            self._clear()
            return [{"type": "input_audio_buffer.cleared", "event_id": event_id()}]
        raise ClientError(f"unknown or unsupported event type {kind!r}", "invalid_event_type", "type")

    # --- configuration --------------------------------------------------------------------------

    def _update(self, event: dict[str, Any], dialect: Dialect) -> list[dict[str, Any]]:
        config = parse_update(self.config, event.get("session"), dialect)
        if config.format != self.config.format:
            config = replace(config, rate=_INPUT_RATE[config.format])
        self._set_input(config)
        if config.turns != self.config.turns and self.vad is not None:
            if config.turns is not None:
                self.vad.configure(config.turns)
            if self.config.turns is None:  # turn detection switched on: it hears from here on
                self._reset_detector()
                self._offset = -self._buffered
            self._open_item = None
        self.config, self.dialect = config, dialect
        kind = "session.updated" if dialect == "ga" else "transcription_session.updated"
        return [{"type": kind, "event_id": event_id(), "session": self.describe()}]

    def _set_input(self, config: Config) -> None:
        if config.rate != self.config.rate:
            self._flush_resampler()
            self._resampler = Resampler(config.rate, RATE)

    def use_raw_pcm(self, rate: int, model: str, language: str | None) -> None:
        """mlx-audio's protocol: pcm16 at the client's rate, its model and language, server_vad."""
        if not 8_000 <= rate <= 192_000:
            raise ClientError("sample_rate must be 8000..192000 Hz", "invalid_value", "sample_rate")
        config = replace(self.config, format="audio/pcm", rate=rate, model=model, language=language)
        self._set_input(config)
        self.config = config

    def append_pcm(self, data: bytes) -> list[dict[str, Any]]:
        """Raw little-endian pcm16 (a binary frame) at the configured rate."""
        return self._append(base64.b64encode(data).decode())

    def finish(self) -> list[dict[str, Any]]:
        """The end of the audio: the open turn is committed now (with turn detection off: what is
        buffered, if there is enough of it)."""
        self._flush_resampler()
        detecting = self.vad is not None and self.config.turns is not None
        if self._open_item is None if detecting else self._buffered < MIN_COMMIT_MS * RATE // 1000:
            return []
        return self._commit()

    # --- audio ----------------------------------------------------------------------------------

    def _decode(self, data: Any) -> np.ndarray:
        if not isinstance(data, str):
            raise ClientError("audio must be a base64 string", "invalid_value", "audio")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ClientError(f"audio is not valid base64: {exc}", "invalid_value", "audio") from None
        if self.config.format == "audio/pcmu":
            return decode_ulaw(raw)
        if self.config.format == "audio/pcma":
            return decode_alaw(raw)
        if len(raw) % 2:
            raise ClientError(
                "pcm16 audio must be a whole number of 2-byte samples", "invalid_value", "audio"
            )
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0

    def _append(self, data: Any) -> list[dict[str, Any]]:
        samples = self._resampler.process(self._decode(data))
        if self._buffered + len(samples) > self.max_samples:
            raise ClientError(
                f"the input audio buffer would exceed {self.max_samples // RATE} s: commit or clear it",
                "input_audio_buffer_too_long",
                "audio",
            )
        return self._take(samples)

    def _take(self, samples: np.ndarray) -> list[dict[str, Any]]:
        if len(samples) == 0:
            return []
        self._buffer.append(samples)
        self._buffered += len(samples)
        self._written += len(samples)
        if self.vad is None or self.config.turns is None:
            return []
        out: list[dict[str, Any]] = []
        for ev in self.vad.append(samples):
            if isinstance(ev, SpeechStarted):
                self._open_item = item_id()
                self._drop_before(ev.start)
                out.append(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "event_id": event_id(),
                        "item_id": self._open_item,
                        "audio_start_ms": (self._origin + ev.start) * 1000 // RATE,
                    }
                )
                self._partial_at = 0
            elif isinstance(ev, SpeechStopped) and self._open_item is not None:
                item, self._open_item = self._open_item, None
                out.append(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "event_id": event_id(),
                        "item_id": item,
                        "audio_end_ms": (self._origin + ev.end) * 1000 // RATE,
                    }
                )
                out += self._commit_turn(item, self._cut(ev.end))
        if self._open_item is not None and self._buffered - self._partial_at >= PARTIAL_EVERY_S * RATE:
            self._partial_at = self._buffered
            self.partial = Turn(self._open_item, self._joined().copy(), self.config, partial=True)
        return out

    def _drop_before(self, stream_sample: int) -> None:
        """Forget buffered audio before a stream position (silence before a turn's prefix)."""
        drop = max(0, stream_sample - self._offset)
        if drop:
            audio = self._joined()
            self._buffer = [audio[drop:]]
            self._buffered = len(self._buffer[0])
            self._offset += drop

    def _cut(self, stream_sample: int) -> np.ndarray:
        """The buffer up to a stream position; the rest stays buffered."""
        audio = self._joined()
        n = max(0, min(len(audio), stream_sample - self._offset))
        self._buffer = [audio[n:]]
        self._buffered = len(audio) - n
        self._offset += n
        return audio[:n]

    def _joined(self) -> np.ndarray:
        audio = np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.float32)
        self._buffer = [audio]
        return audio

    def _flush_resampler(self) -> None:
        tail = self._resampler.flush()
        if len(tail):
            self._buffer.append(tail)
            self._buffered += len(tail)

    def _commit(self) -> list[dict[str, Any]]:
        self._flush_resampler()
        if self._buffered < MIN_COMMIT_MS * RATE // 1000:
            raise ClientError(
                f"buffer too small: expected at least {MIN_COMMIT_MS} ms of audio, got "
                f"{self._buffered * 1000 / RATE:.0f} ms",
                "input_audio_buffer_commit_empty",
                None,
            )
        item = self._open_item or item_id()
        self._open_item = None
        audio = self._cut(self._offset + self._buffered)
        if self.vad is not None and self.config.turns is not None:
            self._reset_detector()  # the committed audio is gone: detection starts afresh
            self._offset = 0
        return self._commit_turn(item, audio)

    def _commit_turn(self, item: str, audio: np.ndarray) -> list[dict[str, Any]]:
        previous, self.last_item = self.last_item, item
        if self.partial is not None and self.partial.item_id == item:
            self.partial = None  # the whole turn is decoded next: no partial of it is worth running now
        self.turns.append(Turn(item, audio, self.config))
        self.in_flight += 1
        added = "conversation.item.added" if self.dialect == "ga" else "conversation.item.created"
        return [
            {
                "type": "input_audio_buffer.committed",
                "event_id": event_id(),
                "item_id": item,
                "previous_item_id": previous,
            },
            {
                "type": added,
                "event_id": event_id(),
                "previous_item_id": previous,
                "item": {
                    "id": item,
                    "object": "realtime.item",
                    "type": "message",
                    "status": "completed",
                    "role": "user",
                    "content": [{"type": "input_audio", "transcript": None}],
                },
            },
        ]

    def _clear(self) -> None:
        self._resampler.flush()
        self._buffer, self._buffered, self._offset, self._open_item = [], 0, 0, None
        self.partial = None
        self._reset_detector()

    def _reset_detector(self) -> None:
        if self.vad is not None:
            self.vad.reset()
        self._origin = self._written
