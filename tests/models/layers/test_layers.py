"""The shared blocks in `models/layers/` against torch's modules on the same random parameters."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from models.layers.conv import ConvTranspose1d, DilatedConv1d, use_native_convs
from models.layers.lstm import BiLSTM, fused_lstm_available, on_cuda, use_fused_lstm

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


@pytest.fixture(params=["steps", "fused"])
def recurrence(request: pytest.FixtureRequest) -> str:
    """How a BiLSTM runs its recurrence: a step at a time (every device), or one CUDA kernel per pass
    (`use_fused_lstm`; only where MLX runs on CUDA: the GPU runs of this suite, docs/benchmarks.md)."""
    if request.param == "fused":
        if not on_cuda():
            pytest.skip("the fused LSTM kernel needs MLX's CUDA backend")
        assert fused_lstm_available()  # on CUDA it must build and pass its load-time check
    return request.param


def _lstm_pair(
    input_size: int, hidden: int, seed: int, recurrence: str, gain: float = 1.0
) -> tuple[Any, BiLSTM]:
    """torch's bidirectional LSTM (weights × `gain`) and ours on the same weights, run `recurrence`'s way."""
    torch.manual_seed(seed)
    ref = torch.nn.LSTM(input_size, hidden, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(gain)
    ours = BiLSTM(input_size, hidden)
    ours.load_weights([(k, mx.array(v.detach().numpy())) for k, v in ref.named_parameters()])
    ours.fused = recurrence == "fused"
    return ref, ours


def _packed(ref: Any, x: np.ndarray, lengths: list[int]) -> np.ndarray:
    """torch on a pack_padded_sequence of x, padded back (zeros past each row's length)."""
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True)
    return out.detach().numpy()


def test_bilstm_matches_torch_with_packed_lengths(recurrence: str) -> None:
    """Each padded row equals torch's pack_padded_sequence result, and zeros past its length."""
    ref, ours = _lstm_pair(7, 5, 0, recurrence)
    lengths = [9, 4, 6]
    x = np.random.default_rng(2).standard_normal((3, 9, 7)).astype(np.float32)
    got = np.array(ours(mx.array(x), mx.array(lengths)))
    np.testing.assert_allclose(got, _packed(ref, x, lengths), atol=1e-5)
    for row, n in enumerate(lengths):
        assert not got[row, n:].any()
    # without lengths: torch on the whole padded batch
    np.testing.assert_allclose(
        np.array(ours(mx.array(x))),
        ref(torch.from_numpy(x))[0].detach().numpy(),
        atol=1e-5,
    )


def test_bilstm_matches_torch_at_kokoro_size(recurrence: str) -> None:
    """Kokoro's LSTM size (hidden 256, input 640), 3 rows of different lengths over 150 steps, against
    torch's packed LSTM on the same weights (× 1.5: gates that saturate, not only the sigmoid's linear
    middle): both ways of running the recurrence."""
    ref, ours = _lstm_pair(640, 256, 4, recurrence, gain=1.5)
    lengths = [150, 97, 12]
    x = np.random.default_rng(4).standard_normal((3, 150, 640)).astype(np.float32)
    want = _packed(ref, x, lengths)
    got = np.array(ours(mx.array(x), mx.array(lengths)))
    assert np.abs(want).max() > 0.9  # saturated
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=0)
    assert not got[2, 12:].any() and got[2, :12].any()


def test_the_fused_lstm_is_refused_off_cuda() -> None:
    if on_cuda():
        pytest.skip("MLX runs on CUDA here")
    assert not fused_lstm_available()
    with pytest.raises(ValueError, match="CUDA"):
        use_fused_lstm(BiLSTM(4, 4), True)
    assert use_fused_lstm(nn.Sequential(BiLSTM(4, 4), BiLSTM(4, 4)), False) == 2
