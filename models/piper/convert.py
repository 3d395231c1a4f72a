"""A Piper voice (`<voice>.onnx` + `<voice>.onnx.json`) → our layout: config.json + model.safetensors.

The ONNX file is read with the `onnx` package (protobuf only; nothing is executed). Every initializer gets
the name of the torch parameter it was exported from: its own name where the exporter kept it, else the
name of the node that consumes it (`onnx::Conv_8240` feeds `/flow/flows.0/enc/in_layers.0/Conv`, so it is
`flow.flows.0.enc.in_layers.0.weight`). Those names map to ours through one explicit table; every shape is
checked against the model and an initializer left over is an error. The few initializers that are not
parameters are graph constants (shapes, axes, scalars) of at most 8 elements: they are checked by size and
skipped. Weight norm is already folded into the export (no `weight_g`/`weight_v`).

The hyper-parameters are read from the same graph: channel counts from initializer shapes, upsampling
strides and dilations from the conv nodes' attributes, the rest from the `.onnx.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from models.errors import WeightsError
from models.onnx_graph import GRAPH_CONSTANT_MAX, OnnxGraph
from models.piper.config import PiperConfig
from models.piper.model import Piper


def find_voice(src_dir: Path) -> tuple[Path, Path]:
    """The one `<voice>.onnx` of a voice directory and its `.onnx.json`: at the top, or anywhere below it
    (rhasspy/piper-voices keeps a voice at `<lang>/<locale>/<name>/<quality>/`)."""
    onnx_files = sorted(Path(src_dir).glob("*.onnx")) or sorted(Path(src_dir).rglob("*.onnx"))
    if len(onnx_files) != 1:
        raise WeightsError(
            f"{src_dir}: expected one Piper voice (*.onnx), found {[p.name for p in onnx_files]}"
        )
    onnx_path = onnx_files[0]
    json_path = onnx_path.with_name(onnx_path.name + ".json")
    if not json_path.is_file():
        raise WeightsError(f"{json_path.name} is missing next to {onnx_path.name}")
    return onnx_path, json_path


class PiperGraph(OnnxGraph):
    """The voice's graph with its initializers under their torch names (`tensors`) and the names of the
    small graph constants skipped (`constants`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, kind="a Piper VITS export")
        self.tensors: dict[str, np.ndarray] = {}
        self.constants: list[str] = []
        for init_name, array in self.initializers.items():
            name = _torch_name(init_name, self.consumers.get(init_name, []))
            if name is None:
                if array.size > GRAPH_CONSTANT_MAX:
                    raise WeightsError(
                        f"{self.path.name}: initializer {init_name!r} {array.shape} is not a known parameter"
                    )
                self.constants.append(init_name)
            elif name in self.tensors:
                raise WeightsError(f"{self.path.name}: two initializers for {name}")
            else:
                self.tensors[name] = array


_PARAM = re.compile(r"^[A-Za-z_]\w*(\.\w+)+$")


def _torch_name(name: str, consumers: list[Any]) -> str | None:
    """The torch parameter an initializer holds, None for a graph constant."""
    if _PARAM.match(name):
        return name
    if len(consumers) == 1:
        node, index = consumers[0]
        path = node.name.strip("/").split("/")
        if node.op_type == "Conv" and index == 1 and path[-1] == "Conv":
            return ".".join(path[:-1]) + ".weight"
        if node.op_type == "Gather" and index == 0 and path[-1] == "Gather":
            return ".".join(path[:-1]) + ".weight"
        # ElementwiseAffine in reverse, (x − m)·exp(−logs): the exporter folded exp(−logs) into a constant
        # (piper's own exports), or only −logs, left for an Exp node (torch 2.x's TorchScript exporter).
        if node.op_type == "Mul" and index == 1 and name == f"/{'/'.join(path[:-1])}/Exp_output_0":
            return ".".join(path[:-1]) + ".exp_neg_logs"
        if node.op_type == "Exp" and index == 0 and path[-1] == "Exp" and name.startswith("onnx::Exp"):
            return ".".join(path[:-1]) + ".neg_logs"
    return None


