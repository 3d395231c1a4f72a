"""demucs-mlx's layout (the `demucs-mlx` package, 1.6.1; its Hugging Face repo `ssmall256/demucs-mlx`) → the
state dict under demucs's names and torch layouts that `weights.to_mlx` takes.

A model is two files: `<name>.safetensors` (its MLX modules' parameters; a bag's under `model_<i>.`) and
`<name>_config.json` (`format_version` 1, `model_class` "HTDemucsMLX" or "BagOfModelsMLX" of "HTDemucsMLX",
`per_model_kwargs` with demucs's kwarg names, fractions as {"__type__": "fraction", ...}, the bag's
`weights`, and the weights file's `safetensors_sha256`, verified here).

Its names differ from demucs's in a few regular ways, each undone by name here (never by shape):
- convolutions are wrapped: `<conv>.conv.weight` (encoder `conv`, `rewrite`, decoder `conv_tr`, the
  bottom-channel 1×1s, the DConv convolutions), in MLX layouts ([out, k(, k), in]; transposed convolutions
  [out, k(, 1), in]);
- a DConv layer's modules sit under `layers.<l>.layers.<m>` (demucs: `layers.<l>.<m>`);
- attention splits torch's `in_proj` into `query_proj`, `key_proj`, `value_proj`, and self-attention is
  `attn` (demucs: `self_attn`); the transformer's output GroupNorm is `norm_out.gn`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np

from models.errors import WeightsError

FORMAT_VERSION = 1
CLASSES = ("HTDemucsMLX", "BagOfModelsMLX")


def _decode(value: Any) -> Any:
    """demucs-mlx's JSON: fractions as {"__type__": "fraction", ...} (to demucs 4.1's "_type" form)."""
    if isinstance(value, dict):
        if value.get("__type__") == "fraction":
            return {"_type": "fraction", "numerator": value["numerator"], "denominator": value["denominator"]}
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def read_config(src: Path) -> tuple[str, dict[str, Any]]:
    """The one `<name>_config.json` of a directory: (name, config)."""
    configs = sorted(src.glob("*_config.json"))
    if len(configs) != 1:
        raise WeightsError(
            f"{src}: expected one <name>_config.json (demucs-mlx), found {[p.name for p in configs]}"
        )
    name = configs[0].name[: -len("_config.json")]
    try:
        config = json.loads(configs[0].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{configs[0].name} is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{configs[0].name}: not a demucs-mlx cache of format version {FORMAT_VERSION}")
    if config.get("model_class") not in CLASSES or (
        config["model_class"] == "BagOfModelsMLX" and config.get("sub_model_class") != "HTDemucsMLX"
    ):
        raise WeightsError(
            f"{configs[0].name}: a {config.get('model_class')} model; this family reads HTDemucsMLX"
        )
    return name, config


# (our name pattern → demucs-mlx's name), tried in order; \g<...> groups carry the layer indices
_RENAMES: tuple[tuple[str, str], ...] = (
    (
        r"^(?P<p>.*)\.dconv\.layers\.(?P<l>\d+)\.(?P<m>[03])\.(?P<w>weight|bias)$",
        r"\g<p>.dconv.layers.\g<l>.layers.\g<m>.conv.\g<w>",
    ),
    (
        r"^(?P<p>.*)\.dconv\.layers\.(?P<l>\d+)\.(?P<m>\d+)\.(?P<w>\w+)$",
        r"\g<p>.dconv.layers.\g<l>.layers.\g<m>.\g<w>",
    ),
    (r"^(?P<p>(t?encoder|t?decoder)\.\d+\.(conv|rewrite|conv_tr))\.(?P<w>weight|bias)$", r"\g<p>.conv.\g<w>"),
    (r"^(?P<p>channel_(up|down)sampler(_t)?)\.(?P<w>weight|bias)$", r"\g<p>.conv.\g<w>"),
    (r"^(?P<p>.*)\.self_attn\.out_proj\.(?P<w>weight|bias)$", r"\g<p>.attn.out_proj.\g<w>"),
    (r"^(?P<p>.*)\.norm_out\.(?P<w>weight|bias)$", r"\g<p>.norm_out.gn.\g<w>"),
)
_IN_PROJ = re.compile(r"^(?P<p>.*)\.(?P<kind>self_attn|cross_attn)\.in_proj_(?P<w>weight|bias)$")


def their_name(ours: str) -> str:
    for pattern, repl in _RENAMES:
        if re.match(pattern, ours):
            return re.sub(pattern, repl, ours)
    return ours


def to_demucs_state(
    arrays: dict[str, mx.array],
    expected: dict[str, Callable[[np.ndarray], np.ndarray]],
    kinds: dict[str, str],
) -> dict[str, np.ndarray]:
    """demucs-mlx's parameters of one network → demucs's state dict (names and torch layouts) for the
    parameter names of our network (`expected`: name → our layout function; `kinds`: name → the module type
    that holds it). Every array of theirs must be used."""
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in arrays:
            raise WeightsError(f"demucs-mlx weights lack {name}")
        used.add(name)
        return np.array(arrays[name].astype(mx.float32))

    state: dict[str, np.ndarray] = {}
    for ours in expected:
        m = _IN_PROJ.match(ours)
        if m:
            base = f"{m['p']}.{'attn' if m['kind'] == 'self_attn' else 'cross_attn'}"
            state[ours] = np.concatenate(
                [take(f"{base}.{q}_proj.{m['w']}") for q in ("query", "key", "value")]
            )
            continue
        value = take(their_name(ours))
        if ours.endswith(".weight"):
            value = _to_torch(value, kinds[ours])
        state[ours] = value
    unused = sorted(set(arrays) - used)
    if unused:
        raise WeightsError(f"demucs-mlx weights hold arrays this network has no place for: {unused[:8]}")
    return state


def _to_torch(a: np.ndarray, kind: str) -> np.ndarray:
    """An MLX-layout weight of demucs-mlx back to torch's layout, by the type of our module that takes it."""
    if kind in ("Conv1d", "DilatedConv1d"):  # [out, k, in] → [out, in, k]
        return a.transpose(0, 2, 1)
    if kind == "Conv2d":  # [out, kf, kt, in] → [out, in, kf, kt]
        return a.transpose(0, 3, 1, 2)
    if kind == "Pointwise":  # [out, 1(, 1), in] → [out, in, 1]
        return a.reshape(a.shape[0], a.shape[-1], 1)
    if kind == "ConvTranspose1d":  # [out, k, in] → [in, out, k]
        return a.transpose(2, 0, 1)
    if kind == "FreqConvTranspose":  # [out, k, 1, in] → [in, out, k, 1]
        return a.transpose(3, 0, 1, 2)
    return a


