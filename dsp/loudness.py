"""Programme loudness (ITU-R BS.1770-4 integrated loudness, gated) and a capped gain toward a target level.

The measure is BS.1770's: K-weighting, mean squares of 400-ms blocks overlapping by 75 %, an absolute gate
at −70 LUFS (digital near-silence is not programme) and a relative gate 10 LU below the loudness of the
blocks that pass it (pauses, breaths and a noise floor between phrases do not pull the level down), then
L = −0.691 + 10·log10(mean square of the blocks left), in LUFS. Mono only: a channel sum is the caller's.

K-weighting is applied as its power response |H(f)|² in the frequency domain, one real FFT per 100-ms
sub-block (Parseval), rather than as the two IIR biquads run sample by sample: numpy has no IIR filter
(and scipy is not a runtime dependency), the gates only need block energies, and phase does not enter an
energy. The biquads are the standard's, derived for any rate from their analog prototypes (libebur128's
parameters; at 48 kHz they give the standard's published coefficients to 1e-15). What this leaves out is
the filter's ringing across sub-block edges, a few ms against 100: on speech it reads within 0.01 LU of
the time-domain filter (`tests/dsp/test_loudness.py`). An hour at 16 kHz takes ~1 s on one core. Sample
peak, not true peak: the gain is for a copy that a model reads, never for a DAC.

`loudness_gain_db` is the gain toward a target loudness. A boost is capped (`max_boost_db`), so a
recording that is mostly a quiet noise floor is not raised to programme level, and limited by the peak
(`peak_dbfs`: no clipping); audio that no block of passes the absolute gate gets no gain at all (silence
in, silence out). By default it never attenuates: audio already at or above the target is left as it is.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ABSOLUTE_GATE_LUFS",
    "MAX_BOOST_DB",
    "PEAK_DBFS",
    "RELATIVE_GATE_LU",
    "TARGET_LUFS",
    "block_mean_squares",
    "integrated_loudness",
    "k_weighting",
    "loudness_gain_db",
    "normalize_loudness",
]

BLOCK_S = 0.4  # gating block
STEP_S = 0.1  # blocks start every 100 ms (75 % overlap): four sub-blocks per block
SUB_BLOCKS = round(BLOCK_S / STEP_S)
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
OFFSET_DB = -0.691  # so that a 997-Hz sine at 0 dBFS peak measures −3.01 LUFS
TARGET_LUFS = -23.0  # EBU R 128's programme level
# The absolute gate already refuses audio below −70 LUFS; this cap raises the quietest audio that passes it
# to −30 LUFS rather than all the way to the target (speech detectors work there: beckett.wav is −30 LUFS
# as recorded), and bounds how far a noise floor just above the gate is raised.
MAX_BOOST_DB = 40.0
PEAK_DBFS = -1.0
_FFT_BATCH = 1024  # sub-blocks per FFT call: ~6 MB of spectra at 16 kHz


def _k_biquads(rate: int) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """The two K-weighting stages at `rate` Hz as (b, a), a[0] = 1: a high shelf (+4 dB above ~1.7 kHz,
    the head's effect) and the RLB high-pass (~38 Hz)."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = (
        ((vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0),
        (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0),
    )
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    high_pass = ((1.0, -2.0, 1.0), (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0))
    return [shelf, high_pass]


def k_weighting(freqs: np.ndarray, rate: int) -> np.ndarray:
    """|H(f)|² of the K-weighting filter at `freqs` (Hz, below rate / 2), float64."""
    z1 = np.exp(-2j * np.pi * np.asarray(freqs, np.float64) / rate)  # z⁻¹ on the unit circle
    power = np.ones(z1.shape)
    for b, a in _k_biquads(rate):
        h = (b[0] + (b[1] + b[2] * z1) * z1) / (a[0] + (a[1] + a[2] * z1) * z1)
        power *= h.real**2 + h.imag**2
    return power


def _weighted_energies(frames: np.ndarray, rate: int) -> np.ndarray:
    """K-weighted energy (sum of squares) of each row of `frames` (M, L), float64 (M,)."""
    n_frames, length = frames.shape
    # Parseval for a real FFT: bins 1 … ⌈L/2⌉−1 stand for two conjugate bins each, DC and Nyquist for one.
    w = 2.0 * k_weighting(np.fft.rfftfreq(length, 1.0 / rate), rate) / length
    w[0] /= 2.0
    if length % 2 == 0:
        w[-1] /= 2.0
    out = np.empty(n_frames)
    for s in range(0, n_frames, _FFT_BATCH):
        spec = np.fft.rfft(frames[s : s + _FFT_BATCH], axis=1)
        out[s : s + _FFT_BATCH] = (spec.real**2 + spec.imag**2) @ w
    return out


def block_mean_squares(x: np.ndarray, rate: int) -> np.ndarray:
    """K-weighted mean square of every 400-ms block of mono `x`, blocks starting every 100 ms (float64).

    Only whole blocks count, as in the standard; audio shorter than one block is measured as one block of
    what there is (a short request still gets a level). Empty audio has no block."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    step = round(STEP_S * rate)
    n_sub = len(x) // step
    if n_sub < SUB_BLOCKS:
        return _weighted_energies(x[None, :], rate) / len(x) if len(x) else np.zeros(0)
    energies = _weighted_energies(x[: n_sub * step].reshape(n_sub, step), rate)
    sums = np.convolve(energies, np.ones(SUB_BLOCKS), mode="valid")  # block i = sub-blocks i … i+3
    return sums / (SUB_BLOCKS * step)


def _to_power(lufs: float) -> float:
    return float(10.0 ** ((lufs - OFFSET_DB) / 10.0))


def integrated_loudness(x: np.ndarray, rate: int) -> float:
    """Gated integrated loudness of mono `x` in LUFS; −inf when no block passes the absolute gate."""
    z = block_mean_squares(x, rate)
    z = z[z > _to_power(ABSOLUTE_GATE_LUFS)]  # gates compared as powers: no log of a silent block
    if not len(z):
        return -math.inf
    relative = float(np.mean(z)) * 10.0 ** (RELATIVE_GATE_LU / 10.0)
    z = z[z > relative]
    return OFFSET_DB + 10.0 * math.log10(float(np.mean(z)))


def loudness_gain_db(
    x: np.ndarray,
    rate: int,
    target_lufs: float,
    *,
    max_boost_db: float = MAX_BOOST_DB,
    max_cut_db: float = 0.0,
    peak_dbfs: float = PEAK_DBFS,
) -> float:
    """The gain (dB) that takes mono `x` toward `target_lufs`: at most `max_boost_db` up and `max_cut_db`
    down, and a boost no larger than leaves the sample peak at `peak_dbfs` (the peak limit only ever
    shrinks a boost, it never turns one into a cut). 0 for audio whose loudness is −inf (silence)."""
    level = integrated_loudness(x, rate)
    if not math.isfinite(level):
        return 0.0
    gain = min(max(target_lufs - level, -max_cut_db), max_boost_db)
    if gain > 0:
        peak = float(np.max(np.abs(x)))  # > 0: some block passed the gate
        gain = max(0.0, min(gain, peak_dbfs - 20.0 * math.log10(peak)))
    return gain


def normalize_loudness(
    x: np.ndarray,
    rate: int,
    target_lufs: float,
    *,
    max_boost_db: float = MAX_BOOST_DB,
    max_cut_db: float = 0.0,
    peak_dbfs: float = PEAK_DBFS,
) -> np.ndarray:
    """Mono float32 `x` scaled by `loudness_gain_db`: a new array, or `x` itself when the gain is 0."""
    x = np.asarray(x, np.float32)
    gain = loudness_gain_db(
        x, rate, target_lufs, max_boost_db=max_boost_db, max_cut_db=max_cut_db, peak_dbfs=peak_dbfs
    )
    if gain == 0.0:
        return x
    return x * np.float32(10.0 ** (gain / 20.0))
