"""Piper's VITS inference graph in MLX: phoneme ids → float32 audio. Channels last, (B, T, C) throughout.

Follows `piper/train/vits` of piper-tts 1.8.0 (MIT; itself from jaywalnut310/vits): `SynthesizerTrn.infer`
as `export_onnx.py` exports it. Text encoder (relative-position transformer) → stochastic duration
predictor in reverse (ConvFlows with rational-quadratic splines) → durations ceil(exp(logw)·length_scale)
→ the prior expanded per frame, sampled with noise_scale → the residual coupling flow in reverse →
HiFi-GAN. Deterministic with noise_scale = noise_w = 0. Arithmetic only; durations are read back to the
host once, to size the frame axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from models.layers.conv import ConvTranspose1d, DilatedConv1d
from models.layers.norm import ChannelNorm
from models.piper.config import PiperConfig

LRELU_SLOPE = 0.1
MIN_BIN = 1e-3  # rational-quadratic spline: minimum bin width, height and derivative


def _same(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class RelativeAttention(nn.Module):
    """Multi-head self-attention with key and value embeddings for relative offsets −w..w (shared by heads)."""

    def __init__(self, channels: int, n_heads: int, window: int) -> None:
        super().__init__()
        self.n_heads, self.window = n_heads, window
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.emb_rel_k = mx.zeros((1, 2 * window + 1, channels // n_heads))
        self.emb_rel_v = mx.zeros((1, 2 * window + 1, channels // n_heads))

    def __call__(self, x: mx.array, keep: mx.array) -> mx.array:
        """x: (B, T, C); keep: (B, 1, T, T) bool, False where query or key is padding."""
        b, t, c = x.shape
        h, w = self.n_heads, self.window

        def heads(y: mx.array) -> mx.array:
            return y.reshape(b, t, h, c // h).transpose(0, 2, 1, 3)

        q = heads(self.conv_q(x)) / math.sqrt(c // h)
        k, v = heads(self.conv_k(x)), heads(self.conv_v(x))
        offset = mx.arange(t)[None, :] - mx.arange(t)[:, None]  # j − i
        near = mx.abs(offset) <= w
        rel_k = q @ self.emb_rel_k[0].T  # (B, H, T, 2w+1): query i · key embedding of offset r − w
        idx = mx.broadcast_to(mx.clip(offset + w, 0, 2 * w), (b, h, t, t))
        scores = q @ k.transpose(0, 1, 3, 2) + mx.where(near, mx.take_along_axis(rel_k, idx, axis=-1), 0.0)
        scores = mx.where(keep, scores, -1e4)
        p = mx.softmax(scores, axis=-1, precise=True)
        # The weights by relative offset: rel[i, r] = p[i, i + r − w] (zero outside the sequence).
        p_pad = mx.pad(p, [(0, 0), (0, 0), (0, 0), (w, w)])
        ridx = mx.broadcast_to(mx.arange(t)[:, None] + mx.arange(2 * w + 1)[None, :], (b, h, t, 2 * w + 1))
        out = p @ v + mx.take_along_axis(p_pad, ridx, axis=-1) @ self.emb_rel_v[0]
        return self.conv_o(out.transpose(0, 2, 1, 3).reshape(b, t, c))


class FFN(nn.Module):
    def __init__(self, channels: int, filter_channels: int, kernel: int) -> None:
        super().__init__()
        self.pad = ((kernel - 1) // 2, kernel // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        pad = [(0, 0), self.pad, (0, 0)]
        x = nn.relu(self.conv_1(mx.pad(x * mask, pad)))
        return self.conv_2(mx.pad(x * mask, pad)) * mask


class Encoder(nn.Module):
    def __init__(self, c: PiperConfig) -> None:
        super().__init__()
        hid = c.hidden_channels
        self.attn_layers = [RelativeAttention(hid, c.n_heads, c.window_size) for _ in range(c.n_layers)]
        self.norm_layers_1 = [ChannelNorm(hid) for _ in range(c.n_layers)]
        self.ffn_layers = [FFN(hid, c.filter_channels, c.kernel_size) for _ in range(c.n_layers)]
        self.norm_layers_2 = [ChannelNorm(hid) for _ in range(c.n_layers)]

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        keep = (mask[:, None, :, :] * mask[:, None, :, :].transpose(0, 1, 3, 2)) > 0  # (B, 1, T, T)
        x = x * mask
        layers = zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True)
        for attn, norm_1, ffn, norm_2 in layers:
            x = norm_1(x + attn(x, keep))
            x = norm_2(x + ffn(x, mask))
        return x * mask


class TextEncoder(nn.Module):
    def __init__(self, c: PiperConfig) -> None:
        super().__init__()
        self.scale = math.sqrt(c.hidden_channels)
        self.emb = nn.Embedding(c.num_symbols, c.hidden_channels)
        self.encoder = Encoder(c)
        self.proj = nn.Conv1d(c.hidden_channels, 2 * c.inter_channels, 1)

    def __call__(self, ids: mx.array, mask: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """ids (B, T) int, mask (B, T, 1) → hidden (B, T, H), prior mean and log-std (B, T, inter)."""
        x = self.encoder(self.emb(ids) * self.scale * mask, mask)
        m, logs = mx.split(self.proj(x) * mask, 2, axis=-1)
        return x, m, logs


class DDSConv(nn.Module):
    """Dilated depth-separable convs (dilation kernel**i), layer norm and exact GELU, residual."""

    def __init__(self, channels: int, kernel: int, n_layers: int) -> None:
        super().__init__()
        self.convs_sep = [
            nn.Conv1d(
                channels,
                channels,
                kernel,
                dilation=kernel**i,
                padding=_same(kernel, kernel**i),
                groups=channels,
            )
            for i in range(n_layers)
        ]
        self.convs_1x1 = [nn.Conv1d(channels, channels, 1) for _ in range(n_layers)]
        self.norms_1 = [ChannelNorm(channels) for _ in range(n_layers)]
        self.norms_2 = [ChannelNorm(channels) for _ in range(n_layers)]

    def __call__(self, x: mx.array, mask: mx.array, g: mx.array | None = None) -> mx.array:
        if g is not None:
            x = x + g
        for sep, norm_1, one, norm_2 in zip(
            self.convs_sep, self.norms_1, self.convs_1x1, self.norms_2, strict=True
        ):
            y = nn.gelu(norm_1(sep(x * mask)))
            x = x + nn.gelu(norm_2(one(y)))
        return x * mask


class ConvFlow(nn.Module):
    """The SDP's coupling layer: channel 1 through a rational-quadratic spline conditioned on channel 0."""

    def __init__(self, c: PiperConfig) -> None:
        super().__init__()
        f = c.dp_filter_channels
        self.num_bins, self.tail_bound, self.scale = c.num_bins, c.tail_bound, 1 / math.sqrt(f)
        self.pre = nn.Conv1d(1, f, 1)
        self.convs = DDSConv(f, c.dp_kernel_size, c.dp_n_layers)
        self.proj = nn.Conv1d(f, 3 * c.num_bins - 1, 1)

    def reverse(self, z: mx.array, mask: mx.array, g: mx.array) -> mx.array:
        x0, x1 = z[..., :1], z[..., 1:]
        h = self.proj(self.convs(self.pre(x0), mask, g)) * mask  # (B, T, 3·bins − 1)
        n = self.num_bins
        x1 = spline_inverse(
            x1[..., 0],
            h[..., :n] * self.scale,
            h[..., n : 2 * n] * self.scale,
            h[..., 2 * n :],
            self.tail_bound,
        )
        return mx.concatenate([x0, x1[..., None]], axis=-1) * mask


