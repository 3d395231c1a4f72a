"""Whisper checkpoints → our layout (``config.json`` + ``model.safetensors`` + ``tokenizer.json``), losslessly.

Three source layouts, each with a ``sanitize_*(weights) -> weights`` that renames by key name (explicit
tables, no guessing from shapes), transposes only the tensors it names, asserts every shape and fails on
any tensor it did not consume:

* CTranslate2 ``model.bin`` (faster-whisper; the embedded default models): :func:`read_ctranslate2`,
  :func:`sanitize_ctranslate2`, :func:`convert_ctranslate2` (in ``ctranslate2.py``, re-exported here).
* Hugging Face transformers ``openai/whisper-*`` safetensors: :func:`sanitize_transformers`,
  :func:`convert_transformers`.
* mlx-community ``whisper-*`` (mlx-examples layout, ``weights.safetensors``/``weights.npz``):
  :func:`sanitize_mlx_community`, :func:`convert_mlx_community`.

Conv weights: torch/CT2 store ``[out, in, kernel]``; MLX's conv1d wants ``[out, kernel, in]``
(:func:`conv_torch_to_mlx`, applied to the named conv tensors only). Shared checks live in ``layout.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from models.errors import WeightsError
from models.whisper.config import WhisperConfig
from models.whisper.ctranslate2 import (
    CT2Checkpoint,
    config_from_ctranslate2,
    convert_ctranslate2,
    read_ctranslate2,
    sanitize_ctranslate2,
)
from models.whisper.layout import (
    Source,
    Tensor,
    all_zero,
    bit_equal,
    check_layout,
    conv_torch_to_mlx,
    count_layers,
    expected_shapes,
    read_json,
    save_model,
    to_mx,
)
from models.whisper.model import sinusoids

__all__ = [
    "CONVERTERS",
    "CT2Checkpoint",
    "check_layout",
    "config_from_ctranslate2",
    "config_from_transformers",
    "convert_checkpoint",
    "convert_ctranslate2",
    "convert_mlx_community",
    "convert_transformers",
    "expected_shapes",
    "read_ctranslate2",
    "sanitize_ctranslate2",
    "sanitize_mlx_community",
    "sanitize_transformers",
    "transformers_name_map",
]

# -- Hugging Face transformers ---------------------------------------------------------------------------

# Ours ← transformers, per block and for the two stacks (`{}` is the layer index).
_HF_ATTN = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "out_proj"}
_HF_BLOCK = {"attn": "self_attn", "cross_attn": "encoder_attn"}
_HF_NORMS = {
    "attn_ln": "self_attn_layer_norm",
    "cross_attn_ln": "encoder_attn_layer_norm",
    "mlp_ln": "final_layer_norm",
}
_HF_MLP = {"mlp1": "fc1", "mlp2": "fc2"}


def transformers_name_map(n_audio_layer: int, n_text_layer: int) -> dict[str, str]:
    """Our tensor name → the transformers ``WhisperForConditionalGeneration`` name (key biases excluded)."""
    names = {
        "encoder.conv1.weight": "model.encoder.conv1.weight",
        "encoder.conv1.bias": "model.encoder.conv1.bias",
        "encoder.conv2.weight": "model.encoder.conv2.weight",
        "encoder.conv2.bias": "model.encoder.conv2.bias",
        "encoder.positional_embedding": "model.encoder.embed_positions.weight",
        "encoder.ln_post.weight": "model.encoder.layer_norm.weight",
        "encoder.ln_post.bias": "model.encoder.layer_norm.bias",
        "decoder.token_embedding.weight": "model.decoder.embed_tokens.weight",
        "decoder.positional_embedding": "model.decoder.embed_positions.weight",
        "decoder.ln.weight": "model.decoder.layer_norm.weight",
        "decoder.ln.bias": "model.decoder.layer_norm.bias",
    }
    for stack, n, attns in (
        ("encoder", n_audio_layer, ("attn",)),
        ("decoder", n_text_layer, ("attn", "cross_attn")),
    ):
        for i in range(n):
            ours, theirs = f"{stack}.blocks.{i}", f"model.{stack}.layers.{i}"
            for attn in attns:
                for o, t in _HF_ATTN.items():
                    names[f"{ours}.{attn}.{o}.weight"] = f"{theirs}.{_HF_BLOCK[attn]}.{t}.weight"
                    if o != "key":
                        names[f"{ours}.{attn}.{o}.bias"] = f"{theirs}.{_HF_BLOCK[attn]}.{t}.bias"
            for o, t in {**_HF_NORMS, **_HF_MLP}.items():
                if o == "cross_attn_ln" and stack == "encoder":
                    continue
                names[f"{ours}.{o}.weight"] = f"{theirs}.{t}.weight"
                names[f"{ours}.{o}.bias"] = f"{theirs}.{t}.bias"
    return names


def sanitize_transformers(weights: Mapping[str, Tensor]) -> dict[str, mx.array]:
    """transformers Whisper tensors (``WhisperForConditionalGeneration`` or bare ``WhisperModel``) → ours."""
    prefixed = {k if k.startswith(("model.", "proj_out.")) else f"model.{k}": v for k, v in weights.items()}
    src = Source(prefixed, "transformers")
    n_enc = count_layers(prefixed, "model.encoder.layers.{}.")
    n_dec = count_layers(prefixed, "model.decoder.layers.{}.")
    out: dict[str, Tensor] = {}
    for ours, theirs in transformers_name_map(n_enc, n_dec).items():
        value = src.take(theirs)
        out[ours] = (
            conv_torch_to_mlx(value) if ours in ("encoder.conv1.weight", "encoder.conv2.weight") else value
        )
    # Optional tensors that carry nothing: the tied output projection, all-zero key biases.
    if src.has("proj_out.weight"):
        proj = src.take("proj_out.weight")
        emb = out["decoder.token_embedding.weight"]
        if not bit_equal(proj, emb):
            raise WeightsError("transformers proj_out.weight differs from embed_tokens; Whisper ties them")
    for name in [k for k in prefixed if k.endswith("k_proj.bias")]:
        if not all_zero(src.take(name)):
            raise WeightsError(f"transformers {name} is non-zero; Whisper keys have no bias")
    src.finish()
    result = to_mx(out)
    check_layout(result)
    return result


def config_from_transformers(
    hf: Mapping[str, Any], generation: Mapping[str, Any] | None = None
) -> WhisperConfig:
    """Our config from transformers' ``config.json`` (+ ``generation_config.json`` for decoding metadata)."""
    gen = generation or {}
    try:
        dims = {
            "n_mels": hf["num_mel_bins"],
            "n_audio_ctx": hf["max_source_positions"],
            "n_audio_state": hf["d_model"],
            "n_audio_head": hf["encoder_attention_heads"],
            "n_audio_layer": hf["encoder_layers"],
            "n_vocab": hf["vocab_size"],
            "n_text_ctx": hf["max_target_positions"],
            "n_text_state": hf["d_model"],
            "n_text_head": hf["decoder_attention_heads"],
            "n_text_layer": hf["decoder_layers"],
        }
    except KeyError as exc:
        raise WeightsError(f"transformers whisper config.json lacks {exc.args[0]}") from None
    meta: dict[str, Any] = {
        "alignment_heads": gen.get("alignment_heads"),
        "suppress_ids": gen.get("suppress_tokens", hf.get("suppress_tokens")),
        "suppress_ids_begin": gen.get("begin_suppress_tokens", hf.get("begin_suppress_tokens")),
        "lang_ids": sorted(gen["lang_to_id"].values()) if gen.get("lang_to_id") else None,
    }
    return WhisperConfig.from_dict({**dims, **meta})


