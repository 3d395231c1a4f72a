"""Audio for tests: the shared speech clips as float32 arrays, arrays as WAV bytes, and the distances tests
bound synthesized audio with (log-mel dB, SNR)."""

from __future__ import annotations

import io
import warnings
import wave

import numpy as np

from tests.support.data import speech


def load_audio(name: str) -> np.ndarray:
    """The clip `speech/{name}.wav` of the test data as mono float32 at 16 kHz (skips when it is absent)."""
    from scipy.io import wavfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # beckett.wav carries a LIST chunk
        sr, pcm = wavfile.read(speech(f"{name}.wav"))
    assert sr == 16000 and pcm.dtype == np.int16
    return (pcm / 32768.0).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = 16_000) -> bytes:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def mel_db(audio: np.ndarray, sample_rate: int = 24_000) -> np.ndarray:
    """Log-mel power in dB (80 bands, 50-ms Hann frames, 12.5-ms hop), floored 80 dB under its peak (not
    normalised: a gain shows)."""
    from dsp.mel import mel_filterbank_np

    n_fft = round(0.05 * sample_rate)
    hop = n_fft // 4
    padded = np.pad(audio.astype(np.float64), n_fft // 2, mode="reflect")
    count = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:count]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1)) ** 2
    mel = mel_filterbank_np(sample_rate, n_fft, 80).astype(np.float64) @ power.T
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, db.max() - 80.0)


def snr_db(reference: np.ndarray, audio: np.ndarray) -> float:
    """10·log10 of the reference's energy over the difference's (same lengths)."""
    ref = reference.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((audio.astype(np.float64) - ref) ** 2)))
