"""PyTorch `torch.save` files read without torch and without unpickling anything untrusted.

A `torch.save` file is a zip: `<archive>/data.pkl` (a pickle) and one `<archive>/data/<key>` file of raw
little-endian bytes per storage. The pickle is read by `_TensorUnpickler`, whose `find_class` admits only
what a tensor state dict needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and
`_rebuild_parameter`, the typed `torch.*Storage` markers), each mapped to a small function of ours: no torch
import, and any other global (`os.system`, `builtins.eval`...) is refused before anything runs. Storages
are read from the zip as numpy arrays; tensors are views of them (offset, size, stride), copied out.

A caller may admit more, by name, for one read: class references (`class_refs`, e.g. demucs's
`demucs.htdemucs.HTDemucs`, which its checkpoints store under `klass`) come back as `ClassRef`, a name that is
never imported or called; `fractions=True` admits `fractions.Fraction`, built by `_fraction` from integers or
a string only.

Families read their checkpoints through `load_torch_file` (Kokoro's `.pth` and voice packs; the separation
families' checkpoints) and then check what they got by name and shape.
"""

from __future__ import annotations

import fractions as _fractions
import io
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import WeightsError

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


class ClassRef:
    """A class a checkpoint names, admitted as its name only (never imported, never called)."""

    __slots__ = ("module", "name")
    module: str
    name: str

    def __init__(self, module: str, name: str) -> None:
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "name", name)

    def __setattr__(self, key: str, value: Any) -> None:  # a pickle's BUILD must not rename a class
        raise WeightsError("a checkpoint tried to modify a class reference")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassRef) and (self.module, self.name) == (other.module, other.name)

    def __hash__(self) -> int:
        return hash((self.module, self.name))

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


def _fraction(*args: Any) -> _fractions.Fraction:
    """`fractions.Fraction(...)` as a pickle calls it (numerator and denominator, or one string)."""
    if not 1 <= len(args) <= 2 or not all(isinstance(a, int | str) and not isinstance(a, bool) for a in args):
        raise WeightsError(f"a checkpoint built a Fraction from {args!r:.80}")
    return _fractions.Fraction(*args)


class _TensorUnpickler(pickle.Unpickler):
    """A pickle of tensors and plain containers; storages come from `archive/data/<key>` of the zip."""

    def __init__(
        self,
        data: bytes,
        archive: zipfile.ZipFile,
        prefix: str,
        source: str,
        extra: Mapping[tuple[str, str], Any] | None = None,
    ) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source = archive, prefix, source
        self.extra = extra or {}
        self.storages: dict[str, np.ndarray] = {}
        self.big_endian = _read_byteorder(archive, prefix) == "big"

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name), self.extra.get((module, name)))
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


def load_torch_file(
    path: Path, *, class_refs: Collection[tuple[str, str]] = (), fractions: bool = False
) -> Any:
    """The object a `torch.save` zip holds, tensors as float32 (or integer) numpy arrays; WeightsError for
    anything that is not such a zip or asks to unpickle more than tensors and plain containers (and, where
    the caller admits them, the `class_refs` (module, name) as `ClassRef`s and `fractions.Fraction`)."""
    extra: dict[tuple[str, str], Any] = {(m, n): ClassRef(m, n) for m, n in class_refs}
    if fractions:
        extra["fractions", "Fraction"] = _fraction
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
        unpickler = _TensorUnpickler(archive.read(pickles[0]), archive, prefix, source, extra)
        try:
            return unpickler.load()
        except WeightsError:
            raise
        except Exception as exc:
            raise WeightsError(
                f"{source}: cannot read the checkpoint's pickle ({type(exc).__name__}: {exc})"
            ) from None
