"""The host (numpy) side of Silero VAD: the front end for float32 on the CPU, the recurrent scan, and speech
probabilities → speech regions.

The LSTM carries its state from one 32-ms window to the next, so it is a strictly sequential scan of
128-unit steps: ~65k multiply-adds each, far too little to pay for a device launch per step. numpy runs
one step in ~13 µs (one BLAS `gemv` and nine ufuncs: ~1.5 s per hour of audio on 2 cores); the input half
of every gate, x·W_ihᵀ + biases, is one product over all windows first.

`speech_regions` follows silero-vad 6.2.3's `get_speech_timestamps` (MIT) exactly, in its default
`use_max_poss_sil_at_max_speech=True` mode; `tests/models/silero_vad` checks equal sample ranges.
"""

from __future__ import annotations

import numpy as np

from models.silero_vad.model import SileroVad
from models.tasks import VadOptions

# The reference's `min_silence_at_max_speech`: silences at least this long are where an over-long region
# may be cut (the longest one wins).
MIN_SILENCE_AT_MAX_SPEECH_MS = 98
# Speech ends below threshold − 0.15, never below this.
MIN_NEG_THRESHOLD = 0.01

LstmState = tuple[np.ndarray, np.ndarray]  # (h, c), each (hidden,) float32


def _host(a: object) -> np.ndarray:
    return np.array(a, np.float32)  # a copy: the host arrays outlive any MLX buffer


class HostFrontEnd:
    """`SileroVad.__call__` in numpy: each conv as (im2col rows) @ W[out, kernel·in]ᵀ, one BLAS product.

    For float32 on the CPU (a GPU keeps the MLX module): an hour of audio takes ~1.3 s here (2 cores,
    batches in parallel on `models.cpu.ops.pool`) against ~1.9 s through MLX with the OpenBLAS that
    `dsp.blas` preloads, and ~60 s with the mlx wheel's own reference BLAS."""

    def __init__(self, model: SileroVad) -> None:
        c = model.config
        self.pad = c.n_fft // 4
        self.hop = c.hop_length
        self.n_bins = c.n_bins
        stft = _host(model.stft_conv.weight)  # (258, n_fft, 1)
        self.stft = np.ascontiguousarray(stft[:, :, 0].T)  # (n_fft, 258)
        self.convs = []
        for conv, stride in ((model.conv1, 1), (model.conv2, 2), (model.conv3, 2), (model.conv4, 1)):
            w = _host(conv.weight)  # (out, 3, in): the im2col rows are [x[t-1], x[t], x[t+1]]
            self.convs.append((np.ascontiguousarray(w.reshape(w.shape[0], -1).T), _host(conv.bias), stride))

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """windows: (N, 576) float32, context + window → features (N, 128)."""
        n, length = windows.shape
        last = length - 1
        x = np.concatenate([windows, windows[:, last - 1 : last - 1 - self.pad : -1]], axis=1)
        # STFT frames (hop 128, length 256) of the 640 samples: 5 blocks of 128, frame f = blocks f, f+1.
        blocks = x.reshape(n, -1, self.hop)
        frames = np.concatenate([blocks[:, :-1], blocks[:, 1:]], axis=2)  # (N, 4, 256)
        spec = _matmul(frames, self.stft)  # (N, 4, 258)
        np.square(spec, out=spec)
        h = spec[..., : self.n_bins] + spec[..., self.n_bins :]
        np.sqrt(h, out=h)
        for w, b, stride in self.convs:
            h = _matmul(_im2col(h, stride), w)
            h += b
            np.maximum(h, 0, out=h)
        return np.ascontiguousarray(h[:, 0, :])


