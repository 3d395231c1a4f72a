"""The C kernels (`models/cpu/_kernels.c`) against float64 numpy references, on both their AVX2 and
portable paths, and the exact-float16 rule that lets a float32 model read half weights."""

from __future__ import annotations

import math
import platform
import sys
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from scipy.special import erf

from models.cpu import kernels as native
from models.cpu import ops as cpu


def _built_kernels() -> ModuleType:
    """The extension, or a clean skip where it is optional and absent (Apple clang without OpenMP, other
    CPUs). On x86-64 Linux `make` builds it: there a missing build fails, never a silent numpy fallback."""
    try:
        from models.cpu import _kernels
    except ImportError:
        if sys.platform.startswith("linux") and platform.machine() == "x86_64":
            raise
        pytest.skip("the optional C kernels are not built here: the numpy paths run", allow_module_level=True)
    return _kernels


hk = _built_kernels()

PATHS = ["simd", "portable"]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "simd" and not native.fast_half():
        pytest.skip("this CPU has no AVX2/FMA/F16C")
    before = hk.use_simd(request.param == "simd")
    yield request.param
    hk.use_simd(before)


def test_the_kernels_are_built_here() -> None:
    # `make` builds them on Linux with gcc; CI's machine is x86-64 with AVX2 (a silent fallback to the
    # numpy paths would hide a broken build)
    assert native.available() and native.fast_half()
    assert native.threads() >= 1


