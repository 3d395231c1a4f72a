"""Silero VAD v5/v6 (16 kHz) in MLX: the convolutional front end, batched over every window of a file.

Follows `silero_vad/tinygrad_model.py` and the TorchScript `silero_vad.jit` of silero-vad 6.2.3 (MIT).
Per 512-sample window the reference sees 576 samples (64 of context from the previous window, zeros
before the first) reflect-padded by 64 on the right: an STFT as a strided conv (kernel 256, hop 128,
258 = 129 real + 129 imaginary filters) → magnitude → four conv1d+ReLU → one 128-d vector per window.
That part does not depend on the recurrent state, so all windows run as one batch here; the LSTM cell
and the 1×1 head (`lstm_cell.*`, `final_conv.*`) are held as parameters for one strict load but run
step by step on the host (`vad.LstmScan`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from models.errors import WeightsError


@dataclass(frozen=True)
class SileroVadConfig:
    sample_rate: int = 16_000
    window_size: int = 512  # samples per probability (32 ms)
    context_size: int = 64  # samples of the previous window prepended to each window
    n_fft: int = 256
    hop_length: int = 128
    hidden_size: int = 128

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def input_size(self) -> int:
        """Samples the network takes per window: the context, then the window."""
        return self.context_size + self.window_size

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SileroVadConfig:
        """Build from a JSON object; keys that are not fields (`model_type`, ...) are dropped on purpose."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "silero_vad", **dataclasses.asdict(self)}


class LSTMCellWeights(nn.Module):
    """torch.nn.LSTMCell's parameters (gate rows i, f, g, o); the scan itself runs in numpy."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.weight_ih = mx.zeros((4 * hidden_size, input_size))
        self.weight_hh = mx.zeros((4 * hidden_size, hidden_size))
        self.bias_ih = mx.zeros((4 * hidden_size,))
        self.bias_hh = mx.zeros((4 * hidden_size,))


class SileroVad(nn.Module):
    def __init__(self, config: SileroVadConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.stft_conv = nn.Conv1d(1, 2 * c.n_bins, c.n_fft, stride=c.hop_length, bias=False)
        self.conv1 = nn.Conv1d(c.n_bins, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, c.hidden_size, 3, padding=1)
        self.lstm_cell = LSTMCellWeights(c.hidden_size, c.hidden_size)
        self.final_conv = nn.Conv1d(c.hidden_size, 1, 1)

    def __call__(self, windows: mx.array) -> mx.array:
        """windows: (N, 576) float32, context + window (see `frame`) → features (N, 128), the LSTM's input."""
        pad = self.config.n_fft // 4
        last = windows.shape[1] - 1
        # reflect padding on the right: x[L-2], x[L-3], ... (the edge sample is not repeated)
        x = mx.concatenate([windows, windows[:, last - 1 : last - 1 - pad : -1]], axis=1)
        x = self.stft_conv(x[:, :, None])  # (N, 4, 258)
        n = self.config.n_bins
        x = mx.sqrt(mx.square(x[..., :n]) + mx.square(x[..., n:]))
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = nn.relu(conv(x))
        if x.shape[1] != 1:
            raise ValueError(f"expected one frame per window after the encoder, got {x.shape[1]}")
        return x[:, 0, :]


def frame(audio: np.ndarray, config: SileroVadConfig) -> np.ndarray:
    """Mono float32 audio (n,) at 16 kHz → (ceil(n / 512), 576) network inputs, as the reference frames it:
    the last window zero-padded, each prefixed with the 64 samples before it (zeros for the first).
    A strided view of one padded copy of the audio: slice it into batches before converting."""
    w, ctx = config.window_size, config.context_size
    n = -(-len(audio) // w)
    padded = np.zeros(ctx + n * w, np.float32)
    padded[ctx : ctx + len(audio)] = audio
    if n == 0:
        return np.zeros((0, ctx + w), np.float32)
    return np.lib.stride_tricks.sliding_window_view(padded, ctx + w)[::w]


# The package's checkpoint stores torch conv weights [out, in, kernel]; MLX wants [out, kernel, in].
CONV_WEIGHTS = (
    "stft_conv.weight",
    "conv1.weight",
    "conv2.weight",
    "conv3.weight",
    "conv4.weight",
    "final_conv.weight",
)


def sanitize(weights: Mapping[str, np.ndarray], config: SileroVadConfig) -> dict[str, np.ndarray]:
    """silero-vad's `silero_vad_16k.safetensors` (torch layout) → our parameter names and layouts.

    The names are the same; the conv weights listed in `CONV_WEIGHTS` are transposed. Every shape is
    checked against the model and a missing or unknown tensor is an error."""
    expected = {k: tuple(v.shape) for k, v in parameters(SileroVad(config))}
    missing, unknown = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    if missing or unknown:
        raise WeightsError(f"not a Silero VAD 16 kHz checkpoint: missing {missing}, unexpected {unknown}")
    out: dict[str, np.ndarray] = {}
    for key, value in weights.items():
        array = np.asarray(value, np.float32)
        if key in CONV_WEIGHTS and array.ndim == 3:
            array = array.transpose(0, 2, 1)
        if array.shape != expected[key]:
            raise WeightsError(f"{key}: checkpoint shape {tuple(value.shape)}, model {expected[key]} (ours)")
        out[key] = np.ascontiguousarray(array)
    return out


def parameters(model: nn.Module) -> list[tuple[str, mx.array]]:
    """The model's parameters as (dotted name, array) pairs."""
    return cast(list[tuple[str, mx.array]], tree_flatten(model.parameters()))
