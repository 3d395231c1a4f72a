"""Kokoro's decoder: StyleTTS 2's AdaIN decoder feeding an iSTFTNet generator with a harmonic-plus-noise
source (NSF), ending in an inverse STFT from `dsp/`.

Channels last; names follow hexgrad's `kokoro.istftnet`. `noise_scale` scales the source's Gaussian noise:
1 is the model as trained, 0 makes synthesis deterministic (parity tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn

from dsp.spectral import istft, stft
from models.kokoro.blocks import AdainResBlk1d, AdaINResBlock1, leaky_relu, masked
from models.kokoro.config import KokoroConfig
from models.layers.conv import ConvTranspose1d, DilatedConv1d

SAMPLE_RATE = 24000
HARMONICS = 8  # overtones above F0 in the sine source
SINE_AMP = 0.1
NOISE_STD = 0.003
VOICED_THRESHOLD = 10.0  # Hz


class StridedConv1d(nn.Module):
    """torch Conv1d with stride > 1; weight (c_out, k, c_in)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding
        self.weight = mx.zeros((c_out, kernel_size, c_in))
        self.bias = mx.zeros((c_out,))

    def __call__(self, x: mx.array) -> mx.array:
        return mx.conv1d(x, self.weight, stride=self.stride, padding=self.padding) + self.bias


class SourceModule(nn.Module):
    """hn-NSF source: F0 (at the frame rate of the generator's input) → the merged harmonic excitation at
    the sample rate. Phases accumulate at the frame rate and are linearly interpolated up, as in Kokoro's
    SineGen (which downsamples its sample-rate increments first, so computing them at the frame rate is
    the same arithmetic)."""

    def __init__(self, upsample: int) -> None:
        super().__init__()
        self.upsample = upsample
        self.l_linear = nn.Linear(HARMONICS + 1, 1)

    def phase(self, f0: mx.array) -> mx.array:
        """f0 (B, L) → instantaneous phase (B, L·upsample, harmonics) in radians."""
        up, length = self.upsample, f0.shape[1]
        harmonics = mx.arange(1, HARMONICS + 2, dtype=mx.float32)
        rad = mx.remainder(f0[..., None] * harmonics / SAMPLE_RATE, 1.0)
        frame_phase = mx.cumsum(rad, axis=1) * (2 * math.pi * up)
        # torch F.interpolate(mode="linear", align_corners=False, scale_factor=up)
        src = mx.maximum((mx.arange(length * up, dtype=mx.float32) + 0.5) / up - 0.5, 0.0)
        lo = mx.floor(src)
        w = (src - lo)[None, :, None]
        lo_i = lo.astype(mx.int32)
        hi_i = mx.minimum(lo_i + 1, length - 1)
        return frame_phase[:, lo_i] * (1 - w) + frame_phase[:, hi_i] * w

    def __call__(self, f0: mx.array, noise_scale: float, key: mx.array | None) -> mx.array:
        sines = mx.sin(self.phase(f0)) * SINE_AMP
        uv = mx.repeat((f0 > VOICED_THRESHOLD).astype(mx.float32), self.upsample, axis=1)[..., None]
        waves = sines * uv
        if noise_scale:
            amp = uv * NOISE_STD + (1 - uv) * (SINE_AMP / 3)
            waves = waves + noise_scale * amp * mx.random.normal(waves.shape, key=key)
        return mx.tanh(self.l_linear(waves))[..., 0]