def _half_weights(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return (0.05 * rng.standard_normal((n, k))).astype(np.float16)


@pytest.mark.parametrize(
    ("m", "n", "k"), [(1, 51864, 384), (5, 384, 1536), (3, 13, 16), (17, 1031, 64), (64, 40, 8)]
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_half_matches_float64(path: str, m: int, n: int, k: int, with_bias: bool) -> None:
    rng = np.random.default_rng(m * 7 + n)
    w = _half_weights(rng, n, k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    want = x.astype(np.float64) @ w.astype(np.float64).T + (0.0 if bias is None else bias)
    got = np.empty((m, n), np.float32)
    hk.linear_f16(x, w, bias, got, 2)
    # float32 accumulation over k terms: measured ≤ 1.2e-6 of the scale; bound by k·eps
    assert np.abs(got - want).max() <= 4 * k * np.finfo(np.float32).eps * np.abs(want).max()


def test_linear_half_threads_give_identical_results() -> None:
    rng = np.random.default_rng(3)
    w = _half_weights(rng, 5000, 384)
    x = rng.standard_normal((5, 384)).astype(np.float32)
    one, two = np.empty((5, 5000), np.float32), np.empty((5, 5000), np.float32)
    hk.linear_f16(x, w, None, one, 1)
    hk.linear_f16(x, w, None, two, 2)
    assert np.array_equal(one, two)  # each output is one thread's dot product, in the same order


def test_linear_half_rejects_bad_shapes_and_types() -> None:
    w = np.zeros((8, 16), np.float16)
    out = np.empty((2, 8), np.float32)
    with pytest.raises(ValueError, match="shapes"):
        hk.linear_f16(np.zeros((2, 8), np.float32), w, None, out, 1)
    with pytest.raises(ValueError, match="shapes"):
        hk.linear_f16(np.zeros((2, 12), np.float32), np.zeros((8, 12), np.float16), None, out, 1)  # K % 8
    with pytest.raises(TypeError, match="x"):
        hk.linear_f16(np.zeros((2, 16), np.float64), w, None, out, 1)
    with pytest.raises(ValueError, match="contiguous"):
        hk.linear_f16(np.zeros((16, 2), np.float32).T, w, None, out, 1)  # not C-contiguous
    with pytest.raises(ValueError, match="shapes"):
        hk.linear_f16(np.zeros((2, 16), np.float32), w, None, np.empty((3, 8), np.float32), 1)
    with pytest.raises(ValueError, match="shapes"):
        hk.linear_f16(np.zeros((2, 16), np.float32), w, np.zeros(7, np.float32), out, 1)


def test_softmax_rows_matches_float64(path: str) -> None:
    rng = np.random.default_rng(4)
    s = (6 * rng.standard_normal((37, 1501))).astype(np.float32)
    s[3, :700] = -np.inf  # masked entries, as the causal mask makes
    s[5] = -np.inf  # a fully masked row becomes zeros, not NaN
    s[7, 10] = 80.0  # a large logit next to ordinary ones
    x = s.astype(np.float64)
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        want = e / e.sum(axis=-1, keepdims=True)
    want[5] = 0.0
    got = s.copy()
    hk.softmax_rows(got, 1)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9)
    assert (got[3, :700] == 0).all() and np.allclose(got.sum(axis=-1)[[0, 3, 7]], 1.0, atol=1e-6)


def test_gelu_matches_exact_erf_gelu(path: str) -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([4 * rng.standard_normal(100_003), [0.0, -12.0, 12.0, -90.0, 90.0, 1e-30]]).astype(
        np.float32
    )
    x64 = x.astype(np.float64)
    want = 0.5 * x64 * (1 + erf(x64 / math.sqrt(2)))
    got = x.copy()
    hk.gelu(got, 2)
    # A&S 7.1.26: |gelu error| ≤ 7.5e-8·|x|, plus float32 rounding of the terms
    assert (np.abs(got - want) <= 2e-7 * np.abs(x64) + 2e-7 * np.abs(want) + 1e-12).all()


def test_layer_norm_matches_float64(path: str) -> None:
    rng = np.random.default_rng(6)
    x = (3 + 2 * rng.standard_normal((9, 389))).astype(np.float32)
    w, b = rng.standard_normal(389).astype(np.float32), rng.standard_normal(389).astype(np.float32)
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5) * w + b
    got = np.empty_like(x)
    hk.layer_norm(x, w, b, 1e-5, got)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    hk.layer_norm(x, w, b, 1e-5, x)  # in place
    np.testing.assert_array_equal(x, got)


def test_half_exact_only_when_lossless() -> None:
    rng = np.random.default_rng(7)
    exact = _half_weights(rng, 16, 32).astype(np.float32)
    half = native.half_exact(exact)
    assert half is not None and half.dtype == np.float16 and np.array_equal(half.astype(np.float32), exact)
    inexact = exact.copy()
    inexact[3, 4] += np.float32(1e-6)  # one value off the float16 grid: keep float32
    assert native.half_exact(inexact) is None
    assert native.half_exact(np.full((4, 16), 1e6, np.float32)) is None  # overflows float16
    assert native.half_exact(exact[:, :12]) is None  # K not a multiple of 8


def test_host_linear_reads_half_weights_for_few_rows_only() -> None:
    import mlx.core as mx
    import mlx.nn as nn

    layer = nn.Linear(64, 24)
    layer.weight = layer.weight.astype(mx.float16).astype(mx.float32)  # a float16 checkpoint's values
    lin = cpu.HostLinear.of(layer, half=True)
    assert lin.half is not None
    x = np.random.default_rng(8).standard_normal((native.SMALL_ROWS + 1, 64)).astype(np.float32)
    want = x @ np.array(layer.weight).T + np.array(layer.bias)
    np.testing.assert_allclose(lin(x[:3]), want[:3], rtol=1e-5, atol=1e-6)  # the kernel
    np.testing.assert_allclose(lin(x), want, rtol=1e-5, atol=1e-6)  # many rows: float32 BLAS
    assert cpu.HostLinear.of(nn.Linear(64, 24), half=True).half is None  # random float32 weights


@pytest.mark.parametrize(
    ("groups", "rows", "keys", "dh"), [(6, 1, 1500, 64), (6, 5, 1500, 64), (30, 1, 37, 64), (3, 2, 9, 12)]
)
def test_attend_matches_float64(path: str, groups: int, rows: int, keys: int, dh: int) -> None:
    rng = np.random.default_rng(groups * 100 + rows)
    cap = keys + 11  # a cache longer than the keys written so far: only [start, end) is read
    q = rng.standard_normal((groups, rows, dh)).astype(np.float32)
    k = rng.standard_normal((groups, cap, dh)).astype(np.float32)
    v = rng.standard_normal((groups, cap, dh)).astype(np.float32)
    k[:, keys:] = np.nan  # beyond `end`: must not be touched
    start = rng.integers(0, keys, groups) if groups > 6 else None
    scale = dh**-0.5
    got = native.attend(q, k, v, scale, keys, start)
    for g in range(groups):
        lo = 0 if start is None else int(start[g])
        s = (q[g].astype(np.float64) @ k[g, lo:keys].astype(np.float64).T) * scale
        p = np.exp(s - s.max(-1, keepdims=True))
        want = (p / p.sum(-1, keepdims=True)) @ v[g, lo:keys].astype(np.float64)
        np.testing.assert_allclose(got[g], want, rtol=2e-5, atol=2e-6)


def test_attend_rejects_bad_arguments() -> None:
    q = np.zeros((2, 1, 8), np.float32)
    k = np.zeros((2, 5, 8), np.float32)
    with pytest.raises(ValueError, match="end"):
        native.attend(q, k, k, 1.0, 6)  # more keys than the cache holds
    with pytest.raises(ValueError, match="start"):
        native.attend(q, k, k, 1.0, 5, np.array([0, 5]))
    with pytest.raises(ValueError, match="shapes"):
        native.attend(q, k, np.zeros((2, 4, 8), np.float32), 1.0, 4)


def test_log_softmax_top_matches_numpy(path: str) -> None:
    rng = np.random.default_rng(9)
    x = (3 * rng.standard_normal((7, 51864))).astype(np.float32)
    x[:, :1000] = -np.inf  # suppressed tokens
    x[2, 5000] = x[2, 7000] = 40.0  # a tie: the lower index first, as argmax
    x[4, 1000:] = -np.inf
    x[4, 1003] = 0.0  # one finite entry: the rest of the top are -inf
    index, logprob = native.top_logprobs(x, 6)  # type: ignore[misc]
    x64 = x.astype(np.float64)
    m = x64.max(-1, keepdims=True)
    lse = m + np.log(np.exp(x64 - m).sum(-1, keepdims=True))
    for r in range(7):
        want = np.argsort(-x64[r], kind="stable")[:6]
        if r == 4:
            assert index[r, 0] == 1003 and logprob[r, 0] == 0.0 and np.isneginf(logprob[r, 1:]).all()
            continue
        assert index[r].tolist() == want.tolist()
        np.testing.assert_allclose(logprob[r], (x64[r] - lse[r])[want], rtol=2e-7, atol=2e-6)  # float32 ulps
    assert index[2, :2].tolist() == [5000, 7000]
    assert index[:, 0].tolist() == np.argmax(x, axis=-1).tolist()
