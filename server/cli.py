"""`mlx-audio-server` command: serve, models, download, convert."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError


def _settings(args: argparse.Namespace) -> Any:
    from server.settings import Settings

    overrides: dict[str, Any] = {}
    for name in (
        "host",
        "port",
        "api_key",
        "cache_dir",
        "config_file",
        "log_level",
        "log_format",
        "idle_ttl",
        "memory_budget_mb",
        "max_upload_mb",
        "queue_depth",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "preload", None):
        overrides["preload"] = args.preload
    if getattr(args, "cors_origin", None):
        overrides["cors_origins"] = args.cors_origin
    try:
        return Settings(**overrides)
    except (ValidationError, ValueError) as exc:
        sys.exit(f"mlx-audio-server: invalid settings: {exc}")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from server.app import build_registry

    settings = _settings(args)
    registry = build_registry(settings)
    rows = [("ID", "TASK", "FAMILY", "FORMAT", "DEFAULT FOR", "ALIASES")]
    for s in registry.list():
        rows.append(
            (
                s.id,
                s.task,
                s.family,
                s.format,
                ",".join(s.default_for) or "-",
                ",".join(registry.aliases_of(s.id)) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from models.errors import DomainError
    from models.weights import model_dir
    from server.app import build_registry

    settings = _settings(args)
    registry = build_registry(settings)
    for name in args.model:
        try:
            spec = registry.get(name)
            path = model_dir(spec, settings.cache_dir, progress=True)
        except DomainError as exc:
            sys.exit(f"mlx-audio-server: {exc.message}")
        print(f"{spec.id}: {path}", flush=True)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from models.families import get_family

    dst = Path(args.dst).absolute()
    dst.mkdir(parents=True, exist_ok=True)
    get_family(args.family).convert(Path(args.src), args.format, dst)
    print(f"converted {args.src} ({args.format}) → {dst}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx-audio-server", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", dest="config_file", help="TOML settings file")
        sp.add_argument("--cache-dir", help="absolute cache directory for downloads and conversions")

    s = sub.add_parser("serve", help="run the HTTP/WebSocket server")
    common(s)
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--api-key")
    s.add_argument("--preload", action="append", help="model id to load at start (repeatable)")
    s.add_argument("--cors-origin", action="append", help="allowed CORS origin (repeatable)")
    s.add_argument("--idle-ttl", type=float)
    s.add_argument("--memory-budget-mb", type=float)
    s.add_argument("--max-upload-mb", type=float)
    s.add_argument("--queue-depth", type=int)
    s.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    s.add_argument("--log-format", choices=["json", "text"])
    s.set_defaults(fn=cmd_serve)

    m = sub.add_parser("models", help="list registered models")
    common(m)
    m.set_defaults(fn=cmd_models)

    d = sub.add_parser("download", help="fetch (and convert) models into the cache, with progress")
    common(d)
    d.add_argument("model", nargs="+")
    d.set_defaults(fn=cmd_download)

    c = sub.add_parser("convert", help="convert a reference checkpoint into this project's layout")
    c.add_argument("--family", required=True)
    c.add_argument("--format", required=True, help="ctranslate2 | transformers | mlx-community")
    c.add_argument("src")
    c.add_argument("dst")
    c.set_defaults(fn=cmd_convert)
    return p


def main(argv: list[str] | None = None) -> int:
    from dsp.blas import ensure_fast_blas

    # Explicitly, before any command imports mlx: the OpenBLAS preload only works in a process that has not
    # imported mlx yet. `serve` logs the outcome at startup.
    ensure_fast_blas()
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
