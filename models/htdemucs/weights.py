"""demucs's state dict (its names, torch layouts) → our parameters: same names, layouts by module type.

Every parameter of our network is looked up under its own name (ours are demucs's), transformed by what its
module is (never guessed from a shape), and checked against the shape our module expects; a missing or an
extra name is an error, so nothing is left unused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from models.errors import WeightsError
from models.htdemucs.layers import FreqConvTranspose, Pointwise
from models.layers.conv import ConvTranspose1d, DilatedConv1d

Layout = Callable[[np.ndarray], np.ndarray]


def _same(a: np.ndarray) -> np.ndarray:
    return a


# torch weight layout → ours, per module type (biases, norms, embeddings, layer scales are the same)
WEIGHT_LAYOUTS: Mapping[type, tuple[str, Layout]] = {
    nn.Conv1d: ("Conv1d [out, in, k] → [out, k, in]", lambda a: a.transpose(0, 2, 1)),
    DilatedConv1d: ("Conv1d [out, in, k] → [out, k, in]", lambda a: a.transpose(0, 2, 1)),
    nn.Conv2d: ("Conv2d [out, in, kf, kt] → [out, kf, kt, in]", lambda a: a.transpose(0, 2, 3, 1)),
    Pointwise: ("1×1 conv [out, in, 1(, 1)] → [out, in]", lambda a: a.reshape(a.shape[0], a.shape[1])),
    ConvTranspose1d: ("ConvTranspose1d [in, out, k] → [in, k, out]", lambda a: a.transpose(0, 2, 1)),
    FreqConvTranspose: (
        "ConvTranspose2d [in, out, k, 1] → [in, k, out]",
        lambda a: a[..., 0].transpose(0, 2, 1),
    ),
}


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    """Each parameter name of `model` → the module that holds it."""
    return {
        f"{path}.{name}" if path else name: module
        for path, module in model.named_modules()
        for name, value in module.items()
        if isinstance(value, mx.array)
    }


def layouts(model: nn.Module) -> dict[str, Layout]:
    """For each parameter name of `model`, the function taking demucs's tensor to ours."""
    out: dict[str, Layout] = {}
    for key, module in _owners(model).items():
        entry = WEIGHT_LAYOUTS.get(type(module)) if key.endswith(".weight") else None
        out[key] = entry[1] if entry else _same
    return out


def module_kinds(model: nn.Module) -> dict[str, str]:
    """For each parameter name of `model`, the class name of the module holding it."""
    return {key: type(module).__name__ for key, module in _owners(model).items()}


def to_mlx(
    model: nn.Module, state: Mapping[str, np.ndarray], what: str = "checkpoint"
) -> dict[str, mx.array]:
    """demucs's state dict → our parameters for `model` (float32), checked by name and shape."""
    expected = dict(tree_flatten(model.parameters()))
    fns = layouts(model)
    if fns.keys() != expected.keys():  # every parameter of ours sits in one module
        raise AssertionError(sorted(fns.keys() ^ expected.keys())[:5])
    missing = sorted(expected.keys() - state.keys())
    unused = sorted(state.keys() - expected.keys())
    if missing or unused:
        raise WeightsError(f"{what} does not match the network: missing {missing[:8]}, unused {unused[:8]}")
    out: dict[str, mx.array] = {}
    bad = []
    for key, want in expected.items():
        value = fns[key](np.asarray(state[key], np.float32))
        if tuple(value.shape) != tuple(want.shape):
            bad.append(f"{key}: {tuple(np.shape(state[key]))} → {value.shape}, network {tuple(want.shape)}")
            continue
        out[key] = mx.array(np.ascontiguousarray(value))
    if bad:
        raise WeightsError(f"{what}: shape mismatch: " + "; ".join(bad[:8]))
    return out
