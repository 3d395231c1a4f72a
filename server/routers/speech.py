"""POST /v1/audio/speech (JSON) and GET /v1/audio/voices.

Audio always streams: one continuous file (one container header, then frames) whose first bytes leave
as soon as the first sentence is synthesized (`stream_format=audio`), or SSE deltas of base64 audio
(`stream_format=sse`). Everything that can be checked — model, voice, text, format — is checked before
the 200; a failure after it ends an audio stream early (logged) or goes in-band in SSE.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from dsp.encode import CONTENT_TYPES, open_encoder
from dsp.resample import Resampler
from models.errors import DomainError, InvalidRequest
from models.provider import ModelProvider
from models.tasks import SpeechOptions, SpeechUsage, Synthesizer
from server import render
from server.deps import get_metrics, get_provider, get_settings, require_json
from server.errors import domain_error_payload, envelope
from server.metrics import Metrics
from server.schemas.speech import SpeechParams, VoiceList, VoiceObject
from server.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/audio", tags=["audio"])

PCM_RATE = 24_000  # `pcm` is s16le mono at 24 kHz whatever the model's rate (clients hard-code it)


def _text(params: SpeechParams, settings: Settings) -> str:
    text = params.input.strip()
    if not text:
        raise InvalidRequest("'input' is empty: give the text to speak.", param="input", code="invalid_value")
    if len(params.input) > settings.max_input_chars:
        raise InvalidRequest(
            f"'input' has {len(params.input)} characters; the limit is {settings.max_input_chars}.",
            param="input",
            code="string_above_max_length",
        )
    return text


@router.post(
    "/speech",
    summary="Generate audio from the input text",
    response_class=StreamingResponse,
    dependencies=[Depends(require_json)],
    responses={200: {"content": {t: {} for t in CONTENT_TYPES.values()} | {"text/event-stream": {}}}},
)
async def speech(
    params: SpeechParams,
    provider: ModelProvider = Depends(get_provider),
    settings: Settings = Depends(get_settings),
    metrics: Metrics = Depends(get_metrics),
) -> StreamingResponse:
    t0 = time.perf_counter()
    text = _text(params, settings)
    spec = provider.registry.for_task(params.model, "speech")
    stack = contextlib.AsyncExitStack()
    try:
        model: Synthesizer = await stack.enter_async_context(provider.use(spec.id))
        options = model.check(text, SpeechOptions(params.voice_id, params.speed, params.instructions))
        events = await provider.worker.stream(model.synthesize_stream, text, options)
    except BaseException:
        await stack.aclose()
        raise
    first = _once(lambda: metrics.time_to_first_audio.labels(spec.id).observe(time.perf_counter() - t0))
    out = _Output(model.sample_rate, params.response_format, first)
    if params.stream_format == "sse":
        body = _sse(events, stack, out)
        return StreamingResponse(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    fmt = params.response_format
    return StreamingResponse(
        _audio(events, stack, out),
        media_type=CONTENT_TYPES[fmt],
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            fn()

    return call


class _Output:
    """Chunks at the model's rate → encoded bytes of one continuous file (pcm resampled to 24 kHz), and the
    usage the synthesizer reported last."""

    def __init__(self, model_rate: int, fmt: str, first: Callable[[], None]) -> None:
        rate = PCM_RATE if fmt == "pcm" else model_rate
        self.resampler = Resampler(model_rate, rate) if rate != model_rate else None
        self.encoder = open_encoder(fmt, rate)  # type: ignore[arg-type]
        self.first = first
        self.usage = SpeechUsage(0, 0)

    async def encoded(self, events: AsyncIterator[object]) -> AsyncIterator[bytes]:
        """The encoded bytes as the model's chunks arrive (not the encoder's tail: `close`)."""
        async for ev in events:
            if isinstance(ev, SpeechUsage):
                self.usage = ev
                continue
            x = np.asarray(ev, np.float32)
            data = self.encoder.write(x if self.resampler is None else self.resampler.process(x))
            if data:
                self.first()
                yield data

    def close(self) -> bytes:
        tail = b"" if self.resampler is None else self.encoder.write(self.resampler.flush())
        return tail + self.encoder.close()


async def _audio(
    events: AsyncIterator[object], stack: contextlib.AsyncExitStack, out: _Output
) -> AsyncIterator[bytes]:
    async with stack:
        try:
            async for data in out.encoded(events):
                yield data
        except Exception:  # after the 200 an audio stream cannot carry an error: end it, say why in the log
            log.exception("speech synthesis failed after the 200; the audio stream ends early")
            return
    yield out.close()


def _delta(data: bytes) -> bytes:
    return render.sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})


async def _sse(
    events: AsyncIterator[object], stack: contextlib.AsyncExitStack, out: _Output
) -> AsyncIterator[bytes]:
    async with stack:
        try:
            async for data in out.encoded(events):
                yield _delta(data)
        except DomainError as exc:
            yield render.sse(domain_error_payload(exc)[1])
            return
        except Exception:
            log.exception("speech synthesis failed after the 200")
            yield render.sse(envelope("The server had an error while synthesizing speech.", "server_error"))
            return
    tail = out.close()
    if tail:
        yield _delta(tail)
    usage = out.usage
    counts = dataclasses.asdict(usage) | {"total_tokens": usage.input_tokens + usage.output_tokens}
    yield render.sse({"type": "speech.audio.done", "usage": counts})


@router.get("/voices", response_model=VoiceList, summary="List the voices of the speech models")
async def voices(model: str | None = None, provider: ModelProvider = Depends(get_provider)) -> VoiceList:
    """Voices of `model` (loading it if needed), or of the default speech model."""
    spec = provider.registry.for_task(model, "speech")
    async with provider.use(spec.id) as loaded:
        synth: Synthesizer = loaded
        return VoiceList(
            data=[
                VoiceObject(id=v.id, name=v.name, model=spec.id, language=v.language, gender=v.gender)
                for v in synth.voices()
            ]
        )
