"""The shared blocks in `models/layers/` against torch's modules on the same random parameters."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from models.layers.conv import ConvTranspose1d, DilatedConv1d, use_native_convs
from models.layers.lstm import BiLSTM

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("k", "dilation", "bias"), [(3, 1, True), (7, 3, True), (11, 5, False), (1, 1, True)]
)
def test_dilated_conv_matches_torch_as_taps_and_as_mx_conv1d(k: int, dilation: int, bias: bool) -> None:
    ref = torch.nn.Conv1d(6, 5, k, dilation=dilation, padding=dilation * (k - 1) // 2, bias=bias)
    ours = DilatedConv1d(6, 5, k, dilation=dilation, padding=dilation * (k - 1) // 2, bias=bias)
    ours.weight = mx.array(ref.weight.detach().numpy().transpose(0, 2, 1))
    if bias:
        ours.bias = mx.array(ref.bias.detach().numpy())
    x = np.random.default_rng(0).standard_normal((2, 6, 40)).astype(np.float32)
    expected = ref(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 1)
    taps = np.array(ours(mx.array(x.transpose(0, 2, 1))))
    assert use_native_convs(ours) == 1 and ours.native
    native = np.array(ours(mx.array(x.transpose(0, 2, 1))))
    np.testing.assert_allclose(taps, expected, atol=1e-5)
    np.testing.assert_allclose(native, expected, atol=1e-5)


def test_conv_transpose_matches_torch() -> None:
    ref = torch.nn.ConvTranspose1d(6, 4, 12, stride=6, padding=3)
    ours = ConvTranspose1d(6, 4, 12, 6, 3)
    ours.weight = mx.array(ref.weight.detach().numpy().transpose(0, 2, 1))
    ours.bias = mx.array(ref.bias.detach().numpy())
    x = np.random.default_rng(1).standard_normal((2, 6, 9)).astype(np.float32)
    expected = ref(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 1)
    np.testing.assert_allclose(np.array(ours(mx.array(x.transpose(0, 2, 1)))), expected, atol=1e-5)


def test_bilstm_matches_torch_with_packed_lengths() -> None:
    """Each padded row equals torch's pack_padded_sequence result, and zeros past its length."""
    torch.manual_seed(0)
    ref = torch.nn.LSTM(7, 5, batch_first=True, bidirectional=True)
    ours = BiLSTM(7, 5)
    ours.load_weights([(k, mx.array(v.detach().numpy())) for k, v in ref.named_parameters()])
    lengths = [9, 4, 6]
    x = np.random.default_rng(2).standard_normal((3, 9, 7)).astype(np.float32)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True)
    got = np.array(ours(mx.array(x), mx.array(lengths)))
    np.testing.assert_allclose(got, expected.detach().numpy(), atol=1e-5)
    for row, n in enumerate(lengths):
        assert not got[row, n:].any()
    # without lengths: torch on the whole padded batch
    np.testing.assert_allclose(
        np.array(ours(mx.array(x))), ref(torch.from_numpy(x))[0].detach().numpy(), atol=1e-5
    )
