"""The strict loading path: safetensors only, every key and shape checked."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from models.errors import WeightsError
from models.weights import load_into, maybe_quantize, parameter_bytes, read_config, read_safetensors
from tests.support.tiny_family import TinyMLP, write_tiny_model


def test_strict_load_round_trips_values(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "m", dim=8, hidden=16, seed=7)
    weights = read_safetensors(path)
    m = load_into(TinyMLP(8, 16), dict(weights))
    np.testing.assert_array_equal(np.array(m.fc1.weight), np.array(weights["fc1.weight"]))
    assert parameter_bytes(m) == 4 * (8 * 16 + 16 + 16 * 8 + 8)
    assert read_config(path) == {"dim": 8, "hidden": 16}


def test_missing_unexpected_and_misshapen_keys_are_refused(tmp_path: Path) -> None:
    w = read_safetensors(write_tiny_model(tmp_path / "m", dim=8, hidden=16))
    with pytest.raises(WeightsError, match=r"missing \['fc2.bias'\]"):
        load_into(TinyMLP(8, 16), {k: v for k, v in w.items() if k != "fc2.bias"})
    with pytest.raises(WeightsError, match="unexpected"):
        load_into(TinyMLP(8, 16), {**w, "extra.weight": mx.zeros((1,))})
    with pytest.raises(WeightsError, match=r"fc1.weight: checkpoint \(16, 8\) vs model \(32, 8\)"):
        load_into(TinyMLP(8, 32), w)


def test_sanitize_renames_by_key(tmp_path: Path) -> None:
    w = read_safetensors(write_tiny_model(tmp_path / "m", dim=8, hidden=16))
    renamed = {k.replace("fc", "layer"): v for k, v in w.items()}
    m = load_into(
        TinyMLP(8, 16), renamed, sanitize=lambda d: {k.replace("layer", "fc"): v for k, v in d.items()}
    )
    np.testing.assert_array_equal(np.array(m.fc2.weight), np.array(w["fc2.weight"]))


def test_pickles_are_never_loaded(tmp_path: Path) -> None:
    d = tmp_path / "pickled"
    d.mkdir()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not-a-safetensors")
    (d / "config.json").write_text(json.dumps({}))
    with pytest.raises(WeightsError, match="refusing pickle-based files"):
        read_safetensors(d)
    with pytest.raises(WeightsError, match=r"config\.json is missing"):
        read_config(tmp_path)


def test_quantize_on_load_keeps_outputs_close(tmp_path: Path) -> None:
    w = read_safetensors(write_tiny_model(tmp_path / "m", dim=64, hidden=128, seed=3))
    ref = load_into(TinyMLP(64, 128), dict(w))
    q = maybe_quantize(load_into(TinyMLP(64, 128), dict(w)), bits=8, group_size=64)
    x = mx.random.normal((4, 64), key=mx.random.key(0))
    a, b = np.array(ref(x)), np.array(q(x))
    assert parameter_bytes(q) < parameter_bytes(ref) / 2
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
