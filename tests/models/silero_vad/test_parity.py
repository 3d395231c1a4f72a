"""Parity with silero-vad 6.2.3 on real speech: per-window probabilities and `get_speech_timestamps`.

Measured on this machine (2-core x86, float32), max abs difference of the speech probabilities over the
windows of jfk / beckett / two_cities (344 / 312 / 1387 windows):

    ours (.jit weights, numpy front end) vs TorchScript `load_silero_vad()`          6.5e-6 / 1.4e-6 / 2.2e-6
    ours (.jit weights, numpy front end) vs onnxruntime `load_silero_vad(onnx=True)` 1.9e-6 / 8.6e-7 / 2.2e-6
    ours (.jit weights, MLX front end)   vs TorchScript                              6.6e-6 / 2.4e-6 / 2.0e-6
    ours (package safetensors) vs TorchScript code on the same tensors, numpy / MLX  2.0e-6 / 1.3e-6 / 3.4e-6
                                                                                     (MLX: 2.0e-6 / 1.2e-6 / 3.8e-6)
    (the two references between themselves: 4.6e-6 / 1.7e-6 / 2.1e-6)

Asserted: 2e-5 absolute. Speech regions are asserted exactly equal, sample for sample, to the reference
`get_speech_timestamps` on the same weights for five parameter sets (default, hysteresis/padding, three
`max_speech_duration_s` values): 45 comparisons, all identical (no probability falls within 2e-5 of a
threshold on these clips).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.silero_vad.family import SileroVadDetector
from tests.support.audio import load_audio
from tests.support.silero import (
    CLIPS,
    import_reference,
    one_torch_thread,
    reference_probabilities,
    vad_options,
)

pytestmark = [pytest.mark.reference, pytest.mark.slow]

ATOL = 2e-5

REGION_PARAMS = [
    {},
    {"threshold": 0.3, "min_silence_duration_ms": 300, "speech_pad_ms": 100},
    {"max_speech_duration_s": 3.0},
    {"threshold": 0.6, "min_speech_duration_ms": 500, "max_speech_duration_s": 1.5, "speech_pad_ms": 0},
    {"min_silence_duration_ms": 0, "speech_pad_ms": 200, "max_speech_duration_s": 5.0},
]


def both_front_ends(det: SileroVadDetector, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(numpy front end, MLX front end) probabilities."""
    host = SileroVadDetector(det.model, front_end="numpy").speech_probabilities(samples)
    mlx = SileroVadDetector(det.model, front_end="mlx").speech_probabilities(samples)
    return host, mlx


@pytest.mark.parametrize("clip", CLIPS)
def test_probabilities_match_torchscript_and_onnx(
    clip: str, detector_on_jit_weights: SileroVadDetector, jit_reference: Any, onnx_reference: Any
) -> None:
    samples = load_audio(clip)
    ref_jit = reference_probabilities(jit_reference, samples)
    ref_onnx = reference_probabilities(onnx_reference, samples)
    host, mlx = both_front_ends(detector_on_jit_weights, samples)
    assert host.shape == mlx.shape == ref_jit.shape == (-(-len(samples) // 512),)
    assert ref_jit.max() > 0.9 and ref_jit.min() < 0.1  # speech and pauses both present
    np.testing.assert_allclose(host, ref_jit, rtol=0, atol=ATOL)
    np.testing.assert_allclose(host, ref_onnx, rtol=0, atol=ATOL)
    np.testing.assert_allclose(mlx, ref_jit, rtol=0, atol=ATOL)


@pytest.mark.parametrize("clip", CLIPS)
def test_probabilities_match_torchscript_on_the_package_weights(
    clip: str, detector: SileroVadDetector, jit_on_package_weights: Any, jit_reference: Any
) -> None:
    samples = load_audio(clip)
    ref = reference_probabilities(jit_on_package_weights, samples)
    host, mlx = both_front_ends(detector, samples)
    np.testing.assert_allclose(host, ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(mlx, ref, rtol=0, atol=ATOL)
    # The two checkpoints of the package are different models (see conftest): not a parity failure.
    assert np.abs(ref - reference_probabilities(jit_reference, samples)).max() > 0.1


@pytest.mark.parametrize("clip", CLIPS)
def test_speech_regions_equal_get_speech_timestamps(
    clip: str,
    detector: SileroVadDetector,
    detector_on_jit_weights: SileroVadDetector,
    jit_reference: Any,
    onnx_reference: Any,
    jit_on_package_weights: Any,
) -> None:
    """`get_speech_timestamps` itself with the default parameters; for the other parameter sets its second
    half, `get_speech_timestamps_from_probs`, on the reference model's probabilities (what
    `get_speech_timestamps` does in 6.2.3, without running the reference model 15 more times per clip)."""
    import torch

    reference = import_reference()
    samples = load_audio(clip)
    models = {"jit": jit_reference, "onnx": onnx_reference, "jit on package weights": jit_on_package_weights}
    with one_torch_thread():
        full = {
            name: [
                (d["start"], d["end"]) for d in reference.get_speech_timestamps(torch.from_numpy(samples), m)
            ]
            for name, m in models.items()
        }
    probs = {name: reference_probabilities(m, samples).tolist() for name, m in models.items()}
    ours = {
        "jit": detector_on_jit_weights,
        "onnx": detector_on_jit_weights,
        "jit on package weights": detector,
    }
    for params in REGION_PARAMS:
        for name, det in ours.items():
            if params:
                ref = reference.get_speech_timestamps_from_probs(
                    probs[name], audio_length_samples=len(samples), **params
                )
                want = [(d["start"], d["end"]) for d in ref]
            else:
                want = full[name]
            got = det.speech_segments(samples, vad_options(params))
            assert got == want, (name, params)
            assert got, (name, params)
