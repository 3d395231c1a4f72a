"""One OpenAI Realtime transcription session (`WS /v1/realtime?intent=transcription`), apart from the socket:
the input audio buffer, turn detection, and the server events each client event produces (its
configuration, in both dialects, is `server/realtime_config.py`).

Audio arrives as base64 pcm16 at 24 kHz (or G.711 μ-law / A-law at 8 kHz) and is resampled once, as it
arrives (soxr's streaming resampler), to the rate the voice-activity detector and the transcriber hear:
16 kHz. With `server_vad`, Silero VAD runs on each append's own windows (`models.tasks.TurnStream`) and a
turn is committed when it stops; with `turn_detection: null` the client commits. Each committed turn is
transcribed on the MLX worker in commit order (`Session.turns`, drained by the router). While a VAD turn is
open, its audio so far is re-decoded every half second as a draft (`Session.partial`;
`TranscribeOptions.draft`: the encoder over the turn's length, not 30 s) and the words two successive
hypotheses agree on leave as deltas (`Agreement`, LocalAgreement-2), never retracted; the committed turn's
final decode adds the rest, then `…transcription.completed` carries the transcript and its usage. Errors
are events, never a close.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import uuid
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dsp.g711 import decode_alaw, decode_ulaw
from dsp.resample import Resampler
from models.tasks import SpeechStarted, SpeechStopped, TurnStream
from server.realtime_config import INPUT_RATE, ClientError, Config, Dialect, describe, parse_update

RATE = 16_000  # what the detector and the transcriber hear
MIN_COMMIT_MS = 100  # OpenAI refuses to commit less than this
PARTIAL_EVERY_S = 0.5  # an open turn is re-decoded each time this much more of it has arrived
DRAFT_PARTIALS = True  # re-decodes are drafts (`TranscribeOptions.draft`); False: whole-window decodes
_ids = itertools.count(1)


def event_id() -> str:
    return f"event_{next(_ids):06d}{uuid.uuid4().hex[:8]}"


def item_id() -> str:
    return f"item_{uuid.uuid4().hex[:20]}"


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
            config = replace(config, rate=INPUT_RATE[config.format])
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
