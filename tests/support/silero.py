"""Silero VAD test helpers: the silero-vad package's reference models (torch is imported on use), the
names of their tensors in ours, and the reference's parameters as our `VadOptions`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from models.tasks import VadOptions

WINDOW = 512
CLIPS = ("jfk", "beckett", "two_cities_16k")

# The .jit checkpoint's tensor names → the package safetensors' names (ours).
JIT_NAMES = {
    "stft_conv.weight": "stft.forward_basis_buffer",
    **{f"conv{i + 1}.{p}": f"encoder.{i}.reparam_conv.{p}" for i in range(4) for p in ("weight", "bias")},
    **{f"lstm_cell.{p}": f"decoder.rnn.{p}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
    **{f"final_conv.{p}": f"decoder.decoder.2.{p}" for p in ("weight", "bias")},
}


def import_reference() -> Any:
    """The `silero_vad` package (imports torch; its import sets torch to one thread: restored here)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    silero_vad = pytest.importorskip("silero_vad")
    torch.set_num_threads(threads)
    return silero_vad


def jit_tensors(jit_model: Any) -> dict[str, np.ndarray]:
    """The TorchScript model's 16-kHz tensors under the package safetensors' names."""
    inner = jit_model._model
    found = {**dict(inner.named_parameters()), **dict(inner.named_buffers())}
    return {ours: found[theirs].detach().numpy().copy() for ours, theirs in JIT_NAMES.items()}


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread, as silero-vad sets it (a window's tiny ops only lose to thread hand-offs)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def reference_probabilities(model: Any, samples: np.ndarray) -> np.ndarray:
    """Per-window probabilities exactly as the reference `get_speech_timestamps` computes them."""
    import torch

    model.reset_states()
    wav = torch.from_numpy(samples)
    out = []
    with one_torch_thread():
        for start in range(0, len(wav), WINDOW):
            chunk = wav[start : start + WINDOW]
            if len(chunk) < WINDOW:
                chunk = torch.nn.functional.pad(chunk, (0, WINDOW - len(chunk)))
            out.append(model(chunk, 16000).item())
    return np.array(out, np.float32)


def vad_options(p: dict[str, Any]) -> VadOptions:
    """The reference's `get_speech_timestamps` keyword arguments as our options."""
    return VadOptions(
        threshold=p.get("threshold", 0.5),
        min_speech_ms=p.get("min_speech_duration_ms", 250),
        min_silence_ms=p.get("min_silence_duration_ms", 100),
        speech_pad_ms=p.get("speech_pad_ms", 30),
        max_speech_s=p.get("max_speech_duration_s", float("inf")),
    )
