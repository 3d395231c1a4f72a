"""The CPU backend (`CPUEncoder`, `CPUDecoder`/`CPUSession`) against the MLX model it stands in for, on the
real tiny.en and base weights: same numbers to float32 rounding; and `choose_backend` picks it only where
it applies, saying why."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from models.cpu import kernels as ckernels
from models.errors import WeightsError
from models.whisper.audio import log_mel_spectrogram
from models.whisper.constants import N_FRAMES, N_SAMPLES, SAMPLE_LEN
from models.whisper.cpu_backend import CPUBackend, CPUDecoder, CPUSession
from models.whisper.cpu_encoder import CPUEncoder
from models.whisper.family import WhisperTranscriber, choose_backend
from models.whisper.mlx_backend import MLXBackend, MLXSession
from models.whisper.model import Whisper
from tests.support.audio import load_audio as _audio
from tests.support.whisper import load_tokenizer, load_whisper

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_en_dir: Path) -> Whisper:
    return load_whisper(tiny_en_dir)


@pytest.fixture(params=["kernels", "numpy"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both CPU paths: with the C kernels (`models.cpu.kernels`) and without them (an install that
    could not build them), which must give the same numbers."""
    if request.param == "numpy":
        monkeypatch.setattr(ckernels, "_hk", None)
    elif not ckernels.fast_half():  # kernels absent or no AVX2/F16C: the "numpy" case covers this install
        pytest.skip("the C kernels' float16 path does not run here")
    return str(request.param)


