"""Speech probabilities → speech regions: hand-made goldens, and exact equality with the reference
`get_speech_timestamps_from_probs` (silero-vad 6.2.3, the second half of `get_speech_timestamps`) on
thousands of synthetic probability sequences and parameter sets."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from models.silero_vad.vad import speech_regions
from models.tasks import VadOptions
from tests.support.silero import import_reference, vad_options

W = 512


def regions(
    probs: list[float], options: VadOptions | None = None, n: int | None = None
) -> list[tuple[int, int]]:
    p = np.array(probs, np.float32)
    return speech_regions(p, len(p) * W if n is None else n, options or VadOptions())


def test_silence_and_short_bursts_give_nothing() -> None:
    assert regions([]) == []
    assert regions([0.0] * 100) == []
    assert regions([0.0] * 10 + [0.9] * 7 + [0.0] * 10) == []  # 224 ms < min_speech_ms 250


def test_one_region_padded_by_30_ms() -> None:
    # speech windows 10..29; the region ends where the silence began, once it lasted 100 ms
    assert regions([0.0] * 10 + [0.9] * 20 + [0.0] * 20) == [(10 * W - 480, 30 * W + 480)]


def test_hysteresis_keeps_a_region_open_above_threshold_minus_015() -> None:
    probs = [0.9] * 20 + [0.4] * 20 + [0.0] * 10
    assert regions(probs) == [(0, 40 * W + 480)]
    assert regions(probs, VadOptions(threshold=0.6)) == [(0, 20 * W + 480)]  # 0.4 < 0.45 ends it


def test_open_region_runs_to_the_end_of_the_audio() -> None:
    assert regions([0.0] * 2 + [0.9] * 20, n=22 * W - 100) == [(2 * W - 480, 22 * W - 100)]


def test_close_regions_split_the_gap_between_them() -> None:
    options = VadOptions(min_silence_ms=0, speech_pad_ms=100)  # pad 1600 samples, gap 1024 < 3200
    assert regions([0.9] * 10 + [0.0] * 2 + [0.9] * 10 + [0.0] * 4, options) == [
        (0, 10 * W + 512),
        (12 * W - 512, 22 * W + 1600),
    ]


def test_max_speech_cuts_at_the_longest_silence() -> None:
    # silences of 160 ms (windows 10-14) and 256 ms (25-32) inside one region; at 2 s it is cut at the longer
    probs = [0.9] * 10 + [0.0] * 5 + [0.9] * 10 + [0.0] * 8 + [0.9] * 40
    got = regions(probs, VadOptions(min_silence_ms=1000, max_speech_s=2.0))
    assert got[0] == (0, 25 * W + 480)
    assert got[1][0] == 33 * W - 480


def test_max_speech_without_silence_cuts_hard() -> None:
    got = regions([0.9] * 200, VadOptions(max_speech_s=1.0))
    assert len(got) == 7
    assert all(0 < e - s <= 16000 for s, e in got)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(got))  # abutting: gaps split in half


def synthetic_probs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Runs of speech-like and silence-like probabilities with jitter, some hovering near thresholds."""
    out: list[float] = []
    while len(out) < n:
        level = rng.choice([0.02, 0.2, 0.36, 0.45, 0.5, 0.55, 0.7, 0.95])
        out += list(np.clip(level + rng.normal(0, 0.08, int(rng.integers(1, 60))), 0, 1))
    return np.array(out[:n], np.float32)


PARAMS = [
    {},
    {"threshold": 0.3, "min_silence_duration_ms": 300, "speech_pad_ms": 100},
    {"threshold": 0.6, "min_speech_duration_ms": 500, "speech_pad_ms": 0},
    {"max_speech_duration_s": 3.0},
    {"max_speech_duration_s": 1.0, "min_silence_duration_ms": 500},
    {"max_speech_duration_s": 0.5, "speech_pad_ms": 200, "min_silence_duration_ms": 0},
    {"threshold": 0.1, "max_speech_duration_s": 2.0, "min_speech_duration_ms": 0},  # neg threshold 0.01
    {"threshold": 0.5, "min_silence_duration_ms": 2000, "max_speech_duration_s": 5.0, "speech_pad_ms": 30},
]


@pytest.mark.reference
@pytest.mark.parametrize("params", PARAMS, ids=[str(i) for i in range(len(PARAMS))])
def test_equal_to_reference_on_synthetic_probabilities(params: dict[str, Any]) -> None:
    from_probs = import_reference().get_speech_timestamps_from_probs
    rng = np.random.default_rng(len(str(params)))
    total = 0
    for _ in range(300):
        probs = synthetic_probs(rng, int(rng.integers(1, 800)))
        n = len(probs) * W - int(rng.integers(0, W))
        ref = [(d["start"], d["end"]) for d in from_probs(probs.tolist(), audio_length_samples=n, **params)]
        ours = speech_regions(probs, n, vad_options(params))
        assert ours == ref
        total += len(ours)
    assert total > 300  # the sequences do produce regions
