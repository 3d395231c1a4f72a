"""Real test data from ../shared/data (never copied into the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path((ROOT / ".." / "shared" / "data").resolve())
SPEECH = SHARED / "speech"

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
    path = SPEECH / name
    if not path.exists():
        pytest.skip(f"test data {path} is absent (../shared/data beside the checkout)")
    return path


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
