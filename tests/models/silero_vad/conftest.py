"""Silero VAD v6 from the installed `silero-vad==6.2.3` package, through the real loading path, and the
package's own reference models (TorchScript `silero_vad.jit`, onnxruntime `silero_vad.onnx`) for parity.

The package ships two different 16-kHz checkpoints: `silero_vad_16k.safetensors` (what we serve) and the
weights inside `silero_vad.jit` / `silero_vad.onnx` (the two agree with each other to ~5e-6). They are
close but not equal (same architecture; probabilities differ by up to 0.45 on these clips: upstream issue
snakers4/silero-vad#768). So parity is checked both ways: our model on the .jit's weights against the
unmodified references, and our model on the safetensors against the TorchScript code running the
safetensors weights. Helpers: tests/support/silero.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from models.families import builtin_models, get_family
from models.registry import ModelSpec, Registry
from models.silero_vad import SILERO_VAD
from models.silero_vad.family import SILERO_FILE, SileroVadDetector
from models.sources import resolve_source
from models.weights import model_dir
from tests.support.silero import JIT_NAMES, import_reference, jit_tensors


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
