"""CPU kernels: numpy blocks over MLX weights (`ops`), 1-D convolutions for vocoders (`conv`) and their
optional C kernels (`kernels`, `_conv.c`), for the float32 CPU backends of the families; `wants_cpu_path`,
the vocoders' one backend choice at load. GPUs never import this package's hot paths."""

from __future__ import annotations

import mlx.core as mx

from models.errors import WeightsError

BACKENDS = ("mlx", "cpu")  # what a model's `options.backend` may ask for
PRECISIONS = ("bfloat16", "float32")  # what a vocoder's `options.vocoder_precision` may ask for


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


def vocoder_bf16(prefer: str | None) -> bool:
    """A vocoder's CPU-path precision, chosen once at load: True for bfloat16 products summed in float32 in
    its generator's convolutions (`models.cpu.conv`, ~1.7x the float32 kernel; the audio stays within ~40 dB
    SNR and ~0.1 dB log-mel of float32, measured per family in tests) where this CPU runs them (AVX-512
    BF16), unless `options.vocoder_precision = "float32"`. Elsewhere float32, whatever was asked."""
    if prefer not in (None, *PRECISIONS):
        raise WeightsError(f"model option vocoder_precision={prefer!r}: use one of {', '.join(PRECISIONS)}")
    from models.cpu.conv import bf16_available

    return prefer != "float32" and bf16_available()
