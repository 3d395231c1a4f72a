"""The test data folder: `MLX_AUDIO_TEST_DATA` is honoured, and a run that skipped tests for want of it
says so in one line at the end (tests/conftest.py), instead of passing quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import data

ROOT = Path(__file__).resolve().parents[1]
DATA_TESTS = [
    "tests/dsp/test_audio_io.py::test_mp3_flac_wav_are_the_same_speech",
    "tests/dsp/test_audio_io.py::test_flac_24bit_values",
]


def _pytest(*args: str, data_dir: Path) -> list[str]:
    env = {**os.environ, data.ENV_VAR: str(data_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def test_missing_data_is_counted_in_one_line_at_the_end(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    lines = _pytest(*DATA_TESTS, data_dir=absent)
    summary = [line for line in lines if "test data not found" in line]
    assert summary == [f"2 tests skipped: test data not found at {absent} (from MLX_AUDIO_TEST_DATA)"]
    assert lines[-2] == summary[0] and lines[-1].startswith("2 skipped in ")
    assert f"test data missing: {absent}/speech/jfk.wav" in "\n".join(lines)  # the per-test reason (-ra)


def test_the_folder_comes_from_the_environment_first(tmp_path: Path) -> None:
    # A folder holding only jfk.flac: the 24-bit test runs on it, the other still skips for its wav.
    (tmp_path / "speech").mkdir()
    (tmp_path / "speech" / "jfk.flac").symlink_to(data.speech("jfk.flac"))
    lines = _pytest(*DATA_TESTS, data_dir=tmp_path)
    assert f"1 test skipped: test data not found at {tmp_path} (from MLX_AUDIO_TEST_DATA)" in lines
    assert lines[-1].startswith("1 passed, 1 skipped in ")


def test_default_folder_is_beside_the_checkout() -> None:
    assert (ROOT.parent / "shared" / "data").resolve() == data.DEFAULT_DATA
    if not os.environ.get(data.ENV_VAR):
        assert data.DATA == data.DEFAULT_DATA
        assert data.where_expected() == (
            f"{data.DEFAULT_DATA} (../shared/data beside the checkout; MLX_AUDIO_TEST_DATA overrides)"
        )
