"""The numpy flow and generator (`cpu_decoder.py`) against the MLX modules on the real joe voice, with the
voice's own noise (the flow's input is a sampled prior, not the deterministic mean), and the backend choice
made once at load."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from models.cpu.conv import available as conv_kernel_built
from models.cpu.conv import describe as describe_convs
from models.errors import WeightsError
from models.piper.cpu_decoder import CPUDecoder
from models.piper.family import PiperVoice, choose_backend
from tests.support.piper import PHRASES


def test_numpy_flow_and_generator_match_mlx(voice: PiperVoice) -> None:
    model = voice.model
    frames = [173, 120]
    rng = np.random.default_rng(5)
    z_p = rng.standard_normal((2, 173, model.config.inter_channels)).astype(np.float32)
    z_p[1, 120:] = 0  # a shorter row, zero past its end as `Piper.__call__` builds it
    mask = mx.array((np.arange(173)[None, :] < np.array(frames)[:, None]).astype(np.float32))[..., None]
    z = model.flow.reverse(mx.array(z_p), mask, None)
    expected = np.array(model.dec(z * mask, None, mx.array(frames)))
    got = np.array(CPUDecoder(model.flow, model.dec)(mx.array(z_p), None, frames))
    hop = model.config.hop_length
    assert got.shape == expected.shape == (2, 173 * hop)
    peak = np.abs(expected).max()
    assert 0.05 < peak <= 1.0
    for row, n in enumerate(frames):
        np.testing.assert_allclose(got[row, : n * hop], expected[row, : n * hop], atol=1e-4 * peak, rtol=0)
    assert not got[1, 120 * hop :].any()  # nothing past the shorter row's end


def test_the_backend_is_chosen_once_at_load(voice: PiperVoice) -> None:
    assert mx.default_device() == mx.cpu  # this suite runs on the CPU
    model = voice.model
    assert voice.details["backend"] == "cpu" and "numpy" in str(voice.details["backend_reason"])
    assert isinstance(model.cpu_decoder, CPUDecoder)
    assert describe_convs() in str(voice.details["backend_reason"])
    assert ("C conv kernel" in describe_convs()) == conv_kernel_built()
    try:
        assert choose_backend(model, "mlx") == ("mlx", "the MLX model on the CPU (options.backend = 'mlx')")
        assert model.cpu_decoder is None
        ids = voice.phoneme_ids(PHRASES[0])
        mlx_audio = voice.synthesize([ids], noise_scale=0, noise_w=0)[0]
        with pytest.raises(WeightsError, match="use one of mlx, cpu"):
            choose_backend(model, "cuda")
    finally:
        choose_backend(model)
    cpu_audio = voice.synthesize([ids], noise_scale=0, noise_w=0)[0]
    assert cpu_audio.shape == mlx_audio.shape
    assert np.abs(cpu_audio - mlx_audio).max() < 1e-4
