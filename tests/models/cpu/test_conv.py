"""The vocoders' CPU convolutions (`models/cpu/conv.py`) against torch's conv1d and conv_transpose1d, through
the C kernel on its AVX2 and portable paths and through the im2col + sgemm fallback: every option the
generators use (dilation, stride, padding, a leaky ReLU on the input, a residual added in place), output
channel counts that are not a multiple of the 16-wide tile, and rows that are not a multiple of 6."""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
import torch

from models.cpu import conv as cpu_conv
from models.cpu.conv import ConvTransposeWeight, ConvWeight, conv1d, conv_transpose1d


def _built() -> ModuleType | None:
    """The extension; on x86-64 Linux `make` builds it, so there a missing build fails the tests."""
    try:
        from models.cpu import _conv
    except ImportError:
        if sys.platform.startswith("linux") and platform.machine() == "x86_64":
            raise
        return None
    return _conv


CV = _built()


@pytest.fixture(params=["c-simd", "c-portable", "sgemm"])
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param.startswith("c-") and CV is None:
        pytest.skip("the optional C kernel is not built here")
    before_c = cpu_conv.use_c_kernel(request.param != "sgemm")
    before_simd = CV.use_simd(request.param == "c-simd") if CV is not None else None
    if request.param == "c-simd" and CV is not None and not CV.use_simd(True):
        pytest.skip("this CPU has no AVX2/FMA")
    yield request.param
    cpu_conv.use_c_kernel(before_c)
    if CV is not None:
        CV.use_simd(before_simd)


def _case(t: int, c_in: int, c_out: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (t, c_in), a weight (k, c_in, c_out) scaled to unit output variance, a bias (c_out,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, c_in), np.float32)
    w = (rng.standard_normal((k, c_in, c_out)) / np.sqrt(k * c_in)).astype(np.float32)
    return x, w, rng.standard_normal(c_out).astype(np.float32)


def _torch_conv(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, d: int, pad: int, stride: int, slope: float | None
) -> np.ndarray:
    xt = torch.from_numpy(x.T.copy())[None].double()
    if slope is not None:
        xt = torch.nn.functional.leaky_relu(xt, slope)
    wt = torch.from_numpy(w.transpose(2, 1, 0).copy()).double()  # (K, C_in, C_out) → (C_out, C_in, K)
    bt = None if b is None else torch.from_numpy(b).double()
    return torch.nn.functional.conv1d(xt, wt, bt, stride=stride, padding=pad, dilation=d)[0].T.numpy()


@pytest.mark.parametrize(
    ("t", "c_in", "c_out", "k", "d", "stride"),
    [
        (101, 32, 32, 3, 12, 1),  # Piper's last stage
        (97, 64, 64, 5, 2, 1),
        (40, 128, 22, 7, 1, 1),  # Kokoro's conv_post: 22 outputs, a partial tile
        (53, 32, 1, 7, 1, 1),  # Piper's conv_post: one output
        (37, 192, 384, 5, 1, 1),  # a flow's WaveNet layer: 24 tiles wide
        (61, 22, 128, 12, 1, 6),  # Kokoro's strided noise conv
        (5, 16, 16, 1, 1, 1),  # fewer rows than a tile
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_conv1d_matches_torch(
    path: str, t: int, c_in: int, c_out: int, k: int, d: int, stride: int, bias: bool
) -> None:
    x, w, b = _case(t, c_in, c_out, k, t + c_out)
    b = b if bias else None
    pad = d * (k - 1) // 2 if stride == 1 else k // 2
    got = conv1d(x, ConvWeight(w), b, dilation=d, padding=pad, stride=stride)
    want = _torch_conv(x, w, b, d, pad, stride, None)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()))


def _residual_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x (203, 48), a k=7 weight, a bias and a residual (203, 48): a resblock step's conv."""
    x, w, b = _case(203, 48, 48, 7, seed)
    return x, w, b, np.random.default_rng(seed + 1).standard_normal((203, 48), np.float32)


def test_activation_and_residual_in_place(path: str) -> None:
    x, w, b, res = _residual_case(1)
    x0 = x.copy()
    want = res + _torch_conv(x, w, b, 3, 9, 1, 0.1)
    out = res.copy()
    got = conv1d(x, ConvWeight(w), b, dilation=3, padding=9, slope=0.1, residual=out)
    assert got is out  # written into the residual
    np.testing.assert_allclose(out, want, rtol=0, atol=3e-5)
    np.testing.assert_array_equal(x, x0)  # the activation is applied to a copy


