"""The Whisper module on a tiny random config: shapes, dtypes, batching, the KV cache, compile, alignment."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from models.whisper.config import PRESETS, WhisperConfig
from models.whisper.model import Whisper

TINY = WhisperConfig(
    n_mels=16,
    n_audio_ctx=12,
    n_audio_state=32,
    n_audio_head=4,
    n_audio_layer=2,
    n_vocab=100,
    n_text_ctx=16,
    n_text_state=32,
    n_text_head=4,
    n_text_layer=3,
    alignment_heads=((2, 1), (1, 3), (2, 0)),
)


def _model(dtype: mx.Dtype = mx.float32, config: WhisperConfig = TINY, seed: int = 0) -> Whisper:
    mx.random.seed(seed)
    model = Whisper(config, dtype=dtype)
    # Random init leaves LayerNorms at identity and the decoder table at zero: perturb everything.
    params = [
        (k, (v + 0.1 * mx.random.normal(v.shape)).astype(dtype)) for k, v in tree_flatten(model.parameters())
    ]
    model.load_weights(params, strict=True)
    mx.eval(model.parameters())
    return model


def _inputs(batch: int, seed: int = 1) -> tuple[mx.array, mx.array]:
    rng = np.random.default_rng(seed)
    mel = mx.array(rng.standard_normal((batch, 2 * TINY.n_audio_ctx, TINY.n_mels)).astype(np.float32))
    tokens = mx.array(rng.integers(0, TINY.n_vocab, (batch, 7)).astype(np.int32))
    return mel, tokens


def _close(a: mx.array, b: mx.array, atol: float = 2e-5) -> bool:
    return bool(np.abs(np.array(a, dtype=np.float32) - np.array(b, dtype=np.float32)).max() <= atol)


def test_config_from_dict_drops_unknown_keys_and_round_trips() -> None:
    raw = {**TINY.to_dict(), "quantization": {"bits": 4}, "architectures": ["x"]}
    assert WhisperConfig.from_dict(raw) == TINY
    assert TINY.to_dict()["alignment_heads"] == [[2, 1], [1, 3], [2, 0]]
    with pytest.raises(ValueError, match="alignment head"):
        WhisperConfig.from_dict({**raw, "alignment_heads": [[3, 0]]})


@pytest.mark.parametrize(
    ("name", "mels", "vocab", "layers", "languages"),
    [
        ("tiny.en", 80, 51864, (4, 4), 99),
        ("tiny", 80, 51865, (4, 4), 99),
        ("base", 80, 51865, (6, 6), 99),
        ("small.en", 80, 51864, (12, 12), 99),
        ("medium", 80, 51865, (24, 24), 99),
        ("large-v2", 80, 51865, (32, 32), 99),
        ("large-v3", 128, 51866, (32, 32), 100),
        ("large-v3-turbo", 128, 51866, (32, 4), 100),
    ],
)
def test_presets(name: str, mels: int, vocab: int, layers: tuple[int, int], languages: int) -> None:
    c = WhisperConfig.preset(name)
    assert (c.n_mels, c.n_vocab, (c.n_audio_layer, c.n_text_layer), c.num_languages) == (
        mels,
        vocab,
        layers,
        languages,
    )
    assert c.is_multilingual == (not name.endswith(".en"))
    assert len(PRESETS) == 12


def test_shapes_and_dtypes() -> None:
    model = _model()
    mel, tokens = _inputs(2)
    features = model.embed_audio(mel)
    assert features.shape == (2, 12, 32) and features.dtype == mx.float32
    xkv = model.cross_kv(features)
    assert len(xkv) == 3 and all(k.shape == v.shape == (2, 4, 12, 8) for k, v in xkv)
    cache = model.init_cache(2)
    assert all(k.shape == (2, 4, 16, 8) for k, _ in cache)
    logits, cache, qk = model.decode(tokens, xkv, cache, 0, return_qk=True)
    assert logits.shape == (2, 7, 100) and logits.dtype == mx.float32
    assert qk is not None and qk.shape == (2, 3, 7, 12) and qk.dtype == mx.float32
    assert model.alignment_heads == [(1, 3), (2, 0), (2, 1)]
    with pytest.raises(ValueError, match="mel must be"):
        model.embed_audio(mel[:, :-1])


def test_float16_model() -> None:
    model = _model(mx.float16)
    mel, tokens = _inputs(1)
    features = model.embed_audio(mel)
    assert features.dtype == mx.float16 and model.dtype == mx.float16
    logits = model.logits(tokens, features)
    assert logits.dtype == mx.float32
    reference = _model(mx.float32).logits(tokens, _model(mx.float32).embed_audio(mel))
    # Same (fp16-rounded) init, computed in fp16: close to fp32, far from bit-equal.
    assert np.abs(np.array(logits) - np.array(reference)).max() < 0.05 * np.abs(np.array(reference)).max()


def test_batch_of_two_equals_two_batches_of_one() -> None:
    model = _model()
    mel, tokens = _inputs(2)
    features = model.embed_audio(mel)
    logits = model.logits(tokens, features)
    for i in range(2):
        single = model.embed_audio(mel[i : i + 1])
        assert _close(features[i : i + 1], single)
        assert _close(logits[i : i + 1], model.logits(tokens[i : i + 1], single))


def test_cached_decoding_equals_full_forward() -> None:
    model = _model()
    mel, tokens = _inputs(2)
    xkv = model.cross_kv(model.embed_audio(mel))
    full, _, full_qk = model.decode(tokens, xkv, model.init_cache(2), 0, return_qk=True)
    assert _close(full, model.logits(tokens, model.embed_audio(mel)))

    # Prefill 3 tokens, then one token per step (int offsets).
    logits, cache, qk = model.decode(tokens[:, :3], xkv, model.init_cache(2), 0, return_qk=True)
    steps, qks = [logits], [qk]
    for t in range(3, 7):
        logits, cache, qk = model.decode(tokens[:, t : t + 1], xkv, cache, t, return_qk=True)
        steps.append(logits)
        qks.append(qk)
    assert _close(mx.concatenate(steps, axis=1), full)
    assert _close(mx.concatenate(qks, axis=2), full_qk)

    # Prefill 2, then a chunk of 5 at an array offset, in a cache just long enough.
    _, cache, _ = model.decode(tokens[:, :2], xkv, model.init_cache(2, 7), mx.array(0))
    chunk, _, _ = model.decode(tokens[:, 2:], xkv, cache, mx.array(2))
    assert _close(chunk, full[:, 2:])


def test_compiled_decode_step_equals_eager() -> None:
    model = _model()
    mel, tokens = _inputs(1)
    xkv = model.cross_kv(model.embed_audio(mel))
    step = mx.compile(lambda tok, kv, cache, offset: model.decode(tok, kv, cache, offset)[:2])
    cache_eager = cache_compiled = model.init_cache(1)
    for t in range(7):
        tok = tokens[:, t : t + 1]
        eager, cache_eager, _ = model.decode(tok, xkv, cache_eager, mx.array(t))
        compiled, cache_compiled = step(tok, xkv, cache_compiled, mx.array(t))
        assert _close(eager, compiled)


def test_alignment_scores_are_presoftmax_cross_attention() -> None:
    model = _model()
    mel, tokens = _inputs(1)
    features = model.embed_audio(mel)
    _, _, qk = model.decode(tokens, model.cross_kv(features), model.init_cache(1), 0, return_qk=True)
    assert qk is not None
    # Recompute layer 1 head 3 by hand: run the blocks up to layer 1's cross-attention.
    dec = model.decoder
    x = dec.token_embedding(tokens) + dec.positional_embedding[:7]
    mask = nn.MultiHeadAttention.create_additive_causal_mask(7)
    for block in dec.blocks[:1]:
        h = block.attn_ln(x)
        q, k, v = (block.attn.split(f(h)) for f in (block.attn.query, block.attn.key, block.attn.value))
        x = x + block.attn.attend(q, k, v, mask)
        q = block.cross_attn.split(block.cross_attn.query(block.cross_attn_ln(x)))
        x = x + block.cross_attn.attend(q, *block.cross_attn.keys_values(features))
        x = x + block.mlp(x)
    b1 = dec.blocks[1]
    h = b1.attn_ln(x)
    q, k, v = (b1.attn.split(f(h)) for f in (b1.attn.query, b1.attn.key, b1.attn.value))
    x = x + b1.attn.attend(q, k, v, mask)
    q = b1.cross_attn.split(b1.cross_attn.query(b1.cross_attn_ln(x)))
    k, _ = b1.cross_attn.keys_values(features)
    manual = (q[:, 3] @ k[:, 3].swapaxes(-1, -2)) / np.sqrt(8)
    assert _close(qk[:, 0], manual, atol=1e-4)  # row 0 of the sorted heads is (1, 3)


def test_default_alignment_heads_are_the_last_half_of_the_decoder() -> None:
    model = Whisper(WhisperConfig.from_dict({**TINY.to_dict(), "alignment_heads": None}))
    assert model.alignment_heads == [(1, h) for h in range(4)] + [(2, h) for h in range(4)]


def test_projection_follows_weight_updates_and_quantization() -> None:
    model = _model()
    model.decoder.projection_copy = True  # as the MLX backend sets it
    model.decoder.refresh_projection()
    assert model.decoder._proj is not None
    mel, tokens = _inputs(1)
    features = model.embed_audio(mel)
    before = model.logits(tokens, features)
    emb = model.decoder.token_embedding.weight
    model.load_weights([("decoder.token_embedding.weight", emb * 2)], strict=False)
    after = model.logits(tokens, features)
    assert not _close(before, after, atol=1e-3)
    hidden_check = model.decoder.project(mx.ones((1, 1, 32)))
    assert _close(hidden_check, mx.ones((1, 1, 32)) @ (emb * 2).T, atol=1e-4)
    # A replaced table without `update` (stale copy) still gives the right answer.
    model.decoder.token_embedding.weight = emb
    assert _close(model.logits(tokens, features), before)
    nn.quantize(model, group_size=32, bits=8)
    assert isinstance(model.decoder.token_embedding, nn.QuantizedEmbedding)
    quantized = model.logits(tokens, features)
    assert quantized.shape == before.shape
    assert np.abs(np.array(quantized) - np.array(before)).max() < 0.05 * np.abs(np.array(before)).max()


@pytest.mark.parametrize("padded", [False, True])
def test_make_step_compiled_equals_eager(padded: bool) -> None:
    """The step the MLX backend compiles on a GPU against the eager one it runs on the CPU, with and without
    left padding, over several steps of a fixed-capacity cache."""
    model = _model()
    mel, tokens = _inputs(2)
    xkv = model.cross_kv(model.embed_audio(mel))
    pad = mx.array([2, 0], dtype=mx.int32) if padded else None
    eager, compiled = model.make_step(compile=False), model.make_step(compile=True)
    cache_e = cache_c = model.init_cache(2)
    for t in range(7):
        tok = tokens[:, t : t + 1].astype(mx.int32)
        offset = mx.array(t, dtype=mx.int32)
        le, cache_e = eager(tok, xkv, cache_e, offset, pad)
        lc, cache_c = compiled(tok, xkv, cache_c, offset, pad)
        assert le.shape == lc.shape == (2, 1, TINY.n_vocab)
        assert _close(le, lc)
    assert _close(cache_e[-1][0], cache_c[-1][0])
