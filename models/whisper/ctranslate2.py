"""CTranslate2 (faster-whisper) Whisper checkpoints → our layout, losslessly.

`read_ctranslate2` parses ``model.bin``; `sanitize_ctranslate2` maps WhisperSpec variable names to ours
by name: CT2 fuses self-attention q|k|v into ``linear_0`` and cross-attention k|v into ``linear_1``
(``linear_0`` = q, ``linear_2`` = out), with zero rows standing for Whisper's absent key bias (asserted
zero, then dropped); conv weights are transposed to MLX's layout; the output projection is an alias of
the token embedding (asserted bit-equal). Scalars are checked against what our model implements. Every
variable is consumed; dtypes are kept (fp16 stays fp16). CT2's ``config.json`` (alignment_heads,
suppress_ids, suppress_ids_begin, lang_ids) is carried into ours.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from models.errors import WeightsError
from models.whisper.config import WhisperConfig
from models.whisper.layout import (
    Source,
    Tensor,
    all_zero,
    bit_equal,
    check_layout,
    conv_torch_to_mlx,
    count_layers,
    read_json,
    save_model,
    to_mx,
)

_CT2_BINARY_VERSION = 6
_CT2_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


@dataclass
class CT2Checkpoint:
    spec: str
    revision: int
    variables: dict[str, Tensor]  # numpy views (bfloat16: mx.array); an alias maps to its target's array
    aliases: dict[str, str]


def read_ctranslate2(path_or_bytes: Path | str | bytes) -> CT2Checkpoint:
    """Parse a CTranslate2 ``model.bin`` (binary version 6; little-endian).

    Layout: u32 version, string spec name, u32 revision, u32 count; per variable: string name, u8 rank,
    u32 × rank dims, u8 dtype, u32 byte count, raw bytes; then u32 alias count and (alias, target) string
    pairs. A string is a u16 length then that many bytes, NUL-terminated. Arrays are zero-copy views of
    the file bytes, except bfloat16 ones, which numpy lacks: those become ``mx.array`` (a copy).
    """
    buf = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    pos = 0

    def unpack(fmt: str) -> int:
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return int(value)

    def string() -> str:
        nonlocal pos
        n = unpack("H")
        raw = buf[pos : pos + n]
        pos += n
        return raw.rstrip(b"\0").decode("utf-8")

    try:
        version = unpack("I")
        if version != _CT2_BINARY_VERSION:
            raise WeightsError(
                f"CTranslate2 binary version {version} is not supported (only {_CT2_BINARY_VERSION})"
            )
        spec, revision = string(), unpack("I")
        variables: dict[str, Tensor] = {}
        for _ in range(unpack("I")):
            name = string()
            dims = tuple(unpack("I") for _ in range(unpack("B")))
            code, nbytes = unpack("B"), unpack("I")
            dtype_name = _CT2_DTYPES.get(code)
            if dtype_name is None:
                raise WeightsError(f"CTranslate2 variable {name}: unknown dtype id {code}")
            bf16 = dtype_name == "bfloat16"
            np_dtype = np.dtype("<u2" if bf16 else dtype_name).newbyteorder("<")
            count = int(np.prod(dims, dtype=np.int64))
            if nbytes != np_dtype.itemsize * count:
                raise WeightsError(f"CTranslate2 variable {name}: {nbytes} bytes for {dims} {dtype_name}")
            array = np.frombuffer(buf, dtype=np_dtype, count=count, offset=pos).reshape(dims)
            variables[name] = mx.array(array).view(mx.bfloat16) if bf16 else array
            pos += nbytes
        aliases = {}
        for _ in range(unpack("I")):
            alias, target = string(), string()
            aliases[alias] = target
    except struct.error:
        raise WeightsError("CTranslate2 model.bin is truncated") from None
    if pos != len(buf):
        raise WeightsError(f"CTranslate2 model.bin has {len(buf) - pos} trailing bytes")
    for alias, target in aliases.items():
        if target not in variables:
            raise WeightsError(f"CTranslate2 alias {alias} → {target}: no such variable")
        variables[alias] = variables[target]
    return CT2Checkpoint(spec, revision, variables, aliases)


# Scalar attributes of WhisperSpec revision 3 and the values this model implements.
_CT2_SCALARS = {
    "decoder/activation": 3,  # GELU (erf)
    "decoder/alibi": 0,
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
}
# CT2's own cross-attention alignment settings; ours come from config.json's alignment_heads.
_CT2_IGNORED_SCALARS = ("decoder/alignment_heads", "decoder/alignment_layer")


def ct2_head_counts(variables: Mapping[str, Tensor]) -> tuple[int, int]:
    """(encoder heads, decoder heads) from a CT2 Whisper checkpoint's scalars."""
    return int(variables["encoder/num_heads"]), int(variables["decoder/num_heads"])


