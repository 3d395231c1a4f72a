"""Silero VAD v6 from the installed `silero-vad==6.2.3` package, through the real loading path, and the
package's own reference models (TorchScript `silero_vad.jit`, onnxruntime `silero_vad.onnx`) for parity.

The package ships two different 16-kHz checkpoints: `silero_vad_16k.safetensors` (what we serve) and the
weights inside `silero_vad.jit` / `silero_vad.onnx` (the two agree with each other to ~5e-6). They are
close but not equal (same architecture; probabilities differ by up to 0.45 on these clips: upstream issue
snakers4/silero-vad#768). So parity is checked both ways: our model on the .jit's weights against the
unmodified references, and our model on the safetensors against the TorchScript code running the
safetensors weights.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.io import wavfile

from models.families import builtin_models, get_family
from models.registry import ModelSpec, Registry
from models.silero_vad import SILERO_VAD
from models.silero_vad.family import SILERO_FILE, SileroVadDetector
from models.sources import resolve_source
from models.weights import model_dir
from tests.support.data import speech

WINDOW = 512
CLIPS = ("jfk", "beckett", "two_cities_16k")

# The .jit checkpoint's tensor names → the package safetensors' names (ours).
JIT_NAMES = {
    "stft_conv.weight": "stft.forward_basis_buffer",
    **{f"conv{i + 1}.{p}": f"encoder.{i}.reparam_conv.{p}" for i in range(4) for p in ("weight", "bias")},
    **{f"lstm_cell.{p}": f"decoder.rnn.{p}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
    **{f"final_conv.{p}": f"decoder.decoder.2.{p}" for p in ("weight", "bias")},
}


def audio(name: str) -> np.ndarray:
    """A clip of ../shared/data/speech as mono float32 at 16 kHz."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # LIST chunks
        sr, pcm = wavfile.read(speech(f"{name}.wav"))
    assert sr == 16000 and pcm.dtype == np.int16
    return (pcm / 32768.0).astype(np.float32)


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return Registry(builtin_models()).get("silero-vad")


@pytest.fixture(scope="session")
def package_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's data/ directory (read-only), located without importing the package."""
    if importlib.util.find_spec("silero_vad") is None:
        pytest.skip("the silero-vad package is not installed: pip install --no-deps silero-vad==6.2.3")
    return resolve_source(SILERO_VAD, tmp_path_factory.mktemp("unused-cache"))


@pytest.fixture(scope="session")
def converted_dir(tmp_path_factory: pytest.TempPathFactory, spec: ModelSpec, package_data: Path) -> Path:
    """Our layout, converted from the package by the real path into a fresh cache."""
    return model_dir(spec, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def detector(converted_dir: Path, spec: ModelSpec) -> SileroVadDetector:
    det = get_family("silero_vad").load(converted_dir, spec)
    assert isinstance(det, SileroVadDetector)
    return det


# ------------------------------------------------------------------------------------------- references


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


@pytest.fixture(scope="session")
def jit_reference() -> Any:
    """`load_silero_vad()`: the TorchScript model, unmodified."""
    return import_reference().load_silero_vad()


@pytest.fixture(scope="session")
def onnx_reference() -> Any:
    """`load_silero_vad(onnx=True)`: onnxruntime on silero_vad.onnx, unmodified."""
    return import_reference().load_silero_vad(onnx=True)


@pytest.fixture(scope="session")
def jit_on_package_weights(package_data: Path) -> Any:
    """The TorchScript model with the package safetensors' tensors copied into it (same code path)."""
    import torch
    from safetensors.numpy import load_file

    model = import_reference().load_silero_vad()
    inner = model._model
    found = {**dict(inner.named_parameters()), **dict(inner.named_buffers())}
    with torch.no_grad():
        for ours, value in load_file(str(package_data / SILERO_FILE)).items():
            found[JIT_NAMES[ours]].copy_(torch.from_numpy(value))
    return model


@pytest.fixture(scope="session")
def detector_on_jit_weights(
    tmp_path_factory: pytest.TempPathFactory, jit_reference: Any, spec: ModelSpec
) -> SileroVadDetector:
    """Our model on the .jit's weights: written as the package's safetensors file, then our converter."""
    from safetensors.numpy import save_file

    src = tmp_path_factory.mktemp("jit-src")
    save_file(jit_tensors(jit_reference), str(src / SILERO_FILE))
    dst = tmp_path_factory.mktemp("jit-converted")
    family = get_family("silero_vad")
    family.convert(src, "silero", dst)
    det = family.load(dst, spec)
    assert isinstance(det, SileroVadDetector)
    return det


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
