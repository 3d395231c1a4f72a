"""Decode uploaded audio bytes into float32 waveforms.

The container is sniffed from the bytes (the filename is only a hint for error messages and for the last
resort). WAV, FLAC and MP3 go through miniaudio (fast, no ffmpeg); Ogg (Vorbis/Opus/FLAC), MP4/M4A, WebM/
Matroska, ADTS AAC, CAF and AIFF go through PyAV, which is also the fallback when miniaudio cannot open a
file. Output is always ``float32 [frames, channels]``; see :class:`Waveform`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import av
import miniaudio
import numpy as np

from dsp.resample import Resampler, resample

__all__ = [
    "AudioDecodeError",
    "AudioTooLongError",
    "EmptyAudioError",
    "Waveform",
    "decode",
    "decode_pcm16",
    "probe",
]


class AudioDecodeError(ValueError):
    """The bytes are not decodable audio: unknown format, corrupt or truncated header, no audio stream."""


class EmptyAudioError(ValueError):
    """Zero bytes, or a well-formed file that declares zero samples."""


class AudioTooLongError(ValueError):
    """The audio is longer than the caller's ``max_duration``.

    ``seconds`` is the length known when the limit was hit: the whole length when the container states it,
    else how far decoding had got (decoding stops there). ``limit`` is the ``max_duration`` in seconds.
    """

    def __init__(self, seconds: float, limit: float) -> None:
        super().__init__(f"audio is longer than the {limit:g} s limit ({seconds:.2f} s or more)")
        self.seconds = seconds
        self.limit = limit


@dataclass(frozen=True)
class Waveform:
    """Decoded audio: ``samples`` is float32 ``[frames, channels]`` in [-1, 1] at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate

    def mono(self) -> np.ndarray:
        """The channel average as a contiguous float32 ``[frames]`` array."""
        if self.channels == 1:
            return np.ascontiguousarray(self.samples[:, 0])
        return self.samples.mean(axis=1, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- sniffing

_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MPEG_KBPS = {
    (1, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_QT_ATOMS = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_SCAN_BYTES = 16384


def _mpeg_frame_len(h: bytes) -> int:
    """Length in bytes of the MPEG-1/2/2.5 audio frame whose 4-byte header is ``h``; 0 if not a header."""
    if h[0] != 0xFF or (h[1] & 0xE0) != 0xE0:
        return 0
    version, layer = (h[1] >> 3) & 3, (h[1] >> 1) & 3
    br_idx, sr_idx, pad = h[2] >> 4, (h[2] >> 2) & 3, (h[2] >> 1) & 1
    if version == 1 or layer == 0 or br_idx in (0, 15) or sr_idx == 3:
        return 0
    kbps = _MPEG_KBPS[(1 if version == 3 else 2, layer)][br_idx]
    rate = _MPEG_RATES[version][sr_idx]
    if layer == 3:  # Layer I
        return (12 * kbps * 1000 // rate + pad) * 4
    per_frame = 72 if (layer == 1 and version != 3) else 144
    return per_frame * kbps * 1000 // rate + pad


def _adts_frame_len(h: bytes) -> int:
    """Length in bytes of the ADTS AAC frame whose header starts ``h`` (>= 6 bytes); 0 if not a header."""
    if h[0] != 0xFF or (h[1] & 0xF6) != 0xF0 or ((h[2] >> 2) & 0xF) > 12:
        return 0
    n = ((h[3] & 3) << 11) | (h[4] << 3) | (h[5] >> 5)
    return n if n >= 7 else 0


def _find_sync(data: bytes, start: int) -> str | None:
    """Scan for two consecutive MPEG-audio or ADTS frames (or one that ends exactly at EOF)."""
    end = min(len(data) - 6, start + _SCAN_BYTES)
    i = data.find(b"\xff", start, end)
    while i != -1:
        for kind, frame_len in (("aac", _adts_frame_len), ("mp3", _mpeg_frame_len)):
            n = frame_len(data[i : i + 6])
            if n and (i + n == len(data) or (i + n + 6 <= len(data) and frame_len(data[i + n : i + n + 6]))):
                return kind
        i = data.find(b"\xff", i + 1, end)
    return None


def _id3_end(data: bytes) -> int:
    """Offset just past a leading ID3v2 tag (0 if there is none)."""
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
    return 10 + size + (10 if data[5] & 0x10 else 0)


def probe(data: bytes) -> str | None:
    """Sniff the container from the leading bytes.

    Returns one of ``wav``, ``flac``, ``mp3``, ``aac`` (ADTS), ``ogg`` (Vorbis/FLAC/other in Ogg), ``opus``
    (Opus in Ogg), ``mp4`` (MP4/M4A/MOV), ``webm``, ``matroska``, ``caf``, ``aiff``; None if unrecognised.
    """
    head = data[:64]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "opus" if data[28:36] == b"OpusHead" else "ogg"
    if head[4:8] in _QT_ATOMS:
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head else "matroska"
    if head[:4] == b"caff":
        return "caf"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    start = _id3_end(data)
    if start:
        if data[start : start + 4] == b"fLaC":
            return "flac"
        return _find_sync(data, start) or "mp3"
    return _find_sync(data, 0)


# ---------------------------------------------------------------------------------------------- decoders

_MINIAUDIO_INFO = {
    "wav": miniaudio.wav_get_info,
    "flac": miniaudio.flac_get_info,
    "mp3": miniaudio.mp3_get_info,
}
_AV_DEMUXER = {
    "wav": "wav",
    "flac": "flac",
    "mp3": "mp3",
    "aac": "aac",
    "ogg": "ogg",
    "opus": "ogg",
    "mp4": "mov",
    "webm": "matroska",
    "matroska": "matroska",
    "caf": "caf",
    "aiff": "aiff",
}
# Containers whose header states the duration exactly (not a bitrate estimate).
_EXACT_METADATA = {"wav", "flac", "ogg", "opus", "mp4", "webm", "matroska", "caf", "aiff"}
_CHUNK_FRAMES = 65536


def _too_long(seconds: float, max_duration: float | None, slack: float = 0.0) -> None:
    if max_duration is not None and seconds - slack > max_duration:
        raise AudioTooLongError(seconds, max_duration)


def _wav_data_size(data: bytes) -> int | None:
    """The size field of a RIFF/WAVE file's ``data`` chunk (None if no such chunk is in the bytes)."""
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if data[pos : pos + 4] == b"data":
            return size
        pos += 8 + size + (size & 1)
    return None


def _remix(x: np.ndarray, channels: int) -> np.ndarray:
    """Map ``[frames, c]`` to ``[frames, channels]``: average to mono, copy mono out, else keep the first ones."""
    have = x.shape[1]
    if have == channels:
        return x
    if channels == 1:
        return x.mean(axis=1, keepdims=True, dtype=np.float32)
    if have == 1:
        return np.repeat(x, channels, axis=1)
    if have > channels:
        return np.ascontiguousarray(x[:, :channels])
    return x[:, np.arange(channels) % have]


class _Collector:
    """Gathers decoded chunks, mixing and resampling each as it arrives so that peak memory stays near the
    size of the output, and enforces ``max_duration`` on the source frames counted so far."""

    def __init__(self, sample_rate: int | None, channels: int | None, max_duration: float | None) -> None:
        self.sample_rate, self.channels, self.max_duration = sample_rate, channels, max_duration
        self.src_rate = 0
        self.src_frames = 0
        self._chunks: list[np.ndarray] = []
        self._resampler: Resampler | None = None

    def add(self, x: np.ndarray, rate: int) -> None:
        """Append float32 ``[frames, c]`` decoded at ``rate`` Hz."""
        if not self.src_rate:
            self.src_rate = rate
            self.channels = self.channels or x.shape[1]
            if self.sample_rate and self.sample_rate != rate:
                self._resampler = Resampler(rate, self.sample_rate, self.channels)
        if rate != self.src_rate:  # the rate changed mid-stream (rare): bring it back to the first one
            x = resample(x, rate, self.src_rate)
        self.src_frames += x.shape[0]
        if self.max_duration is not None and self.src_frames > self.max_duration * self.src_rate:
            _too_long(self.src_frames / self.src_rate, self.max_duration)
        x = _remix(x, self.channels or 1)
        self._chunks.append(self._resampler.process(x) if self._resampler else x)

    def waveform(self) -> Waveform:
        if self._resampler:
            self._chunks.append(self._resampler.flush())
        x = np.ascontiguousarray(np.concatenate(self._chunks), dtype=np.float32)
        if not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        return Waveform(x, self.sample_rate or self.src_rate)


def _decode_miniaudio(data: bytes, fmt: str, out: _Collector) -> bool:
    """Decode WAV/FLAC/MP3 with miniaudio into ``out``; False when miniaudio cannot open or decode anything."""
    try:
        info = _MINIAUDIO_INFO[fmt](data)
    except miniaudio.MiniaudioError:
        return False
    nch, rate = int(info.nchannels), int(info.sample_rate)
    if nch <= 0 or rate <= 0:
        return False
    declared = int(info.num_frames)
    if fmt == "wav" and info.sample_width > 0:  # a truncated wav may declare more than it holds
        declared = min(declared, len(data) // (info.sample_width * nch))
    _too_long(declared / rate, out.max_duration)
    try:
        stream = miniaudio.stream_memory(data, miniaudio.SampleFormat.FLOAT32, nch, rate, _CHUNK_FRAMES)
    except miniaudio.MiniaudioError:
        return False
    try:
        for block in stream:
            out.add(np.frombuffer(block, dtype=np.float32).reshape(-1, nch), rate)
    except miniaudio.MiniaudioError:
        pass  # keep what decoded before the damage
    finally:
        stream.close()
    if out.src_frames == 0:
        if fmt == "wav" and _wav_data_size(data) == 0:
            raise EmptyAudioError("the audio file contains no samples")
        return False
    return True


def _frame_to_array(frame: av.AudioFrame) -> np.ndarray:
    """A decoded PyAV frame as float32 ``[samples, channels]``."""
    nch = frame.layout.nb_channels
    arr = frame.to_ndarray()
    arr = arr.T if frame.format.is_planar else arr.reshape(-1, nch)
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    if arr.dtype.kind == "i":
        return (arr.astype(np.float64) / float(2 ** (8 * arr.dtype.itemsize - 1))).astype(np.float32)
    return arr.astype(np.float32, copy=False)


def _av_frames(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[av.AudioFrame]:
    """Decoded frames of ``stream``; packets that fail to decode are skipped, a broken tail ends the stream."""
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except av.FFmpegError:
            break  # container damaged (truncated): keep what decoded so far
        try:
            yield from packet.decode()
        except av.FFmpegError:
            continue
    try:
        yield from stream.codec_context.decode(None)
    except av.FFmpegError:
        return


def _decode_av(data: bytes, fmt: str | None, out: _Collector) -> None:
    """Decode the first audio stream with PyAV into ``out`` (``fmt`` None lets ffmpeg probe)."""
    demuxer = _AV_DEMUXER.get(fmt) if fmt else None
    try:
        container = av.open(io.BytesIO(data), mode="r", format=demuxer, metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise AudioDecodeError(f"cannot open the audio ({fmt or 'unknown format'}): {exc}") from exc
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("the file has no audio stream")
        stream = container.streams.audio[0]
        if fmt in _EXACT_METADATA:
            seconds = [container.duration / 1e6] if container.duration else []
            if stream.duration and stream.time_base:
                seconds.append(float(stream.duration * stream.time_base))
            if seconds:  # with slack: the decoded length is authoritative
                _too_long(min(seconds), out.max_duration, slack=0.5)
        for frame in _av_frames(container, stream):
            out.add(_frame_to_array(frame), frame.sample_rate)
    if out.src_frames == 0:
        raise AudioDecodeError("no audio could be decoded from the file")


def decode(
    data: bytes,
    *,
    sample_rate: int | None = None,
    channels: int | None = 1,
    filename: str | None = None,
    max_duration: float | None = None,
) -> Waveform:
    """Decode an audio file held in memory.

    ``sample_rate``: resample to this rate (Hz, soxr HQ); None keeps the file's rate. ``channels``: mix to
    this many channels (1 = average); None keeps the file's layout. ``filename`` is only a hint: the format
    is sniffed from the bytes. ``max_duration`` (seconds, measured before resampling) is checked from the
    container's metadata when it is exact, and while decoding otherwise, so a long file is never decoded
    whole. Returns a :class:`Waveform` with float32 ``[frames, channels]`` samples.

    Raises :class:`EmptyAudioError` (no bytes, or a file declaring zero samples), :class:`AudioDecodeError`
    (unknown format, corrupt or truncated header, no decodable audio) and :class:`AudioTooLongError`. A file
    whose tail is cut mid-frame decodes to what is complete.
    """
    if len(data) == 0:
        raise EmptyAudioError("the audio file is empty (0 bytes)")
    if channels is not None and channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    data = bytes(data)
    fmt = probe(data)
    if fmt in _MINIAUDIO_INFO:
        out = _Collector(sample_rate, channels, max_duration)
        if _decode_miniaudio(data, fmt, out):
            return out.waveform()
    out = _Collector(sample_rate, channels, max_duration)
    try:
        _decode_av(data, fmt, out)
    except AudioDecodeError as exc:
        if fmt is None:
            hint = f" (named {filename!r})" if filename else ""
            raise AudioDecodeError(f"unrecognised or unsupported audio format{hint}") from exc
        raise
    return out.waveform()


def decode_pcm16(data: bytes, sample_rate: int, channels: int = 1) -> Waveform:
    """Raw signed 16-bit little-endian interleaved PCM (no header) to a float32 ``[frames, channels]`` Waveform.

    A trailing partial frame is dropped; zero bytes give an empty Waveform (no error: streaming chunks may
    be empty). Samples are scaled by 1/32768.
    """
    if sample_rate <= 0 or channels < 1:
        raise ValueError(f"bad PCM parameters: sample_rate={sample_rate}, channels={channels}")
    usable = len(data) - len(data) % (2 * channels)
    pcm = np.frombuffer(data, dtype="<i2", count=usable // 2).reshape(-1, channels)
    return Waveform(pcm.astype(np.float32) / np.float32(32768.0), sample_rate)
