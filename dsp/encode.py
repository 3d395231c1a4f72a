"""Encode float32 waveforms to wav/pcm/mp3/opus/aac/flac, whole or incrementally for streaming responses.

Input samples are float ``[frames]`` (mono) or ``[frames, channels]`` at ``sample_rate`` Hz; they are clipped
to [-1, 1]. ``pcm`` is raw s16le without a header; ``wav`` is 16-bit PCM. The lossy codecs and FLAC go through
PyAV (libmp3lame in MP3, libopus in Ogg, ffmpeg's AAC in ADTS, FLAC native). A :class:`StreamEncoder` emits
ONE continuous file: the container header once, then frames as samples arrive, never a concatenation of files.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from typing import Literal

import av
import numpy as np

from dsp.resample import Resampler

__all__ = [
    "CONTENT_TYPES",
    "AudioFormat",
    "StreamEncoder",
    "encode",
    "open_encoder",
    "to_pcm16",
    "wav_header",
]

AudioFormat = Literal["wav", "pcm", "mp3", "opus", "aac", "flac"]

CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
}

# fmt -> (muxer, encoder, encoder sample format, bit rate per channel or None). The rates favour speech
# (TTS output): 64 kbit/s per channel for mp3/aac, 32 kbit/s per channel for opus.
_AV_CODECS: dict[str, tuple[str, str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", "fltp", 64_000),
    "opus": ("ogg", "libopus", "flt", 32_000),
    "aac": ("adts", "aac", "fltp", 64_000),
    "flac": ("flac", "flac", "s16", None),
}
_UNKNOWN_SIZE = 0xFFFFFFFF


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples (any shape) to int16: clip to [-1, 1], scale by 32768, round, saturate at 32767."""
    scaled = np.rint(np.clip(samples, -1.0, 1.0) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def wav_header(sample_rate: int, channels: int, frames: int | None) -> bytes:
    """A 44-byte RIFF/WAVE header for 16-bit PCM; ``frames=None`` writes the streaming 0xFFFFFFFF sizes."""
    if frames is None:
        data_size = riff_size = _UNKNOWN_SIZE
    else:
        data_size = min(frames * channels * 2, _UNKNOWN_SIZE - 36)
        riff_size = 36 + data_size
    block = channels * 2
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", riff_size, b"WAVE", b"fmt ", 16, 1, channels, sample_rate, sample_rate * block, block, 16),
        *(b"data", data_size),
    )


def _as_frames(samples: np.ndarray, channels: int) -> np.ndarray:
    """Validate and reshape to float32 ``[frames, channels]``."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1 and channels == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != channels:
        raise ValueError(f"expected [frames] or [frames, {channels}] samples, got shape {x.shape}")
    return x


class StreamEncoder:
    """Incremental encoder: :meth:`write` returns the encoded bytes ready so far, :meth:`close` the rest.

    ``sample_rate`` and ``channels`` describe the input; the concatenation of everything returned is one file
    of type :attr:`content_type`. Use :func:`open_encoder` to make one.
    """

    content_type: str

    def __init__(self, fmt: AudioFormat, sample_rate: int, channels: int) -> None:
        if sample_rate <= 0 or channels < 1:
            raise ValueError(f"bad encoder parameters: sample_rate={sample_rate}, channels={channels}")
        self.fmt = fmt
        self.sample_rate = sample_rate
        self.channels = channels
        self.content_type = CONTENT_TYPES[fmt]
        self.closed = False

    def write(self, samples: np.ndarray) -> bytes:
        """Encode ``[frames]``/``[frames, channels]`` float samples; returns the bytes ready (maybe empty)."""
        if self.closed:
            raise ValueError("write() on a closed encoder")
        return self._write(_as_frames(samples, self.channels))

    def close(self) -> bytes:
        """Flush the encoder and the container trailer; returns the final bytes. Idempotent."""
        if self.closed:
            return b""
        self.closed = True
        return self._close()

    def _write(self, x: np.ndarray) -> bytes:
        raise NotImplementedError

    def _close(self) -> bytes:
        raise NotImplementedError

    def __enter__(self) -> StreamEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PcmEncoder(StreamEncoder):
    """``pcm`` (raw s16le) or streamed ``wav`` (header with unknown sizes, then raw frames)."""

    def __init__(self, fmt: AudioFormat, sample_rate: int, channels: int) -> None:
        super().__init__(fmt, sample_rate, channels)
        self._header = wav_header(sample_rate, channels, None) if fmt == "wav" else b""

    def _take_header(self) -> bytes:
        header, self._header = self._header, b""
        return header

    def _write(self, x: np.ndarray) -> bytes:
        return self._take_header() + to_pcm16(x).tobytes()

    def _close(self) -> bytes:
        return self._take_header()


class _Sink:
    """A write-only file for PyAV: having no ``seek`` makes the muxer treat the output as a stream."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def _codec_rate(codec_name: str, rate: int) -> int:
    """``rate`` if the encoder accepts it, else the nearest higher supported rate (48 kHz for opus)."""
    supported = av.Codec(codec_name, "w").audio_rates
    if not supported or rate in supported:
        return rate
    if codec_name == "libopus":
        return 48000
    higher = [r for r in supported if r >= rate]
    return min(higher) if higher else max(supported)


