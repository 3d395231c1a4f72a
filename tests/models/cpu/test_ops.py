"""The numpy CPU building blocks (`models.ops.ops`) against the MLX ops they stand in for (values, stated
tolerances)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from models.cpu import ops


@pytest.mark.parametrize("shape", [(1, 6, 1500, 64), (2, 3, 7, 16), (5, 6, 1, 64)])
def test_attend_matches_mlx_sdpa(shape: tuple[int, int, int, int]) -> None:
    b, h, tq, dh = shape
    keys = mx.random.split(mx.random.key(0), 3)
    q = 3 * mx.random.normal(shape, key=keys[0])
    k = mx.random.normal((b, h, 1500 if tq == 1 else tq, dh), key=keys[1])
    v = mx.random.normal(k.shape, key=keys[2])
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=dh**-0.5).transpose(0, 2, 1, 3)
    out = np.empty((b, tq, h, dh), np.float32)
    ops.attend(np.array(q), np.array(k), np.array(v), dh**-0.5, out)
    np.testing.assert_allclose(out, np.array(want), rtol=1e-5, atol=2e-6)


def test_attend_takes_strided_heads() -> None:
    x = np.random.default_rng(1).standard_normal((2, 9, 4 * 8)).astype(np.float32)
    heads = x.reshape(2, 9, 4, 8).transpose(0, 2, 1, 3)  # a view, as the encoder passes them
    mh = mx.array(np.ascontiguousarray(heads))
    want = mx.fast.scaled_dot_product_attention(mh, mh, mh, scale=0.3).transpose(0, 2, 1, 3)
    out = np.empty((2, 9, 4, 8), np.float32)
    ops.attend(heads, heads, heads, 0.3, out)
    np.testing.assert_allclose(out, np.array(want), rtol=1e-5, atol=2e-6)


def test_host_linear_and_norm_match_mlx_layers() -> None:
    lin, norm = nn.Linear(48, 20), nn.LayerNorm(48, eps=1e-5)
    norm.update({"weight": mx.random.normal((48,)), "bias": mx.random.normal((48,))})
    x = 2 + 3 * mx.random.normal((3, 5, 48), key=mx.random.key(4))
    xn = np.array(x)
    np.testing.assert_allclose(ops.HostLinear.of(lin)(xn), np.array(lin(x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.HostNorm.of(norm)(xn), np.array(norm(x)), rtol=1e-5, atol=1e-5)
    out = np.empty((15, 20), np.float32)
    ops.HostLinear.of(lin)(xn.reshape(15, 48), out=out)  # written in place, bias included
    np.testing.assert_allclose(out, np.array(lin(x)).reshape(15, 20), rtol=1e-5, atol=1e-5)
    no_bias = nn.Linear(48, 7, bias=False)
    assert ops.HostLinear.of(no_bias).bias is None
    np.testing.assert_allclose(ops.HostLinear.of(no_bias)(xn), np.array(no_bias(x)), rtol=1e-5, atol=1e-5)


def test_gelu_into_is_in_place_and_exact() -> None:
    x = 3 * np.random.default_rng(5).standard_normal((7, 300)).astype(np.float32)
    want = np.array(nn.gelu(mx.array(x)))
    assert ops.gelu_into(x) is x
    np.testing.assert_allclose(x, want, rtol=0, atol=2e-6)
    with pytest.raises(TypeError):
        ops.gelu_into(np.ones((4, 4), np.float32).T[:, :2])


def test_parallel_rows_visits_every_row_once() -> None:
    seen = np.zeros(1000, np.int64)

    def work(rows: slice) -> None:
        seen[rows] += 1

    ops.parallel_rows(work, 1000, chunk=64)
    assert seen.min() == seen.max() == 1
    assert [(s.start, s.stop) for s in ops.row_chunks(10, 4)] == [(0, 4), (4, 8), (8, 10)]

    def boom(rows: slice) -> None:
        raise RuntimeError("worker failed")

    with pytest.raises(RuntimeError, match="worker failed"):
        ops.parallel_rows(boom, 1000, chunk=64)


def test_serial_blas_restores_the_thread_count() -> None:
    setter = ops._numpy_blas_setter()
    if setter is None:
        pytest.skip("numpy's BLAS is not OpenBLAS here")  # numpy wheels on Linux x86-64 bundle OpenBLAS
    before = setter(2)
    setter(before)
    with ops.serial_blas():
        assert setter(1) == 1  # returns the count in force: single-threaded inside
    assert setter(before) == before  # and what it was afterwards