def sanitize_ctranslate2(variables: Mapping[str, Tensor]) -> dict[str, mx.array]:
    """CT2 WhisperSpec variables (aliases resolved) → our tensors, dtype kept, every variable consumed."""
    src = Source(variables, "CTranslate2")
    for name, value in _CT2_SCALARS.items():
        if int(src.take(name, ())) != value:
            raise WeightsError(
                f"CTranslate2 {name}={int(variables[name])} is not supported (expected {value})"
            )
    for name in (*_CT2_IGNORED_SCALARS, "encoder/num_heads", "decoder/num_heads"):
        src.take(name, ())

    da, n_mels = src.peek("encoder/conv1/weight").shape[:2]
    n_vocab, dt = src.peek("decoder/embeddings/weight").shape
    out: dict[str, Tensor] = {}

    def linear(ct2: str, ours: str, d_out: int, d_in: int) -> None:
        out[f"{ours}.weight"] = src.take(f"{ct2}/weight", (d_out, d_in))
        out[f"{ours}.bias"] = src.take(f"{ct2}/bias", (d_out,))

    def layer_norm(ct2: str, ours: str, d: int) -> None:
        out[f"{ours}.weight"] = src.take(f"{ct2}/gamma", (d,))
        out[f"{ours}.bias"] = src.take(f"{ct2}/beta", (d,))

    def split_linear(ct2: str, ours: list[str], d: int) -> None:
        """A fused projection → len(ours) projections of d rows; the key's bias rows must be zero."""
        w = src.take(f"{ct2}/weight", (len(ours) * d, d))
        b = src.take(f"{ct2}/bias", (len(ours) * d,))
        for j, name in enumerate(ours):
            out[f"{name}.weight"] = w[j * d : (j + 1) * d]
            if name.endswith(".key"):
                if not all_zero(b[j * d : (j + 1) * d]):
                    raise WeightsError(f"CTranslate2 {ct2}/bias has a non-zero key bias; Whisper has none")
            else:
                out[f"{name}.bias"] = b[j * d : (j + 1) * d]

    def block(ct2: str, ours: str, d: int, cross: bool) -> None:
        a = f"{ours}.attn"
        split_linear(f"{ct2}/self_attention/linear_0", [f"{a}.query", f"{a}.key", f"{a}.value"], d)
        linear(f"{ct2}/self_attention/linear_1", f"{a}.out", d, d)
        layer_norm(f"{ct2}/self_attention/layer_norm", f"{ours}.attn_ln", d)
        if cross:
            x = f"{ours}.cross_attn"
            linear(f"{ct2}/attention/linear_0", f"{x}.query", d, d)
            split_linear(f"{ct2}/attention/linear_1", [f"{x}.key", f"{x}.value"], d)
            linear(f"{ct2}/attention/linear_2", f"{x}.out", d, d)
            layer_norm(f"{ct2}/attention/layer_norm", f"{ours}.cross_attn_ln", d)
        linear(f"{ct2}/ffn/linear_0", f"{ours}.mlp1", 4 * d, d)
        linear(f"{ct2}/ffn/linear_1", f"{ours}.mlp2", d, 4 * d)
        layer_norm(f"{ct2}/ffn/layer_norm", f"{ours}.mlp_ln", d)

    def stack(side: str, d: int, cross: bool, final_norm: str) -> None:
        """Position table, blocks and final norm of the encoder or the decoder."""
        n_ctx = src.peek(f"{side}/position_encodings/encodings").shape[0]
        out[f"{side}.positional_embedding"] = src.take(f"{side}/position_encodings/encodings", (n_ctx, d))
        for i in range(count_layers(variables, side + "/layer_{}/")):
            block(f"{side}/layer_{i}", f"{side}.blocks.{i}", d, cross=cross)
        layer_norm(f"{side}/layer_norm", f"{side}.{final_norm}", d)

    out["encoder.conv1.weight"] = conv_torch_to_mlx(src.take("encoder/conv1/weight", (da, n_mels, 3)))
    out["encoder.conv1.bias"] = src.take("encoder/conv1/bias", (da,))
    out["encoder.conv2.weight"] = conv_torch_to_mlx(src.take("encoder/conv2/weight", (da, da, 3)))
    out["encoder.conv2.bias"] = src.take("encoder/conv2/bias", (da,))
    stack("encoder", da, cross=False, final_norm="ln_post")
    emb = src.take("decoder/embeddings/weight", (n_vocab, dt))
    out["decoder.token_embedding.weight"] = emb
    stack("decoder", dt, cross=True, final_norm="ln")
    # Whisper ties the output projection to the token embedding; CT2 stores it as an alias (or a copy).
    proj = src.take("decoder/projection/weight", (n_vocab, dt))
    if not bit_equal(proj, emb):
        raise WeightsError(
            "CTranslate2 decoder/projection differs from the token embedding; Whisper ties them"
        )
    src.finish()

    result = to_mx(out)
    check_layout(result)
    return result


