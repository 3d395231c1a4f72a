"""The Kokoro family as a user meets it: hexgrad's repo layout (config.json, kokoro-v1_0.pth, voices/*.pt)
converts to the same model as the int8 ONNX export holding the same weights; the built-in model offers its
Japanese voices; a voices directory with a file that is not a voice pack fails to load, clearly, without
running anything."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from models.errors import WeightsError
from models.families import builtin_models, get_family
from models.kokoro.family import read_voices
from models.kokoro.weights import to_mlx
from models.registry import override_spec
from models.weights import model_dir, read_safetensors
from tests.support.data import data_file
from tests.support.kokoro import kokoro_state_dict, write_hexgrad_repo


@pytest.mark.reference
@pytest.mark.parametrize("safetensors", [False, True], ids=["pth", "safetensors"])
def test_hexgrads_layouts_convert_to_the_same_model(tmp_path: Path, safetensors: bool) -> None:
    """kokoro-v1_0.pth as torch writes it in hexgrad's structure, or the same state dict as safetensors
    (kokoro-mlx's layout), both with weight norm as g and v and holding the int8 export's weights → the same
    parameters as converting the ONNX file."""
    state = kokoro_state_dict()
    src = write_hexgrad_repo(state, tmp_path / "Kokoro-82M", safetensors=safetensors)
    dst = tmp_path / "ours"
    get_family("kokoro").convert(src, "kokoro-safetensors" if safetensors else "kokoro", dst)
    converted = read_safetensors(dst / "model.safetensors")
    expected = to_mlx(state)
    assert converted.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(np.array(converted[name]), np.array(value), atol=1e-6, err_msg=name)
    voices = mx.load(str(dst / "voices.safetensors"))
    assert list(voices) == ["af_heart"] and voices["af_heart"].shape == (510, 256)


def test_the_built_in_model_speaks_japanese_out_of_the_box(tmp_path: Path) -> None:
    spec = next(s for s in builtin_models() if s.id == "kokoro-82m")
    synth = get_family("kokoro").load(model_dir(spec, tmp_path / "cache"), spec)
    voices = {v.id: v for v in synth.voices()}
    assert sorted(voices) == ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
    assert voices["jm_kumo"].language == "ja" and voices["jm_kumo"].gender == "male"
    assert synth.details["backend"] == "cpu" and "numpy" in synth.details["backend_reason"]


def test_a_voices_directory_with_a_bad_pack_fails_clearly_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    shutil.copy(data_file("kokoro-voices/af_heart.pt"), tmp_path)
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:  # a torch-like zip whose pickle calls os.system
        import pickle

        class Exploit:
            def __reduce__(self):  # type: ignore[no-untyped-def]
                return (os.system, (f"touch {marker}",))

        z.writestr("evil/data.pkl", pickle.dumps(Exploit()))
    (tmp_path / "notes.pt").write_bytes(b"not a voice")
    with pytest.raises(WeightsError) as err:
        read_voices(tmp_path)
    assert "evil.pt" in str(err.value) or "notes.pt" in str(err.value)
    assert not marker.exists()
    spec = override_spec(
        next(s for s in builtin_models() if s.id == "kokoro-82m"), {"options": {"voices_dir": str(tmp_path)}}
    )
    with pytest.raises(WeightsError):
        get_family("kokoro").load(model_dir(spec, tmp_path / "cache"), spec)
    assert not marker.exists()
