"""The canonical Kokoro state dict (hexgrad's KModel parameter names, torch layouts, weight norm folded)
→ our MLX parameters, by name.

Every reader (`convert.py` for the int8 ONNX, `checkpoint.py` for hexgrad's .pth) produces the canonical
dict; this module is the one place that knows how our layout differs from torch's:
- 3-d conv weights (c_out, c_in, k) → (c_out, k, c_in); torch ConvTranspose1d's (c_in, c_out, k) →
  (c_in, k, c_out): the same swap of the last two axes;
- the depthwise upsampler `*.pool.weight` (C, 1, 3) → (3, C); the single-channel `F0_conv`/`N_conv`
  weights (1, 1, 3) → (3,); Snake's `alpha1.i`/`alpha2.i` (1, C, 1) → (C,).
Parameters a canonical dict leaves out (`layout.OMITTED`, the buffers) are skipped if present.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import mlx.core as mx
import numpy as np

from models.errors import WeightsError
from models.kokoro.layout import BUFFERS, omitted

_FLAT = re.compile(r"(\.F0_conv\.weight|\.N_conv\.weight|\.alpha[12]\.\d+)$")
_POOL = re.compile(r"\.pool\.weight$")


def to_mlx(state: Mapping[str, np.ndarray], dtype: mx.Dtype = mx.float32) -> dict[str, mx.array]:
    """Canonical state dict → our parameter names and layouts (strict shape checks happen at load)."""
    out: dict[str, mx.array] = {}
    for name, value in state.items():
        if name.endswith(("weight_g", "weight_v")):
            raise WeightsError(f"{name}: weight norm must be folded before conversion")
        if omitted(name) or name in BUFFERS:  # a canonical dict leaves them out (readers check them)
            continue
        v = np.asarray(value, np.float32)
        if _FLAT.search(name):
            v = v.reshape(-1)
        elif _POOL.search(name):
            v = v.reshape(v.shape[0], -1).T
        elif v.ndim == 3:
            v = v.transpose(0, 2, 1)
        out[name] = mx.array(np.ascontiguousarray(v), dtype=dtype)
    return out