def spline_inverse(y: mx.array, uw: mx.array, uh: mx.array, ud: mx.array, bound: float) -> mx.array:
    """The inverse of the unconstrained rational-quadratic spline with linear tails (VITS `transforms.py`):
    y (...,), unnormalised widths/heights (..., bins), inner derivatives (..., bins − 1) → x (...,)."""
    bins = uw.shape[-1]
    edge = math.log(math.exp(1 - MIN_BIN) - 1)  # softplus⁻¹(1 − MIN_BIN): slope 1 at both ends
    ud = mx.pad(ud, [(0, 0)] * (ud.ndim - 1) + [(1, 1)], constant_values=edge)

    def knots(u: mx.array) -> tuple[mx.array, mx.array]:
        size = MIN_BIN + (1 - MIN_BIN * bins) * mx.softmax(u, axis=-1, precise=True)
        cum = mx.pad(mx.cumsum(size, axis=-1), [(0, 0)] * (u.ndim - 1) + [(1, 0)])
        cum = 2 * bound * cum - bound
        cum = mx.concatenate(
            [mx.full(cum[..., :1].shape, -bound), cum[..., 1:-1], mx.full(cum[..., :1].shape, bound)], axis=-1
        )
        return cum, cum[..., 1:] - cum[..., :-1]

    cumw, widths = knots(uw)
    cumh, heights = knots(uh)
    deriv = MIN_BIN + nn.softplus(ud)
    search = mx.concatenate([cumh[..., :-1], cumh[..., -1:] + 1e-6], axis=-1)
    idx = (mx.sum((y[..., None] >= search).astype(mx.int32), axis=-1) - 1)[..., None]
    idx = mx.clip(idx, 0, bins - 1)

    def at(a: mx.array) -> mx.array:
        return mx.take_along_axis(a, idx, axis=-1)[..., 0]

    x_lo, w, y_lo, h = at(cumw), at(widths), at(cumh), at(heights)
    delta = h / w
    d0, d1 = at(deriv), at(deriv[..., 1:])
    dy = y - y_lo
    curve = d0 + d1 - 2 * delta
    a = dy * curve + h * (delta - d0)
    b = h * d0 - dy * curve
    c = -delta * dy
    root = (2 * c) / (-b - mx.sqrt(b * b - 4 * a * c))
    inside = (y >= -bound) & (y <= bound)
    return mx.where(inside, root * w + x_lo, y)


