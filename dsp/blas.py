"""Fast BLAS for MLX on Linux CPU.

The ``mlx[cpu]`` wheel links the reference (netlib) BLAS: a 2048x2048 float32 matmul runs at ~5 GFLOP/s.
Loading an optimised OpenBLAS with ``RTLD_GLOBAL`` *before* ``mlx`` is first imported makes the dynamic
linker resolve MLX's ``cblas_sgemm`` & co. to OpenBLAS instead (~35x faster on a 2-core machine).

This module imports nothing from MLX and ``ensure_fast_blas`` must run before ``import mlx``. Importing
does nothing: the CLI (``server.cli.main``) and the app factory (``server.app.create_app``) call it
explicitly before they import mlx, as does ``tests/conftest.py``. Where no OpenBLAS is found, or mlx was
imported first, it degrades to the wheel's BLAS and says why. ``MLX_AUDIO_BLAS`` overrides: a library
path, or ``off``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Debian/Ubuntu `libopenblas0-pthread` (via the alternatives symlink), then Fedora/Arch names.
_SYSTEM_SONAMES = ("libopenblas.so.0", "libopenblasp.so.0", "libopenblas.so")


@dataclass(frozen=True)
class BlasStatus:
    loaded: bool
    library: str | None
    reason: str


_status: BlasStatus | None = None


def _candidates() -> list[str]:
    found: list[str] = list(_SYSTEM_SONAMES)
    name = ctypes.util.find_library("openblas")
    if name:
        found.append(name)
    # A pip-installed OpenBLAS with unprefixed symbols (cmeel-openblas) also works when libgfortran is present.
    purelib = Path(sysconfig.get_paths()["purelib"])
    found.extend(str(p) for p in sorted((purelib / "cmeel.prefix" / "lib").glob("libopenblas.so*")))
    return found


def ensure_fast_blas() -> BlasStatus:
    """Load OpenBLAS globally before MLX (Linux only). Idempotent; returns what happened."""
    global _status
    if _status is not None:
        return _status
    override = os.environ.get("MLX_AUDIO_BLAS", "").strip()
    if not sys.platform.startswith("linux"):
        _status = BlasStatus(False, None, "not Linux: MLX uses Accelerate/Metal or CUDA")
    elif override.lower() in {"off", "0", "none", "reference"}:
        _status = BlasStatus(False, None, "disabled by MLX_AUDIO_BLAS")
    elif "mlx.core" in sys.modules:
        _status = BlasStatus(False, None, "mlx was imported before the BLAS could be preloaded")
    else:
        _status = _try_load([override] if override else _candidates())
    if not _status.loaded:
        log.info("fast BLAS not loaded (%s); MLX CPU matmuls use the reference BLAS", _status.reason)
    return _status


def _try_load(candidates: list[str]) -> BlasStatus:
    errors = []
    for cand in candidates:
        try:
            ctypes.CDLL(cand, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            errors.append(f"{cand}: {exc}")
            continue
        return BlasStatus(True, cand, "loaded")
    hint = "install OpenBLAS (Debian: apt-get install libopenblas0-pthread)"
    return BlasStatus(False, None, f"no OpenBLAS found; {hint}")


def blas_status() -> BlasStatus:
    """What the preload did (attempting it now if nobody has yet)."""
    return ensure_fast_blas()
