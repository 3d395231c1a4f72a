"""The configuration of a Realtime transcription session in both dialects the clients speak: the GA
`session.update` (`session.audio.input.*`) and the beta `transcription_session.update`
(`input_audio_format`, `input_audio_transcription`, `turn_detection`), parsed into one `Config`, checked
field by field (a bad value is a `ClientError` naming its `param`), and described back in the dialect the
client last used."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from models.tasks import TurnOptions

MAX_PROMPT_CHARS = 4096
Dialect = Literal["ga", "beta"]
Format = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
_BETA_FORMATS: dict[str, Format] = {
    "pcm16": "audio/pcm",
    "g711_ulaw": "audio/pcmu",
    "g711_alaw": "audio/pcma",
}
INPUT_RATE = {"audio/pcm": 24_000, "audio/pcmu": 8_000, "audio/pcma": 8_000}


class ClientError(Exception):
    """A client event that cannot be honoured: becomes an `error` event, the session goes on."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


@dataclass(frozen=True)
class Config:
    format: Format = "audio/pcm"
    rate: int = 24_000  # of audio/pcm input (the OpenAI protocol fixes 24 kHz; mlx-audio's clients choose)
    model: str = "whisper-1"
    language: str | None = None
    prompt: str = ""
    turns: TurnOptions | None = field(default_factory=TurnOptions)  # None: manual commits


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
        if kind not in INPUT_RATE:
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
