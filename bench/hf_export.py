"""Export our native Whisper checkpoint to Hugging Face transformers' layout, for the GPU benchmark only.

Renames every key (strict: an unknown key is an error), transposes the two convolutions back to PyTorch's
``[out, in, kernel]``, asserts shapes, and writes ``config.json``, ``generation_config.json``,
``model.safetensors``, the tokenizer and the feature extractor's config so that
``WhisperForConditionalGeneration.from_pretrained`` and ``WhisperProcessor.from_pretrained`` load it offline.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

_BLOCK = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "cross_attn.query": "encoder_attn.q_proj",
    "cross_attn.key": "encoder_attn.k_proj",
    "cross_attn.value": "encoder_attn.v_proj",
    "cross_attn.out": "encoder_attn.out_proj",
    "cross_attn_ln": "encoder_attn_layer_norm",
    "mlp1": "fc1",
    "mlp2": "fc2",
    "mlp_ln": "final_layer_norm",
}
_TOP = {
    "encoder.conv1": "model.encoder.conv1",
    "encoder.conv2": "model.encoder.conv2",
    "encoder.positional_embedding": "model.encoder.embed_positions.weight",
    "encoder.ln_post": "model.encoder.layer_norm",
    "decoder.token_embedding": "model.decoder.embed_tokens",
    "decoder.positional_embedding": "model.decoder.embed_positions.weight",
    "decoder.ln": "model.decoder.layer_norm",
}


def hf_name(name: str) -> str:
    m = re.fullmatch(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)", name)
    if m:
        side, layer, part, kind = m.groups()
        return f"model.{side}.layers.{layer}.{_BLOCK[part]}.{kind}"
    for ours, theirs in _TOP.items():
        if name == ours:
            return theirs
        if name.startswith(ours + "."):
            return theirs + name[len(ours) :]
    raise KeyError(f"no transformers name for {name}")


def export_hf(src: Path, dst: Path) -> Path:
    """``src`` (our native dir: config.json, model.safetensors, tokenizer.json) → ``dst`` (HF layout)."""
    import mlx.core as mx
    import numpy as np
    from safetensors.numpy import save_file

    cfg: dict[str, Any] = json.loads((src / "config.json").read_text())
    weights = mx.load(str(src / "model.safetensors"))
    assert isinstance(weights, dict)
    d = cfg["n_audio_state"]
    state: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        array = np.array(value.astype(mx.float32))
        if name in ("encoder.conv1.weight", "encoder.conv2.weight"):
            array = array.transpose(0, 2, 1)  # MLX [out, kernel, in] → torch [out, in, kernel]
            assert array.shape[:2] == (d, cfg["n_mels"] if name.endswith("1.weight") else d), array.shape
        state[hf_name(name)] = np.ascontiguousarray(array)
    assert state["model.decoder.embed_tokens.weight"].shape == (cfg["n_vocab"], cfg["n_text_state"])
    dst.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    multilingual = cfg["n_vocab"] >= 51865
    special = {
        t["content"]: t["id"] for t in json.loads((src / "tokenizer.json").read_text())["added_tokens"]
    }
    eot, sot, no_ts = special["<|endoftext|>"], special["<|startoftranscript|>"], special["<|notimestamps|>"]
    languages = (
        {k: v for k, v in special.items() if re.fullmatch(r"<\|[a-z]{2,3}\|>", k)} if multilingual else {}
    )
    (dst / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["WhisperForConditionalGeneration"],
                "model_type": "whisper",
                "vocab_size": cfg["n_vocab"],
                "num_mel_bins": cfg["n_mels"],
                "d_model": d,
                "encoder_layers": cfg["n_audio_layer"],
                "encoder_attention_heads": cfg["n_audio_head"],
                "decoder_layers": cfg["n_text_layer"],
                "decoder_attention_heads": cfg["n_text_head"],
                "encoder_ffn_dim": 4 * d,
                "decoder_ffn_dim": 4 * cfg["n_text_state"],
                "max_source_positions": cfg["n_audio_ctx"],
                "max_target_positions": cfg["n_text_ctx"],
                "decoder_start_token_id": sot,
                "bos_token_id": eot,
                "eos_token_id": eot,
                "pad_token_id": eot,
                "tie_word_embeddings": True,
            }
        )
    )
    generation: dict[str, Any] = {
        "decoder_start_token_id": sot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "bos_token_id": eot,
        "max_length": cfg["n_text_ctx"],
        "no_timestamps_token_id": no_ts,
        "is_multilingual": multilingual,
        "begin_suppress_tokens": cfg.get("suppress_ids_begin", [220, eot]),
        "suppress_tokens": cfg.get("suppress_ids", []),
        "alignment_heads": cfg.get("alignment_heads") or [],
    }
    if multilingual:  # transformers detects the language whenever `lang_to_id` exists, even empty
        generation["lang_to_id"] = languages
        generation["task_to_id"] = {
            "transcribe": special["<|transcribe|>"],
            "translate": special["<|translate|>"],
        }
    (dst / "generation_config.json").write_text(json.dumps(generation))
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    (dst / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "feature_extractor_type": "WhisperFeatureExtractor",
                "feature_size": cfg["n_mels"],
                "sampling_rate": 16000,
                "hop_length": 160,
                "chunk_length": 30,
                "n_fft": 400,
                "n_samples": 480000,
                "nb_max_frames": 3000,
                "padding_side": "right",
                "padding_value": 0.0,
                "return_attention_mask": False,
                "processor_class": "WhisperProcessor",
            }
        )
    )
    (dst / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "WhisperTokenizer"}))
    return dst
