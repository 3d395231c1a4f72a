"""The OpenBLAS preload (`dsp/blas.py`), checked in fresh processes: it only works before `import mlx`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.blas import needs_openblas

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the BLAS preload is Linux-only")

ROOT = Path(__file__).resolve().parents[2]

# Runs in a subprocess: the preload, then mlx; report what got mapped, which library the global
# `cblas_sgemm` symbol comes from, and an MLX matmul checked against numpy.
PROBE = r"""
import ctypes, json
from dsp.blas import blas_status, ensure_fast_blas
ensure_fast_blas()
import mlx.core as mx

mx.random.seed(0)
a = mx.random.normal((96, 80))
b = mx.random.normal((80, 72))
c = a @ b
mx.eval(c)

maps = sorted({line.split()[-1] for line in open("/proc/self/maps") if line.rstrip().endswith(".so") or ".so." in line})
openblas = [m for m in maps if "libopenblas" in m.rsplit("/", 1)[-1] and "numpy" not in m]

class DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p), ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]

provider = None
try:
    sym = ctypes.CDLL(None).cblas_sgemm  # global scope, where MLX's cblas_sgemm reference binds first
    info = DlInfo()
    if ctypes.CDLL(None).dladdr(ctypes.cast(sym, ctypes.c_void_p), ctypes.byref(info)):
        provider = info.fname.decode()
except AttributeError:
    pass

import numpy as np  # only now: numpy bundles its own (renamed) OpenBLAS
ref = np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64)
err = float(np.max(np.abs(np.asarray(c, dtype=np.float64) - ref)))
s = blas_status()
print(json.dumps({"loaded": s.loaded, "library": s.library, "reason": s.reason, "openblas_mapped": openblas,
                  "sgemm_provider": provider, "max_abs_err": err, "ref_scale": float(np.max(np.abs(ref)))}))
"""


def _probe(blas: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "MLX_AUDIO_BLAS"}
    if blas is not None:
        env["MLX_AUDIO_BLAS"] = blas
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _matmul_correct(r: dict[str, Any]) -> bool:
    return r["max_abs_err"] <= 1e-4 * max(1.0, r["ref_scale"])


@needs_openblas
def test_preload_maps_openblas_and_mlx_binds_to_it() -> None:
    r = _probe(None)
    assert r["loaded"], r["reason"]
    assert r["openblas_mapped"], "OpenBLAS is not mapped into the process"
    assert r["sgemm_provider"] and "openblas" in r["sgemm_provider"]
    assert _matmul_correct(r), r


def test_off_leaves_openblas_unloaded_and_still_computes() -> None:
    r = _probe("off")
    assert not r["loaded"] and "disabled" in r["reason"]
    assert r["openblas_mapped"] == []
    assert r["sgemm_provider"] is None  # MLX's reference BLAS stays in its local scope
    assert _matmul_correct(r), r


def test_bogus_library_path_degrades_gracefully() -> None:
    r = _probe("/nonexistent/libopenblas-bogus.so")
    assert not r["loaded"] and r["library"] is None
    assert "no OpenBLAS found" in r["reason"]
    assert r["openblas_mapped"] == []
    assert _matmul_correct(r), r


# Importing any package of the project does no work: nothing preloads OpenBLAS until someone calls
# `ensure_fast_blas()` (the CLI and `create_app` do; see tests/server/test_startup_blas.py).
IMPORT_ONLY = r"""
import json, sys
import dsp, dsp.audio_io, dsp.resample, models, models.registry, models.provider, server, server.app, server.cli
import dsp.blas
maps = {line.split()[-1] for line in open("/proc/self/maps") if ".so" in line}
print(json.dumps({"status": repr(dsp.blas._status), "mlx": "mlx.core" in sys.modules,
                  "openblas_mapped": sorted(m for m in maps if "libopenblas" in m.rsplit("/", 1)[-1])}))
"""


def test_importing_the_project_does_not_preload() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLX_AUDIO_BLAS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ONLY], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r == {"status": "None", "mlx": True, "openblas_mapped": []}
