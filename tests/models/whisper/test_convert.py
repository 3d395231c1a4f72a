"""Converters: CTranslate2 (the two real checkpoints), transformers and mlx-community layouts.

Lossless means bit-exact: every CT2 variable is rebuilt from our safetensors (fused projections
re-concatenated, the zero key-bias rows restored, convs transposed back) and compared byte for byte.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from models.errors import WeightsError
from models.whisper.config import WhisperConfig
from models.whisper.convert import (
    check_layout,
    convert_checkpoint,
    convert_transformers,
    read_ctranslate2,
    sanitize_ctranslate2,
    sanitize_mlx_community,
    sanitize_transformers,
)
from models.whisper.model import sinusoids

CT2_SCALARS = {
    "decoder/activation",
    "decoder/alibi",
    "decoder/alignment_heads",
    "decoder/alignment_layer",
    "decoder/num_heads",
    "decoder/pre_norm",
    "decoder/scale_embeddings",
    "decoder/start_from_zero_embedding",
    "encoder/num_heads",
}


def _ours(model_dir: Path) -> dict[str, np.ndarray]:
    weights = mx.load(str(model_dir / "model.safetensors"))
    assert isinstance(weights, dict)
    return {k: np.array(v) for k, v in weights.items()}


def _ct2_from_ours(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse mapping, written out independently of the converter."""
    out: dict[str, np.ndarray] = {}

    def lin(ct2: str, ours: str) -> None:
        out[f"{ct2}/weight"], out[f"{ct2}/bias"] = w[f"{ours}.weight"], w[f"{ours}.bias"]

    def ln(ct2: str, ours: str) -> None:
        out[f"{ct2}/gamma"], out[f"{ct2}/beta"] = w[f"{ours}.weight"], w[f"{ours}.bias"]

    def fused(ct2: str, parts: list[str]) -> None:
        out[f"{ct2}/weight"] = np.concatenate([w[f"{p}.weight"] for p in parts])
        biases = [w.get(f"{p}.bias", np.zeros_like(w[f"{parts[-1]}.bias"])) for p in parts]
        out[f"{ct2}/bias"] = np.concatenate(biases)

    for stack in ("encoder", "decoder"):
        i = 0
        while f"{stack}.blocks.{i}.mlp1.weight" in w:
            ours, ct2 = f"{stack}.blocks.{i}", f"{stack}/layer_{i}"
            a = f"{ours}.attn"
            fused(f"{ct2}/self_attention/linear_0", [f"{a}.query", f"{a}.key", f"{a}.value"])
            lin(f"{ct2}/self_attention/linear_1", f"{a}.out")
            ln(f"{ct2}/self_attention/layer_norm", f"{ours}.attn_ln")
            if stack == "decoder":
                x = f"{ours}.cross_attn"
                lin(f"{ct2}/attention/linear_0", f"{x}.query")
                fused(f"{ct2}/attention/linear_1", [f"{x}.key", f"{x}.value"])
                lin(f"{ct2}/attention/linear_2", f"{x}.out")
                ln(f"{ct2}/attention/layer_norm", f"{ours}.cross_attn_ln")
            lin(f"{ct2}/ffn/linear_0", f"{ours}.mlp1")
            lin(f"{ct2}/ffn/linear_1", f"{ours}.mlp2")
            ln(f"{ct2}/ffn/layer_norm", f"{ours}.mlp_ln")
            i += 1
    for conv in ("conv1", "conv2"):
        out[f"encoder/{conv}/weight"] = w[f"encoder.{conv}.weight"].transpose(0, 2, 1)
        out[f"encoder/{conv}/bias"] = w[f"encoder.{conv}.bias"]
    out["encoder/position_encodings/encodings"] = w["encoder.positional_embedding"]
    ln("encoder/layer_norm", "encoder.ln_post")
    out["decoder/embeddings/weight"] = w["decoder.token_embedding.weight"]
    out["decoder/projection/weight"] = w["decoder.token_embedding.weight"]
    out["decoder/position_encodings/encodings"] = w["decoder.positional_embedding"]
    ln("decoder/layer_norm", "decoder.ln")
    return out


