"""The model registry: an explicit table of `ModelSpec`s. Ids are never guessed from repo-name fragments.

OpenAI model names are aliases: `whisper-1` & co. resolve to the default transcriber, `tts-1` & co. to the
default speech model. Unknown ids raise `ModelNotFound` before anything is loaded.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from models.errors import InvalidRequest, ModelNotFound
from models.families import formats_of
from models.sources import HubRepo, LocalDir, PackageFiles, Source
from models.tasks import Task

# OpenAI names → the task whose default model answers them.
OPENAI_ALIASES: Mapping[str, Task] = MappingProxyType(
    {
        "whisper-1": "transcription",
        "gpt-4o-transcribe": "transcription",
        "gpt-4o-mini-transcribe": "transcription",
        "tts-1": "speech",
        "tts-1-hd": "speech",
        "gpt-4o-mini-tts": "speech",
    }
)


@dataclass(frozen=True)
class ModelSpec:
    id: str
    family: str
    task: Task
    source: Source
    format: str = "native"
    aliases: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    default_for: tuple[Task, ...] = ()
    owned_by: str = "mlx-audio-server"
    created: int = 0
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            formats = formats_of(self.family)
        except KeyError as exc:
            raise ValueError(f"model {self.id!r}: {exc.args[0]}") from None
        if self.format not in formats:
            raise ValueError(
                f"model {self.id!r}: the {self.family} family reads {', '.join(formats)}, not {self.format!r}"
            )


# Unix time of the first release of the built-in tables; `created` is informational (OpenAI's field).
CREATED = 1_795_000_000


class Registry:
    """Lookup by id or alias. Thread-safe for reads (immutable after construction)."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self._aliases: dict[str, str] = {}
        for spec in specs:
            if spec.id in self._specs:
                raise ValueError(f"duplicate model id {spec.id!r}")
            self._specs[spec.id] = spec
        for spec in self._specs.values():
            for alias in spec.aliases:
                self._add_alias(alias, spec.id)
        for alias, task in OPENAI_ALIASES.items():
            default = self.default_for(task)
            if default is not None and alias not in self._specs:
                self._add_alias(alias, default.id)

    def _add_alias(self, alias: str, target: str) -> None:
        if alias in self._specs or self._aliases.get(alias, target) != target:
            raise ValueError(f"alias {alias!r} is ambiguous")
        self._aliases[alias] = target

    def get(self, name: str) -> ModelSpec:
        spec = self._specs.get(self._aliases.get(name, name))
        if spec is None:
            raise ModelNotFound(f"The model '{name}' does not exist.", param="model")
        return spec

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._aliases.get(name, name) in self._specs

    def list(self) -> builtins.list[ModelSpec]:
        return [*self._specs.values()]

    def aliases_of(self, model_id: str) -> builtins.list[str]:
        return sorted(a for a, t in self._aliases.items() if t == model_id)

    def default_for(self, task: Task) -> ModelSpec | None:
        for spec in self._specs.values():
            if task in spec.default_for:
                return spec
        return None

    def for_task(self, name: str | None, task: Task) -> ModelSpec:
        """Resolve a request's `model` for `task`; the spec must offer the task as a capability."""
        if not name or (name in OPENAI_ALIASES and name not in self._specs):
            # OpenAI names follow the endpoint: `whisper-1` on /translations is the default translator.
            spec = self.default_for(task)
            if spec is None and name and name not in self._aliases:
                raise ModelNotFound(
                    f"No model is configured for {task}: '{name}' stands for the default {task} model.",
                    param="model",
                )
            spec = spec or (self.get(name) if name else None)
        else:
            spec = self.get(name)
        if spec is None:
            raise ModelNotFound(f"No model is configured for {task}.", param="model")
        if task != spec.task and task not in spec.capabilities:
            raise InvalidRequest(
                f"The model '{spec.id}' does not support {task}.",
                param="model",
                code="unsupported_model_task",
            )
        return spec


def spec_from_mapping(data: Mapping[str, Any]) -> ModelSpec:
    """Build a spec from a settings-file table: id, family, task, and exactly one of path/repo/package."""
    data = dict(data)
    kinds = [k for k in ("path", "repo", "package") if k in data]
    if len(kinds) != 1:
        raise ValueError(f"model {data.get('id')!r}: give exactly one of path, repo or package")
    source: Source
    if "path" in data:
        source = LocalDir(str(data.pop("path")))
    elif "repo" in data:
        source = HubRepo(str(data.pop("repo")), revision=data.pop("revision", None))
    else:
        source = PackageFiles(str(data.pop("package")), str(data.pop("subdir", "")))
    tuples = ("aliases", "capabilities", "default_for")
    known = set(ModelSpec.__dataclass_fields__) - {"source"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"model {data.get('id')!r}: unknown keys {sorted(unknown)}")
    kw: dict[str, Any] = {k: (tuple(v) if k in tuples else v) for k, v in data.items()}
    return ModelSpec(source=source, **kw)
