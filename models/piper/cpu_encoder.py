"""Piper's phoneme-rate half — the text encoder and the stochastic duration predictor in reverse — in numpy,
for MLX's Linux CPU backend (chosen once at load with `cpu_decoder.py`, `family.choose_backend`).

Why (profile of a 4.5-s sentence, 177 phoneme ids, on this 2-core EPYC, docs/benchmarks.md): once the flow
and the generator ran in numpy, this half was a third of the time (~70 ms): hundreds of small MLX ops on
~200 × 192 arrays, with MLX's scalar erf (30 exact GELUs at ~0.9 ms each) and softmax. Here the GELUs,
layer norms and softmaxes are the C kernels of `models.cpu.kernels` (numpy fallbacks), the convolutions
`models.cpu.conv`.

Same arithmetic as `model.TextEncoder` and `model.StochasticDurationPredictor` on the same parameters,
float32, one row at a time (a row alone is what the masked batch computes for it); parity-tested against
onnxruntime and against the MLX modules in tests/models/piper/.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from models.cpu.conv import ConvWeight, conv1d, conv_weight
from models.cpu.kernels import softmax_
from models.cpu.ops import gelu_into, host_layer_norm, host_params, serial_blas
from models.piper.model import MIN_BIN, Piper

Params = dict[str, np.ndarray]


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, np.float32)
    if not softmax_(x):
        x = np.exp(x - x.max(axis=-1, keepdims=True))
        x /= x.sum(axis=-1, keepdims=True)
    return x


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.float32(0), x).astype(np.float32)


class _Conv:
    """A conv layer of the MLX model (weight (C_out, K, C_in)) run by `models.cpu.conv`."""

    def __init__(self, p: Params, name: str, dilation: int = 1, padding: int = 0) -> None:
        self.w: ConvWeight = conv_weight(p[f"{name}.weight"])
        self.b = p.get(f"{name}.bias")
        self.dilation, self.padding = dilation, padding

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return conv1d(x, self.w, self.b, dilation=self.dilation, padding=self.padding)


class _Norm:
    def __init__(self, p: Params, name: str) -> None:
        self.gamma, self.beta = p[f"{name}.gamma"], p[f"{name}.beta"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return host_layer_norm(np.ascontiguousarray(x), self.gamma, self.beta, 1e-5)


class _TextEncoder:
    def __init__(self, p: Params, model: Piper) -> None:
        c = model.config
        self.emb = p["enc_p.emb.weight"] * np.float32(math.sqrt(c.hidden_channels))
        self.heads, self.window, self.ffn_pad = (
            c.n_heads,
            c.window_size,
            ((c.kernel_size - 1) // 2, c.kernel_size // 2),
        )
        self.layers = []
        for i in range(c.n_layers):
            a, f = f"enc_p.encoder.attn_layers.{i}", f"enc_p.encoder.ffn_layers.{i}"
            qkv = np.concatenate([p[f"{a}.conv_{n}.weight"] for n in "qkv"])  # one product for q, k, v
            self.layers.append(
                (
                    conv_weight(qkv),
                    np.concatenate([p[f"{a}.conv_{n}.bias"] for n in "qkv"]),
                    _Conv(p, f"{a}.conv_o"),
                    p[f"{a}.emb_rel_k"][0],
                    p[f"{a}.emb_rel_v"][0],
                    _Norm(p, f"enc_p.encoder.norm_layers_1.{i}"),
                    _Conv(p, f"{f}.conv_1"),
                    _Conv(p, f"{f}.conv_2"),
                    _Norm(p, f"enc_p.encoder.norm_layers_2.{i}"),
                )
            )
        self.proj = _Conv(p, "enc_p.proj")

    def _attend(
        self, x: np.ndarray, qkv: ConvWeight, b: np.ndarray, rel_k: np.ndarray, rel_v: np.ndarray
    ) -> np.ndarray:
        t, c = x.shape
        h, w, d = self.heads, self.window, c // self.heads
        q, k, v = np.split(
            conv1d(x, qkv, b).reshape(t, 3, h, d).transpose(1, 2, 0, 3), 3
        )  # each (1, H, T, d)
        q, k, v = q[0] * np.float32(1 / math.sqrt(d)), k[0], v[0]
        scores = q @ k.transpose(0, 2, 1)  # (H, T, T)
        rel = q @ rel_k.T  # (H, T, 2w+1): query i · key embedding of offset r − w
        spans = []
        for r in range(2 * w + 1):  # scores[h, i, i + o] += rel[h, i, r] for offset o = r − w in the sequence
            o = r - w
            i = np.arange(max(0, -o), min(t, t - o))
            scores[:, i, i + o] += rel[:, i, r]
            spans.append((r, i, o))
        p = _softmax(scores)
        out = p @ v  # (H, T, d)
        for r, i, o in spans:  # the values' relative embeddings, weighted by p at that offset
            out[:, i] += p[:, i, i + o][..., None] * rel_v[r]
        return out.transpose(1, 0, 2).reshape(t, c)

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids (T,) → hidden (T, H), prior mean and log-std (T, inter)."""
        x = self.emb[ids]
        left, right = self.ffn_pad
        for qkv, b, conv_o, rel_k, rel_v, norm_1, conv_1, conv_2, norm_2 in self.layers:
            x = norm_1(x + conv_o(self._attend(x, qkv, b, rel_k, rel_v)))
            y = np.maximum(conv_1(np.pad(x, ((left, right), (0, 0)))), np.float32(0))
            x = norm_2(x + conv_2(np.pad(y, ((left, right), (0, 0)))))
        m, logs = np.split(self.proj(x), 2, axis=-1)
        return x, m, logs