@pytest.mark.parametrize(
    ("ct2_fixture", "converted_fixture", "preset"),
    [("ct2_tiny_en", "tiny_en_dir", "tiny.en"), ("ct2_base", "base_dir", "base")],
)
def test_ctranslate2_conversion_is_bit_exact(
    request: pytest.FixtureRequest, ct2_fixture: str, converted_fixture: str, preset: str
) -> None:
    ct2_dir, ours_dir = request.getfixturevalue(ct2_fixture), request.getfixturevalue(converted_fixture)
    ckpt = read_ctranslate2(ct2_dir / "model.bin")
    assert ckpt.spec == "WhisperSpec" and ckpt.revision == 3
    assert ckpt.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    ours = _ours(ours_dir)
    rebuilt = _ct2_from_ours(ours)
    tensors = {k: v for k, v in ckpt.variables.items() if k not in CT2_SCALARS}
    assert set(rebuilt) == set(tensors)  # every CT2 tensor accounted for, nothing invented
    for name, value in tensors.items():
        assert rebuilt[name].dtype == value.dtype == np.float16, name
        assert rebuilt[name].shape == value.shape, name
        assert rebuilt[name].tobytes() == value.tobytes(), name

    config = json.loads((ours_dir / "config.json").read_text())
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    for key in ("alignment_heads", "suppress_ids", "suppress_ids_begin", "lang_ids"):
        assert config[key] == ct2_config[key], key
    want = WhisperConfig.preset(preset)
    assert WhisperConfig.from_dict(config) == WhisperConfig.from_dict(
        {**want.to_dict(), **{k: config[k] for k in ct2_config}}
    )
    assert (ours_dir / "tokenizer.json").read_bytes() == (ct2_dir / "tokenizer.json").read_bytes()


def _tiny_ct2_bytes(variables: dict[str, np.ndarray], aliases: dict[str, str], version: int = 6) -> bytes:
    """A model.bin written by the format description (WEIGHTS.md), independently of the reader."""

    def s(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    parts = [struct.pack("<I", version), s("WhisperSpec"), struct.pack("<II", 3, len(variables))]
    codes = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("float16"): 4}
    for name, value in variables.items():
        parts += [s(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape)]
        parts += [struct.pack("<BI", codes[value.dtype], value.nbytes), value.tobytes()]
    parts.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        parts += [s(alias), s(target)]
    return b"".join(parts)


def test_reader_round_trips_a_synthetic_file_and_rejects_bad_ones(tiny_en_dir: Path) -> None:
    rebuilt = {k: np.ascontiguousarray(v) for k, v in _ct2_from_ours(_ours(tiny_en_dir)).items()}
    del rebuilt["decoder/projection/weight"]
    scalars = {
        "decoder/activation": np.int8(3),
        "decoder/alibi": np.int8(0),
        "decoder/alignment_heads": np.int16(1),
        "decoder/alignment_layer": np.int16(-1),
        "decoder/num_heads": np.int16(6),
        "decoder/pre_norm": np.int8(1),
        "decoder/scale_embeddings": np.int8(0),
        "decoder/start_from_zero_embedding": np.int8(0),
        "encoder/num_heads": np.int16(6),
    }
    variables = {**rebuilt, **{k: np.array(v) for k, v in scalars.items()}}
    aliases = {"decoder/projection/weight": "decoder/embeddings/weight"}
    data = _tiny_ct2_bytes(variables, aliases)
    ckpt = read_ctranslate2(data)
    converted = sanitize_ctranslate2(ckpt.variables)
    ours = _ours(tiny_en_dir)
    assert all(np.array(converted[k]).tobytes() == v.tobytes() for k, v in ours.items())

    with pytest.raises(WeightsError, match="version"):
        read_ctranslate2(_tiny_ct2_bytes(variables, aliases, version=5))
    with pytest.raises(WeightsError, match="truncated"):
        read_ctranslate2(data[:-100])
    with pytest.raises(WeightsError, match="trailing"):
        read_ctranslate2(data + b"\0")
    with pytest.raises(WeightsError, match="does not know"):
        sanitize_ctranslate2({**ckpt.variables, "decoder/extra/weight": np.zeros(3, np.float16)})
    bad_bias = dict(ckpt.variables)
    bias = np.array(bad_bias["encoder/layer_0/self_attention/linear_0/bias"])
    bias[384 + 5] = 1.0  # inside the key's rows
    bad_bias["encoder/layer_0/self_attention/linear_0/bias"] = bias
    with pytest.raises(WeightsError, match="key bias"):
        sanitize_ctranslate2(bad_bias)
    with pytest.raises(WeightsError, match="activation"):
        sanitize_ctranslate2({**ckpt.variables, "decoder/activation": np.array(np.int8(1))})


