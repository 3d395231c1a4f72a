"""`models/separation.py` — demucs' `apply_model` method (segments, transitions, shifts, bags) — held to demucs'
own `apply_model` on the same toy network in torch and MLX: a position-dependent filter, so a segment placed,
padded or trimmed one sample off shows."""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from models.batching import drive
from models.errors import InvalidRequest
from models.separation import SegmentedSeparator, padded_segment, transition_weight
from models.tasks import SeparateOptions, SeparationProgress

RATE, SEGMENT = 200, 64  # 0.32 s segments at 200 Hz: shifts reach 100 samples
SOURCES = ("drums", "bass", "vocals")


def _kernels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(SOURCES), 5)).astype(np.float32)


class ToyNetwork:
    """stem s = (5-tap filter k_s of the mix) · (1 + position in the segment) + s · tanh(mix), in MLX."""

    sources, sample_rate, channels, segment = SOURCES, RATE, 2, SEGMENT

    def __init__(self, seed: int) -> None:
        self.k = mx.array(_kernels(seed))

    def __call__(self, mix: mx.array) -> mx.array:
        t = mix.shape[-1]
        padded = mx.pad(mix, [(0, 0), (0, 0), (2, 2)])
        taps = mx.stack([padded[..., j : j + t] for j in range(5)], axis=-1)  # [b, c, t, 5]
        filtered = mx.einsum("bctj,sj->bsct", taps, self.k)
        ramp = 1 + mx.arange(t, dtype=mx.float32) / t
        scale = mx.arange(len(SOURCES), dtype=mx.float32)[:, None, None]
        return filtered * ramp + scale * mx.tanh(mix)[:, None]


def _torch_network(seed: int) -> Any:
    import torch
    from demucs.htdemucs import HTDemucs

    class TorchToy(torch.nn.Module):
        samplerate, audio_channels, sources = RATE, 2, list(SOURCES)
        segment = Fraction(SEGMENT, RATE)

        def __init__(self) -> None:
            super().__init__()
            self.k = torch.nn.Parameter(torch.from_numpy(_kernels(seed)))

        def valid_length(self, length: int) -> int:  # as HTDemucs: always its training segment
            return HTDemucs.valid_length(self, length)  # type: ignore[arg-type]

        use_train_segment = True

        def forward(self, mix: torch.Tensor) -> torch.Tensor:
            t = mix.shape[-1]
            padded = torch.nn.functional.pad(mix, (2, 2))
            taps = torch.stack([padded[..., j : j + t] for j in range(5)], dim=-1)
            filtered = torch.einsum("bctj,sj->bsct", taps, self.k)
            ramp = 1 + torch.arange(t, dtype=torch.float32) / t
            scale = torch.arange(len(SOURCES), dtype=torch.float32)[:, None, None]
            return filtered * ramp + scale * torch.tanh(mix)[:, None]

    return TorchToy()


def _separate(sep: SegmentedSeparator, audio: np.ndarray, options: SeparateOptions, seed: int = 0) -> Any:
    events = list(drive(sep.separate_stream(audio, options, seed=seed)))
    progress = [e for e in events if isinstance(e, SeparationProgress)]
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert progress and progress[-1].done == progress[-1].total
    assert isinstance(events[-1], dict)
    return events[-1]


def _demucs(model: Any, audio: np.ndarray, seed: int = 0, **kwargs: Any) -> np.ndarray:
    import torch
    from demucs.apply import apply_model

    random.seed(seed)
    with torch.no_grad():
        out = apply_model(model, torch.from_numpy(audio)[None], **kwargs)
    return np.asarray(out[0].numpy())


def _audio(samples: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (2, samples)).astype(np.float32)


def test_the_transition_weight_and_padding_are_demucs() -> None:
    np.testing.assert_array_equal(transition_weight(6), np.array([1, 2, 3, 3, 2, 1], np.float32) / 3)
    np.testing.assert_array_equal(transition_weight(5), np.array([1, 2, 3, 2, 1], np.float32) / 3)
    x = np.arange(1, 11, dtype=np.float32)[None]
    # 3 samples from offset 8 in 7 of context: 2 before from the signal, 2 after: one real, one zero
    np.testing.assert_array_equal(padded_segment(x, 7, 3, 7), [[6, 7, 8, 9, 10, 0, 0]])
    np.testing.assert_array_equal(padded_segment(x, 0, 3, 7), [[0, 0, 1, 2, 3, 4, 5]])


