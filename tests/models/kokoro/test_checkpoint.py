"""hexgrad's .pth checkpoint and voice packs, read without torch and without unpickling anything else than
tensors: values equal torch's own reading, weight norm folded as torch computes it, malicious pickles
refused before they run."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.errors import WeightsError
from models.kokoro.checkpoint import (
    GROUPS,
    pth_state_dict,
    read_voice_pack,
    read_voice_packs_npz,
)
from models.kokoro.config import KokoroConfig
from models.kokoro.layout import canonical_shapes
from models.torch_pickle import load_torch_file
from tests.support import kokoro as K
from tests.support.data import data_file
from tests.support.pickles import Exploit, torch_like_zip


@pytest.fixture(scope="module")
def kmodel() -> Any:
    return K.random_kmodel()


@pytest.fixture(scope="module")
def pth(kmodel: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kokoro-v1_0.pth look-alike: KModel's five sub-state-dicts under DataParallel's `module.` prefix."""
    import torch

    path = tmp_path_factory.mktemp("pth") / "kokoro-v1_0.pth"
    checkpoint = {
        group: {f"module.{k}": v for k, v in getattr(kmodel, group).state_dict().items()} for group in GROUPS
    }
    torch.save(checkpoint, path)
    return path


@pytest.mark.reference
def test_the_pth_reads_as_torch_wrote_it_with_weight_norm_folded(kmodel: Any, pth: Path) -> None:
    import torch

    state = pth_state_dict(pth)
    assert {k: v.shape for k, v in state.items()} == canonical_shapes(KokoroConfig.default())
    params = dict(kmodel.named_parameters())
    folded = 0
    for name, value in state.items():
        assert value.dtype == np.float32
        if name + "_g" in params:  # weight norm: g·v/‖v‖ over all axes but 0, as torch computes it
            expected = torch._weight_norm(params[name + "_v"], params[name + "_g"], 0).detach().numpy()
            np.testing.assert_allclose(value, expected, rtol=2e-6, atol=1e-7)
            folded += 1
        else:
            np.testing.assert_array_equal(value, params[name].detach().numpy())
    # every weight-normed module: 16 in the F0/N branches, 3 text encoder convs, 19 in the decoder's blocks
    # and convs, 51 in the generator (2 ups, conv_post, 6 convs in each of 8 AdaINResBlock1)
    assert folded == 89


@pytest.mark.reference
def test_inert_constants_are_dropped_only_when_inert(kmodel: Any, tmp_path: Path) -> None:
    import torch

    checkpoint = {group: getattr(kmodel, group).state_dict() for group in GROUPS}  # no `module.` prefix
    checkpoint["bert"]["embeddings.position_ids"] = torch.arange(512)[None]
    torch.save(checkpoint, tmp_path / "plain.pth")
    assert (
        len(pth_state_dict(tmp_path / "plain.pth")) == 457
    )  # pooler, position ids, InstanceNorm 1/0 dropped
    checkpoint["decoder"]["encode.norm1.norm.weight"] = torch.full((514,), 2.0)
    torch.save(checkpoint, tmp_path / "affine.pth")
    with pytest.raises(WeightsError, match=r"decoder\.encode\.norm1\.norm\.weight is not 1 everywhere"):
        pth_state_dict(tmp_path / "affine.pth")
    del checkpoint["decoder"]
    torch.save(checkpoint, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match=r"partial\.pth is not a Kokoro checkpoint: expected the groups"):
        pth_state_dict(tmp_path / "partial.pth")


@pytest.mark.parametrize("reader", [pth_state_dict, read_voice_pack])
def test_a_malicious_pickle_is_refused_before_it_runs(tmp_path: Path, reader: Any) -> None:
    marker = tmp_path / "pwned"
    torch_like_zip(tmp_path / "evil.pth", {"bert": Exploit(marker)})
    with pytest.raises(WeightsError, match=r"evil\.pth: refusing to unpickle (posix|os|nt)\.system"):
        reader(tmp_path / "evil.pth")
    assert not marker.exists()
    # the same through a global that torch's format uses, but not one of the few admitted
    torch_like_zip(tmp_path / "eval.pth", {"bert": (eval, ("1 + 1",))})
    with pytest.raises(WeightsError, match=r"refusing to unpickle (__builtin__|builtins)\.eval"):
        reader(tmp_path / "eval.pth")


def test_files_that_are_not_torch_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02}q\x00.")  # a bare pickle (torch's legacy format)
    with pytest.raises(WeightsError, match=r"junk\.pt is not a PyTorch zip checkpoint"):
        read_voice_pack(tmp_path / "junk.pt")
    with zipfile.ZipFile(tmp_path / "nopkl.pt", "w") as z:
        z.writestr("archive/version", "3\n")
    with pytest.raises(WeightsError, match=r"no single <archive>/data\.pkl"):
        load_torch_file(tmp_path / "nopkl.pt")
    # a persistent id pointing at a storage the archive lacks
    with zipfile.ZipFile(tmp_path / "nostorage.pt", "w") as z:
        z.writestr(
            "archive/data.pkl",
            b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ.",
        )
    with pytest.raises(WeightsError, match=r"storage 0 is missing"):
        load_torch_file(tmp_path / "nostorage.pt")


@pytest.mark.reference
def test_voice_packs_read_as_torch_loads_them() -> None:
    import torch

    for name in ("af_heart", "bm_george", "jf_alpha", "zm_yunxi"):
        path = data_file(f"kokoro-voices/{name}.pt")
        pack = read_voice_pack(path)
        assert pack.shape == (510, 1, 256) and pack.dtype == np.float32
        np.testing.assert_array_equal(pack, torch.load(path, weights_only=True).numpy())


def test_the_japanese_voice_packs_npz() -> None:
    packs = read_voice_packs_npz(K.package_dir() / "voices_ja.npz")
    assert sorted(packs) == ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
    assert all(p.shape == (510, 1, 256) and p.dtype == np.float32 for p in packs.values())
    np.testing.assert_array_equal(packs["jf_alpha"], read_voice_pack(data_file("kokoro-voices/jf_alpha.pt")))


@pytest.mark.reference
def test_a_file_that_is_not_a_voice_pack_is_refused(tmp_path: Path) -> None:
    import torch

    torch.save({"af_heart": torch.zeros(510, 1, 256)}, tmp_path / "dict.pt")
    with pytest.raises(
        WeightsError, match=r"dict\.pt is not a Kokoro voice pack: expected float \(510, 1, 256\), found dict"
    ):
        read_voice_pack(tmp_path / "dict.pt")
    torch.save(torch.zeros(510, 256), tmp_path / "flat.pt")
    with pytest.raises(WeightsError, match=r"found float32 \(510, 256\)"):
        read_voice_pack(tmp_path / "flat.pt")
    np.savez(tmp_path / "voices.npz", a=np.zeros((3, 256), np.float32))
    with pytest.raises(WeightsError, match=r"voices\.npz:a is not a Kokoro voice pack"):
        read_voice_packs_npz(tmp_path / "voices.npz")
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    os.replace(tmp_path / "objects.npy", tmp_path / "objects.npz")
    with pytest.raises(WeightsError, match=r"objects\.npz is not an \.npz of voice packs"):
        read_voice_packs_npz(tmp_path / "objects.npz")
