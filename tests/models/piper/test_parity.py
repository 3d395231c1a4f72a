"""Parity with piper-tts 1.8.0 (onnxruntime, fp32) on the same .onnx, deterministic (noise_scale = noise_w = 0),
the same phoneme ids fed to both, through both backends (the MLX model, and the numpy flow and generator
that the CPU runs). Measured on this CPU: waveform max |diff| ≈ 1.2e-5, correlation > 0.99999999;
durations identical; encoder outputs within ~1e-5."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from models.piper.family import PiperVoice, choose_backend
from tests.support.piper import ONNX_NAME, PHRASES

pytestmark = [pytest.mark.reference]

MAX_ABS = 2e-4  # waveform, float32 vs onnxruntime fp32 (measured ≈ 1.2e-5)
MIN_CORR = 0.9999
ENC_ATOL = 1e-4  # prior mean (measured ≈ 1e-5)


@pytest.fixture(params=["cpu", "mlx"])
def backend(voice: PiperVoice, request: pytest.FixtureRequest) -> Any:
    """The voice on one backend (the MLX modules, or the numpy model in float32: what bfloat16 products
    change is bounded in test_cpu_decoder.py); the load-time choice is restored after."""
    assert choose_backend(voice.model, request.param, "float32")[0] == request.param
    yield request.param
    choose_backend(voice.model)


def _reference_audio(reference: Any, ids: list[int]) -> np.ndarray:
    from piper import SynthesisConfig

    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=1.0)
    return np.asarray(reference.phoneme_ids_to_audio(ids, cfg), np.float32)


@pytest.mark.parametrize("phrase", PHRASES)
def test_phoneme_ids_follow_piper(voice: PiperVoice, reference: Any, phrase: str) -> None:
    assert voice.phoneme_ids(phrase) == reference.phonemes_to_ids(list(unicodedata.normalize("NFD", phrase)))


@pytest.mark.parametrize("phrase", PHRASES)
def test_waveform_matches_onnxruntime(voice: PiperVoice, reference: Any, phrase: str, backend: str) -> None:
    ids = voice.phoneme_ids(phrase)
    ours = voice.synthesize([ids], noise_scale=0, noise_w=0, length_scale=1)[0]
    theirs = _reference_audio(reference, ids)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape  # durations match exactly
    assert np.abs(ours - theirs).max() <= MAX_ABS
    assert np.corrcoef(ours, theirs)[0, 1] >= MIN_CORR


@pytest.fixture(scope="module")
def intermediate_session(package_data: Path) -> Any:
    """onnxruntime on the .onnx with the durations (/Ceil) and the prior mean (/enc_p/Split) as outputs."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(package_data / ONNX_NAME))
    for name in ("/Ceil_output_0", "/enc_p/Split_output_0"):
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("phrase", PHRASES)
def test_durations_and_encoder_match(
    voice: PiperVoice, intermediate_session: Any, phrase: str, backend: str
) -> None:
    ids = voice.phoneme_ids(phrase)
    feeds = {
        "input": np.array([ids], np.int64),
        "input_lengths": np.array([len(ids)], np.int64),
        "scales": np.array([0, 1, 0], np.float32),
    }
    _, ceil, m_p = intermediate_session.run(None, feeds)
    w, m, _, _ = voice.model.durations(
        mx.array([ids]), mx.array([len(ids)]), length_scale=1.0, noise_w=0.0, keys=None
    )
    np.testing.assert_array_equal(np.array(w)[0], ceil[0, 0])
    np.testing.assert_allclose(np.array(m)[0].T, m_p[0], atol=ENC_ATOL)


def test_a_batch_equals_each_alone(voice: PiperVoice, backend: str) -> None:
    ids = [voice.phoneme_ids(PHRASES[0]), voice.phoneme_ids(PHRASES[1])]
    batch = voice.synthesize(ids, noise_scale=0, noise_w=0)
    alone = [voice.synthesize([i], noise_scale=0, noise_w=0)[0] for i in ids]
    assert [len(a) for a in batch] == [len(a) for a in alone] and len(alone[0]) != len(alone[1])
    for b, a in zip(batch, alone, strict=True):
        np.testing.assert_allclose(b, a, atol=5e-5)  # float rounding of padded shapes (measured 1e-5)


def test_with_noise_a_row_depends_on_its_seed_alone(voice: PiperVoice, backend: str) -> None:
    """Serving uses the voice's own noise: each row draws it from its own seed, so a sentence batched with
    others (of other requests) sounds as it does alone, and another seed changes it."""
    ids = [voice.phoneme_ids(PHRASES[0]), voice.phoneme_ids(PHRASES[1])]
    batch = voice.synthesize(ids, seed=[11, 22])
    alone = [voice.synthesize([i], seed=s)[0] for i, s in zip(ids, (11, 22), strict=True)]
    for b, a in zip(batch, alone, strict=True):
        assert len(b) == len(a)
        np.testing.assert_allclose(b, a, atol=5e-5)
    other = voice.synthesize([ids[0]], seed=12)[0]
    assert len(other) != len(alone[0]) or np.abs(other - alone[0]).max() > 1e-2
