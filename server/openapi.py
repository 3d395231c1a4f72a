"""Write (or --check) openapi/openapi.json, generated from `create_app()`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def generate() -> dict[str, Any]:
    from server.app import create_app
    from server.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        # Settings from defaults only: the schema must not depend on the developer's environment.
        app = create_app(Settings(cache_dir=Path(tmp)))
        return app.openapi()


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("path", type=Path)
    p.add_argument("--check", action="store_true", help="fail if the file differs from the generated one")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not args.path.exists() or args.path.read_text() != text:
            print(f"{args.path} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
