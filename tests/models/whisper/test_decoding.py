"""The two halves of every decoding branch, on the CPU: the MLX logit rules against the numpy ones on the
same logits, and greedy and beam search through the MLX backend's device-side token choice against the CPU
backend's host one, on the real tiny.en weights (the GPU runs the device side; `make test` runs both here).
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from models.batching import collect_transcription
from models.tasks import TranscribeOptions
from models.whisper.audio import log_mel_spectrogram
from models.whisper.constants import N_FRAMES, N_SAMPLES
from models.whisper.decoding import DecodeOptions, LogitRules, beam_search_decode, greedy_decode
from models.whisper.family import WhisperTranscriber
from models.whisper.mlx_backend import MLXBackend, MLXSession
from models.whisper.tokenizer import WhisperTokenizer
from tests.support.audio import load_audio
from tests.support.whisper import load_tokenizer, load_whisper


@pytest.fixture(scope="module")
def tok(tiny_en_dir: Path) -> WhisperTokenizer:
    return load_tokenizer(tiny_en_dir, load_whisper(tiny_en_dir).config)


def _rows(tok: WhisperTokenizer) -> list[list[int]]:
    """Sampled prefixes that reach every timestamp rule: none yet, text, an opening timestamp, a closed pair,
    a pair then text, and a later timestamp (non-decreasing)."""
    ts = tok.timestamp_begin
    return [[], [440, 1820], [ts + 10], [ts + 10, 440, ts + 30], [ts, 440, ts + 20, ts + 20], [ts + 5, 383]]


@pytest.mark.parametrize("without_timestamps", [False, True])
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_mlx_and_numpy_logit_rules_agree(
    tok: WhisperTokenizer, without_timestamps: bool, scale: float
) -> None:
    """`LogitRules.apply` (MLX masks, the GPU's) and `apply_host` (numpy, the CPU's) on the same logits:
    the same entries suppressed and the rest untouched; `scale` makes the timestamp-vs-text rule bite."""
    n_vocab = tok.timestamp_begin + 1501
    rules = LogitRules(tok, n_vocab, DecodeOptions(without_timestamps=without_timestamps))
    rng = np.random.default_rng(int(scale) + without_timestamps)
    for rows in (_rows(tok), [[]] * 3):  # mixed rows; then a batch's first step (blank suppressed)
        logits = (scale * rng.standard_normal((len(rows), n_vocab))).astype(np.float32)
        logits[:, tok.timestamp_begin :] += scale  # timestamps likelier than usual: both rule outcomes occur
        device = np.array(rules.apply(mx.array(logits), rows))
        host = rules.apply_host(logits, rows)
        assert np.array_equal(np.isneginf(device), np.isneginf(host))
        kept = ~np.isneginf(host)
        assert np.array_equal(device[kept], host[kept])
        assert np.isneginf(host).any(axis=-1).all()  # the rules did suppress something in every row


def _backends(tiny_en_dir: Path) -> tuple[MLXBackend, MLXBackend]:
    """The same MLX model and sessions, token choice on the host (numpy) and on the device (MLX)."""
    model = load_whisper(tiny_en_dir)
    tok = load_tokenizer(tiny_en_dir, model.config)
    host = MLXBackend(model, tok, compiled=False, host_logits=True, max_batch=4, reason="test")
    device = MLXBackend(model, tok, compiled=False, host_logits=False, max_batch=4, reason="test")
    return host, device


@pytest.mark.slow
def test_device_token_choice_matches_host_greedy_and_beam(tiny_en_dir: Path) -> None:
    host, device = _backends(tiny_en_dir)
    mels = [
        log_mel_spectrogram(mx.array(load_audio(n)), 80, padding=N_SAMPLES)[:N_FRAMES]
        for n in ("jfk", "beckett")
    ]
    features = device.encode(mx.stack(mels))
    tok = device.tokenizer
    sot = list(tok.sot_sequence)
    prompts = [sot, [tok.sot_prev, *tok.encode(" Fail better."), *sot]]  # rows of different lengths
    sot_index = [0, len(prompts[1]) - len(sot)]
    for options in (DecodeOptions(), DecodeOptions(beam_size=5)):
        decode = beam_search_decode if options.beam_size else greedy_decode
        on_device = device.session(features)
        assert isinstance(on_device, MLXSession) and not on_device.host_logits
        got = decode(on_device, prompts, sot_index, tok, options)
        want = decode(host.session(features), prompts, sot_index, tok, options)
        for g, w in zip(got, want, strict=True):
            assert g.tokens == w.tokens and len(g.tokens) > 10
            # MLX's CPU reductions add the 51864 exponentials in float32, in order (numpy: pairwise, the
            # host path: float64): measured ≤ 5.1e-4 per token's log-probability here
            np.testing.assert_allclose(g.token_logprobs, w.token_logprobs, rtol=0, atol=1e-3)
            assert g.no_speech_prob == pytest.approx(w.no_speech_prob, abs=1e-5)
    assert "fellow Americans" in tok.text(got[0].tokens)


@pytest.mark.slow
def test_both_backends_transcribe_alike(tiny_en_dir: Path) -> None:
    """The whole loop, words included, through the forced MLX backend and the CPU backend."""
    model = load_whisper(tiny_en_dir)
    tok = load_tokenizer(tiny_en_dir, model.config)
    audio = load_audio("jfk")
    options = TranscribeOptions(word_timestamps=True, beam_size=5)
    results = []
    for backend in ("mlx", None):
        tr = WhisperTranscriber(model, tok, backend=backend)
        results.append(collect_transcription(tr.transcribe_stream(audio, options)))
    mlx, cpu = results
    assert mlx.text == cpu.text and "ask not what your country" in cpu.text
    assert [w.word for w in mlx.words] == [w.word for w in cpu.words]
    assert max(abs(a.start - b.start) for a, b in zip(mlx.words, cpu.words, strict=True)) <= 0.02