class _DDSConv:
    def __init__(self, p: Params, name: str, kernel: int, n_layers: int) -> None:
        self.layers = []
        for i in range(n_layers):
            d = kernel**i
            sep = p[f"{name}.convs_sep.{i}.weight"][:, :, 0].T.copy()  # depthwise (C, K, 1) → (K, C)
            self.layers.append(
                (
                    sep,
                    p[f"{name}.convs_sep.{i}.bias"],
                    d,
                    (kernel * d - d) // 2,
                    _Norm(p, f"{name}.norms_1.{i}"),
                    _Conv(p, f"{name}.convs_1x1.{i}"),
                    _Norm(p, f"{name}.norms_2.{i}"),
                )
            )

    def __call__(self, x: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
        if g is not None:
            x = x + g
        t = x.shape[0]
        for sep, b, d, pad, norm_1, one, norm_2 in self.layers:
            xp = np.pad(x, ((pad, pad), (0, 0)))
            y = xp[:t] * sep[0] + b
            for j in range(1, sep.shape[0]):
                y += xp[j * d : j * d + t] * sep[j]
            y = gelu_into(norm_1(y))
            x = x + gelu_into(norm_2(one(y)))
        return x


def _spline_inverse(
    y: np.ndarray, uw: np.ndarray, uh: np.ndarray, ud: np.ndarray, bound: float
) -> np.ndarray:
    """`model.spline_inverse` in numpy: y (T,), widths/heights (T, bins), inner derivatives (T, bins − 1)."""
    bins = uw.shape[-1]
    edge = np.float32(math.log(math.exp(1 - MIN_BIN) - 1))
    ud = np.pad(ud, ((0, 0), (1, 1)), constant_values=edge)

    def knots(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = np.float32(MIN_BIN) + np.float32(1 - MIN_BIN * bins) * _softmax(u)
        cum = np.pad(np.cumsum(size, axis=-1), ((0, 0), (1, 0)))
        cum = np.float32(2 * bound) * cum - np.float32(bound)
        cum[:, 0], cum[:, -1] = -bound, bound
        return cum, cum[:, 1:] - cum[:, :-1]

    cumw, widths = knots(uw)
    cumh, heights = knots(uh)
    deriv = np.float32(MIN_BIN) + _softplus(ud)
    search = cumh.copy()
    search[:, -1] += np.float32(1e-6)
    idx = np.clip((y[:, None] >= search).sum(axis=-1) - 1, 0, bins - 1)[:, None]

    def at(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, idx, axis=-1)[:, 0]

    x_lo, w, y_lo, h = at(cumw), at(widths), at(cumh), at(heights)
    delta = h / w
    d0, d1 = at(deriv), at(deriv[:, 1:])
    dy = y - y_lo
    curve = d0 + d1 - 2 * delta
    a = dy * curve + h * (delta - d0)
    b = h * d0 - dy * curve
    c = -delta * dy
    with np.errstate(invalid="ignore", divide="ignore"):  # outside the bound the tails are linear
        root = (2 * c) / (-b - np.sqrt(b * b - 4 * a * c))
    inside = (y >= -bound) & (y <= bound)
    return np.where(inside, root * w + x_lo, y).astype(np.float32)


class _DurationPredictor:
    def __init__(self, p: Params, model: Piper) -> None:
        c = model.config
        self.pre, self.proj = _Conv(p, "dp.pre"), _Conv(p, "dp.proj")
        self.cond = _Conv(p, "dp.cond") if "dp.cond.weight" in p else None
        self.convs = _DDSConv(p, "dp.convs", c.dp_kernel_size, c.dp_n_layers)
        self.affine = (p["dp.affine.m"], p["dp.affine.logs"])
        self.bins, self.bound, self.scale = (
            c.num_bins,
            c.tail_bound,
            np.float32(1 / math.sqrt(c.dp_filter_channels)),
        )
        self.flows = [
            (
                _Conv(p, f"dp.conv_flows.{i}.pre"),
                _DDSConv(p, f"dp.conv_flows.{i}.convs", c.dp_kernel_size, c.dp_n_layers),
                _Conv(p, f"dp.conv_flows.{i}.proj"),
            )
            for i in range(c.dp_n_flows)
        ]

    def __call__(self, x: np.ndarray, noise: np.ndarray, g: np.ndarray | None) -> np.ndarray:
        """x (T, H), noise (T, 2) already scaled, g (1, gin) or None → logw (T,)."""
        x = self.pre(x)
        if self.cond is not None and g is not None:
            x = x + self.cond(g)
        x = self.proj(self.convs(x))
        z = noise
        n = self.bins
        for pre, convs, proj in reversed(self.flows):  # Flip, ConvFlow, ..., Flip, ElementwiseAffine
            z = z[:, ::-1]
            h = proj(convs(pre(np.ascontiguousarray(z[:, :1])), x))
            x1 = _spline_inverse(
                z[:, 1], h[:, :n] * self.scale, h[:, n : 2 * n] * self.scale, h[:, 2 * n :], self.bound
            )
            z = np.stack([z[:, 0], x1], axis=-1)
        m, logs = self.affine
        z = (z[:, ::-1] - m) * np.exp(-logs)
        return z[:, 0].astype(np.float32)


class CPUEncoder:
    """Phoneme ids of one row → (frames per id, prior mean, prior log-std), what `Piper.durations` computes."""

    def __init__(self, model: Piper) -> None:
        p = host_params(model, skip=("dec.", "flow."))
        self.text = _TextEncoder(p, model)
        self.dp = _DurationPredictor(p, model)

    def row(
        self, ids: np.ndarray, noise: np.ndarray, length_scale: float, g: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids (T,), noise (T, 2) already scaled by noise_w → w (T,) float, m and logs (T, inter)."""
        x, m, logs = self.text(ids)
        logw = self.dp(x, noise, g)
        return np.ceil(np.exp(logw) * np.float32(length_scale)).astype(np.float32), m, logs

    def __call__(
        self, ids: mx.array, lengths: mx.array, noise: mx.array, length_scale: float, g: mx.array | None
    ) -> tuple[mx.array, mx.array, mx.array]:
        """The batch as `Piper.durations` takes it → w (B, T), m and logs (B, T, inter), zero past each row."""
        ids_np, n_np, noise_np = np.array(ids), np.array(lengths), np.array(noise, np.float32)
        g_np = None if g is None else np.array(g, np.float32)
        b, t = ids_np.shape
        inter = self.text.proj.w.shape[2] // 2
        w = np.zeros((b, t), np.float32)
        m, logs = np.zeros((b, t, inter), np.float32), np.zeros((b, t, inter), np.float32)
        with serial_blas():  # OpenBLAS's spinning threads would fight the conv kernel's OpenMP team
            for i, n in enumerate(int(x) for x in n_np):
                gi = None if g_np is None else g_np[i]
                w[i, :n], m[i, :n], logs[i, :n] = self.row(ids_np[i, :n], noise_np[i, :n], length_scale, gi)
        return mx.array(w), mx.array(m), mx.array(logs)
