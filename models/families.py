"""The explicit table of model families: family name → its package. Adding a family is one line here.

A family package (`models/<name>/__init__.py`) declares, cheaply (it imports no MLX):
  - `MODELS`: its built-in `ModelSpec`s (ids, weight sources, aliases, the tasks it is the default for);
  - `FORMATS`: the checkpoint layouts its converter reads ("native", our config.json + *.safetensors, is
    always accepted).
Its `family` module exposes `FAMILY`, an object with:
  - `load(model_dir: Path, spec: ModelSpec) -> object`: build the model from our native layout on the MLX
    worker thread; the object implements a task protocol from `models.tasks`;
  - `convert(src_dir: Path, fmt: str, dst_dir: Path) -> None`: write our native layout from one of its
    `FORMATS`; raise `WeightsError` for anything else.
The registry gathers every package's `MODELS`; a `family` module is imported only when one of its models
is first loaded or converted, so a server that never loads a family never imports its code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from models.registry import ModelSpec

FAMILIES: dict[str, str] = {
    "whisper": "models.whisper",
    "silero_vad": "models.silero_vad",
    "piper": "models.piper",
    "kokoro": "models.kokoro",
    "spleeter": "models.spleeter",
    "htdemucs": "models.htdemucs",
}

NATIVE = "native"


class Family(Protocol):
    def load(self, model_dir: Path, spec: Any) -> Any: ...

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None: ...


@dataclass(frozen=True)
class _Registered:
    family: Family
    formats: tuple[str, ...]


_extra: dict[str, _Registered] = {}


def register_family(name: str, family: Family, formats: tuple[str, ...] = ()) -> None:
    """Add a family at run time (plugins and tests); built-in names cannot be replaced."""
    if name in FAMILIES:
        raise ValueError(f"family {name!r} is built in")
    _extra[name] = _Registered(family, formats)


def get_family(name: str) -> Family:
    if name in _extra:
        return _extra[name].family
    family: Family = importlib.import_module(f"{_package(name)}.family").FAMILY
    return family


def formats_of(name: str) -> tuple[str, ...]:
    """The weight layouts family `name` loads: ours, then what its converter reads."""
    declared = _extra[name].formats if name in _extra else importlib.import_module(_package(name)).FORMATS
    return (NATIVE, *declared)


def builtin_models() -> list[ModelSpec]:
    """Every family's built-in models, in the table's order."""
    return [spec for name in FAMILIES for spec in importlib.import_module(_package(name)).MODELS]


def _package(name: str) -> str:
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})") from None
