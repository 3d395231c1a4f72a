"""The numpy flow and generator (`cpu_decoder.py`) against the MLX modules on the real joe voice, with the
voice's own noise (the flow's input is a sampled prior, not the deterministic mean), and the backend choice
made once at load."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from models.cpu.conv import available as conv_kernel_built
from models.cpu.conv import bf16_available
from models.cpu.conv import describe as describe_convs
from models.errors import WeightsError
from models.piper.cpu_decoder import CPUDecoder
from models.piper.family import PiperVoice, choose_backend
from tests.support.audio import mel_db, snr_db
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
    # bfloat16 products by default where the CPU has them (AVX-512 BF16), float32 elsewhere
    assert describe_convs(bf16_available()) in str(voice.details["backend_reason"])
    assert ("bfloat16" in str(voice.details["backend_reason"])) == bf16_available()
    assert ("C conv kernel" in describe_convs()) == conv_kernel_built()
    try:
        assert choose_backend(model, "mlx") == ("mlx", "the MLX model on the CPU (options.backend = 'mlx')")
        assert model.cpu_decoder is None
        ids = voice.phoneme_ids(PHRASES[0])
        mlx_audio = voice.synthesize([ids], noise_scale=0, noise_w=0)[0]
        with pytest.raises(WeightsError, match="use one of mlx, cpu"):
            choose_backend(model, "cuda")
        with pytest.raises(WeightsError, match="use one of bfloat16, float32"):
            choose_backend(model, None, "float16")
        backend, reason = choose_backend(model, None, "float32")
        assert backend == "cpu" and "bfloat16" not in reason
        cpu_audio = voice.synthesize([ids], noise_scale=0, noise_w=0)[0]
    finally:
        choose_backend(model)
    assert cpu_audio.shape == mlx_audio.shape
    assert np.abs(cpu_audio - mlx_audio).max() < 1e-4


def test_bfloat16_products_stay_close_to_float32(voice: PiperVoice) -> None:
    """The generator's convolutions with bfloat16 products (the default where AVX-512 BF16 runs them; the
    kernel's portable C elsewhere) against float32, on all three phrases in deterministic mode. Measured:
    SNR 42 dB, log-mel distance 0.11 dB (between equal models with different noise: ~0.3-0.6 dB)."""
    model = voice.model
    ids = voice.phoneme_ids(" ".join(PHRASES))
    f32 = model.cpu_decoder
    bf16 = CPUDecoder(model.flow, model.dec, bf16=True)
    try:
        model.cpu_decoder = CPUDecoder(model.flow, model.dec, bf16=False)
        want = voice.synthesize([ids], noise_scale=0, noise_w=0)[0]
        model.cpu_decoder = bf16
        got = voice.synthesize([ids], noise_scale=0, noise_w=0)[0]
    finally:
        model.cpu_decoder = f32
    assert got.shape == want.shape and len(want) > 5 * voice.sample_rate  # durations come before the vocoder
    snr = snr_db(want, got)
    assert 35.0 < snr < 70.0  # close, and not float32 (which would be ~100 dB or exact)
    rate = voice.sample_rate
    assert np.abs(mel_db(got, rate) - mel_db(want, rate)).mean() < 0.3


def test_padded_shapes_do_not_change_the_audio(voice: PiperVoice) -> None:
    """What a GPU load sets (`choose_backend`: ids padded to multiples of 16, frames to multiples of 64, so
    MLX sees a few shapes), here on the MLX model: each row of a padded batch equals the unpadded row, noise
    included."""
    model = voice.model
    ids = [voice.phoneme_ids(PHRASES[1]), voice.phoneme_ids(PHRASES[0])]
    assert max(map(len, ids)) % 16  # so the id axis really is padded
    try:
        choose_backend(model, "mlx")
        assert (model.token_bucket, model.frame_bucket) == (1, 1)
        plain = voice.synthesize(ids, seed=[3, 4])
        model.token_bucket, model.frame_bucket = 16, 64
        padded = voice.synthesize(ids, seed=[3, 4])
    finally:
        choose_backend(model)
    hop = model.config.hop_length
    assert max(len(a) for a in plain) // hop % 64  # and so is the frame axis
    peak = max(np.abs(a).max() for a in plain)
    assert peak > 0.05
    for a, b in zip(plain, padded, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=1e-4 * peak, rtol=0)
