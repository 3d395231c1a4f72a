"""dsp.windows and dsp.spectral against numpy, scipy, librosa and torch.

Tolerances: windows within 1e-7 of scipy/numpy (float32 rounding of float64 maths), 5e-7 of torch's float32; framing exact; STFT within 2e-6 of
the largest bin magnitude (float32 FFTs from different libraries); iSTFT within 1e-5 of the signal peak.
"""

from __future__ import annotations

import librosa
import mlx.core as mx
import numpy as np
import pytest
import scipy.signal
import torch

from dsp.spectral import frame, istft, overlap_add, stft
from dsp.windows import get_window, hamming, hann


def _signal(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(shape[-1]) / 16000
    chirp = np.sin(2 * np.pi * (200 + 900 * t) * t)
    return (0.5 * chirp + 0.1 * rng.standard_normal(shape)).astype(np.float32)


def _rel_err(ours: mx.array, ref: np.ndarray) -> float:
    return float(np.abs(np.array(ours) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("n", [1, 2, 7, 400, 512])
def test_windows_match_scipy_numpy_and_torch(n: int) -> None:
    assert np.abs(np.array(hann(n)) - scipy.signal.get_window("hann", n, fftbins=True)).max() < 1e-7
    assert np.abs(np.array(hamming(n)) - scipy.signal.get_window("hamming", n, fftbins=True)).max() < 1e-7
    assert np.abs(np.array(hann(n, periodic=False)) - np.hanning(n)).max() < 1e-7
    assert np.abs(np.array(hamming(n, periodic=False)) - np.hamming(n)).max() < 1e-7
    # torch builds its window in float32: a few ulps apart.
    assert np.abs(np.array(hann(n)) - torch.hann_window(n).numpy()).max() < 5e-7
    assert np.abs(np.array(get_window("hanning", n, periodic=False)) - np.hanning(n)).max() < 1e-7
    assert np.array(get_window("boxcar", n)).tolist() == [1.0] * n


def test_unknown_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown window"):
        get_window("kaiser", 8)


def test_frame_equals_sliding_window_view_with_batch() -> None:
    x = _signal((2, 3, 1000))
    ref = np.lib.stride_tricks.sliding_window_view(x, 400, axis=-1)[..., ::160, :]
    ours = frame(mx.array(x), 400, 160)
    assert ours.shape == (2, 3, 4, 400)
    np.testing.assert_array_equal(np.array(ours), ref)
    # A non-contiguous input (a slice) frames its logical values.
    sliced = mx.array(x)[:, 1, 7:]
    np.testing.assert_array_equal(
        np.array(frame(sliced, 64, 50)),
        np.swapaxes(librosa.util.frame(x[:, 1, 7:], frame_length=64, hop_length=50), -1, -2),
    )


@pytest.mark.parametrize(("length", "hop"), [(400, 160), (512, 128), (100, 100), (7, 3), (5, 8)])
def test_overlap_add_equals_naive_loop(length: int, hop: int) -> None:
    frames = np.random.default_rng(1).standard_normal((2, 9, length)).astype(np.float32)
    ref = np.zeros((2, 8 * hop + length), np.float32)
    for i in range(9):
        ref[:, i * hop : i * hop + length] += frames[:, i]
    ours = overlap_add(mx.array(frames), hop)
    assert ours.shape == ref.shape
    assert np.abs(np.array(ours) - ref).max() < 1e-5


@pytest.mark.parametrize(
    ("n_fft", "hop", "win_length", "window"),
    [(400, 160, None, "hann"), (512, 128, 400, "hann"), (256, 64, None, "hamming"), (1024, 256, 1024, None)],
)
def test_stft_matches_torch_centred_reflect_batched(
    n_fft: int, hop: int, win_length: int | None, window: str | None
) -> None:
    x = _signal((2, 8000))
    wl = win_length or n_fft
    torch_window = {"hann": torch.hann_window(wl), "hamming": torch.hamming_window(wl), None: None}[window]
    ref = torch.stft(
        torch.from_numpy(x),
        n_fft,
        hop,
        win_length=wl,
        window=torch_window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).numpy()
    ours = stft(mx.array(x), n_fft, hop, window, win_length=win_length)
    assert ours.shape == ref.shape == (2, n_fft // 2 + 1, 1 + 8000 // hop)
    assert ours.dtype == mx.complex64
    assert _rel_err(ours, ref) < 2e-6


def test_stft_matches_librosa_constant_pad_and_uncentred() -> None:
    x = _signal((3000,), seed=2)
    for center in (True, False):
        ref = librosa.stft(x, n_fft=512, hop_length=100, window="hann", center=center, pad_mode="constant")
        ours = stft(mx.array(x), 512, 100, "hann", center=center, pad_mode="constant")
        assert ours.shape == ref.shape
        assert _rel_err(ours, ref) < 2e-6


def test_stft_normalized_matches_torch() -> None:
    x = _signal((4000,), seed=3)
    ref = torch.stft(
        torch.from_numpy(x), 256, 64, window=torch.hann_window(256), normalized=True, return_complex=True
    )
    assert _rel_err(stft(mx.array(x), 256, 64, normalized=True), ref.numpy()) < 2e-6


def test_istft_matches_torch_and_reconstructs() -> None:
    x = _signal((2, 6000), seed=4)
    spec = stft(mx.array(x), 512, 128)
    ref = torch.istft(
        torch.from_numpy(np.array(spec)), 512, 128, window=torch.hann_window(512), length=6000
    ).numpy()
    ours = istft(spec, 128, length=6000)
    assert ours.shape == (2, 6000)
    assert np.abs(np.array(ours) - ref).max() < 1e-5
    assert np.abs(np.array(ours) - x).max() < 1e-5
    # Without `length`: (n_frames - 1) * hop samples, like torch.
    ref_free = torch.istft(torch.from_numpy(np.array(spec)), 512, 128, window=torch.hann_window(512)).numpy()
    free = istft(spec, 128)
    assert free.shape == ref_free.shape
    assert np.abs(np.array(free) - ref_free).max() < 1e-5


def test_istft_matches_librosa_with_padding_to_length() -> None:
    x = _signal((5000,), seed=5)
    spec = librosa.stft(x, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="constant")
    ref = librosa.istft(spec, hop_length=160, n_fft=400, window="hann", center=True, length=5200)
    ours = istft(mx.array(spec), 160, n_fft=400, length=5200)
    assert ours.shape == (5200,)
    assert np.abs(np.array(ours) - ref).max() < 1e-5


def test_reflect_padding_needs_enough_samples() -> None:
    with pytest.raises(ValueError, match="reflect"):
        stft(mx.zeros((100,)), 400, 160)
    assert stft(mx.zeros((100,)), 400, 160, pad_mode="constant").shape == (201, 1)
