"""Imports point one way: server → models → dsp; dsp imports nothing from the project; families never
import each other or the server. (Also enforced by import-linter in `make check`.)"""

from __future__ import annotations

import ast
from pathlib import Path

from models.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
RANK = {"dsp": 0, "models": 1, "server": 2}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_imports_point_down_only() -> None:
    bad = []
    for pkg, rank in RANK.items():
        for f in (ROOT / pkg).rglob("*.py"):
            for mod in _imports(f):
                top = mod.split(".")[0]
                if top in RANK and RANK[top] > rank:
                    bad.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert bad == []


def _contracts() -> list[dict]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_families_are_independent() -> None:
    families = list(FAMILIES)
    bad = []
    for fam in families:
        for f in (ROOT / "models" / fam).rglob("*.py"):
            for mod in _imports(f):
                parts = mod.split(".")
                if parts[0] == "models" and len(parts) > 1 and parts[1] in families and parts[1] != fam:
                    bad.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert bad == []


def test_the_import_contracts_name_every_family() -> None:
    """import-linter checks what pyproject.toml lists: every family of the table, no more, no less."""
    by_name = {c["name"]: c for c in _contracts()}
    packages = sorted(FAMILIES.values())
    assert sorted(by_name["Model families are independent"]["modules"]) == packages
    assert sorted(by_name["Shared model code imports no family"]["forbidden_modules"]) == packages
    # every package under models/ is a family or shared code named in the contract
    shared = {
        m.removeprefix("models.") for m in by_name["Shared model code imports no family"]["source_modules"]
    }
    folders = {d.name for d in (ROOT / "models").iterdir() if (d / "__init__.py").exists()}
    assert folders == set(FAMILIES) | (shared & folders)
