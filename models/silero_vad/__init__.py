"""Silero VAD v6 (snakers4/silero-vad, MIT): speech probability per 32 ms of 16-kHz audio, and speech regions.

`model.py` is the network's convolutional front end in MLX, `vad.py` the host side (the recurrent scan, the
front end in numpy for the CPU, the region algorithm), `family.py` the registry's entry point.
"""

from __future__ import annotations

from models.registry import CREATED, ModelSpec
from models.sources import PackageFiles

# "silero": the silero-vad package's `silero_vad_16k.safetensors` (torch layout).
FORMATS = ("silero",)

# Silero VAD v6 (16 kHz): `silero_vad_16k.safetensors`, in the silero-vad package (which imports torch: it
# is installed with --no-deps, for this file only, and never imported).
SILERO_VAD = PackageFiles("silero_vad", "data")

MODELS = (
    ModelSpec(
        id="silero-vad",
        family="silero_vad",
        task="vad",
        source=SILERO_VAD,
        format="silero",
        capabilities=("vad",),
        default_for=("vad",),
        owned_by="silero",
        created=CREATED,
        description="Silero VAD v6 (16 kHz, 0.3M), speech probability per 32 ms; via the silero-vad package",
    ),
)
