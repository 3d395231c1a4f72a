"""A transcriber family that reports what the router handed it, for testing the router's plumbing without a
network: the rate the upload was decoded at, the windows `chunking_strategy` cut it into, and failures in
the middle of a stream.

Each segment's text is " {samples} samples at {rate} Hz." for one speech region (the whole file when no
regions were given), placed on the file's timeline. A prompt "fail:N" raises `RuntimeError` after (at
most) N segments; "refuse:N" raises a domain error (`Unavailable`) there instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import Unavailable
from models.families import get_family, register_family
from models.registry import ModelSpec
from models.sources import LocalDir
from models.tasks import Segment, TranscribeOptions, TranscriptionInfo

FAMILY_NAME = "probe-transcriber"


class ProbeTranscriber:
    multilingual = False

    def __init__(self, sample_rate: int, window_seconds: float) -> None:
        self.sample_rate, self.window_seconds = sample_rate, window_seconds

    def check(self, options: TranscribeOptions) -> None:
        pass

    def transcribe_stream(self, audio: np.ndarray, options: TranscribeOptions) -> Iterator[Any]:
        sr = self.sample_rate
        yield TranscriptionInfo("en", "english", len(audio) / sr)
        kind, _, after = (options.prompt or "").partition(":")
        regions = options.speech or ((0, len(audio)),)
        for i, (start, end) in enumerate(regions[: int(after)] if after else regions):
            yield Segment(
                id=i,
                seek=start,
                start=start / sr,
                end=end / sr,
                text=f" {end - start} samples at {sr} Hz.",
                tokens=[i],
                temperature=0.0,
                avg_logprob=-0.1,
                compression_ratio=1.0,
                no_speech_prob=0.0,
            )
        if kind == "fail":
            raise RuntimeError("the probe transcriber failed on purpose")
        if kind == "refuse":
            raise Unavailable("The probe transcriber refused on purpose.", retry_after=2)


class ProbeFamily:
    def load(self, model_dir: Path, spec: ModelSpec) -> ProbeTranscriber:
        cfg = json.loads((model_dir / "config.json").read_text())
        return ProbeTranscriber(cfg["sample_rate"], cfg["window_seconds"])

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None:
        raise NotImplementedError


def probe_spec(model_id: str, root: Path, *, sample_rate: int, window_seconds: float) -> ModelSpec:
    """A transcription model of the probe family with its (tiny) config written under `root`."""
    try:
        get_family(FAMILY_NAME)
    except KeyError:
        register_family(FAMILY_NAME, ProbeFamily())
    path = root / model_id
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(
        json.dumps({"sample_rate": sample_rate, "window_seconds": window_seconds})
    )
    return ModelSpec(id=model_id, family=FAMILY_NAME, task="transcription", source=LocalDir(str(path)))
