"""The real loading path (package → converted cache → strict load) and goldens on the package's weights."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from safetensors.numpy import load_file

from models.errors import WeightsError
from models.families import builtin_models, get_family
from models.registry import ModelSpec, Registry
from models.silero_vad.family import SILERO_FILE, SileroVadDetector
from models.silero_vad.model import CONV_WEIGHTS, SileroVad, SileroVadConfig, parameters
from models.tasks import VadOptions, VoiceActivityDetector
from tests.support.audio import load_audio
from tests.support.data import ROOT

SR = 16000


def test_registry_default_vad_model(spec: ModelSpec) -> None:
    registry = Registry(builtin_models())
    assert registry.for_task(None, "vad") is spec
    assert (spec.family, spec.task, spec.format) == ("silero_vad", "vad", "silero")


def test_converted_layout_is_the_package_tensors_in_mlx_layout(
    converted_dir: Path, package_data: Path
) -> None:
    assert sorted(p.name for p in converted_dir.iterdir()) == [
        ".complete",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((converted_dir / "config.json").read_text())
    assert SileroVadConfig.from_dict(config) == SileroVadConfig() and config["model_type"] == "silero_vad"
    ours = load_file(str(converted_dir / "model.safetensors"))
    theirs = load_file(str(package_data / SILERO_FILE))
    expected = {k: tuple(v.shape) for k, v in parameters(SileroVad(SileroVadConfig()))}
    assert {k: v.shape for k, v in ours.items()} == expected
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value.transpose(0, 2, 1) if key in CONV_WEIGHTS else value)


def test_load_gives_a_voice_activity_detector(detector: SileroVadDetector, package_data: Path) -> None:
    assert isinstance(detector, VoiceActivityDetector) and detector.sample_rate == SR
    loaded = dict(parameters(detector.model))
    assert all(v.dtype == mx.float32 for v in loaded.values())
    stft = load_file(str(package_data / SILERO_FILE))["stft_conv.weight"]
    np.testing.assert_array_equal(np.array(loaded["stft_conv.weight"]), stft.transpose(0, 2, 1))


def test_load_is_strict(converted_dir: Path, spec: ModelSpec, tmp_path: Path) -> None:
    weights = load_file(str(converted_dir / "model.safetensors"))
    (tmp_path / "config.json").write_text((converted_dir / "config.json").read_text())
    del weights["conv3.bias"]
    mx.save_safetensors(str(tmp_path / "model.safetensors"), {k: mx.array(v) for k, v in weights.items()})
    with pytest.raises(WeightsError, match=r"conv3\.bias"):
        get_family("silero_vad").load(tmp_path, spec)


def test_convert_refuses_other_formats_and_missing_files(tmp_path: Path, package_data: Path) -> None:
    family = get_family("silero_vad")
    with pytest.raises(WeightsError, match="'silero' format only"):
        family.convert(package_data, "ctranslate2", tmp_path / "a")
    with pytest.raises(WeightsError, match="missing"):
        family.convert(tmp_path, "silero", tmp_path / "b")


def test_the_package_is_never_imported(converted_dir: Path) -> None:
    """silero_vad's __init__ imports torch, which the server does not install: locate, convert and run
    without importing it (a fresh interpreter, so other tests' imports do not count)."""
    code = (
        "import sys, tempfile, numpy as np\n"
        "from pathlib import Path\n"
        "from models.families import builtin_models, get_family\n"
        "from models.registry import Registry\n"
        "from models.weights import model_dir\n"
        "spec = Registry(builtin_models()).get('silero-vad')\n"
        "det = get_family(spec.family).load(model_dir(spec, Path(tempfile.mkdtemp())), spec)\n"
        "det.speech_probabilities(np.zeros(16000, np.float32))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('silero_vad', 'torch', 'onnxruntime')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_bad_audio_is_refused(detector: SileroVadDetector) -> None:
    with pytest.raises(ValueError, match="mono"):
        detector.speech_probabilities(np.zeros((2, 512), np.float32))
    assert detector.speech_probabilities(np.zeros(0, np.float32)).shape == (0,)
    assert detector.speech_segments(np.zeros(0, np.float32), VadOptions()) == []


# ---------------------------------------------------------------------------------------------- goldens


def test_digital_silence_and_noise_have_no_speech(detector: SileroVadDetector) -> None:
    silence = np.zeros(10 * SR, np.float32)
    assert detector.speech_probabilities(silence).max() < 0.1
    assert detector.speech_segments(silence, VadOptions()) == []
    noise = (0.05 * np.random.default_rng(0).standard_normal(10 * SR)).astype(np.float32)  # −26 dBFS white
    assert detector.speech_probabilities(noise).max() < 0.1
    assert detector.speech_segments(noise, VadOptions()) == []


def test_jfk_speech_starts_within_the_first_second(detector: SileroVadDetector) -> None:
    samples = load_audio("jfk")
    probs = detector.speech_probabilities(samples)
    assert probs.shape == (344,) and probs.dtype == np.float32
    regions = detector.speech_segments(samples, VadOptions())
    assert 0 < regions[0][0] < SR
    assert regions[-1][1] > 10 * SR  # "... for your country" ends at ~10.6 s of 11 s
    assert all(s < e for s, e in regions) and all(a[1] <= b[0] for a, b in itertools.pairwise(regions))
    assert (probs > 0.5).mean() > 0.6  # mostly speech


def test_speech_silence_speech_gives_two_regions(detector: SileroVadDetector) -> None:
    speech = load_audio("jfk")
    gap = (len(speech), len(speech) + 3 * SR)  # 3 s of digital silence
    clip = np.concatenate([speech, np.zeros(3 * SR, np.float32), speech])
    # Bridging jfk's own pauses (< 1 s) leaves exactly the two utterances
    two = detector.speech_segments(clip, VadOptions(min_silence_ms=1000))
    assert len(two) == 2
    assert two[0][0] < SR and gap[0] - SR < two[0][1] < gap[0] + SR
    assert gap[1] < two[1][0] < gap[1] + SR and two[1][1] > gap[1] + 10 * SR
    # With the defaults no region crosses the silence
    for s, e in detector.speech_segments(clip, VadOptions()):
        assert e <= gap[0] + 480 or s >= gap[1] - 480


def test_loudness_normalisation_finds_quiet_speech(detector: SileroVadDetector) -> None:
    """40 dB down (−55 LUFS), the model alone keeps about half of jfk's speech; raised toward −23 LUFS
    first, it finds the regions of the clip as recorded, to a window or two."""
    clip = load_audio("jfk")
    options = VadOptions.for_windows(30.0)
    want = detector.speech_segments(clip, options)
    quiet = clip * np.float32(10 ** (-40 / 20))
    before = quiet.copy()
    as_sent = detector.speech_segments(quiet, options)
    got = detector.speech_segments(quiet, VadOptions.for_windows(30.0, loudness_lufs=-23.0))
    np.testing.assert_array_equal(quiet, before)  # the caller's samples are not scaled in place

    def seconds(regions: list[tuple[int, int]]) -> float:
        return sum(e - s for s, e in regions) / SR

    assert seconds(want) == pytest.approx(10.06, abs=0.05)
    assert seconds(as_sent) < 0.6 * seconds(want) and as_sent[0][0] > 5 * SR  # the first 5 s are lost
    assert len(got) == len(want)
    np.testing.assert_allclose(np.array(got), np.array(want), atol=2 * 512)
    # jfk as recorded (−15 LUFS) is above the target: not boosted, the very same regions
    assert detector.speech_segments(clip, VadOptions.for_windows(30.0, loudness_lufs=-23.0)) == want
    # a noise floor raised by 34 dB is still no speech
    hiss = (1e-3 * np.random.default_rng(0).standard_normal(10 * SR)).astype(np.float32)  # −60 dBFS
    assert detector.speech_segments(hiss, VadOptions.for_windows(30.0, loudness_lufs=-23.0)) == []