def read_weights(src: Path, name: str, config: dict[str, Any]) -> dict[str, mx.array]:
    path = src / f"{name}.safetensors"
    if not path.is_file():
        raise WeightsError(f"{src}: {name}_config.json has no {path.name} beside it")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != config.get("safetensors_sha256"):
        raise WeightsError(f"{path.name}: SHA-256 {digest[:12]}… is not the one its config records")
    try:
        return cast(dict[str, mx.array], mx.load(str(path)))
    except Exception as exc:
        raise WeightsError(f"cannot read {path.name}: {exc}") from None


def networks(src: Path) -> tuple[list[dict[str, Any]], dict[str, mx.array], list[list[float]] | None, int]:
    """(per-network kwargs, all arrays, the bag's weights or None, how many networks)."""
    name, config = read_config(src)
    kwargs = _decode(config.get("per_model_kwargs"))
    count = config.get("num_models")
    if not isinstance(kwargs, list) or not isinstance(count, int) or len(kwargs) != count or count < 1:
        raise WeightsError(f"{name}_config.json: per_model_kwargs must list num_models networks")
    if any(config.get("per_model_args") or []):
        raise WeightsError(f"{name}_config.json: positional model arguments are not expected")
    weights = config.get("weights") if config["model_class"] == "BagOfModelsMLX" else None
    return kwargs, read_weights(src, name, config), weights, count
