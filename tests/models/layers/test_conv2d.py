"""`models/layers/conv2d.py`: the phase-wise 2-D transposed convolution against torch and MLX's own."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from models.layers.conv2d import ConvTranspose2d


@pytest.mark.parametrize(("k", "stride"), [(5, 2), (4, 2), (3, 3), (8, 4), (2, 1)])
def test_conv_transpose2d_matches_torch(k: int, stride: int) -> None:
    torch = pytest.importorskip("torch")
    ref = torch.nn.ConvTranspose2d(6, 4, k, stride=stride)
    ours = ConvTranspose2d(6, 4, k, stride)
    ours.weight = mx.array(ref.weight.detach().numpy().transpose(1, 2, 3, 0))
    ours.bias = mx.array(ref.bias.detach().numpy())
    x = np.random.default_rng(k).standard_normal((2, 6, 5, 7)).astype(np.float32)  # non-square, batch 2
    expected = ref(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 3, 1)
    got = np.array(ours(mx.array(x.transpose(0, 2, 3, 1))))
    assert got.shape == expected.shape == (2, (5 - 1) * stride + k, (7 - 1) * stride + k, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_conv_transpose2d_matches_mx_conv_transpose2d() -> None:
    """Same weight layout and taps as MLX's `conv_transpose2d` (which is ~30x slower on the CPU)."""
    ours = ConvTranspose2d(3, 5, 5, 2)
    ours.weight = mx.random.normal((5, 5, 5, 3), key=mx.random.key(0))
    ours.bias = mx.random.normal((5,), key=mx.random.key(1))
    x = mx.random.normal((1, 4, 6, 3), key=mx.random.key(2))
    expected = mx.conv_transpose2d(x, ours.weight, stride=2) + ours.bias
    np.testing.assert_allclose(np.array(ours(x)), np.array(expected), atol=1e-5)