def _mel(*names: str) -> mx.array:
    mels = [log_mel_spectrogram(mx.array(_audio(n)), 80, padding=N_SAMPLES)[:N_FRAMES] for n in names]
    return mx.stack(mels)


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize(("model_name", "frames"), [("tiny", N_FRAMES), ("base", N_FRAMES), ("tiny", 1200)])
def test_cpu_encoder_matches_mlx_encoder(
    model_name: str, frames: int, tiny: Whisper, base_dir: Path, kernels: str
) -> None:
    """Whole windows, and a fitted one (a draft's first 12 s: `TranscribeOptions.draft`)."""
    model = tiny if model_name == "tiny" else load_whisper(base_dir)
    mel = _mel("jfk", "beckett")[:, :frames]  # two windows in one batch
    want = model.cross_kv(model.embed_audio(mel))
    got = CPUEncoder(model)(np.array(mel))
    assert len(got) == model.config.n_text_layer
    b, t, d = 2, frames // 2, model.config.n_text_state
    heads = (b, t, model.config.n_text_head, d // model.config.n_text_head)
    for (wk, wv), (gk, gv) in zip(want, got, strict=True):
        assert gk.shape == gv.shape == (b, t, d)
        for g, w in ((gk, wk), (gv, wv)):
            # float32 sums in another order (BLAS blocking, numpy softmax, A&S erf against MLX's exact erf)
            # through every layer: measured 2.3e-4 of the scale for base, less for tiny.en
            assert _rel(g.reshape(heads).transpose(0, 2, 1, 3), np.array(w)) < 5e-4


def test_cpu_encoder_rejects_a_wrong_frame_count(tiny: Whisper) -> None:
    for frames in (2999, 3002, 0):
        with pytest.raises(ValueError, match="even number of frames ≤ 3000"):
            CPUEncoder(tiny)(np.zeros((1, frames, 80), np.float32))
        with pytest.raises(ValueError, match=r"2·t ≤ 3000"):
            tiny.embed_audio(mx.zeros((1, frames, 80)))


def _sessions(model: Whisper, mel: mx.array) -> tuple[CPUSession, MLXSession]:
    xkv = model.cross_kv(model.embed_audio(mel))
    mx.eval(xkv)
    cfg = model.config
    ref = MLXSession(model, xkv, model.make_step(), fixed_capacity=False, host_logits=True)
    return CPUSession(CPUDecoder(model), xkv, cfg.n_vocab, cfg.n_text_ctx, SAMPLE_LEN), ref


def test_cpu_decoder_steps_match_mlx_with_left_padding(
    tiny: Whisper, tiny_en_dir: Path, kernels: str
) -> None:
    tok = load_tokenizer(tiny_en_dir, tiny.config)
    host, ref = _sessions(tiny, _mel("jfk", "two_cities_16k"))
    assert (host.decoder.output.half is not None) == (kernels == "kernels")
    sot = list(tok.sot_sequence)
    prompts = [sot, [tok.sot_prev, *tok.encode(" earlier text of this request"), *sot]]  # row 0 is padded
    sot_index = [0, len(prompts[1]) - len(sot)]
    (h_last, h_sot), (r_last, r_sot) = host.prefill(prompts, sot_index), ref.prefill(prompts, sot_index)
    assert _rel(np.array(h_last), np.array(r_last)) < 1e-5
    assert _rel(np.array(h_sot), np.array(r_sot)) < 1e-5
    tokens = mx.argmax(r_last, axis=-1)
    for _ in range(12):  # both sessions fed the reference's greedy choices
        h, r = host.step(tokens), ref.step(tokens)
        assert h.shape == r.shape == (2, tiny.config.n_vocab)
        assert _rel(np.array(h), np.array(r)) < 1e-5
        assert np.array_equal(np.argmax(np.array(h), -1), np.array(mx.argmax(r, -1)))
        tokens = mx.argmax(r, axis=-1)
    assert host.offset == ref.offset


def test_cpu_beams_share_audio_and_reorder_like_mlx(tiny: Whisper, tiny_en_dir: Path, kernels: str) -> None:
    tok = load_tokenizer(tiny_en_dir, tiny.config)
    host, ref = _sessions(tiny, _mel("jfk", "beckett"))
    prompts = [list(tok.sot_sequence)] * 2
    host.prefill(prompts, [0, 0])
    ref.prefill(prompts, [0, 0])
    expand = mx.array([0, 0, 0, 1, 1, 1])  # three beams per audio
    host.reorder(expand)
    ref.reorder(expand)
    assert host.cross[0][0].shape[0] == 2  # the audio's keys are not copied per beam
    tokens = mx.array([440, 1820, 50364, 440, 383, 50364])
    for order in ([2, 0, 1, 5, 5, 3], [0, 1, 2, 3, 4, 5], [1, 1, 1, 4, 3, 4]):
        h, r = host.step(tokens), ref.step(tokens)
        assert _rel(np.array(h), np.array(r)) < 1e-5
        host.reorder(mx.array(order))
        ref.reorder(mx.array(order))
        tokens = mx.argmax(r, axis=-1)
    assert _rel(np.array(host.step(tokens)), np.array(ref.step(tokens))) < 1e-5
    assert host.audio_of_row.tolist() == [0, 0, 0, 1, 1, 1]  # row 5 stayed on the second audio


def test_choose_backend_picks_the_cpu_backend_for_float32_and_says_why(
    tiny: Whisper, tiny_en_dir: Path, kernels: str
) -> None:
    tok = load_tokenizer(tiny_en_dir, tiny.config)
    backend = choose_backend(tiny, tok)
    assert isinstance(backend, CPUBackend)
    if kernels == "numpy":
        assert backend.name == "cpu-numpy" and "not built" in backend.reason
    elif ckernels.fast_half():
        assert backend.name == "cpu-f16-kernels" and "float16 copies" in backend.reason
    features = backend.encode(_mel("jfk"))
    assert isinstance(backend.session(features), CPUSession)
    want = tiny.cross_kv(tiny.embed_audio(_mel("jfk")))
    assert _rel(np.array(features[0][0]), np.array(want[0][0])) < 2e-4  # same layout as the MLX path


def test_choose_backend_falls_back_to_mlx_where_the_cpu_backend_cannot_run(tiny_en_dir: Path) -> None:
    half = load_whisper(tiny_en_dir, dtype=mx.float16)
    tok = load_tokenizer(tiny_en_dir, half.config)
    backend = choose_backend(half, tok)
    assert isinstance(backend, MLXBackend) and backend.name == "mlx" and not backend.compiled
    assert "float16 weights" in backend.reason
    session = backend.session(backend.encode(_mel("jfk")))
    assert isinstance(session, MLXSession) and session.host_logits  # numpy token choice on the CPU
    with pytest.raises(WeightsError, match=r"cannot run this model: mlx\.core\.float16"):
        choose_backend(half, tok, "cpu")
    with pytest.raises(WeightsError, match="must be one of mlx, cpu"):
        choose_backend(half, tok, "metal")


def test_the_mlx_backend_can_be_forced_on_the_cpu(tiny_en_dir: Path) -> None:
    model = load_whisper(tiny_en_dir)
    tr = WhisperTranscriber(model, load_tokenizer(tiny_en_dir, model.config), backend="mlx")
    assert tr.details == {
        "backend": "mlx",
        "backend_reason": "requested (options.backend = 'mlx'): the MLX model, eager",
    }
    assert tr.host_nbytes == 0
    assert model.decoder.projection_copy  # the MLX logits read the row-contiguous copy


needs_half = pytest.mark.skipif(
    not ckernels.fast_half(), reason="the C kernels' float16 path is not built or has no AVX2/F16C here"
)


@needs_half
@pytest.mark.parametrize("model_name", ["tiny", "base"])
def test_real_checkpoints_are_exact_float16_and_the_half_step_matches(
    model_name: str, tiny: Whisper, tiny_en_dir: Path, base_dir: Path
) -> None:
    # The published Whisper weights are float16: every decoder weight of the float32 model survives the
    # round trip, so the step reads half copies (the C kernels) with the float32 model's values.
    model = tiny if model_name == "tiny" else load_whisper(base_dir)
    half = CPUDecoder(model, half=True)
    assert half.output.half is not None
    linears = [lin for blk in half.blocks for lin in (blk.mlp1, blk.mlp2, blk.attn.query, blk.cross.out)]
    assert all(lin.half is not None for lin in linears)
    plain = CPUDecoder(model, half=False)
    assert plain.output.half is None and plain.blocks[0].mlp1.half is None
    xkv = model.cross_kv(model.embed_audio(_mel("jfk", "beckett")))
    mx.eval(xkv)
    cfg = model.config
    sessions = [CPUSession(d, xkv, cfg.n_vocab, cfg.n_text_ctx, SAMPLE_LEN) for d in (half, plain)]
    sot = [50257] if model_name == "tiny" else [50258, 50259, 50359]
    for s in sessions:
        s.prefill([sot, sot], [0, 0])
        s.reorder(mx.array([0, 0, 1, 1, 1]))  # beams: several rows of one audio per product
    tokens = mx.array([440, 383, 50364, 1002, 50364])
    for _ in range(6):
        got, want = (np.array(s.step(tokens)) for s in sessions)
        assert _rel(got, want) < 1e-5  # the same products, summed in another order
        tokens = mx.array(np.argmax(want, axis=-1))


@needs_half
def test_the_load_counts_the_host_copies(tiny_en_dir: Path) -> None:
    model = load_whisper(tiny_en_dir)
    tr = WhisperTranscriber(model, load_tokenizer(tiny_en_dir, model.config))
    cfg = model.config
    d, layers = cfg.n_text_state, cfg.n_text_layer
    # float16 copies of the tied embedding and, per layer, 6 d×d products and the 2 MLP ones (4d×d)
    want = 2 * (cfg.n_vocab * d + layers * (6 * d * d + 2 * 4 * d * d))
    assert tr.host_nbytes == want  # 56 MB for tiny.en
