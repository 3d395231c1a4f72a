"""Hybrid Transformer Demucs (Rouard, Massa, Défossez 2023) in MLX: `demucs.htdemucs.HTDemucs.forward` for
inference, parameter for parameter (`demucs/htdemucs.py`, demucs 4.1.0, whose model code is 4.0.1's).

mix [B, C, L] → two branches, each normalised by its own mean and standard deviation:
- spectral: demucs's STFT (hop nfft/4, reflect-padded so that frames = ceil(L / hop), the Nyquist bin
  dropped, "normalized" scaling), complex as channels [B, F, T, 2C]; frequency encoder layers (the first
  followed by the frequency embedding), the cross transformer, decoder layers with skip connections, the
  inverse STFT of the [B, S, C] complex spectrograms the decoder outputs;
- temporal: encoder/decoder layers over the waveform, merged with the spectral branch where the frequency
  axis collapses (configs where it does), exchanging information through the transformer's cross-attention;
the sources are the sum of both branches, [B, S, C, L]. Silence in is silence out: both branches' outputs are
rescaled by the input's standard deviation (0) and mean (0).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from dsp.spectral import istft, stft
from models.htdemucs.config import HTDemucsConfig
from models.htdemucs.layers import HDecLayer, HEncLayer, Pointwise, ScaledEmbedding
from models.htdemucs.transformer import CrossTransformerEncoder
from models.layers.norm import mean_var


def pad1d(x: mx.array, left: int, right: int, mode: str = "constant") -> mx.array:
    """demucs's `pad1d` on the last axis: reflect padding of a signal shorter than the padding first pads it
    with zeros on the right (then left) so that the reflection is defined."""
    length = x.shape[-1]
    lead = [(0, 0)] * (x.ndim - 1)
    if mode == "reflect" and length <= max(left, right):
        extra = max(left, right) - length + 1
        extra_right = min(right, extra)
        extra_left = extra - extra_right
        left, right = left - extra_left, right - extra_right
        x = mx.pad(x, [*lead, (extra_left, extra_right)])
    return mx.pad(x, [*lead, (left, right)], mode=mode)  # type: ignore[arg-type]


def _mean_std(x: mx.array) -> tuple[mx.array, mx.array]:
    """Each row's mean and torch's unbiased standard deviation over all its values, as [B, 1, ..., 1]
    (accurately: `mean_var`; MLX's own `mx.var` drifts over millions of values)."""
    mean, var = mean_var(x.reshape(x.shape[0], -1), ddof=1)
    shape = (x.shape[0], *([1] * (x.ndim - 1)))
    return mean.reshape(shape), mx.sqrt(var).reshape(shape)


class HTDemucs(nn.Module):
    """The network; implements `models.tasks.SeparationNetwork`."""

    def __init__(self, config: HTDemucsConfig) -> None:
        super().__init__()
        why = config.unsupported()
        if why:
            raise ValueError("this HTDemucs configuration is not supported: " + "; ".join(why))
        self.config = config
        self.sources = tuple(config.sources)
        self.sample_rate = config.samplerate
        self.channels = config.audio_channels
        self.segment = config.segment_samples
        self.nfft, self.hop = config.nfft, config.nfft // 4
        self.encoder: list[HEncLayer] = []
        self.decoder: list[HDecLayer] = []
        self.tencoder: list[HEncLayer] = []
        self.tdecoder: list[HDecLayer] = []
        plan = config.layers()
        for index, layer in enumerate(plan):
            last_freq = layer["last_freq"]
            self.encoder.append(
                HEncLayer(layer["chin_z"], layer["chout_z"], layer, config, freq=True, empty=False)
            )
            self.tencoder.append(
                HEncLayer(layer["chin"], layer["chout"], layer, config, freq=False, empty=last_freq)
            )
            last = index == 0
            dec = HDecLayer(
                layer["chout_z"], layer["dec_chout_z"], layer, config, freq=True, empty=False, last=last
            )
            tdec = HDecLayer(
                layer["chout"], layer["dec_chout"], layer, config, freq=False, empty=last_freq, last=last
            )
            self.decoder.insert(0, dec)
            self.tdecoder.insert(0, tdec)
        if config.freq_emb:
            self.freq_emb = ScaledEmbedding(plan[0]["freqs_out"], plan[0]["chout_z"], config.emb_scale)
        width = int(config.channels * config.growth ** (config.depth - 1))
        if config.bottom_channels:
            self.channel_upsampler = Pointwise(width, config.bottom_channels)
            self.channel_downsampler = Pointwise(config.bottom_channels, width)
            self.channel_upsampler_t = Pointwise(width, config.bottom_channels)
            self.channel_downsampler_t = Pointwise(config.bottom_channels, width)
            width = config.bottom_channels
        if config.t_layers:
            self.crosstransformer = CrossTransformerEncoder(width, config)

    # --- demucs's STFT conventions ----------------------------------------------------------------------

    def spec(self, x: mx.array) -> mx.array:
        """[..., L] → complex [..., nfft/2, ceil(L / hop)]: frame t centred on sample t·hop (+ hop/2 ...), as
        demucs's `_spec` (reflect pad by 3/2 hop, STFT, Nyquist bin and the 2 edge frames each side dropped)."""
        hl, length = self.hop, x.shape[-1]
        le = -(-length // hl)
        pad = hl // 2 * 3
        x = pad1d(x, pad, pad + le * hl - length, mode="reflect")
        z = stft(x, self.nfft, hl, "hann", center=True, pad_mode="reflect", normalized=True)
        return z[..., :-1, 2 : 2 + le]

    def ispec(self, z: mx.array, length: int) -> mx.array:
        """demucs's `_ispec`: complex [..., nfft/2, T] → [..., length]."""
        hl = self.hop
        lead = [(0, 0)] * (z.ndim - 2)
        z = mx.pad(z, [*lead, (0, 1), (2, 2)])
        pad = hl // 2 * 3
        le = hl * -(-length // hl) + 2 * pad
        x = istft(z, hl, "hann", n_fft=self.nfft, center=True, length=le, normalized=True)
        return x[..., pad : pad + length]

    # --- the network ------------------------------------------------------------------------------------

    def __call__(self, mix: mx.array) -> mx.array:
        """mix [B, C, L] float32 → sources [B, S, C, L]. With `use_train_segment` (the published models) a
        shorter mix is zero-padded to the training segment and the result cut back, as demucs does."""
        length = mix.shape[-1]
        b = mix.shape[0]
        padded = length
        if self.config.use_train_segment:
            if length > self.segment:
                raise ValueError(f"input of {length} samples is longer than the segment ({self.segment})")
            padded = self.segment
            if length < padded:
                mix = mx.pad(mix, [(0, 0), (0, 0), (0, padded - length)])
        z = self.spec(mix)  # [B, C, F, T]
        x = mx.stack([mx.real(z), mx.imag(z)], axis=-1)  # [B, C, F, T, 2]
        _, c, fq, t, _ = x.shape
        x = x.transpose(0, 2, 3, 1, 4).reshape(b, fq, t, 2 * c)  # channels c·2 + (re, im), as demucs's
        mean, std = _mean_std(x)
        x = (x - mean) / (1e-5 + std)
        xt = mix.transpose(0, 2, 1)  # [B, L, C]
        meant, stdt = _mean_std(xt)
        xt = (xt - meant) / (1e-5 + stdt)

        saved, saved_t, lengths_t = [], [], []
        for idx, (encode, tencode) in enumerate(zip(self.encoder, self.tencoder, strict=True)):
            lengths_t.append(xt.shape[1])
            xt = tencode(xt)
            inject = None
            if tencode.empty:
                inject = xt
            else:
                saved_t.append(xt)
            x = encode(x, inject)
            if idx == 0 and "freq_emb" in self:
                emb = self.freq_emb.table()[: x.shape[1]]  # [F, C]
                x = x + self.config.freq_emb * emb[None, :, None, :]
            saved.append(x)

        if "crosstransformer" in self:
            if "channel_upsampler" in self:
                x, xt = self.channel_upsampler(x), self.channel_upsampler_t(xt)
            x, xt = self.crosstransformer(x, xt)
            if "channel_upsampler" in self:
                x, xt = self.channel_downsampler(x), self.channel_downsampler_t(xt)

        for decode, tdecode in zip(self.decoder, self.tdecoder, strict=True):
            x, pre = decode(x, saved.pop(-1), 0)
            length_t = lengths_t.pop(-1)
            if tdecode.empty:
                xt, _ = tdecode(pre[:, 0], None, length_t)
            else:
                xt, _ = tdecode(xt, saved_t.pop(-1), length_t)

        s = len(self.sources)
        # [B, F, T, S·C·2] → [B, S, C, F, T] complex, rescaled by the spectral input's statistics
        x = x * std + mean
        x = x.reshape(b, fq, t, s, c, 2).transpose(0, 3, 4, 1, 2, 5)
        zout = x[..., 0] + 1j * x[..., 1]
        x = self.ispec(zout, padded)
        xt = xt * stdt + meant  # [B, L, S·C]
        xt = xt.reshape(b, padded, s, c).transpose(0, 2, 3, 1)
        return (xt + x)[..., :length]