class ElementwiseAffine(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.m = mx.zeros((channels,))
        self.logs = mx.zeros((channels,))

    def reverse(self, z: mx.array, mask: mx.array) -> mx.array:
        return (z - self.m) * mx.exp(-self.logs) * mask


class StochasticDurationPredictor(nn.Module):
    """Reverse mode only: noise (scaled by noise_w) → log-durations, conditioned on the encoder's hidden."""

    def __init__(self, c: PiperConfig) -> None:
        super().__init__()
        f = c.dp_filter_channels
        self.pre = nn.Conv1d(c.hidden_channels, f, 1)
        self.convs = DDSConv(f, c.dp_kernel_size, c.dp_n_layers)
        self.proj = nn.Conv1d(f, f, 1)
        if c.gin_channels:
            self.cond = nn.Conv1d(c.gin_channels, f, 1)
        self.affine = ElementwiseAffine(2)
        self.conv_flows = [ConvFlow(c) for _ in range(c.dp_n_flows)]

    def __call__(self, x: mx.array, mask: mx.array, noise: mx.array, g: mx.array | None) -> mx.array:
        """x (B, T, H), mask (B, T, 1), noise (B, T, 2) already scaled → logw (B, T, 1)."""
        x = self.pre(x)
        if g is not None:
            x = x + self.cond(g)
        x = self.proj(self.convs(x, mask)) * mask
        z = noise
        for flow in reversed(self.conv_flows):  # Flip, ConvFlow, ..., Flip, ElementwiseAffine
            z = flow.reverse(z[..., ::-1], mask, x)
        z = self.affine.reverse(z[..., ::-1], mask)
        return z[..., :1]


class WaveNet(nn.Module):
    """VITS `modules.WN`: gated dilated convs with residual and skip outputs."""

    def __init__(
        self, hidden: int, kernel: int, dilation_rate: int, n_layers: int, gin_channels: int
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.in_layers = [
            DilatedConv1d(
                hidden, 2 * hidden, kernel, dilation=dilation_rate**i, padding=_same(kernel, dilation_rate**i)
            )
            for i in range(n_layers)
        ]
        self.res_skip_layers = [
            nn.Conv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1) for i in range(n_layers)
        ]
        if gin_channels:
            self.cond_layer = nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1)

    def __call__(self, x: mx.array, mask: mx.array, g: mx.array | None) -> mx.array:
        hid = self.hidden
        cond = self.cond_layer(g) if g is not None else None
        output = None
        for i, (layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            x_in = layer(x)
            if cond is not None:
                x_in = x_in + cond[..., 2 * hid * i : 2 * hid * (i + 1)]
            rs = res_skip(mx.tanh(x_in[..., :hid]) * mx.sigmoid(x_in[..., hid:]))
            if i < len(self.in_layers) - 1:
                x = (x + rs[..., :hid]) * mask
                skip = rs[..., hid:]
            else:
                skip = rs
            output = skip if output is None else output + skip
        assert output is not None
        return output * mask


class CouplingLayer(nn.Module):
    """Mean-only residual coupling: the second half shifted by a WaveNet of the first."""

    def __init__(self, c: PiperConfig) -> None:
        super().__init__()
        half = c.inter_channels // 2
        self.pre = nn.Conv1d(half, c.hidden_channels, 1)
        self.enc = WaveNet(
            c.hidden_channels, c.flow_kernel_size, c.flow_dilation_rate, c.flow_n_layers, c.gin_channels
        )
        self.post = nn.Conv1d(c.hidden_channels, half, 1)

    def reverse(self, x: mx.array, mask: mx.array, g: mx.array | None) -> mx.array:
        half = x.shape[-1] // 2
        x0, x1 = x[..., :half], x[..., half:]
        m = self.post(self.enc(self.pre(x0) * mask, mask, g)) * mask
        return mx.concatenate([x0, (x1 - m) * mask], axis=-1)


class Flow(nn.Module):
    def __init__(self, c: PiperConfig) -> None:
        super().__init__()
        self.layers = [CouplingLayer(c) for _ in range(c.flow_n_flows)]

    def reverse(self, x: mx.array, mask: mx.array, g: mx.array | None) -> mx.array:
        for layer in reversed(self.layers):  # each coupling is followed by a channel flip
            x = layer.reverse(x[..., ::-1], mask, g)
        return x


class ResBlock(nn.Module):
    """HiFi-GAN ResBlock1 (`convs1` dilated then `convs2` plain, in pairs) or ResBlock2 (`convs`)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], kind: str) -> None:
        super().__init__()

        def conv(d: int) -> DilatedConv1d:
            return DilatedConv1d(channels, channels, kernel, dilation=d, padding=_same(kernel, d))

        if kind == "1":
            self.convs1 = [conv(d) for d in dilations]
            self.convs2 = [conv(1) for _ in dilations]
        else:
            self.convs = [conv(d) for d in dilations]

    def __call__(self, x: mx.array, mask: mx.array | None) -> mx.array:
        def act(y: mx.array) -> mx.array:
            y = nn.leaky_relu(y, LRELU_SLOPE)
            return y if mask is None else y * mask

        if "convs" in self:
            for c in self.convs:
                x = x + c(act(x))
        else:
            for c1, c2 in zip(self.convs1, self.convs2, strict=True):
                x = x + c2(act(c1(act(x))))
        return x if mask is None else x * mask


class Generator(nn.Module):
    def __init__(self, c: PiperConfig) -> None:
        super().__init__()
        ch = c.upsample_initial_channel
        self.num_kernels = len(c.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(c.inter_channels, ch, 7, padding=3)
        if c.gin_channels:
            self.cond = nn.Conv1d(c.gin_channels, ch, 1)
        self.ups = [
            ConvTranspose1d(ch // 2**i, ch // 2 ** (i + 1), k, u, (k - u) // 2)
            for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True))
        ]
        self.rates = c.upsample_rates
        self.resblocks = [
            ResBlock(ch // 2 ** (i + 1), k, d, c.resblock)
            for i in range(len(self.ups))
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True)
        ]
        self.conv_post = DilatedConv1d(ch // 2 ** len(self.ups), 1, 7, padding=3, bias=False)

    def __call__(self, z: mx.array, g: mx.array | None, frames: mx.array | None) -> mx.array:
        """z (B, T, inter) → audio (B, T·hop). `frames` (B,) valid frames per item, None when all are full:
        then every conv's input is zeroed past each item's end, so an item's samples equal its own run."""
        t = z.shape[1]
        mask = None if frames is None else (mx.arange(t)[None, :] < frames[:, None])[..., None]
        x = self.conv_pre(z)
        if g is not None:
            x = x + self.cond(g)
        scale = 1
        for i, up in enumerate(self.ups):
            if mask is not None:
                x = x * mask
            x = up(nn.leaky_relu(x, LRELU_SLOPE))
            if frames is not None:
                scale *= self.rates[i]
                mask = (mx.arange(t * scale)[None, :] < (frames * scale)[:, None])[..., None]
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x, mask)
            for block in blocks[1:]:
                xs = xs + block(x, mask)
            x = xs / self.num_kernels
        x = self.conv_post(nn.leaky_relu(x, 0.01))  # torch's default slope here
        return mx.tanh(x)[..., 0]


