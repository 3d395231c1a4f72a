"""1-D convolutions in formulations that are fast on MLX's CPU backend too (channels last).

`DilatedConv1d`: a stride-1 conv as a sum of k per-tap matmuls. `mx.conv1d` with dilation > 1 takes a slow
generic path on the CPU (measured ~50x slower than dilation 1 for HiFi-GAN's resblock shapes: 750 ms vs 45
ms at L=60160, 32→32, k=7), and even undilated the taps are faster there for long, narrow inputs (L=57600,
64→64: k=3 28 vs 52 ms, k=7 70 vs 87 ms; 64→1, k=7, L=230400 — a vocoder's `conv_post` — 68 vs 445 ms).
Same parameters as `nn.Conv1d` (`bias=False` drops the bias).

`ConvTranspose1d`: transposed convolution as one matmul and an overlap-add, for HiFi-GAN-style upsamplers.

`mx.conv_transpose1d` on MLX's CPU backend is ~100x slower than this formulation (../shared/docs/MLX-CPU.md):
each input frame times the kernel laid out as (c_in, k·c_out) gives k output frames; with k = m·stride
those are m blocks of `stride` frames, block j landing `j` strides later. Pure MLX, so every backend runs
the same arithmetic.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


class DilatedConv1d(nn.Module):
    """nn.Conv1d(c_in, c_out, k, dilation=d, padding=p) (stride 1, one group); weight (c_out, k, c_in)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        dilation: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.dilation, self.padding = dilation, padding
        self.weight = mx.zeros((out_channels, kernel_size, in_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))

    # `mx.conv1d` instead of the taps: the better choice on a GPU (one kernel instead of k matmuls), set per
    # model at load (`use_native_convs`), never per call
    native = False

    def __call__(self, x: mx.array) -> mx.array:
        """x: (B, T, c_in) → (B, T + 2·padding − dilation·(k − 1), c_out)."""
        d, p, k = self.dilation, self.padding, self.weight.shape[1]
        if self.native:
            y = mx.conv1d(x, self.weight, padding=p, dilation=d)
            return y + self.bias if "bias" in self else y
        xp = mx.pad(x, [(0, 0), (p, p), (0, 0)]) if p else x
        t = xp.shape[1] - d * (k - 1)
        y = xp[:, :t] @ self.weight[:, 0].T
        for j in range(1, k):
            y = y + xp[:, j * d : j * d + t] @ self.weight[:, j].T
        return y + self.bias if "bias" in self else y


class ConvTranspose1d(nn.Module):
    """torch.nn.ConvTranspose1d(c_in, c_out, kernel_size, stride, padding) with kernel_size a multiple of
    stride. `weight` is (c_in, kernel_size, c_out): torch's (c_in, c_out, k) with its last two axes swapped."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
    ) -> None:
        super().__init__()
        if kernel_size % stride != 0:
            raise ValueError(f"kernel_size {kernel_size} must be a multiple of stride {stride}")
        self.stride = stride
        self.padding = padding
        self.weight = mx.zeros((in_channels, kernel_size, out_channels))
        self.bias = mx.zeros((out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        """x: (B, T, c_in) → (B, (T − 1)·stride + kernel_size − 2·padding, c_out)."""
        b, t, c_in = x.shape
        _, k, c_out = self.weight.shape
        s, m = self.stride, k // self.stride
        y = (x.reshape(b * t, c_in) @ self.weight.reshape(c_in, k * c_out)).reshape(b, t, m, s, c_out)
        out = y[:, :, 0]
        if m > 1:
            out = mx.pad(out, [(0, 0), (0, m - 1), (0, 0), (0, 0)])
            for j in range(1, m):
                out = out + mx.pad(y[:, :, j], [(0, 0), (j, m - 1 - j), (0, 0), (0, 0)])
        out = out.reshape(b, (t + m - 1) * s, c_out)
        length = (t + m - 1) * s - 2 * self.padding
        return out[:, self.padding : self.padding + length] + self.bias


def use_native_convs(model: nn.Module, native: bool = True) -> int:
    """Make every convolution of `model` that has a `native` switch (`DilatedConv1d`,
    `models.layers.conv2d.ConvTranspose2d`, a family's own) run as MLX's own convolution (or in its CPU
    form again); returns how many."""
    convs = [m for _, m in model.named_modules() if isinstance(getattr(m, "native", None), bool)]
    for conv in convs:
        conv.native = native
    return len(convs)


def convs_for_device(model: nn.Module) -> str:
    """The MLX model's convolutions for this device, set once at load: one `mx.conv1d` each on a GPU
    (launches are what a GPU waits on), per-tap matmuls on the CPU. Returns the backend reason."""
    gpu = mx.default_device() == mx.gpu
    use_native_convs(model, gpu)
    return (
        "the MLX model on the GPU, convolutions as mx.conv1d"
        if gpu
        else "the MLX model on the CPU (options.backend = 'mlx')"
    )
