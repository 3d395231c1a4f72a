"""The canonical Kokoro state dict, without torch: the names and shapes of hexgrad's `kokoro.model.KModel`
parameters (`kokoro==0.9.4`), in torch layouts, that every reader (`convert.py`, `checkpoint.py`) produces.

Canonical means:
- names exactly KModel's `named_parameters()`: `bert.`, `bert_encoder.`, `predictor.`, `text_encoder.`,
  `decoder.`;
- torch layouts: Conv1d weight (out, in/groups, k), ConvTranspose1d weight (in, out/groups, k), Linear
  weight (out, in), LSTM `weight_ih_l0`/`weight_hh_l0`/`bias_ih_l0`/`bias_hh_l0` (+ `_reverse`) with the
  gates in torch's order (i, f, g, o);
- every weight-normed module carries one folded `<module>.weight` = g·v/‖v‖ (norm over all axes but 0)
  instead of `weight_g`/`weight_v`;
- float32 arrays;
- minus `OMITTED`: parameters KModel has that are constants at inference, which no source needs to carry.

tests/models/kokoro/test_convert.py holds `canonical_shapes()` to KModel's own parameters, exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from models.errors import WeightsError
from models.kokoro.config import KokoroConfig

Shapes = dict[str, tuple[int, ...]]

# KModel parameters the canonical dict leaves out, with why. A reader drops them when a source carries them
# (after checking the inert ones hold their inert value); a loader that wants them (torch's KModel) gets
# them from its own initialisation.
OMITTED: Mapping[str, str] = {
    # AdaIN1d's InstanceNorm1d(affine=True): affine only for an old ONNX exporter's sake, trained without it
    # (hexgrad's checkpoint has no such tensors: KModel keeps weight 1, bias 0).
    r"\.(norm1|norm2|adain1\.\d+|adain2\.\d+)\.norm\.(weight|bias)$": "InstanceNorm affine, inert 1 and 0",
    # ALBERT's [CLS] pooler: computed by AlbertModel, discarded by KModel (it reads last_hidden_state).
    r"^bert\.pooler\.(weight|bias)$": "ALBERT pooler, unused by KModel",
}
# Non-parameter entries a torch checkpoint may carry (buffers), dropped by name.
BUFFERS = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")


def omitted(name: str) -> bool:
    return any(re.search(pattern, name) for pattern in OMITTED)


def _lstm(prefix: str, n_in: int, hidden: int) -> Shapes:
    out: Shapes = {}
    for suffix in ("", "_reverse"):
        out[f"{prefix}.weight_ih_l0{suffix}"] = (4 * hidden, n_in)
        out[f"{prefix}.weight_hh_l0{suffix}"] = (4 * hidden, hidden)
        out[f"{prefix}.bias_ih_l0{suffix}"] = (4 * hidden,)
        out[f"{prefix}.bias_hh_l0{suffix}"] = (4 * hidden,)
    return out


def _linear(prefix: str, n_in: int, n_out: int, bias: bool = True) -> Shapes:
    return {f"{prefix}.weight": (n_out, n_in), **({f"{prefix}.bias": (n_out,)} if bias else {})}


def _conv(prefix: str, n_in: int, n_out: int, k: int, bias: bool = True) -> Shapes:
    return {f"{prefix}.weight": (n_out, n_in, k), **({f"{prefix}.bias": (n_out,)} if bias else {})}


def _adain_res_blk(prefix: str, d_in: int, d_out: int, style: int, upsample: bool) -> Shapes:
    """StyleTTS 2's AdainResBlk1d (prosody predictor's F0/N blocks, the decoder's encode/decode)."""
    out = {
        **_conv(f"{prefix}.conv1", d_in, d_out, 3),
        **_conv(f"{prefix}.conv2", d_out, d_out, 3),
        **_linear(f"{prefix}.norm1.fc", style, 2 * d_in),
        **_linear(f"{prefix}.norm2.fc", style, 2 * d_out),
    }
    if d_in != d_out:
        out.update(_conv(f"{prefix}.conv1x1", d_in, d_out, 1, bias=False))
    if (
        upsample
    ):  # depthwise ConvTranspose1d(d_in, d_in, 3, stride 2, groups=d_in): weight (in, out/groups, k)
        out.update({f"{prefix}.pool.weight": (d_in, 1, 3), f"{prefix}.pool.bias": (d_in,)})
    return out


