"""The explicit table of model families: family name → the module that implements it.

A family module exposes `FAMILY`, an object with:
  - `load(model_dir: Path, spec: ModelSpec) -> object`: build the model from our native layout
    (config.json + *.safetensors) on the MLX worker thread; the object implements a task protocol
    from `models.tasks`.
  - `convert(src_dir: Path, fmt: str, dst_dir: Path) -> None`: write our native layout from a reference
    checkpoint format (see `registry.FORMATS`); raise `WeightsError` for formats it does not know.
Modules are imported lazily so a server that never loads a family never imports its code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

FAMILY_MODULES: dict[str, str] = {
    "whisper": "models.whisper.family",
    "silero_vad": "models.silero_vad.family",
}


class Family(Protocol):
    def load(self, model_dir: Path, spec: Any) -> Any: ...

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None: ...


_extra: dict[str, Family] = {}


def register_family(name: str, family: Family) -> None:
    """Add a family at run time (plugins and tests); built-in names cannot be replaced."""
    if name in FAMILY_MODULES:
        raise ValueError(f"family {name!r} is built in")
    _extra[name] = family


def get_family(name: str) -> Family:
    if name in _extra:
        return _extra[name]
    try:
        module = FAMILY_MODULES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}") from None
    family: Family = importlib.import_module(module).FAMILY
    return family
