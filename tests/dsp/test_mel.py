"""dsp.mel against librosa (filterbanks, scales, (log-)mel spectrograms).

Tolerances: filterbanks within 1e-6 of librosa (measured: bit-identical); mel scales within 1e-9 relative;
mel spectrograms within 1e-4 of the peak value (float32 FFT + matmul); dB within 1e-3 dB.
"""

from __future__ import annotations

import librosa
import mlx.core as mx
import numpy as np
import pytest
from scipy.io import wavfile

from dsp.mel import (
    hz_to_mel,
    log_mel_spectrogram,
    mel_filterbank,
    mel_filterbank_np,
    mel_spectrogram,
    mel_to_hz,
)
from tests.support.data import speech


def _speech(seconds: float = 3.0) -> np.ndarray:
    sr, pcm = wavfile.read(speech("jfk.wav"))
    assert sr == 16000
    return (pcm[: int(seconds * sr)] / 32768.0).astype(np.float32)


@pytest.mark.parametrize(
    "kw",
    [
        {"sr": 16000, "n_fft": 400, "n_mels": 80},
        {"sr": 16000, "n_fft": 400, "n_mels": 128},
        {"sr": 22050, "n_fft": 2048, "n_mels": 128, "htk": True},
        {"sr": 44100, "n_fft": 1024, "n_mels": 64, "norm": None, "fmin": 30.0, "fmax": 16000.0},
        {"sr": 24000, "n_fft": 1200, "n_mels": 100, "htk": True, "norm": None},
    ],
)
def test_filterbank_matches_librosa(kw: dict) -> None:
    ref = librosa.filters.mel(**kw)
    args = dict(kw)
    sr, n_fft, n_mels = args.pop("sr"), args.pop("n_fft"), args.pop("n_mels")
    ours = mel_filterbank(sr, n_fft, n_mels, **args)
    assert ours.shape == ref.shape and ours.dtype == mx.float32
    assert np.abs(np.array(ours) - ref).max() <= 1e-6


def test_filterbank_equals_whispers_shipped_table() -> None:
    import whisper  # the reference package ships librosa's banks as mel_filters.npz

    path = f"{whisper.__path__[0]}/assets/mel_filters.npz"
    with np.load(path, allow_pickle=False) as table:
        for n_mels in (80, 128):
            np.testing.assert_array_equal(mel_filterbank_np(16000, 400, n_mels), table[f"mel_{n_mels}"])


def test_mel_scales_match_librosa() -> None:
    hz = np.array([0.0, 20.0, 440.0, 999.9, 1000.0, 1000.1, 4000.0, 8000.0, 22050.0])
    for htk in (False, True):
        np.testing.assert_allclose(hz_to_mel(hz, htk=htk), librosa.hz_to_mel(hz, htk=htk), rtol=1e-12)
        mels = librosa.hz_to_mel(hz, htk=htk)
        np.testing.assert_allclose(
            mel_to_hz(mels, htk=htk), librosa.mel_to_hz(mels, htk=htk), rtol=1e-9, atol=1e-9
        )
    assert abs(float(hz_to_mel(1000.0)) - 15.0) < 1e-12  # where Slaney's scale turns logarithmic


def test_filterbank_rejects_unknown_norm() -> None:
    with pytest.raises(ValueError, match="norm"):
        mel_filterbank(16000, 400, 80, norm="l2")  # type: ignore[arg-type]


def test_mel_spectrogram_matches_librosa_on_speech() -> None:
    x = _speech()
    ref = librosa.feature.melspectrogram(
        y=x, sr=16000, n_fft=512, hop_length=160, n_mels=80, center=True, pad_mode="reflect", power=2.0
    )
    ours = mel_spectrogram(mx.array(x), 16000, 512, 160, 80)
    assert ours.shape == ref.shape
    assert np.abs(np.array(ours) - ref).max() / ref.max() < 1e-4
    mag_ref = librosa.feature.melspectrogram(
        y=x,
        sr=22050,
        n_fft=1024,
        hop_length=256,
        n_mels=64,
        htk=True,
        norm=None,
        power=1.0,
        pad_mode="constant",
    )
    mag = mel_spectrogram(
        mx.array(x), 22050, 1024, 256, 64, htk=True, norm=None, power=1.0, pad_mode="constant"
    )
    assert np.abs(np.array(mag) - mag_ref).max() / mag_ref.max() < 1e-4


def test_log_mel_matches_librosa_power_to_db_and_batches() -> None:
    x = _speech()
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=x, sr=16000, n_fft=400, hop_length=160, n_mels=80, pad_mode="reflect"
        ),
        ref=1.0,
        amin=1e-10,
        top_db=80.0,
    )
    ours = log_mel_spectrogram(mx.array(x), 16000, 400, 160, 80)
    assert np.abs(np.array(ours) - ref).max() < 1e-3
    # Batched: each item is floored against its own peak.
    quiet = 0.01 * x[::-1].copy()
    batch = log_mel_spectrogram(mx.array(np.stack([x, quiet])), 16000, 400, 160, 80)
    single = log_mel_spectrogram(mx.array(quiet), 16000, 400, 160, 80)
    assert batch.shape == (2, *ours.shape)
    assert np.abs(np.array(batch[0]) - np.array(ours)).max() < 1e-4
    assert np.abs(np.array(batch[1]) - np.array(single)).max() < 1e-4
