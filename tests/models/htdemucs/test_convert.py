"""HTDemucs checkpoints → our layout: demucs's own `.th` packages (written here by demucs's `serialize_model`
and `save_with_checksum` on random weights, float16 as published), bags with their yaml, demucs 4.1's
Hugging Face safetensors layout, our native layout; and what is refused, before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from models.errors import WeightsError
from models.htdemucs.config import HTDemucsConfig
from models.htdemucs.convert import KLASS, read_th
from models.htdemucs.family import FAMILY, load_networks
from models.torch_pickle import ClassRef, load_torch_file
from tests.support.htdemucs import (
    TINY,
    TINY_6S,
    TINY_MERGED,
    reference_model,
    snr_db,
    write_demucs_mlx,
    write_hf_safetensors,
    write_th,
)

pytestmark = pytest.mark.reference


def _demucs_output(model: Any, mix: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(mix)).numpy()


def _mix(config: HTDemucsConfig, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 2, config.segment_samples)).astype(np.float32)


def test_a_th_package_reads_back_as_torch_loads_it(tmp_path: Path) -> None:
    import torch

    reference = reference_model(TINY_6S)
    path = write_th(reference, tmp_path / "5c90dfd2.th")
    kwargs, state = read_th(path)
    loaded = torch.load(path, weights_only=False)  # the reference reader (imports demucs for `klass`)
    assert loaded["klass"].__name__ == "HTDemucs"
    assert kwargs == loaded["kwargs"]  # the segment Fraction included
    assert HTDemucsConfig.from_dict(kwargs) == TINY_6S
    assert state.keys() == loaded["state"].keys()
    for key, tensor in loaded["state"].items():
        assert tensor.dtype == torch.float16
        np.testing.assert_array_equal(state[key], tensor.float().numpy())


@pytest.mark.parametrize("config", [TINY, TINY_MERGED], ids=["4s", "merged"])
def test_a_converted_th_separates_as_demucs_loads_it(tmp_path: Path, config: HTDemucsConfig) -> None:
    from demucs.states import load_model

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    path = write_th(reference_model(config, seed=2), src / "955717e8.th")
    FAMILY.convert(src, "demucs", dst)
    (network,), weights = load_networks(dst)
    assert weights is None and network.sources == config.sources
    demucs_model = load_model(str(path)).eval()  # demucs's own reader of its package
    mix = _mix(config)
    assert snr_db(_demucs_output(demucs_model, mix), np.array(network(mx.array(mix)))) >= 90


def test_a_bag_converts_with_its_per_source_weights(tmp_path: Path) -> None:
    """htdemucs_ft's shape: four networks and demucs's yaml (`remote/htdemucs_ft.yaml`)."""
    from demucs.states import load_model

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    sigs = ["f7e0c4bc", "d12395a8", "92cfc3b6", "04573f0d"]
    paths = [write_th(reference_model(TINY, seed=10 + i), src / f"{sig}.th") for i, sig in enumerate(sigs)]
    (src / "htdemucs_ft.yaml").write_text(
        f"models: {sigs!r}\nweights: [\n  [1., 0., 0., 0.],\n  [0., 1., 0., 0.],\n  [0., 0., 1., 0.],\n"
        "  [0., 0., 0., 1.],\n]"
    )
    FAMILY.convert(src, "demucs", dst)
    networks, weights = load_networks(dst)
    assert weights == np.eye(4).tolist()
    assert json.loads((dst / "config.json").read_text())["signatures"] == sigs
    mix = _mix(TINY, seed=1)
    for network, path in zip(networks, paths, strict=True):  # in the bag's order
        want = _demucs_output(load_model(str(path)).eval(), mix)
        assert snr_db(want, np.array(network(mx.array(mix)))) >= 90


def test_demucs_hf_safetensors_layout(tmp_path: Path) -> None:
    """demucs 4.1's Hugging Face layout, checked readable by demucs's own `hf.load_safetensors_model`."""
    from demucs.hf import load_safetensors_model

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    reference = reference_model(TINY_6S, seed=4)
    path = write_hf_safetensors(reference, src / "5c90dfd2.safetensors")
    (src / "htdemucs_6s.yaml").write_text("models: ['5c90dfd2']\n")
    demucs_model = load_safetensors_model(path).eval()
    FAMILY.convert(src, "demucs-safetensors", dst)
    (network,), weights = load_networks(dst)
    assert (
        weights is None and network.sources == TINY_6S.sources and network.segment == TINY_6S.segment_samples
    )
    mix = _mix(TINY_6S, seed=2)
    assert snr_db(_demucs_output(demucs_model, mix), np.array(network(mx.array(mix)))) >= 90


def test_a_plain_native_repo_loads(tmp_path: Path) -> None:
    """config.json with one network's kwargs beside one .safetensors in our names and layouts."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_th(reference_model(TINY, seed=5), src / "abcd1234.th")
    FAMILY.convert(src, "demucs", dst)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps(json.loads((dst / "config.json").read_text())["models"][0]))
    (plain / "weights.safetensors").write_bytes((dst / "model_0.safetensors").read_bytes())
    (ours,), _ = load_networks(plain)
    (converted,), _ = load_networks(dst)
    mix = mx.array(_mix(TINY))
    np.testing.assert_array_equal(np.array(ours(mix)), np.array(converted(mix)))


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "pwned"
    torch.save(
        {"klass": None, "args": (), "kwargs": {}, "state": {}, "x": _System(marker)}, tmp_path / "evil.th"
    )
    with pytest.raises(WeightsError, match=r"refusing to unpickle (posix|os)\.system"):
        read_th(tmp_path / "evil.th")
    assert not marker.exists()