def _load_tensors(files: list[Path]) -> dict[str, mx.array]:
    weights: dict[str, mx.array] = {}
    for f in files:
        part = mx.load(str(f))
        assert isinstance(part, dict)
        weights.update(part)
    return weights


def convert_transformers(src_dir: Path, dst_dir: Path) -> WhisperConfig:
    """An ``openai/whisper-*`` transformers directory (safetensors, possibly sharded) → our layout."""
    src_dir = Path(src_dir)
    files = sorted(src_dir.glob("*.safetensors"))
    if not files:
        raise WeightsError(f"no .safetensors in {src_dir} (pickled pytorch_model.bin is refused)")
    config = config_from_transformers(
        read_json(src_dir / "config.json"), read_json(src_dir / "generation_config.json", required=False)
    )
    save_model(
        Path(dst_dir),
        config,
        sanitize_transformers(_load_tensors(files)),
        src_dir / "tokenizer.json",
        "transformers",
    )
    return config


# -- mlx-community (mlx-examples layout) -----------------------------------------------------------------


def sanitize_mlx_community(weights: Mapping[str, Tensor], *, n_audio_ctx: int = 1500) -> dict[str, mx.array]:
    """mlx-examples Whisper tensors → ours: same names and conv layout; the encoder's sinusoidal table
    (not saved by mlx-examples) is recreated, and ``alignment_heads`` (saved as a tensor) is dropped —
    :func:`convert_mlx_community` moves it into the config."""
    if any(k.endswith((".scales", ".biases")) for k in weights):
        raise WeightsError(
            "pre-quantized mlx-community whisper checkpoints are not supported; use a float one"
        )
    src = Source(weights, "mlx-community")
    if src.has("alignment_heads"):
        src.take("alignment_heads")
    out = {k: src.take(k) for k in weights if k != "alignment_heads"}
    if "encoder.positional_embedding" not in out:
        conv1 = out.get("encoder.conv1.weight")
        if conv1 is None:
            raise WeightsError("mlx-community checkpoint lacks encoder.conv1.weight")
        out["encoder.positional_embedding"] = sinusoids(n_audio_ctx, conv1.shape[0]).astype(conv1.dtype)
    src.finish()
    result = to_mx(out)
    check_layout(result)
    return result


