"""CPU kernels: numpy blocks over MLX weights (`ops`), 1-D convolutions for vocoders (`conv`) and their
optional C kernels (`kernels`, `_conv.c`), for the float32 CPU backends of the families; `wants_cpu_path`,
the vocoders' one backend choice at load. GPUs never import this package's hot paths."""

from __future__ import annotations

import mlx.core as mx

from models.errors import WeightsError

BACKENDS = ("mlx", "cpu")  # what a model's `options.backend` may ask for


def wants_cpu_path(prefer: str | None) -> bool:
    """A vocoder family's backend choice, made once at load: True to run its numpy CPU path (MLX on the CPU
    device, unless `options.backend = "mlx"`), False for the MLX model. A bad or impossible request (an
    unknown name; "cpu" while MLX runs on the GPU) is a `WeightsError`."""
    if prefer not in (None, *BACKENDS):
        raise WeightsError(f"model option backend={prefer!r}: use one of {', '.join(BACKENDS)}")
    on_cpu = mx.default_device() == mx.cpu
    if prefer == "cpu" and not on_cpu:
        raise WeightsError("model option backend='cpu' needs MLX's CPU device (this one runs on the GPU)")
    return on_cpu and prefer != "mlx"