def config_from_graph(graph: PiperGraph, voice: Mapping[str, Any]) -> PiperConfig:
    t = graph.tensors

    def shape(name: str) -> tuple[int, ...]:
        if name not in t:
            raise WeightsError(f"not a Piper VITS export: {name} is missing")
        return tuple(t[name].shape)

    def indices(pattern: str) -> list[int]:
        found = (re.match(pattern, k) for k in t)
        return sorted({int(m.group(1)) for m in found if m})

    def count(pattern: str) -> int:
        return len(indices(pattern))

    hidden = shape("enc_p.emb.weight")[1]
    n_ups = count(r"^dec\.ups\.(\d+)\.weight$")
    n_res = count(r"^dec\.resblocks\.(\d+)\.")
    n_kernels = n_res // max(n_ups, 1)
    kind = "2" if "dec.resblocks.0.convs.0.weight" in t else "1"
    dil_convs = "convs" if kind == "2" else "convs1"
    n_dil = count(rf"^dec\.resblocks\.0\.{dil_convs}\.(\d+)\.weight$")
    flows = indices(r"^flow\.flows\.(\d+)\.")
    dp_flows = indices(r"^dp\.flows\.(\d+)\.convs\.")
    k_channels = shape("enc_p.encoder.attn_layers.0.emb_rel_k")[2]
    audio = voice.get("audio", {})
    inference = voice.get("inference", {})
    speakers = int(voice.get("num_speakers", 1))
    return PiperConfig(
        num_symbols=shape("enc_p.emb.weight")[0],
        hidden_channels=hidden,
        inter_channels=shape("enc_p.proj.weight")[0] // 2,
        filter_channels=shape("enc_p.encoder.ffn_layers.0.conv_1.weight")[0],
        n_heads=hidden // k_channels,
        n_layers=count(r"^enc_p\.encoder\.attn_layers\.(\d+)\."),
        kernel_size=shape("enc_p.encoder.ffn_layers.0.conv_1.weight")[2],
        window_size=(shape("enc_p.encoder.attn_layers.0.emb_rel_k")[1] - 1) // 2,
        dp_filter_channels=shape("dp.pre.weight")[0],
        dp_kernel_size=shape("dp.convs.convs_sep.0.weight")[2],
        dp_n_layers=count(r"^dp\.convs\.convs_sep\.(\d+)\.weight$"),
        dp_n_flows=len(dp_flows),
        num_bins=(shape("dp.flows.3.proj.weight")[0] + 1) // 3,
        flow_kernel_size=shape(f"flow.flows.{flows[0]}.enc.in_layers.0.weight")[2],
        flow_dilation_rate=int(graph.attribute("/flow/flows.0/enc/in_layers.1/Conv", "dilations")[0])
        if f"flow.flows.{flows[0]}.enc.in_layers.1.weight" in t
        else 1,
        flow_n_layers=count(rf"^flow\.flows\.{flows[0]}\.enc\.in_layers\.(\d+)\.weight$"),
        flow_n_flows=len(flows),
        resblock=kind,
        resblock_kernel_sizes=tuple(
            shape(f"dec.resblocks.{j}.{dil_convs}.0.weight")[2] for j in range(n_kernels)
        ),
        resblock_dilation_sizes=tuple(
            tuple(
                int(graph.attribute(f"/dec/resblocks.{j}/{dil_convs}.{i}/Conv", "dilations")[0])
                for i in range(n_dil)
            )
            for j in range(n_kernels)
        ),
        upsample_rates=tuple(
            int(graph.attribute(f"/dec/ups.{i}/ConvTranspose", "strides")[0]) for i in range(n_ups)
        ),
        upsample_initial_channel=shape("dec.conv_pre.weight")[0],
        upsample_kernel_sizes=tuple(shape(f"dec.ups.{i}.weight")[2] for i in range(n_ups)),
        n_speakers=speakers,
        gin_channels=shape("emb_g.weight")[1] if "emb_g.weight" in t else 0,
        sample_rate=int(audio.get("sample_rate", 22050)),
        noise_scale=float(inference.get("noise_scale", 0.667)),
        length_scale=float(inference.get("length_scale", 1.0)),
        noise_w=float(inference.get("noise_w", 0.8)),
        espeak_voice=str(voice.get("espeak", {}).get("voice", "")),
        phoneme_id_map={str(k): tuple(int(i) for i in v) for k, v in voice.get("phoneme_id_map", {}).items()},
        speaker_id_map={str(k): int(v) for k, v in voice.get("speaker_id_map", {}).items()},
    )


