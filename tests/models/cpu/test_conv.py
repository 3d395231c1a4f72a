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
    rng = np.random.default_rng(t + c_out)
    x = rng.standard_normal((t, c_in), np.float32)
    w = (rng.standard_normal((k, c_in, c_out)) / np.sqrt(k * c_in)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32) if bias else None
    pad = d * (k - 1) // 2 if stride == 1 else k // 2
    got = conv1d(x, ConvWeight(w), b, dilation=d, padding=pad, stride=stride)
    want = _torch_conv(x, w, b, d, pad, stride, None)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()))


def test_activation_and_residual_in_place(path: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((203, 48), np.float32)
    w = (rng.standard_normal((7, 48, 48)) / 20).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    res = rng.standard_normal((203, 48), np.float32)
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
