"""HTDemucs test helpers: demucs's own `HTDemucs` (demucs==4.1.0, a --no-deps dev dependency) with random
weights, the same weights in our network, checkpoints written by demucs's own `serialize_model`, and the
error measures the parity tests state their bounds in.

demucs initialises its layer scales small (1e-3, 1e-4) and its norms to identity, which would hide most of a
layer's arithmetic behind its residual; `reference_model` draws those from wider distributions too, so that
every parameter matters to the output.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from models.htdemucs.config import SOURCES_6, HTDemucsConfig
from models.htdemucs.model import HTDemucs
from models.htdemucs.weights import to_mlx
from models.weights import load_into

# Small networks for breadth (seconds on two cores). TINY has a time branch of its own down to the
# transformer; TINY_MERGED's last frequency layer collapses the frequencies to one and merges the time
# branch into it (an `empty` time layer), with GroupNorms (norm_starts=1), bottom channels and cross_first.
TINY = HTDemucsConfig(
    channels=8,
    depth=3,
    nfft=512,
    t_layers=3,
    t_heads=2,
    dconv_mode=3,
    samplerate=8000,
    segment=Fraction(1, 2),
)
TINY_6S = replace(TINY, sources=SOURCES_6, t_layers=2)
TINY_MERGED = replace(TINY, nfft=256, samplerate=8192, t_cross_first=True, norm_starts=1, bottom_channels=16)


def snr_db(reference: Any, estimate: Any) -> float:
    """10·log10(Σ |ref|² / Σ |ref − est|²) in double precision (real or complex)."""
    ref = np.asarray(reference).astype(np.complex128)
    err = ref - np.asarray(estimate).astype(np.complex128)
    return float(10 * np.log10(np.sum(np.abs(ref) ** 2) / max(np.sum(np.abs(err) ** 2), 1e-300)))


def max_abs(reference: Any, estimate: Any) -> float:
    """max |ref − est| (real or complex)."""
    ref = np.asarray(reference).astype(np.complex128)
    return float(np.max(np.abs(ref - np.asarray(estimate).astype(np.complex128))))


def reference_model(config: HTDemucsConfig, seed: int = 0) -> Any:
    """demucs.htdemucs.HTDemucs(**config) in eval mode, random weights (norms and layer scales included)."""
    import torch
    from demucs.htdemucs import HTDemucs as TorchHTDemucs

    torch.manual_seed(seed)
    model = TorchHTDemucs(**config.demucs_kwargs()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale") and ("dconv" in name or "gamma" in name):
                p.normal_(0, 0.3)
            elif "norm" in name and name.endswith(".weight"):
                p.normal_(1, 0.2)
            elif "norm" in name and name.endswith(".bias"):
                p.normal_(0, 0.2)
    return model


def torch_state(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def our_model(reference: Any, config: HTDemucsConfig) -> HTDemucs:
    """Our network holding the reference's weights (through the converter's name and layout mapping)."""
    model = HTDemucs(config)
    load_into(model, to_mlx(model, torch_state(reference)))
    return model


def write_th(model: Any, path: Path, *, half: bool = True) -> Path:
    """A checkpoint as demucs's training writes one: `serialize_model` + `save_with_checksum`
    (`<stem>-<sha256[:8]>.th`, float16 by default as the published ones); returns its path."""
    from demucs.states import save_with_checksum, serialize_model
    from omegaconf import OmegaConf

    training_args = OmegaConf.create({"dset": {"segment": 11, "sources": list(model.sources)}, "seed": 42})
    package = serialize_model(model, training_args, half=half)
    save_with_checksum(package, path)
    found = sorted(path.parent.glob(f"{path.stem}-*{path.suffix}"))
    assert len(found) == 1, found
    return found[0]


def write_hf_safetensors(model: Any, path: Path) -> Path:
    """A network as demucs 4.1's Hugging Face repos hold it (`demucs/hf.py` reads it back): the state dict in
    safetensors (float16), klass/args/kwargs as JSON metadata, fractions as {"_type": "fraction", ...}."""
    import json

    import torch
    from safetensors.torch import save_file

    args, kwargs = model._init_args_kwargs

    def encode(value: Any) -> Any:
        if isinstance(value, Fraction):
            return {"_type": "fraction", "numerator": value.numerator, "denominator": value.denominator}
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [encode(v) for v in value]
        return value

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "klass": f"{type(model).__module__}.{type(model).__name__}",
        "args": json.dumps(encode(list(args))),
        "kwargs": json.dumps(encode(kwargs)),
    }
    save_file(state, str(path), metadata=metadata)
    return path


def write_demucs_mlx(models: list[Any], directory: Path, name: str) -> None:
    """demucs-mlx 1.6.1's cache of `models` (one, or a bag with htdemucs_ft's one-hot weights) as its own
    `convert_htdemucs_weights` writes it: its converter and its `_save_safe_cache` (which validates the config
    as its loader does; the official source records are what that check wants to see)."""
    from demucs_mlx.mlx_convert import (
        BagOfModelsMLX,
        _adapt_mlx_constructor,
        _mlx_target_class,
        _save_safe_cache,
        convert_single_model,
    )
    from demucs_mlx.secure_demucs import expected_official_sources
    from mlx.utils import tree_flatten

    converted = [convert_single_model(m) for m in models]
    bag = len(models) > 1
    weights = np.eye(len(models)).tolist() if bag else None
    final = BagOfModelsMLX(converted, weights) if bag else converted[0]
    constructors = [_adapt_mlx_constructor(m, _mlx_target_class(m)) for m in models]
    config = {
        "format_version": 1,
        "model_name": name,
        "model_class": "BagOfModelsMLX" if bag else "HTDemucsMLX",
        "sub_model_class": "HTDemucsMLX" if bag else None,
        "args": constructors[0][0],
        "kwargs": constructors[0][1],
        "per_model_args": [c[0] for c in constructors],
        "per_model_kwargs": [c[1] for c in constructors],
        "per_model_classes": ["HTDemucsMLX"] * len(models),
        "num_models": len(models),
        "weights": weights,
        "source_artifacts": [
            {"signature": s.signature, "checksum": s.checksum} for s in expected_official_sources(name)
        ],
        "conversion_date": "2026-12-03T00:00:00+00:00",
        "verification_passed": False,
        "safetensors_sha256": "",
    }
    _save_safe_cache(name, str(directory), dict(tree_flatten(final.state_dict())), config)
