"""HTDemucs checkpoints as users have them → our layout (`config.json` + one `model_<i>.safetensors` per network).

Formats read (never unpickling anything but tensors and plain containers, never importing demucs):
- "demucs": demucs's own checkpoints, `<signature>.th` or `<signature>-<sha256[:8]>.th` as demucs's
  `states.serialize_model` + `save_with_checksum` write them (and the model repo serves them): a torch.save
  dict {klass, args, kwargs, state, training_args}. `klass` must name `demucs.htdemucs.HTDemucs` (kept as a
  name: `models.torch_pickle.ClassRef`); the kwargs' `segment` is a `fractions.Fraction`. A directory with one
  `.th` is one network; with a bag definition `*.yaml` (demucs's `remote/htdemucs_ft.yaml`: `models:` the
  signatures, optional `weights:` [models × sources], optional `segment:`), the bag's networks in its order.
  A checksum in a file name is verified.
- "demucs-safetensors": demucs 4.1's Hugging Face layout (`demucs/hf.py`): `<name>.yaml` as above and one
  `<signature>.safetensors` per network, with `klass`, `args` and `kwargs` (JSON, fractions as
  {"_type": "fraction", ...}) in the safetensors metadata, the state dict under demucs's names.
- "demucs-mlx": the demucs-mlx package's cache / Hugging Face files (`<name>.safetensors` +
  `<name>_config.json`, one network or a bag), read back to demucs's names and layouts (`demucs_mlx.py`).
The state dicts are demucs's names in torch layouts (float16 in the published files); `weights.to_mlx`
maps them to ours by name, every shape checked, nothing left over.

Our config.json: {"models": [demucs kwargs per network], "weights": the bag's matrix or null,
"signatures": [...], "segment": the bag's segment override or null}.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np
import yaml

from models.errors import WeightsError
from models.htdemucs import demucs_mlx
from models.htdemucs.config import HTDemucsConfig
from models.htdemucs.model import HTDemucs
from models.htdemucs.weights import layouts, module_kinds, to_mlx
from models.torch_pickle import ClassRef, load_torch_file

KLASS = ("demucs.htdemucs", "HTDemucs")
CONFIG = "config.json"


def model_file(index: int) -> str:
    return f"model_{index}.safetensors"


# --- reading --------------------------------------------------------------------------------------------


def read_bag(path: Path) -> dict[str, Any]:
    """A bag definition: {"models": [signatures], "weights": [[...]] or None, "segment": float or None}."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise WeightsError(f"{path.name} is not a readable bag definition ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or not data["models"]:
        raise WeightsError(f"{path.name}: a bag definition lists its models under `models:`")
    sigs = [str(s) for s in data["models"]]
    if any(not re.fullmatch(r"[0-9A-Za-z_]+", s) for s in sigs):
        raise WeightsError(f"{path.name}: invalid model signatures {sigs}")
    weights = data.get("weights")
    if weights is not None:
        matrix = np.asarray(weights, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != len(sigs):
            raise WeightsError(f"{path.name}: weights must be [models × sources], got shape {matrix.shape}")
        weights = matrix.tolist()
    segment = data.get("segment")
    return {"models": sigs, "weights": weights, "segment": None if segment is None else float(segment)}


def _check_file_checksum(path: Path) -> None:
    """demucs names a published checkpoint `<signature>-<first 8 hex of its SHA-256>.th`: verify it."""
    parts = path.stem.split("-")
    if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
        if digest != parts[1]:
            raise WeightsError(f"{path.name}: SHA-256 starts {digest}, not {parts[1]}: the file is corrupt")


def _kwargs(klass: Any, args: Any, kwargs: Any, source: str) -> dict[str, Any]:
    name = str(klass)
    if name != ".".join(KLASS):
        raise WeightsError(f"{source} holds a {name} model: this family reads demucs.htdemucs.HTDemucs only")
    if not isinstance(kwargs, Mapping) or not isinstance(args, list | tuple) or len(args) > 1:
        raise WeightsError(
            f"{source}: unexpected model arguments (args {type(args).__name__}, kwargs {type(kwargs).__name__})"
        )
    out = dict(kwargs)
    if args:  # HTDemucs's one positional parameter
        out["sources"] = args[0]
    if "sources" not in out:
        raise WeightsError(f"{source}: the model's sources are not in its arguments")
    return out


def _state(state: Any, source: str) -> dict[str, np.ndarray]:
    if not isinstance(state, Mapping) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise WeightsError(f"{source}: the state is not a plain tensor dict (a quantized checkpoint?)")
    return {str(k): v for k, v in state.items()}


def read_th(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One demucs `.th` package → (kwargs, state dict)."""
    _check_file_checksum(path)
    package = load_torch_file(path, class_refs=[KLASS], fractions=True)
    if not isinstance(package, Mapping) or not {"klass", "args", "kwargs", "state"} <= package.keys():
        raise WeightsError(f"{path.name} is not a demucs model package (klass, args, kwargs, state)")
    klass = package["klass"]
    if not isinstance(klass, ClassRef):
        raise WeightsError(f"{path.name}: `klass` is not a class reference")
    return _kwargs(klass, package["args"], package["kwargs"], path.name), _state(package["state"], path.name)


def _decode_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def read_demucs_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One demucs 4.1 `.safetensors` (metadata klass, args, kwargs) → (kwargs, state dict)."""
    try:
        loaded = mx.load(str(path), return_metadata=True)
    except Exception as exc:
        raise WeightsError(f"cannot read {path.name}: {exc}") from None
    arrays, metadata = cast(tuple[dict[str, mx.array], dict[str, str]], loaded)
    if "structure" in metadata:
        raise WeightsError(
            f"{path.name}: a nested (quantized) state; this family reads plain HTDemucs states"
        )
    if "klass" not in metadata or "kwargs" not in metadata:
        raise WeightsError(f"{path.name} has no demucs metadata (klass, kwargs)")
    try:
        args, kwargs = _decode_json(metadata.get("args", "[]")), _decode_json(metadata["kwargs"])
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path.name}: invalid metadata JSON ({exc})") from None
    klass = str(metadata["klass"])
    state = {k: np.array(v.astype(mx.float32)) for k, v in arrays.items()}
    return _kwargs(klass, args, kwargs, path.name), state


def _find(src: Path, sig: str, suffix: str) -> Path:
    found = sorted(p for p in src.glob(f"{sig}*{suffix}") if p.stem == sig or p.stem.startswith(f"{sig}-"))
    if len(found) != 1:
        names = [p.name for p in found]
        raise WeightsError(f"{src}: expected one {sig}{suffix} (or {sig}-<checksum>{suffix}), found {names}")
    return found[0]


Networks = list[tuple[dict[str, Any], dict[str, np.ndarray]]]


def read_demucs_mlx(src: Path) -> tuple[Networks, dict[str, Any]]:
    """demucs-mlx's `<name>.safetensors` + `<name>_config.json` → demucs's kwargs and state dicts."""
    kwargs_list, arrays, weights, count = demucs_mlx.networks(src)
    prefixes = [f"model_{i}." for i in range(count)] if count > 1 or weights is not None else [""]
    stray = [k for k in arrays if not any(k.startswith(p) for p in prefixes)]
    if stray:
        raise WeightsError(f"{src}: demucs-mlx weights hold arrays outside its networks: {stray[:5]}")
    out: Networks = []
    for i, (kwargs, prefix) in enumerate(zip(kwargs_list, prefixes, strict=True)):
        mine = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            model = HTDemucs(HTDemucsConfig.from_dict(kwargs))
        except (ValueError, TypeError) as exc:
            raise WeightsError(f"demucs-mlx network {i}: {exc}") from None
        state = demucs_mlx.to_demucs_state(mine, layouts(model), module_kinds(model))
        out.append((dict(kwargs), state))
    return out, {"models": [f"model_{i}" for i in range(count)], "weights": weights, "segment": None}


def read_checkpoints(
    src: Path, fmt: str
) -> tuple[list[tuple[dict[str, Any], dict[str, np.ndarray]]], dict[str, Any]]:
    """Every network of a "demucs", "demucs-safetensors" or "demucs-mlx" directory, in the bag's order, and
    the bag."""
    if fmt == "demucs-mlx":
        return read_demucs_mlx(src)
    suffix, reader = {
        "demucs": (".th", read_th),
        "demucs-safetensors": (".safetensors", read_demucs_safetensors),
    }[fmt]
    yamls = sorted(src.glob("*.yaml"))
    if len(yamls) > 1:
        raise WeightsError(f"{src}: several bag definitions {[p.name for p in yamls]}; keep one")
    if yamls:
        bag = read_bag(yamls[0])
        files = [_find(src, sig, suffix) for sig in bag["models"]]
    else:
        files = sorted(src.glob(f"*{suffix}"))
        if len(files) != 1:
            raise WeightsError(
                f"{src}: expected one {suffix} checkpoint or a bag definition (*.yaml), found {[p.name for p in files]}"
            )
        bag = {"models": [files[0].stem.split("-")[0]], "weights": None, "segment": None}
    return [reader(f) for f in files], bag


# --- writing our layout ---------------------------------------------------------------------------------


def convert_checkpoints(src: Path, fmt: str, dst: Path) -> None:
    networks, bag = read_checkpoints(Path(src), fmt)
    configs = []
    for (kwargs, state), sig in zip(networks, bag["models"], strict=True):
        try:
            config = HTDemucsConfig.from_dict(kwargs)
            model = HTDemucs(config)
        except (ValueError, TypeError) as exc:
            raise WeightsError(f"network {sig}: {exc}") from None
        weights = to_mlx(model, state, f"network {sig}")
        configs.append(config)
        dst.mkdir(parents=True, exist_ok=True)
        mx.save_safetensors(str(dst / model_file(len(configs) - 1)), weights)
    first = configs[0]
    for sig, c in zip(bag["models"], configs, strict=True):
        if (c.sources, c.samplerate, c.audio_channels) != (
            first.sources,
            first.samplerate,
            first.audio_channels,
        ):
            raise WeightsError(
                f"network {sig} of the bag has other sources, sample rate or channels than the first"
            )
    if bag["weights"] is not None and any(len(row) != len(first.sources) for row in bag["weights"]):
        raise WeightsError(f"the bag's weights must have one column per source ({len(first.sources)})")
    meta = {
        "models": [c.to_dict() for c in configs],
        "weights": bag["weights"],
        "signatures": bag["models"],
        "segment": bag["segment"],
    }
    (dst / CONFIG).write_text(json.dumps(meta, indent=1))


def read_native(model_dir: Path) -> tuple[list[HTDemucsConfig], list[Path], list[list[float]] | None]:
    """Our layout: (configs, weight files, bag weights). A plain repo (config.json holding one network's kwargs
    beside one *.safetensors) is one network."""
    from models.weights import read_config

    data = read_config(model_dir)
    if "models" not in data:
        files = sorted(model_dir.glob("*.safetensors"))
        if len(files) != 1:
            raise WeightsError(
                f"{model_dir}: one network's config.json goes with one .safetensors, found {len(files)}"
            )
        return [HTDemucsConfig.from_dict(data)], files, None
    configs = [HTDemucsConfig.from_dict(c) for c in data["models"]]
    files = [model_dir / model_file(i) for i in range(len(configs))]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise WeightsError(f"{model_dir}: missing {missing}")
    return configs, files, data.get("weights")