@dataclass
class Synthesis:
    """One batch's output: audio (B, max samples) float32 and each item's samples and frame durations."""

    audio: mx.array
    lengths: list[int]
    durations: np.ndarray  # (B, T) frames per phoneme id


class Piper(nn.Module):
    def __init__(self, config: PiperConfig) -> None:
        super().__init__()
        self.config = config
        self.enc_p = TextEncoder(config)
        self.dp = StochasticDurationPredictor(config)
        self.flow = Flow(config)
        self.dec = Generator(config)
        # on MLX's CPU device, both halves in numpy (chosen once at load by `family.choose_backend`; None: the
        # MLX modules): `cpu_encoder.CPUEncoder` (ids, lengths, noise, length_scale, g) → (w, m, logs) and
        # `cpu_decoder.CPUDecoder` (z_p, g, frames per row) → audio
        self.cpu_encoder: Callable[..., tuple[mx.array, mx.array, mx.array]] | None = None
        self.cpu_decoder: Callable[[mx.array, mx.array | None, list[int]], mx.array] | None = None
        if config.n_speakers > 1:
            self.emb_g = nn.Embedding(config.n_speakers, config.gin_channels)
        # the id and frame axes padded up to multiples of these (1: none; set at load by
        # `family.choose_backend`), so a GPU sees a few shapes, not one per sentence length (each new shape
        # costs MLX new convolution plans); rows are masked either way, and their audio does not change
        self.token_bucket = 1
        self.frame_bucket = 1

    def durations(
        self,
        ids: mx.array,
        lengths: mx.array,
        *,
        length_scale: float,
        noise_w: float,
        keys: list[mx.array] | None,
        g: mx.array | None = None,
    ) -> tuple[mx.array, mx.array, mx.array, mx.array]:
        """ids (B, T), lengths (B,) → frames per id (B, T) float, prior mean/log-std (B, T, inter), mask.
        `keys`: one random key per row (its noise depends on nothing else), or None for no noise."""
        b, t = ids.shape
        mask = (mx.arange(t)[None, :] < lengths[:, None]).astype(mx.float32)[..., None]
        if noise_w == 0 or keys is None:
            noise = mx.zeros((b, t, 2))
        else:
            noise = _row_noise(keys, [int(n) for n in np.array(lengths)], t, 2) * noise_w
        if self.cpu_encoder is not None:
            return (*self.cpu_encoder(ids, lengths, noise, length_scale, g), mask)
        x, m, logs = self.enc_p(ids, mask)
        logw = self.dp(x, mask, noise, g)
        w = mx.ceil(mx.exp(logw) * mask * length_scale)
        return w[..., 0], m, logs, mask

    def __call__(
        self,
        ids: mx.array,
        lengths: mx.array,
        *,
        noise_scale: float,
        length_scale: float,
        noise_w: float,
        speaker: mx.array | None = None,
        seed: int | Sequence[int] | None = None,
    ) -> Synthesis:
        """Phoneme ids (B, T) int32 with valid lengths (B,), speaker ids (B,) → audio at the voice's rate.

        `seed`: one for every row, or one per row; each row draws its noise from its own seed alone, so a
        row's audio does not depend on what it is batched with. None: fresh random seeds."""
        b = ids.shape[0]
        keys_dp = keys_prior = None
        if noise_scale or noise_w:
            if seed is None:
                seeds = [int(s) for s in np.random.randint(2**31, size=b)]
            else:
                seeds = [int(seed)] * b if isinstance(seed, int) else [int(s) for s in seed]
            pairs = [mx.random.split(mx.random.key(s)) for s in seeds]
            keys_dp, keys_prior = [p[0] for p in pairs], [p[1] for p in pairs]
        g = self.emb_g(speaker)[:, None, :] if speaker is not None and "emb_g" in self else None
        w, m, logs, _ = self.durations(
            ids, lengths, length_scale=length_scale, noise_w=noise_w, keys=keys_dp, g=g
        )
        dur = np.array(w).astype(np.int64)  # the one host read: sizes the frame axis
        frames = np.maximum(dur.sum(axis=1), 1)
        t_y = -(-int(frames.max()) // self.frame_bucket) * self.frame_bucket
        index = np.zeros((len(dur), t_y), np.int32)
        for i, d in enumerate(dur):
            rep = np.repeat(np.arange(len(d)), d)
            index[i, : len(rep)] = rep
        y_mask = mx.array((np.arange(t_y)[None, :] < frames[:, None]).astype(np.float32))[..., None]
        idx = mx.array(index)[..., None]
        m_y = mx.take_along_axis(m, idx, axis=1) * y_mask
        logs_y = mx.take_along_axis(logs, idx, axis=1) * y_mask
        z_p = m_y
        if noise_scale and keys_prior is not None:
            eps = _row_noise(keys_prior, [int(f) for f in frames], t_y, m_y.shape[-1])
            z_p = m_y + eps * mx.exp(logs_y) * noise_scale
        if self.cpu_decoder is not None:
            audio = self.cpu_decoder(z_p, g, [int(f) for f in frames])
        else:
            z = self.flow.reverse(z_p, y_mask, g)
            full = bool((frames == t_y).all())
            audio = self.dec(z * y_mask, g, None if full else mx.array(frames.astype(np.int32)))
        hop = self.config.hop_length
        return Synthesis(audio=audio, lengths=[int(f) * hop for f in frames], durations=dur)


def _row_noise(keys: list[mx.array], lengths: list[int], width: int, channels: int) -> mx.array:
    """Standard normal noise (B, width, channels): row i drawn from keys[i] for its own length, zero after."""
    rows = [mx.random.normal((n, channels), key=k) for k, n in zip(keys, lengths, strict=True)]
    return mx.stack([mx.pad(r, [(0, width - r.shape[0]), (0, 0)]) for r in rows])
