"""Audio for tests: the shared speech clips as float32 arrays, and arrays as WAV bytes."""

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
