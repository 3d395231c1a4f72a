"""2-D transposed convolution in a form that is fast on MLX's CPU backend too (channels last).

`mx.conv_transpose2d` on MLX's CPU backend takes ~1.4 s for each of the U-Net upsamplers of Spleeter
(5×5, stride 2, 64×128 → 128×256 pixels, 128 → 32 channels) where torch takes ~50 ms
(../shared/docs/MLX-CPU.md has the 1-D case). Here a stride-s transposed convolution is computed by phases:
with the kernel zero-padded to m·s taps per axis, output pixel (q·s + r) of each axis is a sum over the
m input pixels q − j (j < m) times kernel tap j·s + r. Two ways to get all s² phases, same arithmetic:
- "matmul": the input times the whole kernel laid out (c_in, m, m, s, s, c_out) is one matmul; the m²
  shifted sums of its blocks give the phases;
- "conv": one stride-1 m×m `mx.conv2d` over the input padded by m − 1, with s²·c_out output channels (the
  kernel's taps flipped and grouped by phase).
Interleaving the phases gives the output. The matmul writes m²·s²·c_out values per input pixel and sums them
in m² memory-bound passes, which costs most where there are many pixels; `mx.conv2d` is slow for very few
output channels. Measured on this 2-core CPU for Spleeter's upsamplers (matmul / conv, ms): 512→128 at
16×32: 37 / 48; 256→64 at 32×64: 67 / 69; 128→32 at 64×128: 129 / 97; 64→16 at 128×256: 189 / 120;
32→1 at 256×512: 27 / 166. Hence `CONV_PHASE_CHANNELS`: the conv where s²·c_out lies in that range.
Pure MLX: every backend runs the same arithmetic. On a GPU, where launches cost more than arithmetic,
`native = True` (`models.layers.conv.use_native_convs`) makes it one `mx.conv_transpose2d` (cuDNN) instead.
A kernel's layout is made once per weight array (a cache
beside the parameters, renewed when they are replaced).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

CONV_PHASE_CHANNELS = range(16, 129)  # s²·c_out for which the phases are one mx.conv2d


class _Prepared:
    """The kernel laid out for this layer's computation, with the weight array it was made from (not a
    parameter of the module)."""

    __slots__ = ("kernel", "weight")

    def __init__(self, weight: mx.array, kernel: mx.array) -> None:
        self.weight, self.kernel = weight, kernel


class ConvTranspose2d(nn.Module):
    """torch.nn.ConvTranspose2d(c_in, c_out, kernel_size, stride) with padding 0 (crop the output as the
    model needs). `weight` is MLX's `conv_transpose2d` layout (c_out, kh, kw, c_in): torch's
    (c_in, c_out, kh, kw) permuted (1, 2, 3, 0), same taps, nothing flipped."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.weight = mx.zeros((out_channels, kernel_size, kernel_size, in_channels))
        self.bias = mx.zeros((out_channels,))
        self.phases_by = "conv" if stride * stride * out_channels in CONV_PHASE_CHANNELS else "matmul"
        self.native = False  # one mx.conv_transpose2d (a GPU's choice), not the phases
        self._prepared: _Prepared | None = None

    def kernel(self) -> mx.array:
        """`weight` for `phases_by`: "matmul" (c_in, m·m·s·s·c_out), tap j·s + r of each axis at [j, r];
        "conv" (s·s·c_out, m, m, c_in), tap (m − 1 − t)·s + r at [r, t]; taps zero-padded to m·s."""
        if self._prepared is None or self._prepared.weight is not self.weight:
            c_out, k, c_in = self.weight.shape[0], self.weight.shape[1], self.weight.shape[3]
            s = self.stride
            m = math.ceil(k / s)
            kernel = mx.pad(self.weight, [(0, 0), (0, m * s - k), (0, m * s - k), (0, 0)])
            kernel = kernel.reshape(c_out, m, s, m, s, c_in)
            if self.phases_by == "conv":
                kernel = (
                    kernel[:, ::-1, :, ::-1].transpose(2, 4, 0, 1, 3, 5).reshape(s * s * c_out, m, m, c_in)
                )
            else:
                kernel = kernel.transpose(5, 1, 3, 2, 4, 0).reshape(c_in, -1)
            mx.eval(kernel)
            self._prepared = _Prepared(self.weight, kernel)
        return self._prepared.kernel

    def __call__(self, x: mx.array) -> mx.array:
        """x: (B, H, W, c_in) → (B, (H − 1)·s + k, (W − 1)·s + k, c_out)."""
        if self.native:
            return mx.conv_transpose2d(x, self.weight, stride=self.stride) + self.bias
        b, h, w, c_in = x.shape
        c_out, k = self.weight.shape[0], self.weight.shape[1]
        s = self.stride
        m = math.ceil(k / s)
        out: mx.array | None
        if self.phases_by == "conv":
            out = mx.conv2d(mx.pad(x, [(0, 0), (m - 1, m - 1), (m - 1, m - 1), (0, 0)]), self.kernel())
        else:
            y = (x.reshape(b * h * w, c_in) @ self.kernel()).reshape(b, h, w, m, m, s * s * c_out)
            out = None
            for jh in range(m):
                for jw in range(m):
                    # input pixel (i, i') feeds output phase block (i + jh, i' + jw)
                    part = mx.pad(y[:, :, :, jh, jw], [(0, 0), (jh, m - 1 - jh), (jw, m - 1 - jw), (0, 0)])
                    out = part if out is None else out + part
        assert out is not None
        hq, wq = h + m - 1, w + m - 1
        out = (
            out.reshape(b, hq, wq, s, s, c_out).transpose(0, 1, 3, 2, 4, 5).reshape(b, hq * s, wq * s, c_out)
        )
        return out[:, : (h - 1) * s + k, : (w - 1) * s + k] + self.bias
