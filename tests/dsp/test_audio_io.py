"""dsp.audio_io: decoding real recordings, sniffing, truncation, limits and error classes."""

from __future__ import annotations

import dataclasses
import io
import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
import scipy.io.wavfile

from dsp.audio_io import (
    AudioDecodeError,
    AudioTooLongError,
    EmptyAudioError,
    Waveform,
    decode,
    decode_pcm16,
    probe,
)
from dsp.encode import encode, open_encoder
from tests.support.data import data_file

MP4 = "music/musdb7-80s-rock/80s-rock.stem.mp4"


def read(rel: str) -> bytes:
    return data_file(rel).read_bytes()


def scipy_float(rel: str) -> np.ndarray:
    """What scipy reads from a 16-bit wav, as float32 [frames, channels] scaled by 1/32768."""
    path = data_file(rel)
    with warnings.catch_warnings():  # beckett.wav carries a chunk scipy does not know; it skips it
        warnings.simplefilter("ignore", scipy.io.wavfile.WavFileWarning)
        _, x = scipy.io.wavfile.read(path)
    assert x.dtype == np.int16
    return (x.reshape(x.shape[0], -1).astype(np.float32)) / np.float32(32768)


def aligned_corr(ref: np.ndarray, y: np.ndarray, max_lag: int = 4000) -> tuple[int, float]:
    """Lag of ``y`` against ``ref`` (both [frames]) by cross-correlation, and the correlation once aligned."""
    n = 1 << (len(ref) + len(y)).bit_length()
    c = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(ref, n)), n)
    lag = int(np.argmax(np.concatenate([c[-max_lag:], c[: max_lag + 1]]))) - max_lag
    shifted = y[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, y.dtype), y])
    m = min(len(ref), len(shifted))
    return lag, float(np.corrcoef(ref[:m], shifted[:m])[0, 1])


# ------------------------------------------------------------------------------------------- real files


@pytest.mark.parametrize(
    ("rel", "fmt", "rate", "channels", "frames"),
    [
        ("speech/jfk.wav", "wav", 16000, 1, 176000),
        ("speech/jfk.mp3", "mp3", 16000, 1, 176000),
        ("speech/jfk.flac", "flac", 44100, 2, 485100),
        ("speech/beckett.wav", "wav", 16000, 1, 159414),
        ("speech/two_cities_16k.wav", "wav", 16000, 1, 709986),
        ("music/slow-motion-dream-excerpt.mp3", "mp3", 44100, 2, None),
        ("music/demucs-test.mp3", "mp3", 44100, 2, None),
        (MP4, "mp4", 44100, 2, None),
    ],
)
def test_real_files_native(rel: str, fmt: str, rate: int, channels: int, frames: int | None) -> None:
    data = read(rel)
    assert probe(data) == fmt
    w = decode(data, channels=None)
    assert w.sample_rate == rate and w.channels == channels
    assert w.samples.dtype == np.float32 and w.samples.flags.c_contiguous
    if frames is not None:
        assert w.frames == frames
    assert 0.05 < float(np.abs(w.samples).max()) <= 1.0
    assert np.all(np.isfinite(w.samples))


@pytest.mark.parametrize("rel", ["speech/jfk.wav", "speech/beckett.wav", "music/musdb7-80s-rock/mixture.wav"])
def test_wav_is_bit_exact_with_scipy(rel: str) -> None:
    w = decode(read(rel), channels=None)
    np.testing.assert_array_equal(w.samples, scipy_float(rel))


def test_mp3_flac_wav_are_the_same_speech() -> None:
    ref = decode(read("speech/jfk.wav")).mono()
    for rel in ("speech/jfk.mp3", "speech/jfk.flac"):
        w = decode(read(rel), sample_rate=16000, channels=1)
        assert w.sample_rate == 16000 and w.channels == 1
        assert abs(w.frames - len(ref)) <= 2000  # mp3: codec delay/padding at most
        lag, corr = aligned_corr(ref, w.mono())
        assert abs(lag) < 2000 and corr > 0.99, (rel, lag, corr)


