"""Real test data (never copied into the repository): the one place its folder is resolved.

`MLX_AUDIO_TEST_DATA` names the folder; otherwise it is `../shared/data` beside the checkout. A test whose
file is absent skips with a reason starting `MISSING_DATA`; tests/conftest.py counts those and says, in one
line at the end of the run, how many skipped and where the data was expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "MLX_AUDIO_TEST_DATA"
DEFAULT_DATA = (ROOT / ".." / "shared" / "data").resolve()
DATA = Path(os.environ[ENV_VAR]).expanduser().absolute() if os.environ.get(ENV_VAR) else DEFAULT_DATA
SPEECH = DATA / "speech"
MISSING_DATA = "test data missing:"  # the skip reason's prefix


def data_file(rel: str) -> Path:
    """`DATA / rel`, or skip the test (reason prefixed with `MISSING_DATA`) when it is absent."""
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"{MISSING_DATA} {path} (set {ENV_VAR} to the shared data folder)")
    return path


REFERENCE = {
    "jfk": "And so my fellow Americans, ask not what your country can do for you, ask what you can do for "
    "your country.",
    "beckett": "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.",
    "two_cities": "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of "
    "Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had "
    "everything before us, we had nothing before us, we were all going direct to Heaven, we were all going "
    "direct the other way – in short, the period was so far like the present period, that some of its "
    "noisiest authorities insisted on its being received, for good or for evil, in the superlative degree "
    "of comparison only.",
}


def speech(name: str) -> Path:
    """A clip of the speech folder (`jfk.wav`, `beckett.wav`, ...), or skip."""
    return data_file(f"speech/{name}")


def where_expected() -> str:
    """Where the data is looked for, for the end-of-run line."""
    source = (
        f"from {ENV_VAR}"
        if os.environ.get(ENV_VAR)
        else f"../shared/data beside the checkout; {ENV_VAR} overrides"
    )
    return f"{DATA} ({source})"


def normalize(text: str) -> str:
    """Lower-case words without punctuation, for word error rates."""
    text = text.lower().replace("–", " ").replace("-", " ")
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text).split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


def espeak(text: str, voice: str) -> bytes:
    """WAV bytes of `text` spoken by espeak-ng (Debian's package; `make test` installs it)."""
    import shutil
    import subprocess

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (make test installs it on Debian)")
    return subprocess.run(
        [exe, "-v", voice, "-s", "140", "--stdout", text], check=True, capture_output=True
    ).stdout
