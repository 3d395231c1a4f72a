"""Mel scales, mel filterbanks and (log-)mel spectrograms.

The filterbank follows ``librosa.filters.mel`` step by step (float64 maths, the same float32 rounding
points), so a float32 bank equals librosa's to ~1e-7: Slaney's scale (linear below 1 kHz, logarithmic
above) or HTK's (2595·log10(1 + f/700)), with Slaney area normalisation or none. Whisper's shipped
``mel_filters.npz`` is ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80 | 128)``, i.e. this function
with its defaults.
"""

from __future__ import annotations

from typing import Literal

import mlx.core as mx
import numpy as np

from dsp.spectral import stft

_F_SP = 200.0 / 3  # Slaney: 66.67 Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15 mels
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    """Hz → mels (float64), Slaney's scale by default."""
    f = np.asarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    linear = f / _F_SP
    with np.errstate(divide="ignore"):
        log = _MIN_LOG_MEL + np.log(np.maximum(f, 1e-300) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mels: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    """Mels → Hz (float64), the inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = _F_SP * m
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log, linear)


def mel_frequencies(
    n_mels: int, *, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False
) -> np.ndarray:
    """``n_mels`` frequencies (Hz, float64) evenly spaced on the mel scale from ``fmin`` to ``fmax``."""
    mels = np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels)
    return mel_to_hz(mels, htk=htk)


def mel_filterbank_np(
    sample_rate: int,
    n_fft: int,
    n_mels: int = 128,
    *,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: Literal["slaney"] | None = "slaney",
    dtype: type[np.floating] = np.float32,
) -> np.ndarray:
    """Triangular mel filters as numpy ``[n_mels, n_fft // 2 + 1]`` (rows = filters, columns = FFT bins)."""
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    fmax = float(sample_rate) / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    # librosa rounds the triangles to `dtype` first, then scales them (in float64) and rounds again.
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(dtype)
    if norm == "slaney":
        enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
        weights = (weights * enorm[:, None]).astype(dtype)
    return weights


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int = 128,
    *,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: Literal["slaney"] | None = "slaney",
) -> mx.array:
    """Mel filterbank as a float32 MLX array ``[n_mels, n_fft // 2 + 1]``; see :func:`mel_filterbank_np`."""
    bank = mel_filterbank_np(sample_rate, n_fft, n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    return mx.array(bank)


def power_spectrogram(spec: mx.array, power: float = 2.0) -> mx.array:
    """``|spec| ** power`` of a complex STFT (power 2 computed as re² + im², no square root)."""
    if power == 2.0:
        return mx.square(mx.real(spec)) + mx.square(mx.imag(spec))
    mag = mx.abs(spec)
    return mag if power == 1.0 else mag**power


def mel_spectrogram(
    x: mx.array,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    n_mels: int = 128,
    *,
    window: str | mx.array | None = "hann",
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
    power: float = 2.0,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: Literal["slaney"] | None = "slaney",
) -> mx.array:
    """Mel spectrogram of ``x`` ``[..., T]`` sampled at ``sample_rate`` Hz → float32 ``[..., n_mels, n_frames]``."""
    spec = stft(x, n_fft, hop_length, window, win_length=win_length, center=center, pad_mode=pad_mode)
    bank = mel_filterbank(sample_rate, n_fft, n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    return bank @ power_spectrogram(spec, power)


def power_to_db(s: mx.array, *, amin: float = 1e-10, top_db: float | None = 80.0) -> mx.array:
    """``10·log10(max(s, amin))`` (reference power 1), floored at ``max − top_db`` over the last two axes.

    Equals ``librosa.power_to_db(s, ref=1.0, amin=amin, top_db=top_db)`` for a single spectrogram; with
    leading batch dimensions the floor is taken per spectrogram.
    """
    db = 10.0 * mx.log10(mx.maximum(s, amin))
    if top_db is not None:
        peak = mx.max(db, axis=(-2, -1), keepdims=True)
        db = mx.maximum(db, peak - top_db)
    return db


def log_mel_spectrogram(
    x: mx.array,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    n_mels: int = 128,
    *,
    amin: float = 1e-10,
    top_db: float | None = 80.0,
    **kwargs: object,
) -> mx.array:
    """Log-mel spectrogram in dB ``[..., n_mels, n_frames]``: :func:`power_to_db` of :func:`mel_spectrogram`.

    ``kwargs`` go to :func:`mel_spectrogram` (window, center, pad_mode, power, fmin, fmax, htk, norm).
    Model-specific normalisations (Whisper's) live with the model and build on :func:`mel_spectrogram`.
    """
    mel = mel_spectrogram(x, sample_rate, n_fft, hop_length, n_mels, **kwargs)  # type: ignore[arg-type]
    return power_to_db(mel, amin=amin, top_db=top_db)
