"""Packaging: setuptools reads the project without a warning (no experimental tables, an SPDX license),
and the C extensions are declared optional so an install without a compiler still succeeds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EXTENSIONS = r"""
import json
import setuptools  # first: setup() below must be setuptools' own
from distutils.core import run_setup
dist = run_setup("setup.py", stop_after="init")
print(json.dumps([{"name": e.name, "sources": e.sources, "optional": e.optional} for e in dist.ext_modules]))
"""


def test_setuptools_reads_the_project_without_warnings() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "setup.py", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    declared = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert declared is not None and proc.stdout.strip() == declared[1]


def test_the_c_extensions_are_optional() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", EXTENSIONS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    exts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [e["name"] for e in exts] == ["models.cpu._kernels", "models.cpu._conv"]
    for ext in exts:
        assert ext["optional"] is True
        assert ext["sources"] and all((ROOT / src).is_file() for src in ext["sources"])