def test_flac_24bit_values() -> None:
    # 24-bit samples scale by 2^-23: every value is a multiple of it, and the peak reaches well above 16-bit LSB.
    w = decode(read("speech/jfk.flac"), channels=None)
    scaled = w.samples.astype(np.float64) * 2**23
    assert np.array_equal(scaled, np.round(scaled))
    assert np.any(scaled % 256 != 0)  # real 24-bit content, not 16-bit padded


def test_aac_in_mp4_matches_its_wav_decode() -> None:
    w = decode(read(MP4), channels=None)  # first audio stream = the mixture
    ref = scipy_float("music/musdb7-80s-rock/mixture.wav")
    assert abs(w.frames - ref.shape[0]) < 2048
    for ch in range(2):
        lag, corr = aligned_corr(ref[:, ch], w.samples[:, ch])
        assert abs(lag) <= 2048 and corr > 0.99, (ch, lag, corr)


def test_channel_mixing_and_resampling() -> None:
    data = read("speech/jfk.flac")
    stereo = decode(data, channels=None)
    mono = decode(data)  # channels=1 is the default
    np.testing.assert_allclose(mono.samples[:, 0], stereo.samples.mean(axis=1), atol=1e-7)
    up = decode(read("speech/jfk.wav"), channels=2)
    assert up.channels == 2 and np.array_equal(up.samples[:, 0], up.samples[:, 1])
    w16 = decode(data, sample_rate=16000)
    assert (w16.sample_rate, w16.frames) == (16000, 176000)


def test_wrong_filename_hint_is_ignored() -> None:
    mp3 = read("speech/jfk.mp3")
    a = decode(mp3, filename="speech.wav")
    b = decode(read("speech/jfk.flac"), filename="audio.mp3", sample_rate=16000)
    assert a.frames == 176000 and b.frames == 176000
    assert np.array_equal(a.samples, decode(mp3).samples)


def test_sniffs_encoded_formats_and_id3_prefixed_streams() -> None:
    tone = (0.3 * np.sin(np.arange(8000) * 0.05)).astype(np.float32)
    expected = {"wav": "wav", "mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac"}
    for fmt, name in expected.items():
        assert probe(encode(tone, 16000, fmt)) == name  # type: ignore[arg-type]
    assert probe(b"\x00" * 100) is None
    assert probe(b"ID3\x04\x00\x00\x00\x00\x00\x00fLaC\x00\x00\x00\x22") == "flac"


