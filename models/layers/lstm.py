"""A one-layer bidirectional LSTM with per-row lengths, parameter for parameter torch's
`nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)`.

Lengths give `pack_padded_sequence` semantics without packing: the reverse direction of a row starts at
that row's last valid step, and outputs past a row's length are zero, so a row's result does not depend on
what it is batched with. Both directions run as one batched matmul per step (weights stacked on a leading
axis of 2); the input projections for all steps are one matmul up front. Gate order is torch's (i, f, g, o).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def reverse_within(x: mx.array, lengths: mx.array | None) -> mx.array:
    """Each row of x (B, T, ...) reversed within its first `lengths[b]` steps (the rest left in place)."""
    t = x.shape[1]
    if lengths is None:
        return x[:, ::-1]
    steps = mx.arange(t)[None, :]
    index = mx.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    index = index.reshape(*index.shape, *([1] * (x.ndim - 2)))
    return mx.take_along_axis(x, index.astype(mx.int32), axis=1)


@mx.compile
def _step(gates_x: mx.array, h: mx.array, c: mx.array, w_hh: mx.array) -> tuple[mx.array, mx.array]:
    """One time step of both directions, compiled: the matmul and one fused kernel for the gates (on a GPU
    a step is otherwise a dozen kernel launches; the steps are what an LSTM's time goes to)."""
    gates = gates_x + h @ w_hh
    i, f, g, o = mx.split(gates, 4, axis=-1)
    c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
    return mx.sigmoid(o) * mx.tanh(c), c


def length_mask(lengths: mx.array, t: int) -> mx.array:
    """(B, T) bool: True where a step is inside its row."""
    return mx.arange(t)[None, :] < lengths[:, None]


class BiLSTM(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        for suffix in ("_l0", "_l0_reverse"):
            setattr(self, f"weight_ih{suffix}", mx.zeros((4 * hidden_size, input_size)))
            setattr(self, f"weight_hh{suffix}", mx.zeros((4 * hidden_size, hidden_size)))
            setattr(self, f"bias_ih{suffix}", mx.zeros((4 * hidden_size,)))
            setattr(self, f"bias_hh{suffix}", mx.zeros((4 * hidden_size,)))

    def __call__(self, x: mx.array, lengths: mx.array | None = None) -> mx.array:
        """x (B, T, input_size) → (B, T, 2·hidden_size): forward and reverse outputs concatenated."""
        b, t, _ = x.shape
        h_size = self.hidden_size
        w_ih = mx.stack([self.weight_ih_l0, self.weight_ih_l0_reverse])  # (2, 4H, C)
        w_hh = mx.stack([self.weight_hh_l0.T, self.weight_hh_l0_reverse.T])  # (2, H, 4H)
        bias = mx.stack(
            [self.bias_ih_l0 + self.bias_hh_l0, self.bias_ih_l0_reverse + self.bias_hh_l0_reverse]
        )
        seqs = mx.stack([x, reverse_within(x, lengths)])  # (2, B, T, C)
        gates_x = seqs @ mx.swapaxes(w_ih, 1, 2)[:, None] + bias[:, None, None]  # (2, B, T, 4H)
        h = mx.zeros((2, b, h_size), x.dtype)
        c = mx.zeros((2, b, h_size), x.dtype)
        outs = []
        for step in range(t):
            h, c = _step(gates_x[:, :, step], h, c, w_hh)
            outs.append(h)
        out = mx.stack(outs, axis=2)  # (2, B, T, H)
        y = mx.concatenate([out[0], reverse_within(out[1], lengths)], axis=-1)
        if lengths is not None:
            y = y * length_mask(lengths, t)[..., None]
        return y
