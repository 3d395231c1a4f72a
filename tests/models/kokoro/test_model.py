"""Our MLX Kokoro vs hexgrad's PyTorch `KModel` holding the same weights (the int8 ONNX export,
dequantized), module by module and end to end; vs onnxruntime on the int8 file itself; and the properties a
server relies on (a batch row equals the row alone, seeded noise).

The decoder is chaotic in one respect: its harmonic source enters through STFT magnitudes and phases, and
the phases of near-silent bins are numerically arbitrary (in torch as in MLX), so a relative change of 1e-6
in F0 moves the waveform by up to a sixth of its peak while the spectrogram moves by ~0.1 dB. Waveforms are
compared sample by sample only where both sides are given the same source.

Bounds, float32 on this CPU:
- every stage up to the decoder's input: max abs difference ≤ 1e-3 of the tensor's scale, durations equal;
- the generator given the same harmonic source: max abs difference ≤ 1e-3 of the peak;
- end to end (both without source noise): same durations and length; the waveforms are not compared
  sample by sample: the source's STFT phases of near-silent bins are numerically arbitrary (in torch as in
  MLX) and feed the generator, so the comparison is on log-mel spectrograms (mean |Δ| in dB);
- vs onnxruntime (which also quantizes activations to int8 on the fly): durations within 1 frame on most
  tokens, log-mel mean |Δ| looser.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from models.kokoro.config import KokoroConfig
from models.kokoro.model import HOP, Kokoro
from models.kokoro.weights import to_mlx
from models.weights import load_into
from tests.support.audio import mel_db
from tests.support.kokoro import (
    ONNX_ISTFT_GAIN,
    kokoro_state_dict,
    no_source_noise,
    onnx_synthesis,
    reference_kmodel,
    reference_synthesis,
    style_for,
    token_ids,
    voice_pack,
)

IDS = token_ids()  # "Hello world, this is Kokoro." as misaki spells it
SECOND = token_ids("ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ.")


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return kokoro_state_dict()


@pytest.fixture(scope="module")
def ours(state: dict[str, np.ndarray]) -> Kokoro:
    model = Kokoro(KokoroConfig.default())
    load_into(model, to_mlx(state))
    return model


@pytest.fixture(scope="module")
def style() -> np.ndarray:
    return style_for(voice_pack("af_heart"), IDS)


def _run(model: Kokoro, rows: list[list[int]], styles: np.ndarray, noise: float = 0.0, seeds=None):
    lengths = [len(r) for r in rows]
    step = model.token_bucket  # as `KokoroSynthesizer.synthesize` pads
    ids = np.zeros((len(rows), -(-max(lengths) // step) * step), np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return model(
        mx.array(ids),
        mx.array(lengths),
        mx.array(styles),
        mx.array(np.ones(len(rows), np.float32)),
        noise_scale=noise,
        seeds=seeds,
    )


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(a)).max())


@pytest.mark.reference
def test_every_stage_matches_kmodel(ours: Kokoro, state: dict[str, np.ndarray], style: np.ndarray) -> None:
    import torch

    ref = reference_kmodel(state)
    seen: dict[str, object] = {}

    def keep(name: str, inputs: bool = False):
        def hook(module, args, out):
            seen[name] = args if inputs else out

        return hook

    ref.bert.register_forward_hook(keep("bert"))
    ref.predictor.text_encoder.register_forward_hook(keep("d"))
    ref.text_encoder.register_forward_hook(keep("t_en"))
    ref.decoder.generator.register_forward_hook(keep("generator_in", inputs=True))
    ref.decoder.generator.noise_convs[0].register_forward_hook(keep("har", inputs=True))
    with no_source_noise():
        audio_ref, durations_ref = reference_synthesis(ref, IDS, style)

    ids = mx.array([IDS], dtype=mx.int32)
    lengths = mx.array([len(IDS)])
    st = mx.array(style)
    assert _rel(seen["bert"].numpy(), ours.bert(ids)) < 1e-4
    frames, d, t_en = ours.encode(ids, lengths, st, mx.array([1.0]))
    assert _rel(seen["d"].numpy(), d) < 1e-4
    assert _rel(seen["t_en"].numpy().transpose(0, 2, 1), t_en) < 1e-4
    durations = np.maximum(np.rint(np.array(frames[0])), 1).astype(np.int64)
    np.testing.assert_array_equal(durations, durations_ref)

    out = _run(ours, [IDS], style)
    np.testing.assert_array_equal(out.durations[0], durations_ref)
    assert len(out.audio[0]) == len(audio_ref) == durations_ref.sum() * HOP

    # the generator on the reference's own inputs: its decoder features, F0 curve and harmonic source
    x_ref, s_ref, f0_ref = (t.numpy() for t in seen["generator_in"])
    har_ref = seen["har"][0].numpy().transpose(0, 2, 1)
    gen = ours.decoder.generator
    y = gen(mx.array(x_ref.transpose(0, 2, 1)), mx.array(s_ref), mx.array(har_ref))
    assert _rel(audio_ref, np.array(y)[0]) < 1e-3
    # its source from the same F0: magnitudes equal, phases wherever a bin carries energy (the sine phases
    # accumulate over the utterance in float32, in both: 5e-3)
    har = np.array(gen.harmonics(mx.array(f0_ref), 0.0, None))
    n_freq = har.shape[-1] // 2
    assert _rel(har_ref[..., :n_freq], har[..., :n_freq]) < 5e-3
    loud = har_ref[..., :n_freq] > 1e-2
    phase_error = np.angle(np.exp(1j * (har_ref[..., n_freq:] - har[..., n_freq:])))
    assert np.abs(phase_error[loud]).max() < 5e-2, np.abs(phase_error[loud]).max()

    # end to end, each without source noise
    diff = np.abs(mel_db(audio_ref) - mel_db(out.audio[0]))
    assert diff.mean() < 1.5, diff.mean()
    torch.manual_seed(0)


@pytest.mark.reference
def test_close_to_onnxruntime_on_the_int8_file(ours: Kokoro, style: np.ndarray) -> None:
    (audio_onnx,) = onnx_synthesis(IDS, style)
    audio_onnx = audio_onnx / ONNX_ISTFT_GAIN  # its exported iSTFT is 1.5x torch.istft's amplitude
    audio = _run(ours, [IDS], style).audio[0]
    assert abs(len(audio) - len(audio_onnx)) <= 3 * HOP
    n = min(len(audio), len(audio_onnx))
    diff = np.abs(mel_db(audio_onnx[:n]) - mel_db(audio[:n]))
    print(f"log-mel distance from onnxruntime: {diff.mean():.2f} dB")
    assert diff.mean() < 2.0, diff.mean()


def test_a_row_in_a_batch_equals_the_row_alone(ours: Kokoro) -> None:
    """Durations equal and spectrograms equal to a fraction of a dB. Not sample by sample: a relative change
    of 1e-6 in the F0 curve alone (float32 summation order) moves the waveform by up to a sixth of its peak
    through the arbitrary phases of near-silent source bins, and its log-mel spectrogram by ~0.1 dB."""
    pack = voice_pack("af_heart")
    styles = np.concatenate([style_for(pack, IDS), style_for(voice_pack("am_echo"), SECOND)])
    both = _run(ours, [IDS, SECOND], styles)  # the decoder's masked batch (the GPU's path)
    noisy = _run(ours, [IDS, SECOND], styles, noise=1.0, seeds=[3, 4])
    for i, row in enumerate([IDS, SECOND]):
        alone = _run(ours, [row], styles[i : i + 1])
        np.testing.assert_array_equal(both.durations[i], alone.durations[0])
        assert len(both.audio[i]) == len(alone.audio[0])
        assert np.abs(mel_db(both.audio[i]) - mel_db(alone.audio[0])).mean() < 0.5
        # with the source's noise on, a row's noise comes from its own seed, batched or not
        noisy_alone = _run(ours, [row], styles[i : i + 1], noise=1.0, seeds=[3 + i]).audio[0]
        assert len(noisy.audio[i]) == len(noisy_alone)
        assert np.abs(mel_db(noisy.audio[i]) - mel_db(noisy_alone)).mean() < 0.5


def test_padded_shapes_do_not_change_the_audio(ours: Kokoro) -> None:
    """What a GPU load sets (`choose_backend`: tokens padded to multiples of 16, frames to multiples of 32,
    so MLX sees a few shapes): a row alone, padded, takes the masked batch path and gives the unpadded
    row's durations and spectrogram (to a fraction of a dB, as batched rows do)."""
    style = style_for(voice_pack("af_heart"), SECOND)
    alone = _run(ours, [SECOND], style, noise=1.0, seeds=[5])
    assert len(SECOND) % 16 and len(alone.audio[0]) // HOP % 32  # both axes really are padded
    try:
        ours.token_bucket, ours.frame_bucket = 16, 32
        padded = _run(ours, [SECOND], style, noise=1.0, seeds=[5])
    finally:
        ours.token_bucket = ours.frame_bucket = 1
    np.testing.assert_array_equal(padded.durations[0], alone.durations[0])
    assert len(padded.audio[0]) == len(alone.audio[0])
    assert np.abs(mel_db(padded.audio[0]) - mel_db(alone.audio[0])).mean() < 0.5


def test_source_noise_is_seeded(ours: Kokoro, style: np.ndarray) -> None:
    a = _run(ours, [IDS], style, noise=1.0, seeds=[7]).audio[0]
    b = _run(ours, [IDS], style, noise=1.0, seeds=[7]).audio[0]
    c = _run(ours, [IDS], style, noise=1.0, seeds=[8]).audio[0]
    quiet = _run(ours, [IDS], style).audio[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the noise changes the waveform, not what is said: the spectrogram stays close
    assert np.abs(mel_db(a) - mel_db(quiet)).mean() < 4.0