class _LiveSink:
    """A write-only output: muxers then write a live stream (no duration, no seeking back)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)


def _chirps(rate: int, seconds: float) -> np.ndarray:
    """Two different chirps as float32 [frames, 2] (non-periodic, so alignment is unambiguous)."""
    t = np.arange(int(rate * seconds)) / rate
    left = 0.3 * np.sin(2 * np.pi * (200 * t + 300 * t**2))
    right = 0.2 * np.sin(2 * np.pi * (1500 * t - 250 * t**2))
    return np.stack([left, right], axis=1).astype(np.float32)


def _mux(container: str, codec: str, x: np.ndarray, rate: int, live: bool = False, **options: str) -> bytes:
    """Encode float32 [frames, 2] with PyAV into ``container`` (as a browser or another tool would)."""
    out: io.BytesIO | _LiveSink = _LiveSink() if live else io.BytesIO()
    with av.open(out, "w", format=container, container_options=options) as c:
        s = c.add_stream(codec, rate=rate, layout="stereo", options={"strict": "experimental"})
        assert isinstance(s, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return b"".join(out.chunks) if isinstance(out, _LiveSink) else out.getvalue()


@pytest.mark.parametrize(
    ("container", "codec", "live", "options", "name", "min_corr"),
    [
        ("webm", "libopus", False, {}, "webm", 0.99),
        ("webm", "libopus", True, {}, "webm", 0.99),  # like a browser's MediaRecorder
        ("matroska", "flac", False, {}, "matroska", 0.9999),
        ("ipod", "aac", False, {}, "mp4", 0.99),  # .m4a
        ("mp4", "aac", False, {"movflags": "frag_keyframe+empty_moov"}, "mp4", 0.99),  # fragmented
        ("mov", "alac", False, {}, "mp4", 0.9999),
        # .oga/.ogg; ffmpeg's experimental Vorbis *encoder* mangles the 2nd channel (measured 0.62), not us
        ("ogg", "vorbis", True, {}, "ogg", (0.9999, 0.5)),
        ("ogg", "flac", True, {}, "ogg", 0.9999),
        ("mp2", "mp2", True, {}, "mp3", 0.99),  # MPEG-1 Layer II (.mpga/.mpeg), decoded by PyAV
        ("caf", "pcm_s16le", False, {}, "caf", 0.9999),
        ("aiff", "pcm_s16be", False, {}, "aiff", 0.9999),
        ("wav", "pcm_f32le", False, {}, "wav", 0.9999),
        ("wav", "pcm_s24le", False, {}, "wav", 0.9999),
        ("wav", "pcm_mulaw", False, {}, "wav", 0.999),
        ("wav", "pcm_u8", False, {}, "wav", 0.999),
    ],
)
def test_other_containers_and_codecs(
    container: str, codec: str, live: bool, options: dict[str, str], name: str, min_corr: float | tuple
) -> None:
    rate = 48000
    x = _chirps(rate, 2.0)
    data = _mux(container, codec, x, rate, live, **options)
    assert probe(data) == name
    w = decode(data, channels=None, filename="upload.bin")
    assert (w.sample_rate, w.channels) == (rate, 2)
    assert w.duration == pytest.approx(2.0, abs=0.05)
    for ch in range(2):
        lag, corr = aligned_corr(x[:, ch], w.samples[:, ch])
        threshold = min_corr[ch] if isinstance(min_corr, tuple) else min_corr
        assert abs(lag) <= 2112 and corr > threshold, (ch, lag, corr)
    if codec == "pcm_f32le":
        np.testing.assert_array_equal(w.samples, x)
    if codec == "pcm_s24le":
        assert np.max(np.abs(w.samples - x)) <= 2.0**-23


def test_live_webm_limit_is_checked_while_decoding() -> None:
    data = _mux("webm", "libopus", _chirps(48000, 3.0), 48000, live=True)
    with pytest.raises(AudioTooLongError) as err:
        decode(data, max_duration=1.0)
    assert 1.0 < err.value.seconds < 1.1


# ------------------------------------------------------------------------------------- truncation, errors


@pytest.mark.parametrize("rel", ["speech/jfk.wav", "speech/jfk.mp3", "speech/jfk.flac", MP4])
def test_truncated_tail_decodes_the_complete_part(rel: str) -> None:
    data = read(rel)
    full = decode(data, channels=None)
    cut = decode(data[: len(data) // 2 + 3], channels=None)  # cut mid-frame
    assert 0.3 * full.frames < cut.frames < 0.7 * full.frames
    # the decoded part is the start of the full decode (lossy decoders are deterministic)
    n = cut.frames - 4096  # the last frame before the cut may differ (overlap-add not completed)
    np.testing.assert_allclose(cut.samples[:n], full.samples[:n], atol=1e-6)


def test_empty_inputs() -> None:
    with pytest.raises(EmptyAudioError):
        decode(b"")
    with pytest.raises(EmptyAudioError):
        decode(encode(np.zeros(0, np.float32), 16000, "wav"))  # a well-formed wav declaring 0 samples
    assert issubclass(EmptyAudioError, ValueError)


@pytest.mark.parametrize("kind", ["random", "text", "json", "opus header only", "mp3 tag only", "zeros"])
def test_undecodable_inputs(kind: str) -> None:
    silence = np.zeros(0, np.float32)
    data = {
        "random": lambda: np.random.default_rng(0).bytes(50_000),
        "text": lambda: b"This is a text file, not audio.\n" * 500,
        "json": lambda: b'{"file": "speech.mp3"}',
        "opus header only": lambda: encode(silence, 24000, "opus"),
        "mp3 tag only": lambda: encode(silence, 24000, "mp3"),
        "zeros": lambda: bytes(4096),
    }[kind]()
    with pytest.raises(AudioDecodeError):
        decode(data, filename="upload.mp3")
    assert issubclass(AudioDecodeError, ValueError)


@pytest.mark.parametrize(
    ("rel", "keep"), [("speech/jfk.wav", 30), ("speech/jfk.wav", 78), ("speech/jfk.flac", 100)]
)
def test_truncated_header_or_header_without_audio(rel: str, keep: int) -> None:
    # jfk.wav[:78] is its whole header (with a LIST chunk) declaring 352000 data bytes, none present.
    with pytest.raises(AudioDecodeError):
        decode(read(rel)[:keep])


def test_mp4_without_its_media() -> None:
    with pytest.raises(AudioDecodeError):
        decode(read(MP4)[:200])


# ----------------------------------------------------------------------------------------------- limits


def _flac_claiming(seconds: float, data: bytes) -> bytes:
    """Patch a FLAC's STREAMINFO total-sample count (36 bits at byte 21, low nibble) to ``seconds``."""
    info = data[8:42]
    rate = int.from_bytes(info[10:13], "big") >> 4
    total = int(seconds * rate)
    patched = bytearray(data)
    patched[21] = (patched[21] & 0xF0) | (total >> 32)
    patched[22:26] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(patched)