def _transformers_keys(n_enc: int, n_dec: int) -> list[str]:
    """`WhisperForConditionalGeneration.state_dict()` names (k_proj has no bias; proj_out is tied)."""
    keys = [
        "model.encoder.conv1.weight", "model.encoder.conv1.bias", "model.encoder.conv2.weight",
        "model.encoder.conv2.bias", "model.encoder.embed_positions.weight", "model.encoder.layer_norm.weight",
        "model.encoder.layer_norm.bias", "model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
        "model.decoder.layer_norm.weight", "model.decoder.layer_norm.bias", "proj_out.weight",
    ]  # fmt: skip
    for stack, n in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(n):
            p = f"model.{stack}.layers.{i}"
            for attn in ("self_attn", "encoder_attn") if stack == "decoder" else ("self_attn",):
                keys += [f"{p}.{attn}.{proj}.weight" for proj in ("q_proj", "k_proj", "v_proj", "out_proj")]
                keys += [f"{p}.{attn}.{proj}.bias" for proj in ("q_proj", "v_proj", "out_proj")]
            norms = ["self_attn_layer_norm", "final_layer_norm", "fc1", "fc2"]
            norms += ["encoder_attn_layer_norm"] if stack == "decoder" else []
            keys += [f"{p}.{m}.{wb}" for m in norms for wb in ("weight", "bias")]
    return keys


def _to_transformers(w: dict[str, np.ndarray], key: str) -> np.ndarray:
    """The tensor transformers would hold under `key`, from ours (independent of the converter's table)."""
    if key == "proj_out.weight":
        return w["decoder.token_embedding.weight"]
    fixed = {
        "model.encoder.embed_positions.weight": "encoder.positional_embedding",
        "model.encoder.layer_norm.weight": "encoder.ln_post.weight",
        "model.encoder.layer_norm.bias": "encoder.ln_post.bias",
        "model.decoder.embed_tokens.weight": "decoder.token_embedding.weight",
        "model.decoder.embed_positions.weight": "decoder.positional_embedding",
        "model.decoder.layer_norm.weight": "decoder.ln.weight",
        "model.decoder.layer_norm.bias": "decoder.ln.bias",
    }
    if key in fixed:
        return w[fixed[key]]
    name = key.removeprefix("model.").replace(".layers.", ".blocks.")
    for theirs, ours in [
        ("self_attn_layer_norm", "attn_ln"), ("encoder_attn_layer_norm", "cross_attn_ln"),
        ("final_layer_norm", "mlp_ln"), ("self_attn.", "attn."), ("encoder_attn.", "cross_attn."),
        ("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"), ("out_proj", "out"), ("fc1", "mlp1"), ("fc2", "mlp2"),
    ]:  # fmt: skip
        name = name.replace(theirs, ours)
    value = w[name]
    return value.transpose(0, 2, 1) if name in ("encoder.conv1.weight", "encoder.conv2.weight") else value