def our_name(torch_name: str) -> str:
    """Piper's torch parameter name → ours. The flows hold only the layers with parameters: coupling
    layers `flow.flows.0,2,4,6` → `flow.layers.0..3`, the SDP's `dp.flows.0` → `dp.affine`, its ConvFlows
    `dp.flows.3,5,7` → `dp.conv_flows.0..2` (training's `dp.flows.1` is never run in reverse)."""
    if m := re.match(r"^flow\.flows\.(\d+)\.(.*)$", torch_name):
        return f"flow.layers.{int(m.group(1)) // 2}.{m.group(2)}"
    if m := re.match(r"^dp\.flows\.0\.(.*)$", torch_name):
        return f"dp.affine.{m.group(1)}"
    if m := re.match(r"^dp\.flows\.(\d+)\.(.*)$", torch_name):
        return f"dp.conv_flows.{(int(m.group(1)) - 3) // 2}.{m.group(2)}"
    return torch_name


def sanitize(tensors: Mapping[str, np.ndarray], config: PiperConfig) -> dict[str, np.ndarray]:
    """torch-named tensors (torch layouts) → our names and layouts, every shape checked, nothing left over.

    conv weights (out, in, k) → (out, k, in); transposed-conv weights (in, out, k) → (in, k, out);
    ElementwiseAffine's (2, 1) vectors → (2,), its folded exp(−logs) back to logs."""
    expected = {
        k: tuple(v.shape)
        for k, v in cast(list[tuple[str, mx.array]], tree_flatten(Piper(config).parameters()))
    }
    out: dict[str, np.ndarray] = {}
    unknown = []
    for name, value in tensors.items():
        array = np.asarray(value, np.float32)
        if name.endswith(".exp_neg_logs"):
            name = name.removesuffix(".exp_neg_logs") + ".logs"
            if not (array > 0).all():
                raise WeightsError(f"{name}: exp(-logs) must be positive")
            array = -np.log(array)
        elif name.endswith(".neg_logs"):
            name, array = name.removesuffix(".neg_logs") + ".logs", -array
        ours = our_name(name)
        if ours not in expected:
            unknown.append(name)
            continue
        if ours.endswith(".weight") and array.ndim == 3:
            # conv (out, in, k) → (out, k, in); transposed conv (in, out, k) → (in, k, out): the same swap.
            array = array.transpose(0, 2, 1)
        elif ours.startswith("dp.affine."):
            array = array.reshape(-1)
        if array.shape != expected[ours]:
            raise WeightsError(
                f"{name}: checkpoint shape {tuple(value.shape)}, model {expected[ours]} (ours)"
            )
        out[ours] = np.ascontiguousarray(array)
    missing = sorted(expected.keys() - out.keys())
    if missing or unknown:
        raise WeightsError(
            f"not a Piper VITS voice of this shape: missing {missing[:8]}, unexpected {unknown[:8]}"
        )
    return out


def convert_voice(src_dir: Path, dst_dir: Path) -> PiperConfig:
    """Write config.json + model.safetensors for the voice in `src_dir` (any `<voice>.onnx` name)."""
    onnx_path, json_path = find_voice(src_dir)
    try:
        voice = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read {json_path.name}: {exc}") from None
    graph = PiperGraph(onnx_path)
    config = config_from_graph(graph, voice)
    weights = sanitize(graph.tensors, config)
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(
        str(dst / "model.safetensors"),
        {k: mx.array(v) for k, v in weights.items()},
        metadata={"format": "mlx", "source": onnx_path.name},
    )
    (dst / "config.json").write_text(json.dumps(config.to_dict(), indent=2, ensure_ascii=False) + "\n")
    (dst / "voice.onnx.json").write_text(json_path.read_text())
    return config
