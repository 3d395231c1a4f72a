"""POST /v1/audio/separations (multipart; our extension): a recording's stems, as a zip of audio files or as
base64 in JSON.

Any channel count and sample rate in; the model hears its own rate and channel count (stereo for every
published model): the recording is resampled (soxr) and each pair of channels is separated as one stereo
recording — a lone channel (mono, or the last of an odd count) as both sides, its stems the mean of the two
—, so a 5.1 file is three stereo jobs. Stems leave at the input's rate and channel layout. Long recordings
run segment by segment on the worker (`models/separation.py`), with progress in the log and in `/metrics`;
a client that disconnects cancels the job.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
import zipfile

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from dsp.encode import encode
from dsp.resample import resample
from models.errors import InvalidRequest
from models.tasks import SeparateOptions, SeparationProgress, Separator
from server.deps import Deps, get_deps, until_disconnect
from server.schemas.audio import multipart_schema, normalise_form, validate_params
from server.schemas.separation import SeparationParams
from server.uploads import decode_audio, multipart_form, read_upload

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/audio", tags=["audio"])

LOG_EVERY_S = 10.0  # at most one progress line per job this often


def channel_groups(channels: int) -> list[tuple[int, ...]]:
    """The input's channels as the stereo recordings the model hears: (0, 1), (2, 3), … and a lone last one."""
    return [tuple(range(c, min(c + 2, channels))) for c in range(0, channels, 2)]


def _stereo(x: np.ndarray, model_channels: int) -> np.ndarray:
    """[frames, n ≤ 2] → [model_channels, frames] (a lone channel on every side)."""
    if x.shape[1] == model_channels:
        return np.ascontiguousarray(x.T)
    return np.ascontiguousarray(np.repeat(x.mean(axis=1, keepdims=True), model_channels, axis=1).T)


def _back(stem: np.ndarray, channels: int) -> np.ndarray:
    """[model_channels, frames] → [frames, channels] for a group of `channels` input channels."""
    return stem.T if stem.shape[0] == channels else stem.mean(axis=0, keepdims=True).T


async def _separate(
    deps: Deps,
    request: Request,
    model_id: str,
    separator: Separator,
    audio: np.ndarray,
    options: SeparateOptions,
) -> dict[str, np.ndarray]:
    """Run one stereo job on the worker, logging and counting its progress; cancelled on disconnect."""
    events = await deps.provider.worker.stream(separator.separate_stream, audio, options)
    segments = deps.metrics.separation_segments.labels(model_id)

    async def run() -> dict[str, np.ndarray]:
        done, last_log, result = 0, time.monotonic(), None
        async for ev in events:
            if isinstance(ev, SeparationProgress):
                segments.inc(ev.done - done)
                done = ev.done
                if time.monotonic() - last_log >= LOG_EVERY_S:
                    last_log = time.monotonic()
                    log.info("separating with %s: %d of %d segments", model_id, ev.done, ev.total)
            else:
                result = ev
        assert isinstance(result, dict)
        return result

    return await until_disconnect(request, run())


def _stems_zip(stems: dict[str, np.ndarray], rate: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if fmt == "wav" else zipfile.ZIP_STORED) as z:
        for name, samples in stems.items():
            z.writestr(f"{name}.{fmt}", encode(samples, rate, fmt))  # type: ignore[arg-type]
    return buf.getvalue()


@router.post(
    "/separations",
    openapi_extra=multipart_schema(SeparationParams),
    summary="Separate a recording into stems (extension)",
    response_model=None,
    responses={200: {"content": {"application/zip": {}, "application/json": {}}}},
)
async def separations(request: Request, deps: Deps = Depends(get_deps)) -> Response:
    async with multipart_form(request) as (upload, fields):
        p: SeparationParams = validate_params(SeparationParams, normalise_form(fields))
        spec = deps.provider.registry.for_task(p.model, "separation")
        async with deps.provider.use(spec.id) as model:
            separator: Separator = model
            unknown = [s for s in p.stems if s not in separator.sources]
            if unknown:
                raise InvalidRequest(
                    f"Unknown stem(s) {', '.join(map(repr, unknown))}: {spec.id} separates "
                    f"{', '.join(separator.sources)}.",
                    param="stems",
                    code="invalid_value",
                )
            data = await read_upload(upload, deps.settings.max_separation_upload_bytes)
            wave = await asyncio.to_thread(
                decode_audio,
                data,
                filename=upload.filename,
                sample_rate=None,
                channels=None,
                max_seconds=deps.settings.max_separation_seconds,
            )
            del data
            options = SeparateOptions(stems=tuple(p.stems) or None, overlap=p.overlap, shifts=p.shifts)
            t0 = time.perf_counter()
            running = deps.metrics.separations_running.labels(spec.id)
            running.inc()
            try:
                stems = await _run(deps, request, spec.id, separator, wave.samples, wave.sample_rate, options)
            finally:
                running.dec()
    if wave.duration > 0:
        deps.metrics.rtf.labels(spec.id, "separate").observe((time.perf_counter() - t0) / wave.duration)
    return await asyncio.to_thread(_render, p, stems, wave.sample_rate, wave.duration)


async def _run(
    deps: Deps,
    request: Request,
    model_id: str,
    separator: Separator,
    samples: np.ndarray,
    rate: int,
    options: SeparateOptions,
) -> dict[str, np.ndarray]:
    """[frames, channels] at `rate` → stem → [frames, channels] at `rate`, one stereo group at a time."""
    frames, channels = samples.shape
    out: dict[str, np.ndarray] = {}
    for group in channel_groups(channels):
        part = samples[:, list(group)]
        heard = await asyncio.to_thread(resample, part, rate, separator.sample_rate)
        stems = await _separate(
            deps, request, model_id, separator, _stereo(heard, separator.channels), options
        )
        for name, stem in stems.items():
            back = await asyncio.to_thread(resample, _back(stem, len(group)), separator.sample_rate, rate)
            target = out.setdefault(name, np.zeros((frames, channels), np.float32))
            n = min(frames, back.shape[0])  # soxr's round trip may differ by a sample
            target[:n, list(group)] = back[:n]
    return out


def _render(p: SeparationParams, stems: dict[str, np.ndarray], rate: int, duration: float) -> Response:
    if p.output == "json":
        body = {
            "stems": {
                name: base64.b64encode(encode(s, rate, p.response_format)).decode("ascii")
                for name, s in stems.items()
            },
            "format": p.response_format,
            "sample_rate": rate,
            "duration": duration,
        }
        return JSONResponse(body)
    return Response(
        _stems_zip(stems, rate, p.response_format),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="stems.zip"'},
    )
