"""Hybrid Transformer Demucs (demucs v4: htdemucs, htdemucs_6s, htdemucs_ft) in MLX: config, network, the
checkpoint readers and the family entry point.

This module only declares the family (no MLX import). The built-in models point at the Hugging Face repos
demucs 4.1 loads from (`demucs/hf.py`: `adefossez/HTDemucs`, `-6s`, `-ft`: the bag's `<name>.yaml` and one
`<signature>.safetensors` per network); nothing is fetched before a model is first used. Official `.th`
checkpoints (as demucs's model repo serves them) are read from a local directory by a model declared with
`format = "demucs"`.
"""

from __future__ import annotations

from models.registry import CREATED, ModelSpec
from models.sources import HubRepo

# "demucs": `<signature>[-<checksum>].th` files (demucs's serialize_model packages), with a bag `*.yaml`;
# "demucs-safetensors": demucs 4.1's Hugging Face layout (`<name>.yaml` + `<signature>.safetensors`);
# "demucs-mlx": the demucs-mlx package's files (`<name>.safetensors` + `<name>_config.json`).
FORMATS = ("demucs", "demucs-safetensors", "demucs-mlx")

_FILES = ("*.yaml", "*.safetensors")


def _spec(model_id: str, repo: str, description: str) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        family="htdemucs",
        task="separation",
        source=HubRepo(repo, allow_patterns=_FILES),
        format="demucs-safetensors",
        capabilities=("separation",),
        owned_by="meta",
        created=CREATED,
        description=description,
    )


MODELS = (
    _spec(
        "htdemucs",
        "adefossez/HTDemucs",
        "Hybrid Transformer Demucs v4 (44.1 kHz stereo): drums, bass, other, vocals",
    ),
    _spec(
        "htdemucs_6s",
        "adefossez/HTDemucs-6s",
        "Hybrid Transformer Demucs v4, 6 sources: drums, bass, other, vocals, guitar, piano",
    ),
    _spec(
        "htdemucs_ft",
        "adefossez/HTDemucs-ft",
        "Hybrid Transformer Demucs v4 fine-tuned: a bag of 4 networks, one per source (4× the compute)",
    ),
)
