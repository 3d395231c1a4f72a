"""Hostile and hand-made pickles for the checkpoint readers' tests (`models/torch_pickle.py` and the families
that read torch checkpoints through it)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


class Exploit:
    """Unpickling it runs `touch marker`: a reader that refuses it leaves no marker behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class ArrayState:
    """Pickles as numpy pickles an array (`_reconstruct`, then BUILD) with the state given."""

    def __init__(self, state: tuple[Any, ...]) -> None:
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        reconstruct = np.zeros(1).__reduce__()[0]  # numpy.core or numpy._core, as this numpy pickles
        return (reconstruct, (np.ndarray, (0,), b"b"), self.state)


def torch_like_zip(path: Path, payload: object) -> None:
    """`payload` pickled (protocol 2, as torch.save does) into a zip laid out as torch.save's."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
        z.writestr("archive/version", "3\n")
