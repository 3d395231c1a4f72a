"""Our Whisper checkpoint layout and the helpers every converter shares.

Our layout: ``config.json`` (`WhisperConfig.to_dict`) + ``model.safetensors`` (names of `model.Whisper`,
any float dtype) + ``tokenizer.json``. `check_layout` asserts that a dict of tensors is exactly that
layout with every shape right; `Source` hands out a checkpoint's tensors one by one, asserting each
shape, and fails on any tensor nobody took.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from models.errors import WeightsError
from models.whisper.config import WhisperConfig

Tensor = Any  # np.ndarray or mx.array: both have .shape and index like numpy

# -- our layout ------------------------------------------------------------------------------------------


def expected_shapes(c: WhisperConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of our layout and its shape (head counts do not enter any shape)."""
    da, dt = c.n_audio_state, c.n_text_state
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.conv1.weight": (da, 3, c.n_mels),
        "encoder.conv1.bias": (da,),
        "encoder.conv2.weight": (da, 3, da),
        "encoder.conv2.bias": (da,),
        "encoder.positional_embedding": (c.n_audio_ctx, da),
        "encoder.ln_post.weight": (da,),
        "encoder.ln_post.bias": (da,),
        "decoder.token_embedding.weight": (c.n_vocab, dt),
        "decoder.positional_embedding": (c.n_text_ctx, dt),
        "decoder.ln.weight": (dt,),
        "decoder.ln.bias": (dt,),
    }

    def block(prefix: str, d: int, cross: bool) -> None:
        for attn in ("attn", "cross_attn") if cross else ("attn",):
            for proj in ("query", "key", "value", "out"):
                shapes[f"{prefix}.{attn}.{proj}.weight"] = (d, d)
                if proj != "key":
                    shapes[f"{prefix}.{attn}.{proj}.bias"] = (d,)
        for ln in ("attn_ln", "cross_attn_ln", "mlp_ln") if cross else ("attn_ln", "mlp_ln"):
            shapes[f"{prefix}.{ln}.weight"] = shapes[f"{prefix}.{ln}.bias"] = (d,)
        shapes[f"{prefix}.mlp1.weight"], shapes[f"{prefix}.mlp1.bias"] = (4 * d, d), (4 * d,)
        shapes[f"{prefix}.mlp2.weight"], shapes[f"{prefix}.mlp2.bias"] = (d, 4 * d), (d,)

    for i in range(c.n_audio_layer):
        block(f"encoder.blocks.{i}", da, cross=False)
    for i in range(c.n_text_layer):
        block(f"decoder.blocks.{i}", dt, cross=True)
    return shapes


def count_layers(names: Any, pattern: str) -> int:
    n = 0
    while any(k.startswith(pattern.format(n)) for k in names):
        n += 1
    return n


def dims_from_weights(weights: Mapping[str, Tensor]) -> WhisperConfig:
    """Dimensions read off tensors in our layout (head counts set to 1: shapes do not carry them)."""
    try:
        conv1 = weights["encoder.conv1.weight"]
        emb = weights["decoder.token_embedding.weight"]
        return WhisperConfig(
            n_mels=conv1.shape[2],
            n_audio_ctx=weights["encoder.positional_embedding"].shape[0],
            n_audio_state=conv1.shape[0],
            n_audio_head=1,
            n_audio_layer=count_layers(weights, "encoder.blocks.{}."),
            n_vocab=emb.shape[0],
            n_text_ctx=weights["decoder.positional_embedding"].shape[0],
            n_text_state=emb.shape[1],
            n_text_head=1,
            n_text_layer=count_layers(weights, "decoder.blocks.{}."),
        )
    except KeyError as exc:
        raise WeightsError(f"whisper weights lack {exc.args[0]}") from None


def check_layout(weights: Mapping[str, Tensor], config: WhisperConfig | None = None) -> None:
    """Assert ``weights`` hold exactly our tensors, each of its expected shape (dims from ``config`` or read off)."""
    want = expected_shapes(config or dims_from_weights(weights))
    missing, extra = sorted(want.keys() - weights.keys()), sorted(weights.keys() - want.keys())
    if missing or extra:
        raise WeightsError(f"whisper weights: missing {missing[:6]}, unexpected {extra[:6]}")
    bad = [f"{k}: {tuple(weights[k].shape)} != {s}" for k, s in want.items() if tuple(weights[k].shape) != s]
    if bad:
        raise WeightsError("whisper weights have wrong shapes: " + "; ".join(bad[:6]))


def conv_torch_to_mlx(w: Tensor) -> Tensor:
    """Conv1d weight ``[out, in, kernel]`` (torch, CT2) → ``[out, kernel, in]`` (MLX)."""
    return w.transpose(0, 2, 1)


class Source:
    """Named tensors taken one by one, each shape asserted; unconsumed names are an error at the end."""

    def __init__(self, tensors: Mapping[str, Tensor], layout: str) -> None:
        self.tensors, self.layout, self.used = tensors, layout, set[str]()

    def has(self, name: str) -> bool:
        return name in self.tensors

    def peek(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise WeightsError(f"{self.layout} checkpoint lacks {name}")
        return self.tensors[name]

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> Tensor:
        if name not in self.tensors:
            raise WeightsError(f"{self.layout} checkpoint lacks {name}")
        value = self.tensors[name]
        if shape is not None and tuple(value.shape) != shape:
            raise WeightsError(f"{self.layout} {name}: shape {tuple(value.shape)}, expected {shape}")
        self.used.add(name)
        return value

    def finish(self) -> None:
        left = sorted(set(self.tensors) - self.used)
        if left:
            raise WeightsError(
                f"{self.layout} checkpoint has tensors this converter does not know: {left[:8]}"
            )


def as_mx(x: Tensor) -> mx.array:
    return x if isinstance(x, mx.array) else mx.array(np.ascontiguousarray(x))


def to_mx(weights: dict[str, Tensor]) -> dict[str, mx.array]:
    return {k: as_mx(v) for k, v in weights.items()}


def all_zero(x: Tensor) -> bool:
    return not mx.any(as_mx(x)).item()


def bit_equal(a: Tensor, b: Tensor) -> bool:
    return a is b or (tuple(a.shape) == tuple(b.shape) and bool(mx.array_equal(as_mx(a), as_mx(b)).item()))


def read_json(path: Path, *, required: bool = True) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise WeightsError(f"{path} is missing")
        return {}
    return json.loads(path.read_text())


def save_model(
    dst_dir: Path,
    config: WhisperConfig,
    weights: dict[str, mx.array],
    tokenizer_json: Path | None,
    source: str,
) -> None:
    """Write our layout: ``config.json``, ``model.safetensors`` (dtype kept) and ``tokenizer.json`` if given."""
    check_layout(weights, config)
    if tokenizer_json is not None and not tokenizer_json.exists():
        raise WeightsError(f"{tokenizer_json} is missing: a whisper model needs its tokenizer.json")
    dst_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(
        str(dst_dir / "model.safetensors"), weights, metadata={"format": "mlx", "source": source}
    )
    (dst_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    if tokenizer_json is not None:
        shutil.copyfile(tokenizer_json, dst_dir / "tokenizer.json")
