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


def test_host_linear_and_norm_match_mlx_layers() -> None:
    lin, norm = nn.Linear(48, 20), nn.LayerNorm(48, eps=1e-5)
    norm.update({"weight": mx.random.normal((48,)), "bias": mx.random.normal((48,))})
    x = 2 + 3 * mx.random.normal((3, 5, 48), key=mx.random.key(4))
    xn = np.array(x)
    np.testing.assert_allclose(cpu.HostLinear.of(lin)(xn), np.array(lin(x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cpu.HostNorm.of(norm)(xn), np.array(norm(x)), rtol=1e-5, atol=1e-5)
    out = np.empty((15, 20), np.float32)
    cpu.HostLinear.of(lin)(xn.reshape(15, 48), out=out)  # written in place, bias included
    np.testing.assert_allclose(out, np.array(lin(x)).reshape(15, 20), rtol=1e-5, atol=1e-5)
    no_bias = nn.Linear(48, 7, bias=False)
    assert cpu.HostLinear.of(no_bias).bias is None
    np.testing.assert_allclose(cpu.HostLinear.of(no_bias)(xn), np.array(no_bias(x)), rtol=1e-5, atol=1e-5)


def test_gelu_into_is_in_place_and_exact() -> None:
    x = 3 * np.random.default_rng(5).standard_normal((7, 300)).astype(np.float32)
    want = np.array(nn.gelu(mx.array(x)))
    assert cpu.gelu_into(x) is x
    np.testing.assert_allclose(x, want, rtol=0, atol=2e-6)
    with pytest.raises(TypeError):
        cpu.gelu_into(np.ones((4, 4), np.float32).T[:, :2])


def test_parallel_rows_visits_every_row_once() -> None:
    seen = np.zeros(1000, np.int64)

    def work(rows: slice) -> None:
        seen[rows] += 1

    cpu.parallel_rows(work, 1000, chunk=64)
    assert seen.min() == seen.max() == 1
    assert [(s.start, s.stop) for s in cpu.row_chunks(10, 4)] == [(0, 4), (4, 8), (8, 10)]

    def boom(rows: slice) -> None:
        raise RuntimeError("worker failed")

    with pytest.raises(RuntimeError, match="worker failed"):
        cpu.parallel_rows(boom, 1000, chunk=64)


def test_serial_blas_restores_the_thread_count() -> None:
    setter = cpu._numpy_blas_setter()
    if setter is None:
        pytest.skip("numpy's BLAS is not OpenBLAS here")  # numpy wheels on Linux x86-64 bundle OpenBLAS
    before = setter(2)
    setter(before)
    with cpu.serial_blas():
        assert setter(1) == 1  # returns the count in force: single-threaded inside
    assert setter(before) == before  # and what it was afterwards