def test_transformers_layout_round_trips(tiny_en_dir: Path, tmp_path: Path) -> None:
    ours = _ours(tiny_en_dir)
    keys = _transformers_keys(4, 4)
    hf = {k: mx.array(np.ascontiguousarray(_to_transformers(ours, k))) for k in keys}
    for variant in (hf, {k.removeprefix("model."): v for k, v in hf.items() if k != "proj_out.weight"}):
        out = sanitize_transformers(variant)
        assert set(out) == set(ours)
        assert all(np.array(out[k]).tobytes() == v.tobytes() for k, v in ours.items())

    with pytest.raises(WeightsError, match="does not know"):
        sanitize_transformers({**hf, "model.encoder.layers.0.self_attn.rotary.weight": mx.zeros((2,))})
    with pytest.raises(WeightsError, match="lacks"):
        sanitize_transformers({k: v for k, v in hf.items() if not k.endswith("fc2.bias")})
    with pytest.raises(WeightsError, match="bias"):
        sanitize_transformers({**hf, "model.decoder.layers.1.encoder_attn.k_proj.bias": mx.ones((384,))})
    zero_bias = sanitize_transformers(
        {**hf, "model.decoder.layers.1.encoder_attn.k_proj.bias": mx.zeros((384,))}
    )
    assert set(zero_bias) == set(ours)
    with pytest.raises(WeightsError, match="proj_out"):
        sanitize_transformers({**hf, "proj_out.weight": hf["proj_out.weight"] * 2})

    # A whole directory: config.json / generation_config.json in transformers' names.
    src = tmp_path / "hf"
    src.mkdir()
    mx.save_safetensors(str(src / "model.safetensors"), hf)
    hf_config = {
        "num_mel_bins": 80, "max_source_positions": 1500, "d_model": 384, "encoder_attention_heads": 6,
        "encoder_layers": 4, "vocab_size": 51864, "max_target_positions": 448, "decoder_attention_heads": 6,
        "decoder_layers": 4, "model_type": "whisper", "begin_suppress_tokens": [220, 50256],
    }  # fmt: skip
    (src / "config.json").write_text(json.dumps(hf_config))
    (src / "generation_config.json").write_text(
        json.dumps({"alignment_heads": [[2, 0], [3, 1]], "suppress_tokens": [1, 2]})
    )
    (src / "tokenizer.json").write_bytes((tiny_en_dir / "tokenizer.json").read_bytes())
    config = convert_transformers(src, tmp_path / "ours")
    assert config == WhisperConfig.from_dict(
        {
            **WhisperConfig.preset("tiny.en").to_dict(),
            "alignment_heads": [[2, 0], [3, 1]],
            "suppress_ids": [1, 2],
            "suppress_ids_begin": [220, 50256],
        }
    )
    assert _ours(tmp_path / "ours").keys() == ours.keys()


def test_mlx_community_layout_round_trips(tiny_en_dir: Path, tmp_path: Path) -> None:
    ours = _ours(tiny_en_dir)
    # mlx-examples saves every parameter but its private encoder table, plus `alignment_heads`.
    community = {k: mx.array(v) for k, v in ours.items() if k != "encoder.positional_embedding"}
    community["alignment_heads"] = mx.array([[2, 2], [3, 0]])
    out = sanitize_mlx_community(community)
    check_layout(out)
    assert all(
        np.array(out[k]).tobytes() == v.tobytes()
        for k, v in ours.items()
        if k != "encoder.positional_embedding"
    )
    table = np.array(out["encoder.positional_embedding"].astype(mx.float32))
    np.testing.assert_allclose(table, np.array(sinusoids(1500, 384)).astype(np.float16), atol=0)
    # The CT2 checkpoint's table is the same sinusoids (to fp16 rounding).
    assert np.abs(table - ours["encoder.positional_embedding"].astype(np.float32)).max() < 1e-3

    src = tmp_path / "community"
    src.mkdir()
    mx.save_safetensors(str(src / "weights.safetensors"), community)
    dims = {k: v for k, v in WhisperConfig.preset("tiny.en").to_dict().items() if k.startswith("n_")}
    (src / "config.json").write_text(json.dumps({**dims, "model_type": "whisper"}))
    config = convert_checkpoint(src, tmp_path / "ours", layout="mlx-community")
    assert config.alignment_heads == ((2, 2), (3, 0))
    assert not (tmp_path / "ours" / "tokenizer.json").exists()  # mlx-community ships tiktoken files instead

    with pytest.raises(WeightsError, match="quantized"):
        sanitize_mlx_community({**community, "decoder.token_embedding.scales": mx.zeros((2,))})
    with pytest.raises(WeightsError, match="unknown whisper checkpoint layout"):
        convert_checkpoint(src, tmp_path / "x", layout="onnx")


def test_check_layout_names_wrong_shapes(tiny_en_dir: Path) -> None:
    ours = {k: mx.array(v) for k, v in _ours(tiny_en_dir).items()}
    ours["encoder.conv2.weight"] = ours["encoder.conv2.weight"].transpose(0, 2, 1)  # a torch-layout conv
    with pytest.raises(WeightsError, match=r"encoder\.conv2\.weight"):
        check_layout(ours)
