"""The machine a benchmark ran on, and its results file."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any


def machine(**extra: Any) -> dict[str, Any]:
    """Platform, processor and MLX (version, default device), plus what the benchmark adds."""
    import mlx.core as mx

    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "mlx": mx.__version__,  # type: ignore[attr-defined]
        "device": str(mx.default_device()),
        **extra,
    }


def write_results(path: Path | None, result: dict[str, Any]) -> None:
    """Write a benchmark's results as JSON to `path` (its folder made), when one was given."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
