"""dsp.loudness: BS.1770's calibration sine, the standard's 48-kHz filter, a time-domain reference (scipy's
IIR filter) on real speech, the gates, and the gain's cap, peak limit and silence handling.

Tolerances: the K-weighting response equals the standard's biquads to 1e-9; loudness is within 0.02 LU
of the time-domain filter on a sine and 0.05 LU on speech (measured: ≤ 0.01).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.signal as ss
from scipy.io import wavfile

from dsp.loudness import (
    MAX_BOOST_DB,
    _k_biquads,
    integrated_loudness,
    k_weighting,
    loudness_gain_db,
    normalize_loudness,
)
from tests.support.data import speech

SR = 16_000
# ITU-R BS.1770-4, Tables 1 and 2: the K-weighting biquads at 48 kHz, (b, a).
BS1770_48K = [
    ((1.53512485958697, -2.69169618940638, 1.19839281085285), (1.0, -1.69065929318241, 0.73248077421585)),
    ((1.0, -2.0, 1.0), (1.0, -1.99004745483398, 0.99007225036621)),
]


def _clip(name: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # LIST chunks
        sr, pcm = wavfile.read(speech(f"{name}.wav"))
    assert sr == SR
    return (pcm / 32768.0).astype(np.float32)


def _sine(db: float, seconds: float, rate: int = SR, hz: float = 997.0) -> np.ndarray:
    """A sine whose peak is `db` dBFS."""
    t = np.arange(round(seconds * rate)) / rate
    return (10 ** (db / 20) * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _db(a: float) -> float:
    return 20 * math.log10(a)


def _reference_loudness(x: np.ndarray, rate: int, biquads: list) -> float:
    """BS.1770 written out plainly: the biquads in the time domain, then both gates, block by block."""
    y = x.astype(np.float64)
    for b, a in biquads:
        y = ss.lfilter(b, a, y)
    step = round(0.1 * rate)
    z = np.array([np.mean(y[i : i + 4 * step] ** 2) for i in range(0, len(y) - 4 * step + 1, step)])
    loud = -0.691 + 10 * np.log10(np.maximum(z, 1e-30))
    z = z[loud > -70]
    gate = -0.691 + 10 * np.log10(z.mean()) - 10
    z = z[-0.691 + 10 * np.log10(z) > gate]
    return float(-0.691 + 10 * np.log10(z.mean()))


# -------------------------------------------------------------------------------------------- measure


def test_k_weighting_is_the_standards_filter_at_48k() -> None:
    freqs = np.array([20.0, 38.0, 100.0, 997.0, 1500.0, 4000.0, 10_000.0, 20_000.0])
    want = np.ones(len(freqs))
    for b, a in BS1770_48K:
        _, h = ss.freqz(b, a, worN=freqs, fs=48_000)
        want *= np.abs(h) ** 2
    np.testing.assert_allclose(k_weighting(freqs, 48_000), want, rtol=1e-9)
    # the shape: a high-pass below ~100 Hz, +0.69 dB at 997 Hz (hence the −0.691 offset), +4 dB shelf
    got = 10 * np.log10(k_weighting(freqs, 48_000))
    assert got[0] < got[1] < got[2] < 0 and got[1] < -5
    assert got[3] == pytest.approx(0.69, abs=0.01) and got[5] == pytest.approx(4.0, abs=0.1)


def test_calibration_sine_measures_its_level() -> None:
    # BS.1770: a 997-Hz sine at 0 dBFS peak reads −3.01 LUFS; at 48 kHz the standard's own filter
    assert integrated_loudness(_sine(-20.0, 5.0, 48_000), 48_000) == pytest.approx(-23.01, abs=0.02)
    # At 16 kHz the bilinear shelf sits a little lower at 997 Hz: the time-domain filter reads the same
    x = _sine(-20.0, 5.0)
    ref = _reference_loudness(x, SR, _k_biquads(SR))
    assert ref == pytest.approx(-22.97, abs=0.02)
    assert integrated_loudness(x, SR) == pytest.approx(ref, abs=0.02)
    # 20 dB down reads 20 LU lower
    assert integrated_loudness(_sine(-40.0, 5.0), SR) == pytest.approx(ref - 20.0, abs=0.01)


@pytest.mark.parametrize(("name", "lufs"), [("jfk", -15.39), ("beckett", -30.44), ("two_cities_16k", -35.58)])
def test_speech_matches_the_time_domain_filter(name: str, lufs: float) -> None:
    x = _clip(name)
    ours = integrated_loudness(x, SR)
    assert ours == pytest.approx(_reference_loudness(x, SR, _k_biquads(SR)), abs=0.05)
    assert ours == pytest.approx(lufs, abs=0.05)


def test_gating_ignores_silence_and_a_quiet_floor() -> None:
    # Only the six blocks that straddle the tone's edges (partly tone) pass the gates besides the tone's
    # own: −0.07 LU over 20 s. Ungated, the half of silence would read 3 dB lower.
    tone = _sine(-20.0, 20.0)
    level = integrated_loudness(tone, SR)
    # 20 s of digital silence: every block of it below the absolute gate
    with_silence = np.concatenate([np.zeros(10 * SR, np.float32), tone, np.zeros(10 * SR, np.float32)])
    assert integrated_loudness(with_silence, SR) == pytest.approx(level, abs=0.1)
    assert _db(float(np.sqrt(np.mean(with_silence.astype(np.float64) ** 2)))) < _db(10 ** (-20 / 20)) - 5.9
    # 20 s of noise at −50 dBFS passes the absolute gate but not the relative one (−10 LU)
    floor = (10 ** (-50 / 20) * np.random.default_rng(0).standard_normal(20 * SR)).astype(np.float32)
    with_floor = np.concatenate([floor[: 10 * SR], tone, floor[10 * SR :]])
    assert integrated_loudness(with_floor, SR) == pytest.approx(level, abs=0.1)
    assert integrated_loudness(floor, SR) == pytest.approx(-47.3, abs=0.3)  # alone it is measured
    assert integrated_loudness(with_floor, SR) == pytest.approx(
        _reference_loudness(with_floor, SR, _k_biquads(SR)), abs=0.02
    )


def test_short_audio_is_one_block() -> None:
    x = _sine(-20.0, 0.25)  # shorter than a 400-ms block
    assert integrated_loudness(x, SR) == pytest.approx(integrated_loudness(_sine(-20.0, 5.0), SR), abs=0.1)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="mono"):
        integrated_loudness(np.zeros((SR, 2), np.float32), SR)
    with pytest.raises(ValueError, match="rate"):
        integrated_loudness(np.zeros(SR, np.float32), 0)


# ----------------------------------------------------------------------------------------------- gain


def test_quiet_speech_is_raised_to_the_target() -> None:
    quiet = _clip("jfk") * np.float32(10 ** (-40 / 20))  # −55.3 LUFS (its pauses now fall below −70)
    level = integrated_loudness(quiet, SR)
    assert level == pytest.approx(-55.34, abs=0.02)
    assert loudness_gain_db(quiet, SR, -23.0) == pytest.approx(-23.0 - level, abs=1e-9)
    out = normalize_loudness(quiet, SR, -23.0)
    assert out.dtype == np.float32 and out is not quiet
    np.testing.assert_allclose(out, quiet * 10 ** ((-23.0 - level) / 20), rtol=1e-6)  # one gain
    # raised, the pauses pass the absolute gate again and pull the reading 0.05 LU below the target
    assert integrated_loudness(out, SR) == pytest.approx(-23.0, abs=0.1)


def test_boost_is_capped() -> None:
    faint = _clip("jfk") * np.float32(10 ** (-50 / 20))  # −64.5 LUFS: 41.5 dB below the target
    level = integrated_loudness(faint, SR)
    assert level == pytest.approx(-64.54, abs=0.02)
    assert MAX_BOOST_DB == 40.0
    assert loudness_gain_db(faint, SR, -23.0) == MAX_BOOST_DB
    np.testing.assert_allclose(normalize_loudness(faint, SR, -23.0), faint * 100, rtol=1e-6)
    assert loudness_gain_db(faint, SR, -23.0, max_boost_db=10.0) == 10.0


def test_peak_limits_the_boost() -> None:
    x = _sine(-40.0, 5.0)
    x[SR] = 0.5  # one click at −6 dBFS: the sine alone would get +17 dB
    gain = loudness_gain_db(x, SR, -23.0)
    assert gain == pytest.approx(-1.0 - _db(0.5), abs=1e-9)  # the peak lands on −1 dBFS
    out = normalize_loudness(x, SR, -23.0)
    assert _db(float(np.abs(out).max())) == pytest.approx(-1.0, abs=1e-4)
    # a peak already above the ceiling: no boost, and the limit never turns into a cut
    x[SR] = 0.99
    assert loudness_gain_db(x, SR, -23.0) == 0.0


def test_loud_audio_is_left_alone_unless_cuts_are_allowed() -> None:
    x = _clip("jfk")  # −15.4 LUFS
    assert loudness_gain_db(x, SR, -23.0) == 0.0
    assert normalize_loudness(x, SR, -23.0) is x  # not even copied
    cut = normalize_loudness(x, SR, -23.0, max_cut_db=20.0)
    assert integrated_loudness(cut, SR) == pytest.approx(-23.0, abs=0.01)
    assert loudness_gain_db(x, SR, -23.0, max_cut_db=3.0) == -3.0


@pytest.mark.parametrize(
    "quiet",
    [
        np.zeros(0, np.float32),
        np.zeros(10 * SR, np.float32),
        (1e-4 * np.random.default_rng(1).standard_normal(10 * SR)).astype(np.float32),  # −80 dBFS
        _sine(-75.0, 5.0),  # −78 LUFS
    ],
    ids=["empty", "digital-silence", "noise-80dBFS", "sine-75dBFS"],
)
def test_silence_in_silence_out(quiet: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero or invalid-value warnings either
        assert integrated_loudness(quiet, SR) == -math.inf
        assert loudness_gain_db(quiet, SR, -23.0) == 0.0
        out = normalize_loudness(quiet, SR, -23.0)
    assert out.shape == quiet.shape and not np.isnan(out).any()
    np.testing.assert_array_equal(out, quiet)
