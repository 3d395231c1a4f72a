"""The OpenBLAS preload is made by the entry points, explicitly: `create_app` and the CLI call
`dsp.blas.ensure_fast_blas()` before they import mlx, and the startup log line says what happened
(including when mlx was imported first). Each case runs in a fresh process."""

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

# {setup} runs first; then the app is built and its lifespan run (the startup log line goes to stderr).
APP = r"""
import json, logging, sys, tempfile
from pathlib import Path
{setup}
import dsp.blas
from server.app import create_app
from server.settings import Settings
before = (repr(dsp.blas._status), "mlx.core" in sys.modules)
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
app = create_app(Settings(cache_dir=Path(tempfile.mkdtemp())))
from fastapi.testclient import TestClient
with TestClient(app):
    pass
maps = {{line.split()[-1] for line in open("/proc/self/maps") if ".so" in line}}
s = dsp.blas._status
print(json.dumps({{"before": before, "loaded": s.loaded, "library": s.library, "reason": s.reason,
                  "openblas_mapped": any("libopenblas" in m.rsplit("/", 1)[-1] for m in maps)}}))
"""

CLI = r"""
import json, sys
from server.cli import main
main(["models"])
import dsp.blas
s = dsp.blas._status
print(json.dumps({"loaded": s.loaded, "library": s.library, "reason": s.reason}))
"""


def _run(code: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if k != "MLX_AUDIO_BLAS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@needs_openblas
def test_create_app_preloads_before_mlx_and_logs_it() -> None:
    r, log = _run(APP.format(setup=""))
    assert r["before"] == ["None", False]  # importing server.app did neither
    assert r["loaded"] and r["library"] == "libopenblas.so.0" and r["openblas_mapped"]
    assert "models registered, BLAS: libopenblas.so.0\n" in log


def test_create_app_after_mlx_says_so() -> None:
    r, log = _run(APP.format(setup="import mlx.core"))
    assert r["before"] == ["None", True]
    assert not r["loaded"] and not r["openblas_mapped"]
    assert r["reason"] == "mlx was imported before the BLAS could be preloaded"
    assert "models registered, BLAS: mlx was imported before the BLAS could be preloaded\n" in log


@needs_openblas
def test_cli_preloads_before_any_command() -> None:
    r, _log = _run(CLI)
    assert r == {"loaded": True, "library": "libopenblas.so.0", "reason": "loaded"}