def test_other_classes_and_misuse_are_refused(tmp_path: Path) -> None:
    import torch
    from demucs.hdemucs import HDemucs

    torch.save({"klass": HDemucs, "args": (), "kwargs": {}, "state": {}}, tmp_path / "h.th")
    with pytest.raises(WeightsError, match=r"refusing to unpickle demucs\.hdemucs\.HDemucs"):
        read_th(tmp_path / "h.th")
    path = write_th(reference_model(TINY), tmp_path / "t.th")
    with pytest.raises(WeightsError, match=r"refusing to unpickle demucs\.htdemucs\.HTDemucs"):
        load_torch_file(path)
    with pytest.raises(WeightsError, match=r"refusing to unpickle fractions\.Fraction"):
        load_torch_file(path, class_refs=[KLASS])
    package = load_torch_file(path, class_refs=[KLASS], fractions=True)
    assert package["klass"] == ClassRef(*KLASS) and str(package["klass"]) == "demucs.htdemucs.HTDemucs"


def test_a_corrupt_or_incomplete_source_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path = write_th(reference_model(TINY), src / "aaaa0000.th")
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="SHA-256"):
        FAMILY.convert(src, "demucs", tmp_path / "dst")
    (src / "bag.yaml").write_text("models: ['aaaa0000', 'bbbb1111']\n")
    with pytest.raises(WeightsError, match="expected one bbbb1111"):
        FAMILY.convert(src, "demucs", tmp_path / "dst")
    with pytest.raises(WeightsError, match="converts demucs, demucs-safetensors, demucs-mlx, not 'onnx'"):
        FAMILY.convert(src, "onnx", tmp_path / "dst")


@pytest.mark.parametrize(("name", "count"), [("htdemucs", 1), ("htdemucs_ft", 4)])
def test_demucs_mlx_layout(tmp_path: Path, name: str, count: int) -> None:
    """demucs-mlx 1.6.1's files, written by its own converter, and read back by its own loader first."""
    from demucs_mlx.mlx_convert import load_mlx_model_from_safetensors

    src, dst = tmp_path / "src", tmp_path / "dst"
    references = [reference_model(TINY_MERGED, seed=20 + i) for i in range(count)]
    write_demucs_mlx(references, src, name)
    assert sorted(p.name for p in src.iterdir()) == [f"{name}.safetensors", f"{name}_config.json"]
    theirs = load_mlx_model_from_safetensors(name, str(src))  # (its forward needs Metal: not run here)
    assert len(getattr(theirs, "models", [theirs])) == count
    FAMILY.convert(src, "demucs-mlx", dst)
    networks, weights = load_networks(dst)
    assert len(networks) == count and weights == (np.eye(4).tolist() if count > 1 else None)
    mix = _mix(TINY_MERGED, seed=3)
    for network, reference in zip(networks, references, strict=True):
        assert snr_db(_demucs_output(reference, mix), np.array(network(mx.array(mix)))) >= 90
    (src / f"{name}.safetensors").write_bytes(b"0" + (src / f"{name}.safetensors").read_bytes()[1:])
    with pytest.raises(WeightsError, match="SHA-256"):
        FAMILY.convert(src, "demucs-mlx", tmp_path / "again")
