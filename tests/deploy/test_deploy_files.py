"""deploy/: the install scripts render valid units with absolute paths; the env example lists every setting."""

from __future__ import annotations

import getpass
import grp
import os
import plistlib
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCRIPTS = [
    DEPLOY / "install-system-deps.sh",
    DEPLOY / "lib.sh",
    DEPLOY / "launchd" / "install.sh",
    DEPLOY / "systemd" / "install.sh",
]
# The settings the design names, as environment variables (server/settings.py is the source of truth).
DOCUMENTED = {
    "MLX_AUDIO_HOST",
    "MLX_AUDIO_PORT",
    "MLX_AUDIO_API_KEY",
    "MLX_AUDIO_CORS_ORIGINS",
    "MLX_AUDIO_CACHE_DIR",
    "MLX_AUDIO_CONFIG_FILE",
    "MLX_AUDIO_PRELOAD",
    "MLX_AUDIO_IDLE_TTL",
    "MLX_AUDIO_MEMORY_BUDGET_MB",
    "MLX_AUDIO_MAX_UPLOAD_MB",
    "MLX_AUDIO_MAX_AUDIO_SECONDS",
    "MLX_AUDIO_MAX_INPUT_CHARS",
    "MLX_AUDIO_QUEUE_DEPTH",
    "MLX_AUDIO_LOG_LEVEL",
    "MLX_AUDIO_LOG_FORMAT",
    "MLX_AUDIO_BLAS",
}
PLACEHOLDER = re.compile(r"@[A-Z_]+@")
ASSIGNMENT = re.compile(r"^#?(MLX_AUDIO_[A-Z0-9_]+)=(.*)$")


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    path = tmp_path / "venv" / "bin" / "mlx-audio-server"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def _run(script: Path, *args: str, home: Path, cwd: Path) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LC_ALL": "C"}
    proc = subprocess.run(
        ["bash", str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for each assignment of a systemd unit (keys may repeat)."""
    section, out = "", []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key, value))
    return out


# --------------------------------------------------------------------------------------------- scripts


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_scripts_parse_and_fail_fast(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    if script.name != "lib.sh":
        assert re.search(r"^set -eu$", script.read_text(), re.M), f"{script} must `set -eu`"
        assert os.access(script, os.X_OK), f"{script} is not executable"


def test_system_deps_script_is_posix_sh() -> None:
    script = DEPLOY / "install-system-deps.sh"
    assert script.read_text().startswith("#!/bin/sh\n")
    for sh in ("sh", "dash"):
        if shutil.which(sh):
            subprocess.run([sh, "-n", str(script)], check=True)


# --------------------------------------------------------------------------------------------- systemd


def test_systemd_user_unit_has_absolute_paths_and_hardening(tmp_path: Path, fake_bin: Path) -> None:
    home = tmp_path / "home"
    rel_bin = os.path.relpath(fake_bin, tmp_path)
    text = _run(
        DEPLOY / "systemd" / "install.sh",
        "--dry-run",
        "--bin",
        rel_bin,
        "--cache-dir",
        "rel-cache",
        home=home,
        cwd=tmp_path,
    )
    assert not PLACEHOLDER.search(text) and not re.search(r"^#(system|user):", text, re.M)
    entries = _unit_entries(text)
    values = {(s, k): v for s, k, v in entries}
    cache = str(tmp_path / "rel-cache")
    assert values["Service", "ExecStart"] == f"{fake_bin} serve"
    assert values["Service", "WorkingDirectory"] == cache
    assert values["Service", "ReadWritePaths"] == cache
    assert values["Service", "EnvironmentFile"] == f"-{home}/.config/mlx-audio-server/mlx-audio-server.env"
    assert ("Service", "Environment", f"MLX_AUDIO_CACHE_DIR={cache}") in entries
    assert values["Service", "Restart"] == "on-failure"
    for key, want in {
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
    }.items():
        assert values["Service", key] == want
    assert values["Install", "WantedBy"] == "default.target"
    assert ("Service", "User") not in values

    if shutil.which("systemd-analyze"):
        runtime = tmp_path / "xdg-runtime"
        runtime.mkdir(mode=0o700)
        _verify(text, tmp_path, "--user", {"XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)})


def test_systemd_system_unit(tmp_path: Path, fake_bin: Path) -> None:
    user = getpass.getuser()
    text = _run(
        DEPLOY / "systemd" / "install.sh",
        "--dry-run",
        "--system",
        "--user",
        user,
        "--bin",
        str(fake_bin),
        home=tmp_path,
        cwd=tmp_path,
    )
    values = {(s, k): v for s, k, v in _unit_entries(text)}
    assert values["Service", "User"] == user
    assert values["Service", "Group"] == grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    assert values["Service", "WorkingDirectory"] == "/var/cache/mlx-audio-server"
    assert values["Service", "EnvironmentFile"] == "-/etc/mlx-audio-server/mlx-audio-server.env"
    assert values["Install", "WantedBy"] == "multi-user.target"
    assert values["Unit", "After"] == "network-online.target"
    if shutil.which("systemd-analyze"):
        _verify(text, tmp_path, "--system", {})


def _verify(text: str, tmp_path: Path, scope: str, extra_env: dict[str, str]) -> None:
    unit_dir = tmp_path / f"verify{scope}"
    unit_dir.mkdir()
    unit = unit_dir / "mlx-audio-server.service"
    unit.write_text(text)
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C", "SYSTEMD_LOG_LEVEL": "warning", **extra_env}
    proc = subprocess.run(
        ["systemd-analyze", scope, "verify", str(unit)], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    problems = [
        line
        for line in proc.stderr.splitlines()
        if str(unit) in line or "Unknown" in line or "Failed to parse" in line
    ]
    assert problems == [], proc.stderr


# --------------------------------------------------------------------------------------------- launchd


def test_launchd_plist_renders_with_absolute_paths(tmp_path: Path, fake_bin: Path) -> None:
    home = tmp_path / "home"
    env_file = tmp_path / "server.env"
    env_file.write_text(
        "# comment\n"
        "MLX_AUDIO_PORT=8123\n"
        "export MLX_AUDIO_PRELOAD='[\"whisper-tiny.en\"]'\n"
        'MLX_AUDIO_API_KEY="k&<y>"\n'
        "MLX_AUDIO_CACHE_DIR=~/models-cache\n"
    )
    text = _run(
        DEPLOY / "launchd" / "install.sh",
        "--dry-run",
        "--bin",
        str(fake_bin),
        "--env-file",
        "server.env",
        home=home,
        cwd=tmp_path,
    )
    assert not PLACEHOLDER.search(text)
    if shutil.which("plutil"):  # macOS
        rendered = tmp_path / "rendered.plist"
        rendered.write_text(text)
        subprocess.run(["plutil", "-lint", str(rendered)], check=True, capture_output=True)
    plist = plistlib.loads(text.encode())
    cache = str(home / "models-cache")
    logs = home / "Library" / "Logs" / "mlx-audio-server"
    assert plist["Label"] == "com.mlx-audio-server"
    assert plist["ProgramArguments"] == [str(fake_bin), "serve"]
    assert plist["WorkingDirectory"] == cache
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["StandardOutPath"] == str(logs / "mlx-audio-server.log")
    assert plist["StandardErrorPath"] == str(logs / "mlx-audio-server.err.log")
    env = plist["EnvironmentVariables"]
    assert env["MLX_AUDIO_CACHE_DIR"] == cache
    assert env["MLX_AUDIO_PORT"] == "8123"
    assert env["MLX_AUDIO_PRELOAD"] == '["whisper-tiny.en"]'
    assert env["MLX_AUDIO_API_KEY"] == "k&<y>"
    assert env["PATH"].startswith(str(fake_bin.parent) + ":")
    for path in (plist["ProgramArguments"][0], plist["WorkingDirectory"], plist["StandardOutPath"]):
        assert Path(path).is_absolute()


def test_launchd_default_cache_dir(tmp_path: Path, fake_bin: Path) -> None:
    text = _run(
        DEPLOY / "launchd" / "install.sh", "--dry-run", "--bin", str(fake_bin), home=tmp_path, cwd=tmp_path
    )
    plist = plistlib.loads(text.encode())
    assert plist["WorkingDirectory"] == str(tmp_path / "Library" / "Caches" / "mlx-audio-server")
    assert set(plist["EnvironmentVariables"]) == {"MLX_AUDIO_CACHE_DIR", "PATH"}


# --------------------------------------------------------------------------------------------- env example


def _example() -> list[tuple[str, str]]:
    lines = (DEPLOY / "mlx-audio-server.env.example").read_text().splitlines()
    return [(m[1], m[2]) for line in lines if (m := ASSIGNMENT.match(line))]


def test_env_example_lists_every_setting_once() -> None:
    from server.settings import Settings

    names = [name for name, _ in _example()]
    assert len(names) == len(set(names)), "a variable is listed twice"
    fields = {f"MLX_AUDIO_{field.upper()}" for field in Settings.model_fields}
    assert set(names) == fields | {"MLX_AUDIO_BLAS"}
    assert set(names) >= DOCUMENTED


def test_env_example_defaults_match_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.settings import Settings

    for name in list(os.environ):
        if name.startswith("MLX_AUDIO_"):
            monkeypatch.delenv(name)
    defaults = Settings()
    for name, value in _example():
        if name in ("MLX_AUDIO_CACHE_DIR", "MLX_AUDIO_CONFIG_FILE", "MLX_AUDIO_BLAS"):
            continue  # placeholders, or not a Settings field
        monkeypatch.setenv(name, value.strip("'"))
    assert Settings() == defaults
