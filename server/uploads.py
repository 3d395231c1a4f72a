"""Uploads are read with a size cap and decoded exactly once, off the event loop, with precise 4xx."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from dsp.audio_io import AudioDecodeError, AudioTooLongError, EmptyAudioError, Waveform, decode
from models.errors import EmptyInput, InvalidRequest, PayloadTooLarge, UnsupportedMedia
from server.errors import ApiError

_READ_CHUNK = 1 << 20


async def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := await file.read(_READ_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(
                f"The uploaded file is larger than the {max_bytes / (1024 * 1024):g} MiB limit.", param="file"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def decode_audio(
    data: bytes,
    *,
    filename: str | None,
    sample_rate: int | None,
    max_seconds: float,
    channels: int | None = 1,
) -> Waveform:
    if not data:
        raise EmptyInput("The uploaded file is empty.", param="file")
    try:
        return decode(
            data, sample_rate=sample_rate, channels=channels, filename=filename, max_duration=max_seconds
        )
    except EmptyAudioError:
        raise EmptyInput("The uploaded file contains no audio.", param="file") from None
    except AudioTooLongError as exc:
        raise PayloadTooLarge(
            f"The audio is longer than the {max_seconds:g} s limit ({exc}).", param="file"
        ) from None
    except AudioDecodeError as exc:
        raise UnsupportedMedia(
            f"The uploaded file could not be decoded as audio ({exc}). Supported formats: flac, m4a, mp3, "
            "mp4, mpeg, mpga, oga, ogg, opus, wav, webm.",
            param="file",
        ) from None


async def decode_upload(
    file: UploadFile, *, sample_rate: int, max_bytes: int, max_seconds: float
) -> Waveform:
    data = await read_upload(file, max_bytes)
    return await asyncio.to_thread(
        decode_audio, data, filename=file.filename, sample_rate=sample_rate, max_seconds=max_seconds
    )


# --- multipart forms ------------------------------------------------------------------------------------


async def read_form(request: Request) -> FormData:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        raise ApiError(
            415,
            f"Unsupported content type '{ctype or 'none'}': send multipart/form-data.",
            code="unsupported_content_type",
        )
    try:
        return await request.form(max_files=1, max_fields=100)
    except Exception as exc:
        raise InvalidRequest(f"Could not parse the multipart body: {exc}", code="invalid_multipart") from None


@contextlib.asynccontextmanager
async def multipart_form(request: Request) -> AsyncIterator[tuple[UploadFile, list[tuple[str, str]]]]:
    """The parsed multipart form; its spooled upload files are closed when the handler returns."""
    form = await read_form(request)
    try:
        yield split_form(form)
    finally:
        await form.close()


def split_form(form: FormData) -> tuple[UploadFile, list[tuple[str, str]]]:
    upload: UploadFile | None = None
    fields: list[tuple[str, str]] = []
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.append((key, value))
        elif key == "file":
            upload = value
        else:
            raise InvalidRequest(f"Unexpected file field '{key}'.", param=key)
    if upload is None:
        raise InvalidRequest(
            "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
        )
    return upload, fields