class Generator(nn.Module):
    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        c = config.istftnet
        rates, kernels = c["upsample_rates"], c["upsample_kernel_sizes"]
        ch0, n_fft, hop = c["upsample_initial_channel"], c["gen_istft_n_fft"], c["gen_istft_hop_size"]
        self.n_fft, self.hop = n_fft, hop
        self.num_kernels = len(c["resblock_kernel_sizes"])
        self.m_source = SourceModule(math.prod(rates) * hop)
        self.ups = [
            ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, u, (k - u) // 2)
            for i, (u, k) in enumerate(zip(rates, kernels, strict=True))
        ]
        self.resblocks: list[AdaINResBlock1] = []
        self.noise_convs: list[nn.Module] = []
        self.noise_res: list[AdaINResBlock1] = []
        for i in range(len(rates)):
            ch = ch0 // 2 ** (i + 1)
            for k, d in zip(c["resblock_kernel_sizes"], c["resblock_dilation_sizes"], strict=True):
                self.resblocks.append(AdaINResBlock1(ch, k, tuple(d), config.style_dim))
            if i + 1 < len(rates):
                stride = math.prod(rates[i + 1 :])
                self.noise_convs.append(StridedConv1d(n_fft + 2, ch, stride * 2, stride, (stride + 1) // 2))
                self.noise_res.append(AdaINResBlock1(ch, 7, (1, 3, 5), config.style_dim))
            else:
                self.noise_convs.append(DilatedConv1d(n_fft + 2, ch, 1))
                self.noise_res.append(AdaINResBlock1(ch, 11, (1, 3, 5), config.style_dim))
        self.conv_post = DilatedConv1d(ch0 // 2 ** len(rates), n_fft + 2, 7, padding=3)

    def harmonics(self, f0: mx.array, noise_scale: float, key: mx.array | None) -> mx.array:
        """f0 (B, L) → the source's STFT as (B, frames, n_fft + 2): magnitudes, then phases.

        Phases of near-silent bins are numerically arbitrary (in torch too): with noise_scale 0 and a
        pure harmonic source the bins above the top harmonic hold only leakage."""
        source = self.m_source(f0, noise_scale, key)
        spec = stft(source, self.n_fft, self.hop, "hann")  # (B, n_freq, frames), reflect-padded
        return mx.concatenate([mx.abs(spec), mx.arctan2(spec.imag, spec.real)], axis=1).transpose(0, 2, 1)

    def spectrum(self, x: mx.array, s: mx.array, har: mx.array, lengths: list[int] | None = None) -> mx.array:
        """x (B, L, C) and the source's `harmonics` → the generator's output frames (B, L·prod(rates) + 1,
        n_fft + 2) (log-magnitudes, then phases). `lengths`: each row's valid input frames in a padded
        batch (its `har` zero past its own frames): every convolution's input is zeroed past the row's end
        and every instance norm takes the row's own frames, so a row's frames are what it gives alone."""
        last = len(self.ups) - 1
        mask = None if lengths is None else _frames_mask(lengths, x.shape[1])
        valid, width = lengths, x.shape[1]
        for i, up in enumerate(self.ups):
            # the next stage's frames, valid and in all: × the rate, + 1 for the reflection pad
            width = width * up.stride + (1 if i == last else 0)
            if valid is not None:
                valid = [v * up.stride + (1 if i == last else 0) for v in valid]
            next_mask = None if valid is None else _frames_mask(valid, width)
            x = masked(leaky_relu(x, 0.1), mask)
            x_source = self.noise_res[i](self.noise_convs[i](har), s, next_mask)
            x = up(x)
            if i == last:  # ReflectionPad1d((1, 0))
                x = mx.concatenate([x[:, 1:2], x], axis=1)
            x = x + x_source
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x, s, next_mask)
            for block in blocks[1:]:
                xs = xs + block(x, s, next_mask)
            x = xs / self.num_kernels
            mask = next_mask
        return self.conv_post(masked(leaky_relu(x, 0.01), mask))

    def audio(self, frames: mx.array) -> mx.array:
        """The generator's output frames (B, F, n_fft + 2) → audio (B, (F − 1)·hop): magnitudes and phases
        through the inverse STFT."""
        n_freq = self.n_fft // 2 + 1
        mag = mx.exp(frames[..., :n_freq])
        phase = mx.sin(frames[..., n_freq:])
        spec = (mag * mx.cos(phase) + 1j * (mag * mx.sin(phase))).transpose(0, 2, 1)
        return istft(spec, self.hop, "hann", n_fft=self.n_fft)

    def __call__(self, x: mx.array, s: mx.array, har: mx.array) -> mx.array:
        """x (B, L, C) and the source's `harmonics` → audio (B, L · prod(rates) · hop)."""
        return self.audio(self.spectrum(x, s, har))


def _frames_mask(lengths: list[int], width: int) -> mx.array:
    """(B, width, 1) float: 1 inside each row's first `lengths[b]` frames."""
    return (mx.arange(width)[None, :] < mx.array(lengths)[:, None]).astype(mx.float32)[..., None]


class StrideTwoConv(nn.Module):
    """torch Conv1d(1, 1, 3, stride=2, padding=1) on a curve (B, 2F) → (B, F)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = mx.zeros((3,))
        self.bias = mx.zeros((1,))

    def __call__(self, x: mx.array) -> mx.array:
        xp = mx.pad(x, [(0, 0), (1, 1)])
        w = self.weight
        n = x.shape[1] // 2 + x.shape[1] % 2
        return (
            xp[:, 0 : 2 * n : 2] * w[0]
            + xp[:, 1 : 2 * n + 1 : 2] * w[1]
            + xp[:, 2 : 2 * n + 2 : 2] * w[2]
            + self.bias
        )


class Decoder(nn.Module):
    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        dim, sd = config.hidden_dim, config.style_dim
        self.encode = AdainResBlk1d(dim + 2, 1024, sd)
        self.decode = [
            AdainResBlk1d(1024 + 2 + 64, 1024, sd),
            AdainResBlk1d(1024 + 2 + 64, 1024, sd),
            AdainResBlk1d(1024 + 2 + 64, 1024, sd),
            AdainResBlk1d(1024 + 2 + 64, 512, sd, upsample=True),
        ]
        self.F0_conv = StrideTwoConv()
        self.N_conv = StrideTwoConv()
        self.asr_res = [DilatedConv1d(dim, 64, 1)]
        self.generator = Generator(config)
        # a CPU implementation of the generator over the same parameters, or None for the MLX module
        # (`cpu_generator.CPUGenerator`, chosen once at load by `family.choose_backend`)
        self.cpu_generator: Callable[[mx.array, mx.array, mx.array], mx.array] | None = None

    def features(
        self, asr: mx.array, f0_curve: mx.array, n_curve: mx.array, s: mx.array, mask: mx.array | None = None
    ) -> mx.array:
        """The generator's input: asr (B, F, hidden), curves (B, 2F), s (B, style) → (B, 2F, 512). `mask`
        (B, F, 1): each row's frames in a padded batch (its curves zero past its end)."""
        f0 = self.F0_conv(f0_curve)[..., None]
        n = self.N_conv(n_curve)[..., None]
        x = self.encode(mx.concatenate([asr, f0, n], axis=-1), s, mask)
        asr_res = self.asr_res[0](asr)
        for block in self.decode:  # the last one upsamples: no block follows it at the frame rate
            x = block(mx.concatenate([x, asr_res, f0, n], axis=-1), s, mask)
        return x

    def __call__(
        self,
        asr: mx.array,
        f0_curve: mx.array,
        n_curve: mx.array,
        s: mx.array,
        *,
        noise_scale: float = 1.0,
        key: mx.array | None = None,
    ) -> mx.array:
        """asr (B, F, hidden), curves (B, 2F), s (B, style) → audio (B, 2F · prod(rates) · hop)."""
        x = self.features(asr, f0_curve, n_curve, s)
        run = self.cpu_generator or self.generator
        return run(x, s, self.generator.harmonics(f0_curve, noise_scale, key))

    def batch(
        self,
        asr: mx.array,
        f0_curve: mx.array,
        n_curve: mx.array,
        s: mx.array,
        frames: list[int],
        *,
        noise_scale: float = 1.0,
        keys: list[mx.array | None],
    ) -> list[mx.array]:
        """Rows of different lengths in one pass (the GPU's path: one set of launches for the batch):
        asr (B, F, hidden) and curves (B, 2F) padded past each row's `frames[b]` → audio per row, each what
        the row gives alone (up to float rounding). Each row's source is drawn alone, from its own key."""
        mask = _frames_mask(frames, asr.shape[1])
        curve_mask = mx.repeat(mask, 2, axis=1)[..., 0]
        f0_curve, n_curve = f0_curve * curve_mask, n_curve * curve_mask
        x = self.features(asr * mask, f0_curve, n_curve, s, mask)
        gen = self.generator
        sources = [
            gen.harmonics(f0_curve[b : b + 1, : 2 * nf], noise_scale, keys[b]) for b, nf in enumerate(frames)
        ]
        # as wide as the generator's last stage (the rows' frames may be padded past the longest row)
        width = x.shape[1] * math.prod(up.stride for up in gen.ups) + 1
        har = mx.concatenate([mx.pad(h, [(0, 0), (0, width - h.shape[1]), (0, 0)]) for h in sources])
        out = gen.spectrum(x, s, har, [2 * nf for nf in frames])
        rate = math.prod(up.stride for up in gen.ups)
        return [gen.audio(out[b : b + 1, : 2 * nf * rate + 1])[0] for b, nf in enumerate(frames)]