def _im2col(h: np.ndarray, stride: int) -> np.ndarray:
    """(N, T, C) → (N, T_out, 3·C): row t holds h[s − 1], h[s], h[s + 1] (zeros outside), s = stride·t;
    the input of a kernel-3, padding-1 conv1d as one product."""
    n, t, c = h.shape
    t_out = (t - 1) // stride + 1
    cols = np.zeros((n, t_out, 3, c), np.float32)
    for k in range(3):  # tap k reads h[stride·t + k − 1]
        lo = -(-(1 - k) // stride) if k < 1 else 0
        hi = min(t_out - 1, (t - k) // stride)
        if hi >= lo:
            cols[:, lo : hi + 1, k] = h[:, stride * lo + k - 1 : stride * hi + k : stride]
    return cols.reshape(n, t_out, 3 * c)


def _matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(N, T, K) @ (K, M) as one 2-D BLAS product (numpy's stacked matmul would run N small ones)."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[1])


class LstmScan:
    """The LSTM cell over consecutive windows, then ReLU → 1×1 conv → sigmoid: speech probabilities.

    torch's gate rows are (i, f, g, o). They are reordered to (i, f, o, g) and the sigmoid rows halved
    (exact in floating point), so one `tanh` of all 512 pre-activations gives every gate:
    sigmoid(x) = ½·tanh(x/2) + ½."""

    def __init__(self, model: SileroVad) -> None:
        cell = model.lstm_cell
        hid = model.config.hidden_size
        order = np.concatenate(
            [np.arange(0, 2 * hid), np.arange(3 * hid, 4 * hid), np.arange(2 * hid, 3 * hid)]
        )
        scale = np.ones((4 * hid, 1), np.float32)
        scale[: 3 * hid] = 0.5
        w_ih, w_hh = _host(cell.weight_ih)[order] * scale, _host(cell.weight_hh)[order] * scale
        bias = (_host(cell.bias_ih) + _host(cell.bias_hh))[order] * scale[:, 0]
        self.hidden = hid
        self.w_ih = np.ascontiguousarray(w_ih.T)  # (in, 4·hid)
        self.w_hh = np.ascontiguousarray(w_hh.T)  # (hid, 4·hid)
        self.bias = bias
        self.head_w = _host(model.final_conv.weight).reshape(-1)  # (hid,)
        self.head_b = np.float32(_host(model.final_conv.bias)[0])

    def initial_state(self) -> LstmState:
        return np.zeros(self.hidden, np.float32), np.zeros(self.hidden, np.float32)

    def __call__(self, features: np.ndarray, state: LstmState | None = None) -> tuple[np.ndarray, LstmState]:
        """features: (N, 128) from the front end, in time order; `state` carries over from the previous
        call (None: zeros, the reference's reset) → (probabilities (N,) float32, the state after them)."""
        hid = self.hidden
        gates_x = features @ self.w_ih
        gates_x += self.bias
        h0, c0 = state if state is not None else self.initial_state()
        c = c0.copy()
        hs = np.empty((len(features) + 1, hid), np.float32)  # row 0: the previous h
        hs[0] = h0
        # Views made once: each step is one gemv and nine ufuncs writing into fixed buffers.
        z, ig = np.empty(4 * hid, np.float32), np.empty(hid, np.float32)
        sig, i_gate, f_gate, o_gate, g = (
            z[: 3 * hid],
            z[:hid],
            z[hid : 2 * hid],
            z[2 * hid : 3 * hid],
            z[3 * hid :],
        )
        w_hh, dot, tanh, mul = self.w_hh, np.dot, np.tanh, np.multiply
        for h_prev, h, gx in zip(hs[:-1], hs[1:], gates_x, strict=True):
            dot(h_prev, w_hh, out=z)
            z += gx
            tanh(z, out=z)
            sig *= 0.5
            sig += 0.5
            c *= f_gate
            c += mul(i_gate, g, out=ig)
            tanh(c, out=h)
            h *= o_gate
        hs = hs[1:]
        logits = np.maximum(hs, 0) @ self.head_w + self.head_b
        probs = (0.5 * np.tanh(0.5 * logits) + 0.5).astype(np.float32)  # the sigmoid, without overflow
        return probs, (hs[-1].copy() if len(hs) else h0.copy(), c)


def speech_regions(
    probs: np.ndarray, n_samples: int, options: VadOptions, *, sample_rate: int = 16_000, window: int = 512
) -> list[tuple[int, int]]:
    """Per-window speech probabilities (window i = samples [i·window, (i+1)·window)) of an `n_samples`-long
    audio → speech regions [(start, end), ...] in samples, padded by `speech_pad_ms`, in order.

    A region opens at the first window ≥ threshold and closes where the probability has stayed below
    max(threshold − 0.15, 0.01) for `min_silence_ms`; shorter than `min_speech_ms`, it is dropped. One
    reaching `max_speech_s` is cut at its longest silence over 98 ms (the rest continues as a new region),
    or, without one, right there."""
    ms = sample_rate / 1000
    threshold = options.threshold
    neg_threshold = max(threshold - 0.15, MIN_NEG_THRESHOLD)
    min_speech = options.min_speech_ms * ms
    pad = options.speech_pad_ms * ms
    max_speech = options.max_speech_s * sample_rate - window - 2 * pad
    min_silence = options.min_silence_ms * ms
    min_cut_silence = MIN_SILENCE_AT_MAX_SPEECH_MS * ms

    regions: list[list[int]] = []
    start: int | None = None  # the open region's start
    quiet_from = 0  # where the current silence inside the open region began (0: none)
    cuts: list[tuple[int, int]] = []  # (start, length) of the open region's silences long enough to cut at
    for i, p in enumerate(np.asarray(probs, np.float64).tolist()):
        at = window * i
        if p >= threshold and quiet_from:
            if at - quiet_from > min_cut_silence:
                cuts.append((quiet_from, at - quiet_from))
            quiet_from = 0
        if p >= threshold and start is None:
            start = at
            continue
        if start is not None and at - start > max_speech:
            if cuts:
                cut, length = max(cuts, key=lambda s: s[1])  # the first of the longest
                regions.append([start, cut])
                start = cut + length  # speech resumed there: the region goes on from it
            else:
                regions.append([start, at])
                start = None
                quiet_from, cuts = 0, []
                continue
            quiet_from, cuts = 0, []
        if p < neg_threshold and start is not None:
            if not quiet_from:
                quiet_from = at
            if at - quiet_from < min_silence:
                continue
            if quiet_from - start > min_speech:
                regions.append([start, quiet_from])
            start = None
            quiet_from, cuts = 0, []
    if start is not None and n_samples - start > min_speech:
        regions.append([start, n_samples])
    return _pad(regions, pad, n_samples)


def _pad(regions: list[list[int]], pad: float, n_samples: int) -> list[tuple[int, int]]:
    """Widen every region by `pad` on both sides; where two would meet, split the gap between them."""
    for i, region in enumerate(regions):
        if i == 0:
            region[0] = int(max(0, region[0] - pad))
        if i + 1 < len(regions):
            following = regions[i + 1]
            gap = following[0] - region[1]
            if gap < 2 * pad:
                region[1] += int(gap // 2)
                following[0] = int(max(0, following[0] - gap // 2))
            else:
                region[1] = int(min(n_samples, region[1] + pad))
                following[0] = int(max(0, following[0] - pad))
        else:
            region[1] = int(min(n_samples, region[1] + pad))
    return [(s, e) for s, e in regions]
