"""Typed results → wire bodies: json, text, srt, vtt, verbose_json and SSE events."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from models.tasks import Segment, TokenLogprob, Transcription, TranscriptionInfo


def usage_duration(duration: float) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(duration, 3)}


def usage_tokens(audio_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "type": "tokens",
        "input_tokens": audio_tokens,
        "output_tokens": output_tokens,
        "total_tokens": audio_tokens + output_tokens,
        "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
    }


def audio_tokens(duration: float) -> int:
    """Whisper's encoder emits 50 positions per second of audio."""
    return math.ceil(duration * 50)


def logprobs_json(items: Iterable[TokenLogprob]) -> list[dict[str, Any]]:
    return [{"token": lp.token, "logprob": round(lp.logprob, 6), "bytes": lp.bytes} for lp in items]


def transcription_json(t: Transcription, *, logprobs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"text": t.text}
    if logprobs:
        body["logprobs"] = logprobs_json(lp for s in t.segments for lp in s.logprobs)
    body["usage"] = usage_duration(t.info.duration)
    return body


def segment_json(s: Segment) -> dict[str, Any]:
    return {
        "id": s.id,
        "seek": s.seek,
        "start": round(s.start, 3),
        "end": round(s.end, 3),
        "text": s.text,
        "tokens": s.tokens,
        "temperature": s.temperature,
        "avg_logprob": s.avg_logprob,
        "compression_ratio": s.compression_ratio,
        "no_speech_prob": s.no_speech_prob,
    }


def transcription_verbose(
    t: Transcription, *, task: str, granularities: Sequence[str], logprobs: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        # a translation's language is its output's: always English (OpenAI's TranslationVerbose)
        "language": "english" if task == "translate" else t.info.language_name,
        "duration": round(t.info.duration, 3),
        "text": t.text,
    }
    if not granularities or "segment" in granularities:
        body["segments"] = [segment_json(s) for s in t.segments]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in t.words
        ]
    if logprobs:
        body["logprobs"] = logprobs_json(lp for s in t.segments for lp in s.logprobs)
    body["usage"] = usage_duration(t.info.duration)
    return body


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: Iterable[Segment]) -> str:
    blocks = []
    for i, s in enumerate((s for s in segments if s.text.strip()), start=1):
        blocks.append(f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n")
    return "\n".join(blocks)


def to_vtt(segments: Iterable[Segment]) -> str:
    blocks = ["WEBVTT\n"]
    for s in segments:
        if s.text.strip():
            blocks.append(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n")
    return "\n".join(blocks)


def to_text(t: Transcription) -> str:
    return t.text + "\n" if t.text else ""


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def sse_delta(segment: Segment, *, first: bool, logprobs: bool) -> bytes:
    text = segment.text.lstrip() if first else segment.text
    event: dict[str, Any] = {"type": "transcript.text.delta", "delta": text}
    if logprobs:
        event["logprobs"] = logprobs_json(segment.logprobs)
    return sse(event)


def sse_done(info: TranscriptionInfo, segments: list[Segment], *, logprobs: bool) -> bytes:
    t = Transcription(info, segments)
    event: dict[str, Any] = {"type": "transcript.text.done", "text": t.text}
    if logprobs:
        event["logprobs"] = logprobs_json(lp for s in segments for lp in s.logprobs)
    event["usage"] = usage_tokens(audio_tokens(info.duration), sum(len(s.tokens) for s in segments))
    return sse(event)
