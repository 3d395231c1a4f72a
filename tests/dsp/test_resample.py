"""dsp.resample against scipy.signal.resample_poly, analytic sines, and its own streaming form."""

from __future__ import annotations

from math import gcd

import numpy as np
import pytest
import scipy.signal as ss

from dsp.resample import Resampler, resample

RATES = [(16000, 24000), (48000, 16000), (44100, 16000), (24000, 16000), (22050, 48000)]


def _bandlimited(
    rate: int, cutoff_hz: float, seconds: float = 1.0, channels: int | None = None
) -> np.ndarray:
    """Deterministic low-passed noise at ``rate`` Hz: [frames] or [frames, channels] float32."""
    rng = np.random.default_rng(rate)
    shape = (int(rate * seconds),) if channels is None else (int(rate * seconds), channels)
    b, a = ss.butter(8, cutoff_hz / (rate / 2))
    return ss.lfilter(b, a, rng.standard_normal(shape), axis=0).astype(np.float32)


@pytest.mark.parametrize(("src", "dst"), RATES)
def test_matches_scipy_resample_poly(src: int, dst: int) -> None:
    # Content below 60% of the lower Nyquist: both filters are flat there, so they must agree closely.
    x = _bandlimited(src, 0.6 * min(src, dst) / 2)
    y = resample(x, src, dst)
    g = gcd(src, dst)
    ref = ss.resample_poly(x.astype(np.float64), dst // g, src // g)
    assert y.dtype == np.float32
    assert y.shape == ref.shape == (dst,)
    mid = slice(dst // 10, dst - dst // 10)  # edges differ by filter start-up conventions
    rel = np.sqrt(np.mean((y[mid] - ref[mid]) ** 2) / np.mean(ref[mid] ** 2))
    assert rel < 0.01


def test_sine_keeps_frequency_and_amplitude() -> None:
    src, dst, f = 44100, 16000, 1000.0
    t_src = np.arange(src) / src
    y = resample(np.sin(2 * np.pi * f * t_src).astype(np.float32), src, dst)
    expected = np.sin(2 * np.pi * f * np.arange(dst) / dst)
    mid = slice(1000, dst - 1000)
    assert np.max(np.abs(y[mid] - expected[mid])) < 1e-3


def test_multichannel_is_per_channel() -> None:
    x = _bandlimited(48000, 6000, seconds=0.5, channels=2)
    y = resample(x, 48000, 16000)
    assert y.shape == (8000, 2)
    for ch in range(2):
        np.testing.assert_allclose(
            y[:, ch], resample(np.ascontiguousarray(x[:, ch]), 48000, 16000), atol=1e-6
        )


def test_identity_and_dtypes() -> None:
    x = _bandlimited(16000, 4000, seconds=0.1)
    assert np.array_equal(resample(x, 16000, 16000), x)
    x64 = x.astype(np.float64)
    assert resample(x64, 16000, 8000).dtype == np.float64
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    np.testing.assert_array_equal(resample(pcm, 8000, 8000), [0.0, 0.5, -1.0, 32767 / 32768])
    assert resample(np.zeros((0, 2), np.float32), 16000, 24000).shape == (0, 2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        resample(np.zeros(10, np.float32), 0, 16000)
    with pytest.raises(ValueError):
        resample(np.zeros((2, 2, 2), np.float32), 8000, 16000)


@pytest.mark.parametrize("channels", [None, 2])
def test_streaming_matches_one_shot(channels: int | None) -> None:
    x = _bandlimited(16000, 5000, seconds=1.0, channels=channels)
    one_shot = resample(x, 16000, 24000)
    stream = Resampler(16000, 24000, channels=channels)
    sizes = [1, 7, 160, 333, 0, 4000, 1024]
    for _round in range(2):  # the resampler is reusable after flush()
        pieces, pos = [], 0
        for n in [*sizes, len(x)]:
            pieces.append(stream.process(x[pos : pos + n]))
            pos += n
        pieces.append(stream.flush())
        out = np.concatenate(pieces)
        assert out.shape == one_shot.shape
        np.testing.assert_allclose(out, one_shot, atol=1e-6)


def test_streaming_identity_and_shape_check() -> None:
    r = Resampler(24000, 24000)
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    assert np.array_equal(r.process(x), x)
    assert r.flush().shape == (0,)
    with pytest.raises(ValueError):
        Resampler(16000, 24000, channels=2).process(np.zeros(10, np.float32))
