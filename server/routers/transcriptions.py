"""POST /v1/audio/transcriptions and /v1/audio/translations (multipart).

The audio is decoded at the model's `sample_rate` and cut (with `chunking_strategy`) into the model's
`window_seconds`: nothing here knows which family answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from dsp.loudness import TARGET_LUFS
from dsp.resample import resample
from models.errors import DomainError, InvalidRequest
from models.provider import ModelProvider
from models.tasks import (
    Segment,
    TranscribeOptions,
    Transcriber,
    Transcription,
    TranscriptionInfo,
    VadOptions,
    VoiceActivityDetector,
)
from server import render
from server.deps import Deps, get_deps, until_disconnect
from server.errors import domain_error_payload, envelope
from server.schemas.audio import (
    ServerVad,
    TranscriptionParams,
    TranslationParams,
    multipart_schema,
    normalise_form,
    validate_params,
)
from server.uploads import decode_upload, multipart_form

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/audio", tags=["audio"])

_TEXT_TYPES = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}
# What `stream=true` can carry: transcript.text.delta/done events hold text, not segments or cues.
STREAMABLE_FORMATS = ("json", "text")

Renderer = Callable[[Transcription], Response]


@dataclasses.dataclass(frozen=True)
class Job:
    """One validated request, before the model is acquired and the upload decoded."""

    task: Literal["transcribe", "translate"]
    model: str
    options: TranscribeOptions
    render_body: Renderer
    chunking: Literal["auto"] | ServerVad | None
    stream: bool = False


# --- the multipart form ------------------------------------------------------------------------------


def check_format(
    response_format: str, granularities: Sequence[str], include: Sequence[str], *, stream: bool = False
) -> None:
    """Combinations the output cannot honour, refused before the model is acquired or the audio decoded."""
    if response_format == "diarized_json":
        raise InvalidRequest(
            "response_format 'diarized_json' needs a diarization model; Whisper cannot produce it.",
            param="response_format",
        )
    if granularities and response_format != "verbose_json":
        raise InvalidRequest(
            "timestamp_granularities requires response_format 'verbose_json'.",
            param="timestamp_granularities",
        )
    if include and response_format not in ("json", "verbose_json"):
        raise InvalidRequest(
            "include[]=logprobs requires response_format 'json' or 'verbose_json'.", param="include"
        )
    if stream and response_format not in STREAMABLE_FORMATS:
        raise InvalidRequest(
            f"response_format '{response_format}' cannot be streamed: stream=true sends text events; "
            "use response_format 'json' or 'text', or set stream=false.",
            param="stream",
            code="unsupported_value",
        )


# --- running one request -------------------------------------------------------------------------------


async def _transcribe(request: Request, deps: Deps, upload: UploadFile, job: Job) -> Response:
    """Acquire the model, decode the upload at its rate, then stream (SSE) or collect and render."""
    provider = deps.provider
    spec = provider.registry.for_task(
        job.model, "translation" if job.task == "translate" else "transcription"
    )
    stack = contextlib.AsyncExitStack()
    try:
        model: Transcriber = await stack.enter_async_context(provider.use(spec.id))
        model.check(job.options)
        wave = await decode_upload(
            upload,
            sample_rate=model.sample_rate,
            max_bytes=deps.settings.max_upload_bytes,
            max_seconds=deps.settings.max_audio_seconds,
        )
        audio = wave.samples[:, 0]
        options = job.options
        vad = vad_options(job.chunking, model.window_seconds)
        if vad is not None:
            speech = await _speech(provider, audio, model.sample_rate, vad)
            options = dataclasses.replace(options, speech=speech)
        events = await provider.worker.stream(model.transcribe_stream, audio, options)
    except BaseException:
        await stack.aclose()
        raise
    t0 = time.perf_counter()

    def observe() -> None:
        if wave.duration > 0:
            deps.metrics.rtf.labels(spec.id, job.task).observe((time.perf_counter() - t0) / wave.duration)

    if job.stream:
        return StreamingResponse(
            _sse(events, stack, logprobs=options.logprobs, done=observe),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await until_disconnect(request, _collect(events, stack))
    observe()
    return job.render_body(result)


async def _collect(events: AsyncIterator[Any], stack: contextlib.AsyncExitStack) -> Transcription:
    """The non-streaming fold; the model is released (`stack`) once the last segment is in."""
    info: TranscriptionInfo | None = None
    segments: list[Segment] = []
    async with stack:
        async for ev in events:
            if isinstance(ev, TranscriptionInfo):
                info = ev
            else:
                segments.append(ev)
    assert info is not None
    return Transcription(info, segments)


async def _speech(
    provider: ModelProvider, audio: np.ndarray, sample_rate: int, options: VadOptions
) -> tuple[tuple[int, int], ...]:
    """Speech regions, in samples of `audio` (mono at `sample_rate`), from the default voice-activity
    model; it hears the audio at its own rate when that differs, and its regions are mapped back."""
    vad_spec = provider.registry.default_for("vad")
    if vad_spec is None:
        raise InvalidRequest(
            "No voice-activity model is configured for chunking_strategy.", param="chunking_strategy"
        )
    async with provider.use(vad_spec.id) as detector:
        vad: VoiceActivityDetector = detector
        heard = audio
        if vad.sample_rate != sample_rate:
            heard = await asyncio.to_thread(resample, audio, sample_rate, vad.sample_rate)
        regions = await provider.worker.run(vad.speech_segments, heard, options)
    scale = sample_rate / vad.sample_rate
    return tuple((round(s * scale), min(len(audio), round(e * scale))) for s, e in regions)


async def _sse(
    events: AsyncIterator[Any], stack: contextlib.AsyncExitStack, *, logprobs: bool, done: Callable[[], None]
) -> AsyncIterator[bytes]:
    info: TranscriptionInfo | None = None
    segments: list[Segment] = []
    async with stack:
        try:
            async for ev in events:
                if isinstance(ev, TranscriptionInfo):
                    info = ev
                    continue
                yield render.sse_delta(ev, first=not segments, logprobs=logprobs)
                segments.append(ev)
        except DomainError as exc:  # after the 200: report in-band, the SDK raises on it
            _status, body, _headers = domain_error_payload(exc)
            yield render.sse(body)
            return
        except Exception:  # a bug: logged with its traceback; the stream ends cleanly after the envelope
            log.exception("transcription failed after the 200")
            yield render.sse(envelope("The server had an error while transcribing.", "server_error"))
            return
    assert info is not None
    done()
    yield render.sse_done(info, segments, logprobs=logprobs)


def _renderer(response_format: str, *, task: str, granularities: Sequence[str], logprobs: bool) -> Renderer:
    def body(t: Transcription) -> Response:
        if response_format == "json":
            return JSONResponse(render.transcription_json(t, logprobs=logprobs))
        if response_format == "verbose_json":
            return JSONResponse(
                render.transcription_verbose(t, task=task, granularities=granularities, logprobs=logprobs)
            )
        text = {
            "text": render.to_text,
            "srt": lambda t: render.to_srt(t.segments),
            "vtt": lambda t: render.to_vtt(t.segments),
        }[response_format](t)
        return PlainTextResponse(text, media_type=_TEXT_TYPES[response_format])

    return body


def vad_options(strategy: Literal["auto"] | ServerVad | None, window_s: float) -> VadOptions | None:
    """OpenAI's `chunking_strategy` as voice-activity options for the model's windows of `window_s`
    (Whisper: 30 s): None = one block (no VAD); "auto" = as OpenAI documents it, loudness normalised first
    (the detector hears quiet audio raised toward −23 LUFS: `dsp.loudness`), then the detector's defaults
    with 300 ms of padding; `server_vad` = its threshold, `silence_duration_ms` (the silence that ends a
    region) and `prefix_padding_ms` (audio kept around each region), on the audio as sent: OpenAI documents
    the threshold as "a higher threshold will require louder audio to activate the model", i.e. relative to
    the level the client sends, which a client tuning it expects to hold and normalising would move. Either
    way the model decodes the samples as sent (Whisper's log-mel is level-invariant within its clamp):
    normalising moves chunk boundaries only."""
    if strategy is None:
        return None
    if strategy == "auto":
        return VadOptions.for_windows(window_s, loudness_lufs=TARGET_LUFS)
    return VadOptions.for_windows(
        window_s,
        threshold=strategy.threshold,
        silence_ms=strategy.silence_duration_ms,
        pad_ms=strategy.prefix_padding_ms,
    )


# --- the endpoints -------------------------------------------------------------------------------------


def transcription_job(fields: list[tuple[str, str]]) -> Job:
    p: TranscriptionParams = validate_params(TranscriptionParams, normalise_form(fields))
    check_format(p.response_format, p.timestamp_granularities, p.include, stream=p.stream)
    language = p.language or (p.languages[0] if len(p.languages) == 1 else None)
    prompt = p.prompt
    if p.keywords:
        prompt = ((prompt or "") + " " + ", ".join(p.keywords)).strip()
    options = TranscribeOptions(
        task="transcribe",
        language=language,
        prompt=prompt,
        temperature=p.temperature,
        word_timestamps="word" in p.timestamp_granularities,
        logprobs="logprobs" in p.include,
    )
    render_body = _renderer(
        p.response_format,
        task="transcribe",
        granularities=p.timestamp_granularities,
        logprobs=options.logprobs,
    )
    return Job("transcribe", p.model, options, render_body, p.chunking_strategy, stream=p.stream)


def translation_job(fields: list[tuple[str, str]]) -> Job:
    p: TranslationParams = validate_params(TranslationParams, normalise_form(fields))
    check_format(p.response_format, [], [])
    options = TranscribeOptions(task="translate", prompt=p.prompt, temperature=p.temperature)
    render_body = _renderer(p.response_format, task="translate", granularities=[], logprobs=False)
    return Job("translate", p.model, options, render_body, p.chunking_strategy)


@router.post(
    "/transcriptions",
    openapi_extra=multipart_schema(TranscriptionParams),
    summary="Transcribe audio into the input language",
    response_model=None,
)
async def transcriptions(request: Request, deps: Deps = Depends(get_deps)) -> Response:
    async with multipart_form(request) as (upload, fields):
        return await _transcribe(request, deps, upload, transcription_job(fields))


@router.post(
    "/translations",
    openapi_extra=multipart_schema(TranslationParams),
    summary="Translate audio into English",
    response_model=None,
)
async def translations(request: Request, deps: Deps = Depends(get_deps)) -> Response:
    async with multipart_form(request) as (upload, fields):
        return await _transcribe(request, deps, upload, translation_job(fields))
