"""The numpy-backed CPU kernels against the plain MLX ops they replace (values, stated tolerances)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from models.layers import cpu


@pytest.mark.parametrize("shape", [(1, 6, 1500, 64), (2, 3, 7, 16), (5, 6, 1, 64)])
def test_attention_matches_mlx_sdpa(shape: tuple[int, int, int, int]) -> None:
    b, h, tq, dh = shape
    keys = mx.random.split(mx.random.key(0), 3)
    q = 3 * mx.random.normal(shape, key=keys[0])
    k = mx.random.normal((b, h, 1500 if tq == 1 else tq, dh), key=keys[1])
    v = mx.random.normal(k.shape, key=keys[2])
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=dh**-0.5).transpose(0, 2, 1, 3)
    got = cpu.attention(q, k, v, dh**-0.5)
    assert got.shape == (b, tq, h * dh) and got.dtype == mx.float32
    np.testing.assert_allclose(np.array(got), np.array(want.reshape(b, tq, h * dh)), rtol=1e-5, atol=2e-6)


def test_attention_takes_strided_heads() -> None:
    x = mx.random.normal((2, 9, 4 * 8), key=mx.random.key(1))
    heads = x.reshape(2, 9, 4, 8).transpose(0, 2, 1, 3)  # a view, as `split` makes
    want = mx.fast.scaled_dot_product_attention(heads, heads, heads, scale=0.3).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(
        np.array(cpu.attention(heads, heads, heads, 0.3)),
        np.array(want.reshape(2, 9, 32)),
        rtol=1e-5,
        atol=2e-6,
    )


def test_gelu_matches_exact_gelu() -> None:
    x = mx.concatenate(
        [4 * mx.random.normal((3, 50_000), key=mx.random.key(2)).reshape(-1), mx.array([0.0, -12, 12])]
    )
    got, want = np.array(cpu.gelu(x)), np.array(nn.gelu(x))
    # A&S 7.1.26 erfc: |error| <= 7.5e-8·|x| on top of float32 rounding
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert got.shape == (150_003,)


def test_kernels_fall_back_to_mlx_inside_compile() -> None:
    q = mx.random.normal((1, 2, 5, 8), key=mx.random.key(3))
    f = mx.compile(lambda a: cpu.gelu(cpu.attention(a, a, a, 0.5)))
    want = nn.gelu(
        mx.fast.scaled_dot_product_attention(q, q, q, scale=0.5).transpose(0, 2, 1, 3).reshape(1, 5, 16)
    )
    np.testing.assert_allclose(np.array(f(q)), np.array(want), rtol=1e-6, atol=1e-6)


def test_disabled_turns_the_kernels_off_in_this_thread() -> None:
    with cpu.disabled():
        assert not cpu.on_cpu()
    assert cpu.on_cpu() == (mx.default_device() == mx.cpu)
