"""A local stand-in for the Hugging Face Hub, enough for `huggingface_hub.snapshot_download` (2.x).

It serves, for model repos held in memory:

* `GET /api/models/{repo_id}/revision/{revision}`: repo info (`sha` = commit, `siblings`);
* `GET /api/models/{repo_id}/tree/{revision}[/{path}]?recursive=..`: the file listing (`oid`, `size`, and
  `lfs` for LFS-tracked files such as `*.safetensors`);
* `HEAD`/`GET /{repo_id}/resolve/{revision}/{filename}`: the file, with the headers huggingface_hub reads:
  `X-Repo-Commit`, `ETag` (git blob id; for LFS files the SHA-256, also as `X-Linked-Etag`, with
  `X-Linked-Size`), `Content-Length`, and byte `Range` support;
* errors as the Hub signals them (`X-Error-Code`: `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`).

It speaks HTTP/1.0 (one request per connection), so stopping it never waits on an idle keep-alive socket.
Every request is recorded in `requests` as `(method, path)`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

LFS_SUFFIXES = (".safetensors", ".bin", ".npz", ".onnx", ".pt", ".pth")


@dataclass
class FakeRepo:
    """One model repo: files at a single commit, reachable by branch name or commit hash."""

    files: dict[str, bytes]
    commit: str
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision == self.commit:
            return revision
        return self.branches.get(revision)


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports as `oid`/`ETag` for non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 (a free port); use as a context manager."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main") -> str:
        """Publish `files` as `repo_id` at one commit (also reachable as `branch`); return the commit hash."""
        h = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        commit = h.hexdigest()
        self.repos[repo_id] = FakeRepo(dict(files), commit, {branch: commit})
        return commit

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def start(self) -> FakeHub:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self._dispatch(head=True)

        def do_GET(self) -> None:
            self._dispatch(head=False)

        # -- routing ------------------------------------------------------------------------------------

        def _dispatch(self, *, head: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.record(self.command, path)
            if path.startswith("/api/models/"):
                rest = path[len("/api/models/") :]
                if "/revision/" in rest:
                    repo_id, revision = rest.split("/revision/", 1)
                    return self._repo_info(repo_id, revision)
                if "/tree/" in rest:
                    repo_id, tail = rest.split("/tree/", 1)
                    revision, _, sub = tail.partition("/")
                    recursive = parse_qs(url.query).get("recursive", ["False"])[0].lower() == "true"
                    return self._tree(repo_id, revision, sub, recursive)
                return self._error(404, "EntryNotFound", "unknown API route")
            if "/resolve/" in path:
                repo_id, tail = path.lstrip("/").split("/resolve/", 1)
                revision, _, filename = tail.partition("/")
                return self._resolve(repo_id, revision, filename, head=head)
            return self._error(404, None, "not found")

        def _lookup(self, repo_id: str, revision: str) -> tuple[FakeRepo, str] | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                # The Hub answers 401 for unknown repos when no token is sent (it cannot tell private ones).
                self._error(401, "RepoNotFound", "Repository Not Found")
                return None
            commit = repo.resolve(revision)
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return None
            return repo, commit

        # -- endpoints ----------------------------------------------------------------------------------

        def _repo_info(self, repo_id: str, revision: str) -> None:
            found = self._lookup(repo_id, revision)
            if found is None:
                return
            repo, commit = found
            body = {
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "sha": commit,
                "private": False,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "lastModified": "2025-01-01T00:00:00.000Z",
                "createdAt": "2025-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": name} for name in sorted(repo.files)],
            }
            self._json(body, commit)

        def _tree(self, repo_id: str, revision: str, sub: str, recursive: bool) -> None:
            found = self._lookup(repo_id, revision)
            if found is None:
                return
            repo, commit = found
            prefix = sub.strip("/") + "/" if sub.strip("/") else ""
            entries: list[dict[str, object]] = []
            dirs: set[str] = set()
            for name in sorted(repo.files):
                if not name.startswith(prefix):
                    continue
                rel = name[len(prefix) :]
                folders = rel.split("/")[:-1]
                if folders and not recursive:
                    dirs.add(prefix + folders[0])
                    continue
                dirs.update(prefix + "/".join(folders[: i + 1]) for i in range(len(folders)))
                data = repo.files[name]
                entry: dict[str, object] = {
                    "type": "file",
                    "oid": git_blob_id(data),
                    "size": len(data),
                    "path": name,
                }
                if name.endswith(LFS_SUFFIXES):
                    entry["lfs"] = {
                        "oid": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": 134,
                    }
                entries.append(entry)
            dir_entries = [
                {"type": "directory", "oid": git_blob_id(d.encode()), "size": 0, "path": d} for d in dirs
            ]
            self._json(sorted(dir_entries, key=lambda e: str(e["path"])) + entries, commit)

        def _resolve(self, repo_id: str, revision: str, filename: str, *, head: bool) -> None:
            found = self._lookup(repo_id, revision)
            if found is None:
                return
            repo, commit = found
            data = repo.files.get(filename)
            if data is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist", commit=commit)
            headers = {
                "X-Repo-Commit": commit,
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            }
            if filename.endswith(LFS_SUFFIXES):
                sha = hashlib.sha256(data).hexdigest()
                headers.update(
                    {"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))}
                )
            else:
                headers["ETag"] = f'"{git_blob_id(data)}"'
            status, body = 200, data
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start_s, _, end_s = rng[len("bytes=") :].partition("-")
                start = int(start_s) if start_s else 0
                end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
                if start >= len(data):
                    return self._error(416, None, "range not satisfiable")
                status, body = 206, data[start : end + 1]
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        # -- replies ------------------------------------------------------------------------------------

        def _json(self, obj: object, commit: str) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str | None, message: str, *, commit: str | None = None) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if code:
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def point_hub_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: str) -> None:
    """Point huggingface_hub at `endpoint`, including what it cached from the environment at import time."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    if hasattr(constants, "AGENT_HARNESSES_PATH"):  # fetched from ENDPOINT once a day by huggingface_hub
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