@pytest.mark.parametrize(
    ("t", "c_in", "c_out", "k", "stride", "pad"),
    [(19, 256, 128, 16, 8, 4), (23, 64, 32, 8, 4, 2), (11, 128, 64, 20, 10, 5), (7, 16, 8, 4, 2, 1)],
)
def test_transposed_conv_matches_torch(
    path: str, t: int, c_in: int, c_out: int, k: int, stride: int, pad: int
) -> None:
    rng = np.random.default_rng(k)
    x = rng.standard_normal((t, c_in), np.float32)
    w = (rng.standard_normal((c_in, k, c_out)) / np.sqrt(c_in)).astype(np.float32)  # our (C_in, K, C_out)
    b = rng.standard_normal(c_out).astype(np.float32)
    got = conv_transpose1d(x, ConvTransposeWeight(w, b, stride, pad), slope=0.1)
    xt = torch.nn.functional.leaky_relu(torch.from_numpy(x.T.copy())[None].double(), 0.1)
    wt = torch.from_numpy(w.transpose(0, 2, 1).copy()).double()  # torch: (C_in, C_out, K)
    want = torch.nn.functional.conv_transpose1d(xt, wt, torch.from_numpy(b).double(), stride, pad)[
        0
    ].T.numpy()
    assert got.shape == want.shape == ((t - 1) * stride + k - 2 * pad, c_out)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


def test_a_wrong_shape_is_an_error_not_a_crash() -> None:
    w = ConvWeight(np.zeros((3, 8, 16), np.float32))
    with pytest.raises(ValueError, match="input"):
        conv1d(np.zeros((10, 9), np.float32), w)
    with pytest.raises(ValueError, match="residual"):
        conv1d(np.zeros((10, 8), np.float32), w, residual=np.zeros((7, 16), np.float32))
    assert conv1d(np.zeros((2, 8), np.float32), w).shape == (0, 16)  # shorter than the kernel: empty
    if CV is not None:  # the extension checks what it is given, too
        with pytest.raises(ValueError, match="shapes do not match"):
            CV.conv1d(
                np.zeros((10, 8), np.float32), w.panels, None, None, np.zeros((9, 16), np.float32), 1, 1, 1
            )
        with pytest.raises(TypeError, match="float32"):
            CV.conv1d(np.zeros((10, 8)), w.panels, None, None, np.zeros((8, 16), np.float32), 1, 1, 1)


