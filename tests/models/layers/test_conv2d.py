"""`models/layers/conv2d.py`: the phase-wise 2-D transposed convolution against torch and MLX's own."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from models.layers.conv2d import ConvTranspose2d


@pytest.mark.parametrize("phases_by", ["matmul", "conv", "native"])
@pytest.mark.parametrize(("k", "stride"), [(5, 2), (4, 2), (3, 3), (8, 4), (2, 1)])
def test_conv_transpose2d_matches_torch(k: int, stride: int, phases_by: str) -> None:
    """Both phase forms (the CPU's) and `native` (one mx.conv_transpose2d: a GPU's) against torch."""
    torch = pytest.importorskip("torch")
    ref = torch.nn.ConvTranspose2d(6, 4, k, stride=stride)
    ours = ConvTranspose2d(6, 4, k, stride)
    if phases_by == "native":
        ours.native = True
    else:
        ours.phases_by = phases_by
    ours.weight = mx.array(ref.weight.detach().numpy().transpose(1, 2, 3, 0))
    ours.bias = mx.array(ref.bias.detach().numpy())
    x = np.random.default_rng(k).standard_normal((2, 6, 5, 7)).astype(np.float32)  # non-square, batch 2
    expected = ref(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 3, 1)
    got = np.array(ours(mx.array(x.transpose(0, 2, 3, 1))))
    assert got.shape == expected.shape == (2, (5 - 1) * stride + k, (7 - 1) * stride + k, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(("c_out", "phases_by"), [(1, "matmul"), (5, "conv"), (64, "matmul")])
def test_conv_transpose2d_matches_mx_conv_transpose2d(c_out: int, phases_by: str) -> None:
    """Same weight layout and taps as MLX's `conv_transpose2d` (which is ~30x slower on the CPU), by the
    formulation each output width gets, and the kernel made again when the weight is replaced."""
    ours = ConvTranspose2d(3, c_out, 5, 2)
    assert ours.phases_by == phases_by
    x = mx.random.normal((1, 4, 6, 3), key=mx.random.key(2))
    for seed in (0, 1):
        ours.weight = mx.random.normal((c_out, 5, 5, 3), key=mx.random.key(seed))
        ours.bias = mx.random.normal((c_out,), key=mx.random.key(seed + 10))
        expected = mx.conv_transpose2d(x, ours.weight, stride=2) + ours.bias
        np.testing.assert_allclose(np.array(ours(x)), np.array(expected), atol=1e-4)
