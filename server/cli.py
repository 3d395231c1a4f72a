"""`mlx-audio-server` command: serve, models, download, convert; `--version`."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

# Settings that have a command-line flag (the rest: MLX_AUDIO_* variables and the TOML file only).
FLAGS = {
    "host": "--host",
    "port": "--port",
    "api_key": "--api-key",
    "cache_dir": "--cache-dir",
    "config_file": "--config",
    "log_level": "--log-level",
    "log_format": "--log-format",
    "idle_ttl": "--idle-ttl",
    "memory_budget_mb": "--memory-budget-mb",
    "max_upload_mb": "--max-upload-mb",
    "queue_depth": "--queue-depth",
    "preload": "--preload",
    "cors_origins": "--cors-origin",
}


def _settings(args: argparse.Namespace) -> Any:
    """Settings from flags, environment and the TOML file; invalid ones exit with one line saying what to
    fix and where (no pydantic dump)."""
    from server.settings import ConfigFileError, Settings

    overrides: dict[str, Any] = {}
    for field in FLAGS:
        value = getattr(args, "cors_origin" if field == "cors_origins" else field, None)
        if value is not None:  # argparse leaves absent flags at None (repeatable ones too)
            overrides[field] = value
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        config = overrides.get("config_file") or os.environ.get("MLX_AUDIO_CONFIG_FILE")
        sys.exit("mlx-audio-server: " + "; ".join(settings_problem(e, config) for e in exc.errors()))
    except ConfigFileError as exc:
        sys.exit(f"mlx-audio-server: {exc} (--config or MLX_AUDIO_CONFIG_FILE)")
    except ValueError as exc:  # pydantic-settings cannot parse an environment variable (a list or table)
        found = re.search(r'field "(\w+)"', str(exc))
        field = found[1] if found else "a setting"
        env = f"MLX_AUDIO_{field.upper()}"
        sys.exit(
            f'mlx-audio-server: {field}: {env} is not valid JSON (lists are JSON there, e.g. \'["a", "b"]\')'
        )


def where(field: str, config: str | None = None) -> str:
    """Where a setting comes from, for messages: '--port or MLX_AUDIO_PORT'."""
    places = [FLAGS[field]] if field in FLAGS else []
    places.append(f"MLX_AUDIO_{field.upper()}")
    if config or field not in FLAGS:
        places.append(config or "the config file")
    return ", ".join(places[:-1]) + " or " + places[-1]


def settings_problem(error: Any, config: str | None) -> str:
    """One pydantic error on Settings as one line: 'port: must be ≤ 65535 (--port or MLX_AUDIO_PORT)'."""
    loc = error.get("loc") or ()
    field = str(loc[0]) if loc else ""
    etype, ctx = error["type"], error.get("ctx") or {}
    if not field:  # a model validator's message already says what to do
        return str(error["msg"]).removeprefix("Value error, ")
    if etype == "extra_forbidden":
        from server.settings import Settings

        source = f"the config file {config}" if config else "the settings"
        close = difflib.get_close_matches(field, Settings.model_fields, n=1)
        return f"unknown setting '{field}' in {source}" + (f" (did you mean '{close[0]}'?)" if close else "")
    bounds = {"less_than_equal": ("≤", "le"), "less_than": ("<", "lt"), "greater_than_equal": ("≥", "ge")}
    bounds["greater_than"] = (">", "gt")
    if etype in bounds:
        sign, key = bounds[etype]
        problem = f"must be {sign} {ctx[key]:g}"
    elif etype == "literal_error":
        problem = f"must be one of {ctx.get('expected')}"
    elif etype in ("int_parsing", "int_type", "int_from_float"):
        problem = "must be an integer"
    elif etype in ("float_parsing", "float_type"):
        problem = "must be a number"
    else:
        msg = str(error["msg"]).removeprefix("Value error, ")
        problem = msg[:1].lower() + msg[1:]
    return f"{field}: {problem} ({where(field, config)})"


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


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's, via the package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlx-audio-server")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage mistake in one line (argparse prints the whole usage block first)."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mlx-audio-server", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
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