def convert_mlx_community(src_dir: Path, dst_dir: Path) -> WhisperConfig:
    """An mlx-community ``whisper-*`` directory (``config.json`` in openai's dims names) → our layout."""
    src_dir = Path(src_dir)
    raw = read_json(src_dir / "config.json")
    if raw.get("quantization"):
        raise WeightsError(
            "pre-quantized mlx-community whisper checkpoints are not supported; use a float one"
        )
    files = sorted(src_dir.glob("*.safetensors")) or sorted(src_dir.glob("weights.npz"))
    if not files:
        raise WeightsError(f"no weights.safetensors or weights.npz in {src_dir}")
    weights = _load_tensors(files)
    heads = weights.get("alignment_heads")
    if heads is not None and raw.get("alignment_heads") is None:
        raw = {**raw, "alignment_heads": np.array(heads).astype(int).tolist()}
    config = WhisperConfig.from_dict(raw)
    sanitized = sanitize_mlx_community(weights, n_audio_ctx=config.n_audio_ctx)
    # mlx-examples ships its tokenizer as tiktoken files inside the package, not in the repo.
    tokenizer = src_dir / "tokenizer.json"
    save_model(Path(dst_dir), config, sanitized, tokenizer if tokenizer.exists() else None, "mlx-community")
    return config


CONVERTERS: dict[str, Callable[[Path, Path], WhisperConfig]] = {
    "ctranslate2": convert_ctranslate2,
    "transformers": convert_transformers,
    "mlx-community": convert_mlx_community,
}


def convert_checkpoint(src_dir: Path, dst_dir: Path, *, layout: str) -> WhisperConfig:
    """Convert ``src_dir`` in ``layout`` (a key of :data:`CONVERTERS`) into our layout in ``dst_dir``."""
    try:
        converter = CONVERTERS[layout]
    except KeyError:
        raise WeightsError(
            f"unknown whisper checkpoint layout {layout!r}; known: {sorted(CONVERTERS)}"
        ) from None
    return converter(Path(src_dir), Path(dst_dir))