def test_max_duration_boundaries() -> None:
    for rel in ("speech/jfk.wav", "speech/jfk.mp3", "speech/jfk.flac"):
        data = read(rel)
        assert decode(data, max_duration=11.0).duration == pytest.approx(11.0)
        with pytest.raises(AudioTooLongError) as err:
            decode(data, max_duration=10.9)
        assert err.value.seconds == pytest.approx(11.0) and err.value.limit == 10.9
    assert issubclass(AudioTooLongError, ValueError)


def test_three_hour_flac_is_refused_from_its_header() -> None:
    data = _flac_claiming(3 * 3600, read("speech/jfk.flac"))
    with pytest.raises(AudioTooLongError) as err:
        decode(data, max_duration=600)
    assert err.value.seconds == pytest.approx(3 * 3600)  # from metadata: nothing was decoded


def test_mp4_is_refused_from_its_header() -> None:
    with pytest.raises(AudioTooLongError) as err:
        decode(read(MP4), max_duration=3.0)
    assert err.value.seconds == pytest.approx(6.8, abs=0.05)


def test_stream_without_length_stops_decoding_at_the_limit() -> None:
    # ADTS AAC states no duration: decoding must stop right after the limit, not run to the end.
    rate = 8000
    tone = (0.2 * np.sin(2 * np.pi * 300 * np.arange(40 * rate) / rate)).astype(np.float32)
    data = encode(tone, rate, "aac")
    assert decode(data, max_duration=60).duration == pytest.approx(40, abs=0.2)
    with pytest.raises(AudioTooLongError) as err:
        decode(data, max_duration=2.0)
    assert 2.0 < err.value.seconds < 2.5


def test_streamed_wav_with_unknown_sizes_decodes() -> None:
    x = (np.arange(-800, 800) / 1024).astype(np.float32)
    enc = open_encoder("wav", 8000)
    data = enc.write(x) + enc.close()
    assert data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"
    w = decode(data)
    np.testing.assert_array_equal(w.mono(), x)


# ------------------------------------------------------------------------------------- pcm16, Waveform


def test_decode_pcm16() -> None:
    pcm = np.array([0, 1, -1, 32767, -32768, 16384], dtype="<i2")
    w = decode_pcm16(pcm.tobytes() + b"\x07", 24000)  # a trailing odd byte is dropped
    assert w.sample_rate == 24000 and w.samples.shape == (6, 1) and w.samples.dtype == np.float32
    np.testing.assert_array_equal(w.samples[:, 0], pcm / 32768)
    stereo = decode_pcm16(pcm.tobytes(), 16000, channels=2)
    np.testing.assert_array_equal(stereo.samples, pcm.reshape(3, 2) / 32768)
    assert decode_pcm16(b"", 24000).frames == 0


def test_waveform_helpers() -> None:
    samples = np.array([[0.5, -0.5], [1.0, 0.0], [0.25, 0.25], [0.0, 0.0]], dtype=np.float32)
    w = Waveform(samples, 2)
    assert w.duration == 2.0 and w.frames == 4 and w.channels == 2
    np.testing.assert_array_equal(w.mono(), [0.0, 0.5, 0.25, 0.0])
    assert w.mono().dtype == np.float32
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.sample_rate = 3  # type: ignore[misc]
