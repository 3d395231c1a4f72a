"""The converter: every ONNX initializer accounted for by name, shapes checked, config read from the graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from models.errors import WeightsError
from models.families import builtin_models, get_family
from models.piper.config import PiperConfig
from models.piper.convert import PiperGraph, our_name, sanitize
from models.registry import ModelSpec, Registry
from tests.support.piper import ONNX_NAME

ONNX_INITIALIZERS = 401  # in en_US-joe-medium.onnx


@pytest.fixture(scope="module")
def graph(package_data: Path) -> PiperGraph:
    return PiperGraph(package_data / ONNX_NAME)


def test_registry_default_speech_model(spec: ModelSpec) -> None:
    registry = Registry(builtin_models())
    assert registry.for_task(None, "speech") is spec and registry.get("tts-1") is spec
    assert (spec.family, spec.task, spec.format) == ("piper", "speech", "piper")


def test_every_initializer_is_a_parameter_or_a_small_graph_constant(graph: PiperGraph) -> None:
    assert len(graph.tensors) + len(graph.constants) == ONNX_INITIALIZERS
    assert (len(graph.tensors), len(graph.constants)) == (350, 51)
    # The anonymous ones, named through their consumers:
    assert graph.tensors["enc_p.emb.weight"].shape == (256, 192)  # stored as "sid"
    assert graph.tensors["flow.flows.6.enc.in_layers.0.weight"].shape == (384, 192, 5)  # onnx::Conv_8168
    assert graph.tensors["dp.flows.0.exp_neg_logs"].shape == (2, 1)


def test_config_is_read_from_the_graph_and_the_voice_json(converted_dir: Path) -> None:
    config = PiperConfig.from_dict(json.loads((converted_dir / "config.json").read_text()))
    assert config.upsample_rates == (8, 8, 4) and config.hop_length == 256
    assert config.resblock == "2" and config.resblock_dilation_sizes == ((1, 2), (2, 6), (3, 12))
    assert (config.hidden_channels, config.filter_channels, config.n_heads, config.n_layers) == (
        192,
        768,
        2,
        6,
    )
    assert (config.window_size, config.flow_kernel_size, config.flow_n_flows, config.dp_n_flows) == (
        4,
        5,
        4,
        3,
    )
    assert (config.sample_rate, config.noise_scale, config.length_scale, config.noise_w) == (
        22050,
        0.667,
        1,
        0.8,
    )
    assert config.phoneme_id_map["ə"] == (59,) and len(config.phoneme_id_map) == 151
    assert PiperConfig.from_dict({**config.to_dict(), "unknown_key": 1}) == config


def test_converted_tensors_are_the_onnx_tensors_in_mlx_layout(converted_dir: Path, graph: PiperGraph) -> None:
    ours = load_file(str(converted_dir / "model.safetensors"))
    assert len(ours) == len(graph.tensors)
    np.testing.assert_array_equal(
        ours["dec.ups.0.weight"], graph.tensors["dec.ups.0.weight"].transpose(0, 2, 1)
    )
    np.testing.assert_array_equal(
        ours["flow.layers.3.enc.in_layers.0.weight"],
        graph.tensors["flow.flows.6.enc.in_layers.0.weight"].transpose(0, 2, 1),
    )
    np.testing.assert_allclose(
        np.exp(-ours["dp.affine.logs"]), graph.tensors["dp.flows.0.exp_neg_logs"][:, 0], rtol=1e-6
    )
    assert our_name("dp.flows.7.proj.bias") == "dp.conv_flows.2.proj.bias"


def test_a_missing_or_misshapen_tensor_is_refused(graph: PiperGraph, converted_dir: Path) -> None:
    config = PiperConfig.from_dict(json.loads((converted_dir / "config.json").read_text()))
    tensors = {k: v for k, v in graph.tensors.items() if k != "dec.conv_post.weight"}
    with pytest.raises(WeightsError, match=r"missing \['dec.conv_post.weight'\]"):
        sanitize(tensors, config)
    tensors = {**graph.tensors, "enc_p.proj.bias": np.zeros(383, np.float32)}
    with pytest.raises(WeightsError, match=r"enc_p\.proj\.bias: checkpoint shape"):
        sanitize(tensors, config)
    with pytest.raises(WeightsError, match="unexpected"):
        sanitize({**graph.tensors, "dec.extra.weight": np.zeros((1, 1, 1), np.float32)}, config)


def test_convert_refuses_other_layouts_and_incomplete_voices(package_data: Path, tmp_path: Path) -> None:
    family = get_family("piper")
    with pytest.raises(WeightsError, match="'piper' format only"):
        family.convert(package_data, "onnx", tmp_path / "out")
    (tmp_path / "voice").mkdir()
    (tmp_path / "voice" / "x.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(WeightsError, match=r"x.onnx.json is missing"):
        family.convert(tmp_path / "voice", "piper", tmp_path / "out")
    (tmp_path / "voice" / "x.onnx.json").write_text("{}")
    with pytest.raises(WeightsError, match=r"cannot read x\.onnx"):
        family.convert(tmp_path / "voice", "piper", tmp_path / "out")