def _adain_resblock1(prefix: str, ch: int, k: int, style: int, n: int = 3) -> Shapes:
    """iSTFTNet's AdaINResBlock1 (the generator's resblocks and noise_res), Snake alphas (1, ch, 1)."""
    out: Shapes = {}
    for j in range(n):
        out.update(_conv(f"{prefix}.convs1.{j}", ch, ch, k))
        out.update(_conv(f"{prefix}.convs2.{j}", ch, ch, k))
        out.update(_linear(f"{prefix}.adain1.{j}.fc", style, 2 * ch))
        out.update(_linear(f"{prefix}.adain2.{j}.fc", style, 2 * ch))
        out[f"{prefix}.alpha1.{j}"] = (1, ch, 1)
        out[f"{prefix}.alpha2.{j}"] = (1, ch, 1)
    return out


def canonical_shapes(config: KokoroConfig) -> Shapes:
    """Every canonical name → its torch-layout shape, for `config` (KModel's constructor, transcribed)."""
    p, c = config.plbert, config.istftnet
    hid, sty, tok = config.hidden_dim, config.style_dim, config.n_token
    emb, dim, ffn = int(p.get("embedding_size", 128)), int(p["hidden_size"]), int(p["intermediate_size"])
    layer = "bert.encoder.albert_layer_groups.0.albert_layers.0"
    out: Shapes = {
        "bert.embeddings.word_embeddings.weight": (tok, emb),
        "bert.embeddings.position_embeddings.weight": (int(p["max_position_embeddings"]), emb),
        "bert.embeddings.token_type_embeddings.weight": (2, emb),
        "bert.embeddings.LayerNorm.weight": (emb,),
        "bert.embeddings.LayerNorm.bias": (emb,),
        **_linear("bert.encoder.embedding_hidden_mapping_in", emb, dim),
        f"{layer}.full_layer_layer_norm.weight": (dim,),
        f"{layer}.full_layer_layer_norm.bias": (dim,),
        **{
            k: v
            for m in ("query", "key", "value", "dense")
            for k, v in _linear(f"{layer}.attention.{m}", dim, dim).items()
        },
        f"{layer}.attention.LayerNorm.weight": (dim,),
        f"{layer}.attention.LayerNorm.bias": (dim,),
        **_linear(f"{layer}.ffn", dim, ffn),
        **_linear(f"{layer}.ffn_output", ffn, dim),
        **_linear("bert_encoder", dim, hid),
    }
    # prosody predictor
    for i in range(config.n_layer):
        out.update(_lstm(f"predictor.text_encoder.lstms.{2 * i}", hid + sty, hid // 2))
        out.update(_linear(f"predictor.text_encoder.lstms.{2 * i + 1}.fc", sty, 2 * hid))
    out.update(_lstm("predictor.lstm", hid + sty, hid // 2))
    out.update(_linear("predictor.duration_proj.linear_layer", hid, config.max_dur))
    out.update(_lstm("predictor.shared", hid + sty, hid // 2))
    for head in ("F0", "N"):
        out.update(_adain_res_blk(f"predictor.{head}.0", hid, hid, sty, False))
        out.update(_adain_res_blk(f"predictor.{head}.1", hid, hid // 2, sty, True))
        out.update(_adain_res_blk(f"predictor.{head}.2", hid // 2, hid // 2, sty, False))
        out.update(_conv(f"predictor.{head}_proj", hid // 2, 1, 1))
    # text encoder
    out["text_encoder.embedding.weight"] = (tok, hid)
    for i in range(config.n_layer):
        out.update(_conv(f"text_encoder.cnn.{i}.0", hid, hid, config.text_encoder_kernel_size))
        out[f"text_encoder.cnn.{i}.1.gamma"] = (hid,)
        out[f"text_encoder.cnn.{i}.1.beta"] = (hid,)
    out.update(_lstm("text_encoder.lstm", hid, hid // 2))
    # decoder (its 1024/64 widths are KModel constants, not config)
    out.update(_adain_res_blk("decoder.encode", hid + 2, 1024, sty, False))
    for i, d_out in enumerate((1024, 1024, 1024, 512)):
        out.update(_adain_res_blk(f"decoder.decode.{i}", 1024 + 2 + 64, d_out, sty, i == 3))
    out.update(_conv("decoder.F0_conv", 1, 1, 3))
    out.update(_conv("decoder.N_conv", 1, 1, 3))
    out.update(_conv("decoder.asr_res.0", hid, 64, 1))
    # the generator
    rates, kernels = list(c["upsample_rates"]), list(c["upsample_kernel_sizes"])
    ch0, n_fft = int(c["upsample_initial_channel"]), int(c["gen_istft_n_fft"])
    g = "decoder.generator"
    out.update(_linear(f"{g}.m_source.l_linear", 9, 1))  # harmonic_num=8: 9 sine harmonics merged
    for i, k in enumerate(kernels):
        ch = ch0 // 2 ** (i + 1)
        out[f"{g}.ups.{i}.weight"] = (ch0 // 2**i, ch, k)
        out[f"{g}.ups.{i}.bias"] = (ch,)
        for j, rk in enumerate(c["resblock_kernel_sizes"]):
            out.update(
                _adain_resblock1(f"{g}.resblocks.{i * len(c['resblock_kernel_sizes']) + j}", ch, int(rk), sty)
            )
        if i + 1 < len(rates):
            stride = math.prod(rates[i + 1 :])
            out.update(_conv(f"{g}.noise_convs.{i}", n_fft + 2, ch, 2 * stride))
            out.update(_adain_resblock1(f"{g}.noise_res.{i}", ch, 7, sty))
        else:
            out.update(_conv(f"{g}.noise_convs.{i}", n_fft + 2, ch, 1))
            out.update(_adain_resblock1(f"{g}.noise_res.{i}", ch, 11, sty))
    out.update(_conv(f"{g}.conv_post", ch0 // 2 ** len(rates), n_fft + 2, 7))
    return out


def check_state_dict(
    state: Mapping[str, np.ndarray], config: KokoroConfig, source: str
) -> dict[str, np.ndarray]:
    """`state` as canonical float32 arrays, or a WeightsError naming what is missing, extra or misshapen."""
    expected = canonical_shapes(config)
    missing = sorted(expected.keys() - state.keys())
    extra = sorted(state.keys() - expected.keys())
    if missing or extra:
        raise WeightsError(
            f"{source} is not a Kokoro-82M checkpoint of this shape: missing {missing[:6]}"
            f"{f' (+{len(missing) - 6})' if len(missing) > 6 else ''}, unexpected {extra[:6]}"
            f"{f' (+{len(extra) - 6})' if len(extra) > 6 else ''}"
        )
    out: dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        value = state[name]
        if tuple(value.shape) != shape:
            raise WeightsError(f"{source}: {name} has shape {tuple(value.shape)}, Kokoro expects {shape}")
        out[name] = np.array(value, dtype=np.float32, order="C")  # owned and writable
    return out


def fold_weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """torch's `_weight_norm(v, g, dim=0)`: g·v/‖v‖, the norm over every axis but the first."""
    v64 = v.astype(np.float64)
    norm = np.sqrt((v64 * v64).reshape(v.shape[0], -1).sum(axis=1)).reshape((-1,) + (1,) * (v.ndim - 1))
    return (g.astype(np.float64).reshape(norm.shape) * v64 / norm).astype(np.float32)
