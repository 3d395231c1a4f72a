"""The network on tiny random configs: shapes, batches, mask extensions, input checks."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from models.spleeter.config import STEMS, SpleeterConfig
from models.spleeter.model import Spleeter

TINY = {
    "n_fft": 256,
    "hop_length": 64,
    "frequency_bins": 64,
    "frames": 64,
    "conv_filters": (4, 8, 8, 16, 16, 16),
}


def tiny(**changes: Any) -> Spleeter:
    """A random network small enough to run in milliseconds (weights ~N(0, 0.3), positive variances)."""
    model = Spleeter(SpleeterConfig(**{**TINY, **changes}))
    mx.random.seed(0)
    params = {
        k: mx.random.uniform(0.5, 2.0, v.shape)
        if k.endswith("running_var")
        else 0.3 * mx.random.normal(v.shape)
        for k, v in tree_flatten(model.parameters())
    }
    model.update(tree_unflatten(list(params.items())))
    return model


def _audio(batch: int, model: Spleeter, seed: int = 0) -> mx.array:
    rng = np.random.default_rng(seed)
    return mx.array(rng.standard_normal((batch, model.channels, model.segment)).astype(np.float32))


@pytest.mark.parametrize("stems", [2, 4, 5])
def test_shapes_and_a_batch_of_two_equals_two_batches_of_one(stems: int) -> None:
    published = STEMS[stems]
    model = tiny(
        sources=published.sources,
        conv_activation=published.conv_activation,
        deconv_activation=published.deconv_activation,
    )
    assert model.segment == 63 * 64
    mix = _audio(2, model)
    both = np.array(model(mix))
    assert both.shape == (2, stems, 2, model.segment) and both.dtype == np.float32
    for i in range(2):
        np.testing.assert_allclose(np.array(model(mix[i : i + 1]))[0], both[i], atol=1e-6)
    assert np.abs(both[0] - both[1]).max() > 1e-3  # the rows are different inputs


def test_average_mask_extension_keeps_the_whole_band() -> None:
    """Spleeter's "average" extension: above F each frame gets its masks' mean over the F bins, which also sum
    to 1, so the stems add up to the whole mixture (the iSTFT of its STFT)."""
    model = tiny(mask_extension="average")
    mix = _audio(1, model, seed=1)
    total = np.array(model(mix)).sum(axis=1)
    np.testing.assert_allclose(total, np.array(mix), atol=1e-4)
    cut = np.array(tiny()(mix)).sum(axis=1)  # "zeros": the band above F is gone
    assert np.abs(cut - np.array(mix)).max() > 1e-2


def test_wrong_shapes_are_refused() -> None:
    model = tiny()
    with pytest.raises(ValueError, match=r"expected \(batch, 2, 4032\) audio"):
        model(mx.zeros((1, 2, 4000)))
    with pytest.raises(ValueError, match="multiples of 64"):
        SpleeterConfig(frames=100)
    with pytest.raises(ValueError, match="conv_activation"):
        SpleeterConfig(conv_activation="gelu")


def test_config_round_trips_and_drops_unknown_keys() -> None:
    config = STEMS[5]
    data = {**config.to_dict(), "future_field": 1}
    assert SpleeterConfig.from_dict(data) == config


def test_the_gpu_convolutions_give_the_cpu_forms_results() -> None:
    """`use_native_convs` (what a GPU load sets: cuDNN's transposed and dilated convolutions) against the
    CPU forms (phases, im2col), here on the CPU."""
    from models.layers.conv import use_native_convs

    model = tiny()
    mix = _audio(2, model, seed=3)
    cpu_forms = np.array(model(mix))
    assert use_native_convs(model, True) == 2 * 7  # per U-Net (one per stem): six upsamplers, the final conv
    native = np.array(model(mix))
    np.testing.assert_allclose(native, cpu_forms, atol=1e-5, rtol=1e-5)
