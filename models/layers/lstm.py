"""A one-layer bidirectional LSTM with per-row lengths, parameter for parameter torch's
`nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)`.

Lengths give `pack_padded_sequence` semantics without packing: the reverse direction of a row starts at
that row's last valid step, and outputs past a row's length are zero, so a row's result does not depend on
what it is batched with. The input projections for all steps are one matmul up front. Gate order is torch's
(i, f, g, o).

The recurrence runs one of two ways, chosen at load (`use_fused_lstm`):
- a step at a time, both directions as one batched matmul per step (weights stacked on a leading axis of
  2) and one compiled gate kernel: every device;
- on CUDA, the whole pass as one kernel (`_FUSED_SOURCE`): a thread block per (direction, row) keeps h and
  c on chip and streams W_hh from L2 each step, so a sentence's ~500 sequential steps cost no launches
  (on an H200 at Kokoro's size: ~13 us a step, against ~56 us for the step loop; docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

log = logging.getLogger(__name__)


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


_FUSED_SOURCE = """
    // gx (D, B, T, 4H): input projections, biases in; w (D, H, 4H): W_hh transposed; out (D, B, T, H).
    // One block per (direction, row); thread j computes gate pre-activation j for j = tid, tid + NT, ...
    __shared__ float hs[H];
    __shared__ float gs[4 * H];
    const int row = blockIdx.x, tid = threadIdx.x;
    const int T = gx_shape[2], rows = gx_shape[1];
    const float* wd = w + (size_t)(row / rows) * H * 4 * H;
    const float* g_in = gx + (size_t)row * T * 4 * H;
    float* o = out + (size_t)row * T * H;
    float c[UNITS];
    for (int k = 0; k < UNITS; k++) c[k] = 0.0f;
    for (int u = tid; u < H; u += NT) hs[u] = 0.0f;
    __syncthreads();
    for (int t = 0; t < T; t++) {
        for (int j = tid; j < 4 * H; j += NT) {
            float a0 = g_in[(size_t)t * 4 * H + j], a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
            const float* wj = wd + j;
            int k = 0;
            for (; k + 4 <= H; k += 4) {  // four independent sums: loads in flight, not one chain
                a0 = fmaf(hs[k], wj[(size_t)k * 4 * H], a0);
                a1 = fmaf(hs[k + 1], wj[(size_t)(k + 1) * 4 * H], a1);
                a2 = fmaf(hs[k + 2], wj[(size_t)(k + 2) * 4 * H], a2);
                a3 = fmaf(hs[k + 3], wj[(size_t)(k + 3) * 4 * H], a3);
            }
            for (; k < H; k++) a0 = fmaf(hs[k], wj[(size_t)k * 4 * H], a0);
            gs[j] = (a0 + a1) + (a2 + a3);
        }
        __syncthreads();
        for (int k = 0, u = tid; u < H; k++, u += NT) {
            float i = 1.0f / (1.0f + expf(-gs[u])), f = 1.0f / (1.0f + expf(-gs[H + u]));
            float g = tanhf(gs[2 * H + u]), og = 1.0f / (1.0f + expf(-gs[3 * H + u]));
            c[k] = f * c[k] + i * g;
            float h = og * tanhf(c[k]);
            hs[u] = h;
            o[(size_t)t * H + u] = h;
        }
        __syncthreads();
    }
"""
_fused_kernel: Any = None  # built on first use (a CUDA JIT compile)


def _fused(gates_x: mx.array, w_hh: mx.array) -> mx.array:
    """The whole recurrence in one CUDA kernel: gates_x (D, B, T, 4H) float32, w_hh (D, H, 4H) → the
    hidden states (D, B, T, H). Same arithmetic as the step loop (float32, products summed in a different
    order)."""
    global _fused_kernel
    if _fused_kernel is None:
        _fused_kernel = mx.fast.cuda_kernel(
            name="bilstm_pass", input_names=["gx", "w"], output_names=["out"], source=_FUSED_SOURCE
        )
    d, b, t, four_h = gates_x.shape
    h = four_h // 4
    threads = min(1024, four_h)
    (out,) = _fused_kernel(
        inputs=[gates_x.astype(mx.float32), w_hh.astype(mx.float32)],
        template=[("H", h), ("NT", threads), ("UNITS", -(-h // threads))],
        grid=(d * b * threads, 1, 1),
        threadgroup=(threads, 1, 1),
        output_shapes=[(d, b, t, h)],
        output_dtypes=[mx.float32],
    )
    return out.astype(gates_x.dtype)


def on_cuda() -> bool:
    """MLX runs on its CUDA backend here (the GPU device)."""
    return mx.cuda.is_available() and mx.default_device() == mx.gpu


_fused_ok: bool | None = None


def fused_lstm_available() -> bool:
    """The one-kernel recurrence runs here: on CUDA, once the kernel has compiled and matched the step loop
    on a small pass (checked once per process; a failure is logged, and the step loop is what runs)."""
    global _fused_ok
    if not on_cuda():
        return False
    if _fused_ok is None:
        try:
            lstm = BiLSTM(6, 9)
            keys = mx.random.split(mx.random.key(0), 8)
            params: list[tuple[str, mx.array]] = tree_flatten(lstm.parameters())  # type: ignore[assignment]
            lstm.load_weights(
                [(k, 0.4 * mx.random.normal(v.shape, key=keys[i])) for i, (k, v) in enumerate(params)]
            )
            x, lengths = mx.random.normal((2, 11, 6), key=mx.random.key(1)), mx.array([11, 6])
            want = lstm(x, lengths)
            lstm.fused = True
            _fused_ok = bool(mx.allclose(lstm(x, lengths), want, atol=1e-5).item())
            if not _fused_ok:
                log.warning("the fused LSTM kernel disagrees with the step loop here; using the step loop")
        except Exception as exc:  # a JIT compile failure (driver, NVRTC): the step loop still runs
            log.warning("the fused LSTM kernel did not build here (%s); using the step loop", exc)
            _fused_ok = False
    return _fused_ok


def use_fused_lstm(model: nn.Module, flag: bool) -> int:
    """Every `BiLSTM` in `model` runs its recurrence as one CUDA kernel (True; only where
    `fused_lstm_available`) or a step at a time (False). Returns how many LSTMs it set."""
    if flag and not fused_lstm_available():
        raise ValueError("the fused LSTM kernel needs MLX's CUDA backend on the GPU device")
    count = 0
    for _, module in model.named_modules():
        if isinstance(module, BiLSTM):
            module.fused = flag
            count += 1
    return count


def length_mask(lengths: mx.array, t: int) -> mx.array:
    """(B, T) bool: True where a step is inside its row."""
    return mx.arange(t)[None, :] < lengths[:, None]


class BiLSTM(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.fused = False  # the recurrence as one CUDA kernel (`use_fused_lstm`)
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
        if self.fused:
            out = _fused(gates_x, w_hh)  # (2, B, T, H)
        else:
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
