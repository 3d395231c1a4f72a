"""The system OpenBLAS that `make` installs (deploy/install-system-deps.sh) and `dsp.blas` preloads."""

from __future__ import annotations

import ctypes

import pytest


def openblas_installed() -> bool:
    try:
        ctypes.CDLL("libopenblas.so.0")
    except OSError:
        return False
    return True


needs_openblas = pytest.mark.skipif(
    not openblas_installed(), reason="no system OpenBLAS: run deploy/install-system-deps.sh"
)
