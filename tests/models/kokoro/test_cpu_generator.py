"""The numpy generator (`cpu_generator.py`) against the MLX generator on the same parameters and inputs (a
real utterance's decoder features and harmonic source), and the backend choice made once at load."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from models.cpu.conv import bf16_available
from models.errors import WeightsError
from models.kokoro.config import KokoroConfig
from models.kokoro.cpu_generator import CPUGenerator
from models.kokoro.family import choose_backend
from models.kokoro.model import Kokoro
from models.kokoro.weights import to_mlx
from models.weights import load_into
from tests.support.audio import mel_db, snr_db
from tests.support.kokoro import kokoro_state_dict, style_for, token_ids, voice_pack


@pytest.fixture(scope="module")
def model() -> Kokoro:
    m = Kokoro(KokoroConfig.default())
    load_into(m, to_mlx(kokoro_state_dict()))
    return m


def _generator_inputs(model: Kokoro) -> tuple[mx.array, mx.array, mx.array]:
    ids = token_ids()
    style = mx.array(style_for(voice_pack("af_heart"), ids))
    frames, d, t_en = model.encode(
        mx.array([ids], dtype=mx.int32), mx.array([len(ids)]), style, mx.array([1.0])
    )
    durations = np.maximum(np.rint(np.array(frames[0])), 1).astype(np.int64)
    index = mx.array(np.repeat(np.arange(len(ids)), durations).astype(np.int32))[None, :, None]
    n_frames = int(durations.sum())
    f0, n = model.predictor.f0_n(
        mx.take_along_axis(d, index, axis=1), style[:, 128:], mx.array([n_frames]), mx.ones((1, n_frames, 1))
    )
    s = style[:, :128]
    x = model.decoder.features(mx.take_along_axis(t_en, index, axis=1), f0, n, s)
    return x, s, model.decoder.generator.harmonics(f0, 1.0, mx.random.key(3))


def test_numpy_generator_matches_the_mlx_one(model: Kokoro) -> None:
    x, s, har = _generator_inputs(model)
    expected = np.array(model.decoder.generator(x, s, har))
    got = np.array(CPUGenerator(model.decoder.generator)(x, s, har))
    assert got.shape == expected.shape and expected.shape[1] > 24_000  # over a second of speech
    peak = np.abs(expected).max()
    assert 0.05 < peak < 2.0
    np.testing.assert_allclose(got, expected, atol=1e-4 * peak, rtol=0)


def test_the_backend_is_chosen_once_at_load(model: Kokoro) -> None:
    assert mx.default_device() == mx.cpu  # this suite runs on the CPU
    try:
        backend, reason = choose_backend(model)
        assert backend == "cpu" and "numpy" in reason
        assert isinstance(model.decoder.cpu_generator, CPUGenerator)
        # bfloat16 products by default where the CPU has them (AVX-512 BF16), float32 elsewhere
        assert ("bfloat16" in reason) == bf16_available()
        backend, reason = choose_backend(model, "cpu", "float32")
        assert backend == "cpu" and "bfloat16" not in reason
        backend, reason = choose_backend(model, "mlx")
        assert backend == "mlx" and model.decoder.cpu_generator is None
        with pytest.raises(WeightsError, match="use one of mlx, cpu"):
            choose_backend(model, "cuda")
        with pytest.raises(WeightsError, match="use one of bfloat16, float32"):
            choose_backend(model, "cpu", "int8")
    finally:
        model.decoder.cpu_generator = None


def test_bfloat16_products_stay_close_to_float32(model: Kokoro) -> None:
    """The generator's convolutions with bfloat16 products (the default where AVX-512 BF16 runs them; the
    kernel's portable C elsewhere) against float32 on a real utterance's features. Measured: SNR 46 dB,
    log-mel distance 0.05 dB (between equal models with different noise: ~0.3-0.6 dB)."""
    x, s, har = _generator_inputs(model)
    want = np.array(CPUGenerator(model.decoder.generator)(x, s, har)).reshape(-1)
    got = np.array(CPUGenerator(model.decoder.generator, bf16=True)(x, s, har)).reshape(-1)
    assert got.shape == want.shape and len(want) > 24_000
    assert 35.0 < snr_db(want, got) < 70.0  # close, and not float32
    assert np.abs(mel_db(got) - mel_db(want)).mean() < 0.3
