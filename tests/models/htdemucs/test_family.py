"""The family as the registry sees it: its models, its formats, the configs it refuses."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from models.families import builtin_models, formats_of
from models.htdemucs import MODELS
from models.htdemucs.config import HTDEMUCS, HTDEMUCS_6S, HTDemucsConfig
from models.htdemucs.model import HTDemucs
from models.registry import Registry
from models.sources import HubRepo


def test_built_in_models_are_declared_not_fetched() -> None:
    registry = Registry(builtin_models())
    for model_id in ("htdemucs", "htdemucs_6s", "htdemucs_ft"):
        spec = registry.get(model_id)
        assert spec.family == "htdemucs" and spec.task == "separation"
        assert spec.format == "demucs-safetensors" and isinstance(spec.source, HubRepo)
        assert spec.default_for == ()  # /ready would otherwise need the Hub
    assert [s.id for s in MODELS] == ["htdemucs", "htdemucs_6s", "htdemucs_ft"]
    assert formats_of("htdemucs") == ("native", "demucs", "demucs-safetensors", "demucs-mlx")


def test_published_configs() -> None:
    from mlx.utils import tree_flatten

    net = HTDemucs(HTDEMUCS)
    assert (net.sample_rate, net.channels, net.segment) == (44100, 2, 343980)
    six = HTDemucs(HTDEMUCS_6S)
    assert six.sources == ("drums", "bass", "other", "vocals", "guitar", "piano")
    # demucs's own HTDemucs(**kwargs) counts the same (test_model holds the names and shapes to it); as
    # float32 these are the sizes of demucs-mlx's published htdemucs / htdemucs_6s files, less a header
    count = [sum(v.size for _, v in tree_flatten(m.parameters())) for m in (net, six)]
    assert count == [41_984_456, 27_414_996]


def test_config_round_trips_and_drops_unknown_keys() -> None:
    data = {**HTDEMUCS.to_dict(), "not_a_kwarg": 1}
    assert HTDemucsConfig.from_dict(data) == HTDEMUCS
    assert HTDemucsConfig.from_dict({"segment": 7.8}).segment == Fraction(39, 5)
    assert HTDemucsConfig.from_dict({"segment": "39/5"}).segment_samples == 343980


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"cac": False}, "cac=False"),
        ({"multi_freqs": (0.5,)}, "multi_freqs"),
        ({"t_emb": "cape"}, "t_emb"),
        ({"t_sparse_self_attn": True}, "sparse attention"),
        ({"depth": 7}, "past the frequency branch"),
    ],
)
def test_unsupported_configs_are_refused_by_name(change: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        HTDemucs(dataclasses.replace(HTDEMUCS, **change))
