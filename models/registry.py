"""The model registry: an explicit table of `ModelSpec`s. Ids are never guessed from repo-name fragments.

OpenAI model names are aliases: `whisper-1` & co. resolve to the default transcriber, `tts-1` & co. to the
default speech model. Unknown ids raise `ModelNotFound` before anything is loaded.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
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
    """Build a spec from a settings-file table: id, family, task, and exactly one of path/repo/package (a
    repo may name the `files` to fetch, as glob patterns)."""
    data = dict(data)
    kinds = [k for k in ("path", "repo", "package") if k in data]
    if len(kinds) != 1:
        raise ValueError(f"model {data.get('id')!r}: give exactly one of path, repo or package")
    source: Source
    if "path" in data:
        source = LocalDir(str(data.pop("path")))
    elif "repo" in data:
        files = data.pop("files", None)  # glob patterns: a part of a large repo (one voice of piper-voices)
        if files is not None and (isinstance(files, str) or not all(isinstance(f, str) for f in files)):
            raise ValueError(f"model {data.get('id')!r}: files must be a list of glob patterns")
        allow = tuple(files) if files is not None else None
        source = HubRepo(str(data.pop("repo")), revision=data.pop("revision", None), allow_patterns=allow)
    else:
        source = PackageFiles(str(data.pop("package")), str(data.pop("subdir", "")))
    tuples = ("aliases", "capabilities", "default_for")
    known = set(ModelSpec.__dataclass_fields__) - {"source"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"model {data.get('id')!r}: unknown keys {sorted(unknown)}")
    kw: dict[str, Any] = {k: (tuple(v) if k in tuples else v) for k, v in data.items()}
    return ModelSpec(source=source, **kw)


# What a settings-file table may change about a built-in model (given by its id, without a source).
OVERRIDABLE = ("aliases", "default_for", "description", "options")


def override_spec(spec: ModelSpec, data: Mapping[str, Any]) -> ModelSpec:
    """A built-in spec with a settings-file table's changes: `options` are merged into the built-in ones,
    the other keys of `OVERRIDABLE` replace theirs."""
    unknown = set(data) - {"id", *OVERRIDABLE}
    if unknown:
        raise ValueError(
            f"model {spec.id!r} is built in: a table naming it may set {', '.join(OVERRIDABLE)}, "
            f"not {sorted(unknown)} (give it another id to declare a new model)"
        )
    kw: dict[str, Any] = {k: tuple(v) for k, v in data.items() if k in ("aliases", "default_for")}
    if "description" in data:
        kw["description"] = str(data["description"])
    if "options" in data:
        kw["options"] = {**spec.options, **dict(data["options"])}
    return replace(spec, **kw)


def merge_specs(builtin: Iterable[ModelSpec], tables: Iterable[Mapping[str, Any]]) -> list[ModelSpec]:
    """The built-in specs and the settings file's tables as one list. A table with a built-in id and no
    source changes that model (`override_spec`); any other declares a new one. Tasks that a table makes its
    model the default for are no longer defaulted by the built-ins."""
    specs = {s.id: s for s in builtin}
    declared: list[ModelSpec] = []
    touched: set[str] = set()
    for table in tables:
        if table.get("id") in specs and not any(k in table for k in ("path", "repo", "package")):
            specs[table["id"]] = override_spec(specs[table["id"]], table)
            touched.add(table["id"])
        else:
            declared.append(spec_from_mapping(table))
    claimed = {t for s in declared for t in s.default_for}
    claimed |= {t for i in touched for t in specs[i].default_for}
    out = [
        s if s.id in touched else replace(s, default_for=tuple(t for t in s.default_for if t not in claimed))
        for s in specs.values()
    ]
    return [*out, *declared]