class _AvEncoder(StreamEncoder):
    """mp3/opus/aac/flac through PyAV. ``streaming=False`` muxes into a seekable buffer (exact headers)."""

    def __init__(self, fmt: AudioFormat, sample_rate: int, channels: int, streaming: bool = True) -> None:
        super().__init__(fmt, sample_rate, channels)
        if channels > 2:
            raise ValueError(f"{fmt} encoding supports 1 or 2 channels, got {channels}")
        muxer, codec, sample_fmt, bit_rate = _AV_CODECS[fmt]
        self._rate = _codec_rate(codec, sample_rate)
        self._resampler = Resampler(sample_rate, self._rate, channels) if self._rate != sample_rate else None
        self._pcm_fmt = "s16" if sample_fmt == "s16" else "flt"
        self._layout = "mono" if channels == 1 else "stereo"
        self._pts = 0
        options = {"flush_packets": "1"} if streaming else {}
        if fmt == "opus" and streaming:
            options["page_duration"] = "200000"  # µs: emit an Ogg page every 200 ms rather than every 1 s
        self._sink: _Sink | io.BytesIO = _Sink() if streaming else io.BytesIO()
        self._container = av.open(self._sink, mode="w", format=muxer, container_options=options)
        try:
            stream = self._container.add_stream(codec, rate=self._rate, layout=self._layout)
            if not isinstance(stream, av.AudioStream):
                raise TypeError(f"{codec} did not give an audio stream")
            self._stream = stream
            self._stream.codec_context.format = sample_fmt
            if bit_rate:
                self._stream.codec_context.bit_rate = bit_rate * channels
            self._container.start_encoding()  # opens the codec and writes the header now
        except Exception:
            self._container.close()
            raise

    def _take(self) -> bytes:
        return self._sink.take() if isinstance(self._sink, _Sink) else b""

    def _encode(self, x: np.ndarray) -> None:
        if x.shape[0] == 0:
            return
        data = to_pcm16(x) if self._pcm_fmt == "s16" else np.clip(x, -1.0, 1.0)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format=self._pcm_fmt, layout=self._layout)
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        frame.pts = self._pts
        self._pts += x.shape[0]
        self._container.mux(self._stream.encode(frame))

    def _write(self, x: np.ndarray) -> bytes:
        self._encode(self._resampler.process(x) if self._resampler else x)
        return self._take()

    def _close(self) -> bytes:
        try:
            if self._resampler:
                self._encode(self._resampler.flush())
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
        if isinstance(self._sink, io.BytesIO):
            return self._sink.getvalue()
        return self._sink.take()


def open_encoder(fmt: AudioFormat, sample_rate: int, channels: int = 1) -> StreamEncoder:
    """A streaming encoder for ``fmt`` taking float ``[frames, channels]`` chunks at ``sample_rate`` Hz.

    mp3 and aac use the nearest supported rate at or above ``sample_rate`` (resampled internally); opus keeps
    8/12/16/24/48 kHz and resamples anything else to 48 kHz. wav/pcm/flac keep the rate as given.
    """
    if fmt in ("wav", "pcm"):
        return _PcmEncoder(fmt, sample_rate, channels)
    if fmt in _AV_CODECS:
        return _AvEncoder(fmt, sample_rate, channels, streaming=True)
    raise ValueError(f"unsupported output format {fmt!r}; expected one of {sorted(CONTENT_TYPES)}")


def encode(samples: np.ndarray, sample_rate: int, fmt: AudioFormat) -> bytes:
    """Encode a whole waveform (float ``[frames]`` or ``[frames, channels]`` at ``sample_rate`` Hz) to ``fmt``.

    Unlike the streamed forms, the whole-file ``wav`` header states exact sizes, mp3 carries a Xing/LAME
    header and FLAC a complete STREAMINFO (sample count and MD5).
    """
    x = np.asarray(samples)
    channels = 1 if x.ndim == 1 else int(x.shape[1])
    frames = _as_frames(x, channels)
    if fmt == "pcm":
        return to_pcm16(frames).tobytes()
    if fmt == "wav":
        return wav_header(sample_rate, channels, frames.shape[0]) + to_pcm16(frames).tobytes()
    if fmt not in _AV_CODECS:
        raise ValueError(f"unsupported output format {fmt!r}; expected one of {sorted(CONTENT_TYPES)}")
    encoder = _AvEncoder(fmt, sample_rate, channels, streaming=False)
    try:
        encoder.write(frames)
    finally:
        out = encoder.close()
    return out