@pytest.mark.parametrize(("t", "c"), [(257, 128), (31, 22), (1000, 8)])
def test_adain_snake_matches_float64(path: str, t: int, c: int) -> None:
    """Instance norm over time, style scale and shift, Snake — against float64 numpy, with arguments of
    sin up to ~±60 (the range reduction) and a channel count that is not a multiple of 8."""
    from models.cpu.conv import adain_snake

    rng = np.random.default_rng(t)
    x = (rng.standard_normal((t, c)) * 3 + rng.standard_normal(c) * 2).astype(np.float32)
    gamma = rng.standard_normal(c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    alpha = rng.uniform(0.2, 8.0, c).astype(np.float32)
    got = adain_snake(x, gamma, beta, alpha, 1e-5)
    xd = x.astype(np.float64)
    y = (1 + gamma) * (xd - xd.mean(0)) / np.sqrt(xd.var(0) + 1e-5) + beta
    want = y + np.sin(alpha * y) ** 2 / alpha
    assert got.dtype == np.float32 and got.shape == (t, c)
    assert np.abs(alpha[None] * y).max() > 30  # the reduction is exercised
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


# ---- bfloat16 products (`ConvWeight(bf16=True)`, `conv1d_bf16` in _conv.c) ----------------------------


@pytest.fixture(params=["bf16-simd", "bf16-portable"])
def bf16_path(request: pytest.FixtureRequest) -> Iterator[str]:
    if CV is None:
        pytest.skip("the optional C kernel is not built here")
    before = CV.use_simd(request.param == "bf16-simd")
    if request.param == "bf16-simd" and not CV.bf16_simd():
        CV.use_simd(before)
        pytest.skip("this CPU has no AVX-512 BF16")
    before_c = cpu_conv.use_c_kernel(True)
    yield request.param
    cpu_conv.use_c_kernel(before_c)
    CV.use_simd(before)


def _bf16(a: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (nearest even), as float32: what the kernel multiplies."""
    return (cpu_conv.bf16_bits(a).astype(np.uint32) << 16).view(np.float32)


def test_bf16_rounding_is_to_nearest_even() -> None:
    # 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even mantissa (1)
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.5, 1 / 3, 0.0], np.float32)
    # 1 + 3·2^-8 is halfway too, between 1 + 2^-7 (odd) and 1 + 2^-6 (even); 1/3 = 1.0101010|1…·2^-2 rounds up
    want = np.array([1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -2.5, 0.333984375, 0.0], np.float32)
    np.testing.assert_array_equal(_bf16(x), want)


@pytest.mark.parametrize(
    ("t", "c_in", "c_out", "k", "d", "stride"),
    [
        (101, 32, 32, 3, 12, 1),  # Piper's last stage
        (97, 64, 64, 5, 2, 1),
        (40, 128, 22, 7, 1, 1),  # Kokoro's conv_post: a partial tile
        (53, 33, 1, 7, 1, 1),  # an odd channel count: a zero channel completes the last pair
        (61, 22, 128, 12, 1, 6),  # Kokoro's strided noise conv
        (29, 256, 48, 7, 3, 1),  # 29 rows: two full 12-row tiles and an edge
        (5, 16, 16, 1, 1, 1),  # fewer rows than a tile
    ],
)
def test_bf16_conv1d_is_the_float64_conv_of_rounded_inputs(
    bf16_path: str, t: int, c_in: int, c_out: int, k: int, d: int, stride: int
) -> None:
    """Exactly the rounded product: x and W rounded to bfloat16, summed in float32 (vs float64 sums); and
    against the unrounded conv, the error bfloat16 costs: ~2.3e-3 of the output's RMS, measured."""
    x, w, b = _case(t, c_in, c_out, k, t * c_in)
    pad = d * (k - 1) // 2 if stride == 1 else k // 2
    weight = ConvWeight(w, bf16=True)
    assert weight.pairs is not None and weight.panels is None
    got = conv1d(x, weight, b, dilation=d, padding=pad, stride=stride)
    rounded = _torch_conv(_bf16(x), _bf16(w), b, d, pad, stride, None)
    exact = _torch_conv(x, w, b, d, pad, stride, None)
    assert got.shape == exact.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, rounded, rtol=0, atol=2e-5 * max(1.0, np.abs(rounded).max()))
    rel = np.sqrt(np.mean((got - exact) ** 2) / np.mean((exact - b) ** 2))
    assert 5e-4 < rel < 6e-3  # rounded (not a float32 path), and no worse than bfloat16 should be


def test_bf16_activation_residual_and_transposed_conv(bf16_path: str) -> None:
    x, w, b, res = _residual_case(2)
    rng = np.random.default_rng(3)
    act = np.maximum(x, np.float32(0.1) * x)  # the leaky ReLU runs in float32, before the rounding
    want = res + _torch_conv(_bf16(act), _bf16(w), b, 3, 9, 1, None)
    out = res.copy()
    assert conv1d(x, ConvWeight(w, bf16=True), b, dilation=3, padding=9, slope=0.1, residual=out) is out
    np.testing.assert_allclose(out, want, rtol=0, atol=3e-5 * np.abs(want).max())

    xt_np = rng.standard_normal((19, 64), np.float32)
    wt_np = (rng.standard_normal((64, 16, 32)) / 8).astype(np.float32)  # our (C_in, K, C_out)
    bt_np = rng.standard_normal(32).astype(np.float32)
    got = conv_transpose1d(xt_np, ConvTransposeWeight(wt_np, bt_np, 8, 4, bf16=True))
    want_t = torch.nn.functional.conv_transpose1d(
        torch.from_numpy(_bf16(xt_np).T.copy())[None].double(),
        torch.from_numpy(_bf16(wt_np).transpose(0, 2, 1).copy()).double(),
        torch.from_numpy(bt_np).double(),
        8,
        4,
    )[0].T.numpy()
    assert got.shape == want_t.shape == (18 * 8 + 16 - 8, 32)
    np.testing.assert_allclose(got, want_t, rtol=0, atol=2e-5 * np.abs(want_t).max())


def test_bf16_wrong_shapes_and_types_are_errors() -> None:
    if CV is None:
        pytest.skip("the optional C kernel is not built here")
    pairs = ConvWeight(np.zeros((3, 8, 16), np.float32), bf16=True).pairs
    assert pairs is not None and pairs.shape == (1, 12, 32) and pairs.dtype == np.uint16
    x, out = np.zeros((10, 8), np.float32), np.zeros((8, 16), np.float32)
    with pytest.raises(ValueError, match="shapes do not match"):
        CV.conv1d_bf16(np.zeros((10, 10), np.float32), pairs, None, None, out, 1, 1, 1)  # 5 pairs, not 4
    with pytest.raises(ValueError, match="shapes do not match"):
        CV.conv1d_bf16(x, pairs, None, None, np.zeros((9, 16), np.float32), 1, 1, 1)  # reads past x
    with pytest.raises(TypeError, match="uint16"):
        CV.conv1d_bf16(x, pairs.astype(np.int32), None, None, out, 1, 1, 1)
    with pytest.raises(TypeError, match="float32"):
        CV.conv1d_bf16(x.astype(np.float64), pairs, None, None, out, 1, 1, 1)