def config_from_ctranslate2(ckpt: CT2Checkpoint, ct2_config: Mapping[str, Any]) -> WhisperConfig:
    """Our config: dimensions from the tensors, heads from the spec, decoding metadata from CT2's config.json."""
    if ckpt.spec != "WhisperSpec":
        raise WeightsError(f"not a CTranslate2 Whisper model (spec {ckpt.spec!r})")
    v = ckpt.variables
    enc_heads, dec_heads = ct2_head_counts(v)
    conv1, emb = v["encoder/conv1/weight"], v["decoder/embeddings/weight"]
    return WhisperConfig.from_dict(
        {
            **{
                k: ct2_config[k]
                for k in ("alignment_heads", "suppress_ids", "suppress_ids_begin", "lang_ids")
                if k in ct2_config
            },
            "n_mels": conv1.shape[1],
            "n_audio_ctx": v["encoder/position_encodings/encodings"].shape[0],
            "n_audio_state": conv1.shape[0],
            "n_audio_head": enc_heads,
            "n_audio_layer": count_layers(v, "encoder/layer_{}/"),
            "n_vocab": emb.shape[0],
            "n_text_ctx": v["decoder/position_encodings/encodings"].shape[0],
            "n_text_state": emb.shape[1],
            "n_text_head": dec_heads,
            "n_text_layer": count_layers(v, "decoder/layer_{}/"),
        }
    )


def convert_ctranslate2(src_dir: Path, dst_dir: Path) -> WhisperConfig:
    """A faster-whisper/CTranslate2 directory (``model.bin``, ``config.json``, ``tokenizer.json``) → our layout."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    ckpt = read_ctranslate2(src_dir / "model.bin")
    config = config_from_ctranslate2(ckpt, read_json(src_dir / "config.json", required=False))
    save_model(
        dst_dir, config, sanitize_ctranslate2(ckpt.variables), src_dir / "tokenizer.json", "ctranslate2"
    )
    return config