@pytest.mark.reference
@pytest.mark.parametrize(
    ("samples", "overlap", "max_batch"),
    [(40, 0.25, 4), (64, 0.25, 1), (333, 0.25, 4), (333, 0.5, 3), (1000, 0.1, 16)],
)
def test_segments_and_transitions_match_demucs(samples: int, overlap: float, max_batch: int) -> None:
    audio = _audio(samples)
    sep = SegmentedSeparator([ToyNetwork(3)], max_batch=max_batch)
    ours = _separate(sep, audio, SeparateOptions(overlap=overlap))
    theirs = _demucs(_torch_network(3), audio, shifts=0, overlap=overlap)
    for s, name in enumerate(SOURCES):
        np.testing.assert_allclose(ours[name], theirs[s], rtol=1e-5, atol=1e-5)


@pytest.mark.reference
def test_shifts_match_demucs_with_the_same_random_draws() -> None:
    audio = _audio(500, seed=2)
    sep = SegmentedSeparator([ToyNetwork(5)])
    ours = _separate(sep, audio, SeparateOptions(shifts=3), seed=11)
    theirs = _demucs(_torch_network(5), audio, seed=11, shifts=3)
    for s, name in enumerate(SOURCES):
        np.testing.assert_allclose(ours[name], theirs[s], rtol=1e-5, atol=1e-5)
    # a different draw gives different audio: the shifts are real
    other = _separate(sep, audio, SeparateOptions(shifts=3), seed=12)
    assert np.abs(other["vocals"] - ours["vocals"]).max() > 1e-2


@pytest.mark.reference
def test_a_weighted_bag_matches_demucs() -> None:
    from demucs.apply import BagOfModels

    weights = [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]
    audio = _audio(300, seed=4)
    sep = SegmentedSeparator([ToyNetwork(7), ToyNetwork(8)], weights=weights)
    ours = _separate(sep, audio, SeparateOptions())
    bag = BagOfModels([_torch_network(7), _torch_network(8)], weights=weights)
    theirs = _demucs(bag, audio, shifts=0)
    for s, name in enumerate(SOURCES):
        np.testing.assert_allclose(ours[name], theirs[s], rtol=1e-5, atol=1e-5)
    # asked for drums only, the second network (weight 0 for drums) is not run: half the segments
    only = list(drive(sep.separate_stream(audio, SeparateOptions(stems=("drums",)))))
    assert [e.total for e in only if isinstance(e, SeparationProgress)][-1] == len(range(0, 300, 48))
    np.testing.assert_allclose(only[-1]["drums"], ours["drums"], rtol=1e-6, atol=1e-6)


def test_stems_are_selected_and_unknown_ones_refused() -> None:
    audio = _audio(200)
    sep = SegmentedSeparator([ToyNetwork(3)])
    every = _separate(sep, audio, SeparateOptions())
    some = _separate(sep, audio, SeparateOptions(stems=("vocals", "drums", "vocals")))
    assert list(some) == ["vocals", "drums"]
    np.testing.assert_array_equal(some["vocals"], every["vocals"])
    with pytest.raises(InvalidRequest, match=r"'piano'.*separates drums, bass, vocals") as err:
        list(drive(sep.separate_stream(audio, SeparateOptions(stems=("piano",)))))
    assert err.value.param == "stems"
    with pytest.raises(InvalidRequest, match=r"shape \[2, samples\]"):
        list(drive(sep.separate_stream(audio[:1], SeparateOptions())))


def test_bag_weights_are_checked() -> None:
    with pytest.raises(ValueError, match="bag weights"):
        SegmentedSeparator([ToyNetwork(1), ToyNetwork(2)], weights=[[1, 0, 1], [0, 0, 0]])
    with pytest.raises(ValueError, match="bag weights"):
        SegmentedSeparator([ToyNetwork(1)], weights=[[1, 1]])
