"""Uploads are read with a size cap and decoded exactly once, off the event loop, with precise 4xx."""

from __future__ import annotations

import asyncio

from starlette.datastructures import UploadFile

from dsp.audio_io import AudioDecodeError, AudioTooLongError, EmptyAudioError, Waveform, decode
from models.errors import EmptyInput, PayloadTooLarge, UnsupportedMedia

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


def decode_audio(data: bytes, *, filename: str | None, sample_rate: int, max_seconds: float) -> Waveform:
    if not data:
        raise EmptyInput("The uploaded file is empty.", param="file")
    try:
        return decode(data, sample_rate=sample_rate, channels=1, filename=filename, max_duration=max_seconds)
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
