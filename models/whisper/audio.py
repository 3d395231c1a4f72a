"""Whisper's audio front end: the log-mel spectrogram, in MLX (constants: `models.whisper.constants`).

Matches ``whisper.audio.log_mel_spectrogram`` (periodic Hann window, reflect-padded centred STFT, the
last frame dropped, Slaney mel filters = librosa's, log10 floored at 1e-10, an 8-decade dynamic range
below the peak, then ``(x + 4) / 4``). One difference of layout: ours is ``[..., n_frames, n_mels]``,
the time-major layout that MLX's ``conv1d`` (and ``Whisper.embed_audio``) consumes.
"""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx

from dsp.mel import mel_filterbank, power_spectrogram
from dsp.spectral import stft
from models.whisper.constants import HOP_LENGTH, N_FFT, N_SAMPLES, SAMPLE_RATE


@lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> mx.array:
    """Whisper's filterbank ``[n_mels, N_FFT // 2 + 1]`` (80 or 128): ``librosa.filters.mel(sr=16000, n_fft=400)``."""
    if n_mels not in (80, 128):
        raise ValueError(f"whisper uses 80 or 128 mel bins, got {n_mels}")
    return mel_filterbank(SAMPLE_RATE, N_FFT, n_mels)


def pad_or_trim(array: mx.array, length: int = N_SAMPLES, *, axis: int = -1) -> mx.array:
    """Zero-pad or cut ``array`` along ``axis`` to exactly ``length`` (the encoder wants 30-s chunks)."""
    size = array.shape[axis]
    if size > length:
        return mx.take(array, mx.arange(length), axis=axis)
    if size < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - size)
        return mx.pad(array, widths)
    return array


def log_mel_spectrogram(audio: mx.array, n_mels: int = 80, padding: int = 0) -> mx.array:
    """Log-mel features of 16 kHz mono ``audio`` ``[..., T]`` → float32 ``[..., n_frames, n_mels]``.

    ``n_frames = (T + padding) // HOP_LENGTH`` (openai drops the STFT's last frame). ``padding`` appends
    that many zero samples first, as openai's ``padding=N_SAMPLES`` does for transcription. The dynamic
    range floor (peak − 8) is taken per item of a batch (openai's function sees one item at a time).
    """
    audio = mx.array(audio, dtype=mx.float32) if not isinstance(audio, mx.array) else audio.astype(mx.float32)
    if padding > 0:
        audio = mx.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, padding)])
    spec = stft(audio, N_FFT, HOP_LENGTH, "hann", center=True, pad_mode="reflect")
    power = power_spectrogram(spec[..., :-1])  # [..., n_freq, n_frames]
    mel = mel_filters(n_mels) @ power  # [..., n_mels, n_frames]
    log_spec = mx.log10(mx.maximum(mel, 1e-10))
    peak = mx.max(log_spec, axis=(-2, -1), keepdims=True)
    log_spec = (mx.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
    return mx.swapaxes(log_spec, -1, -2)
