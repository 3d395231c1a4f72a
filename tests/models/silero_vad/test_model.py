"""Tier 1, random weights: framing, the checkpoint sanitizer, the numpy front end against the MLX module,
and the recurrent scan against a plain LSTM cell written out gate by gate."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from models.errors import WeightsError
from models.silero_vad.model import CONV_WEIGHTS, SileroVad, SileroVadConfig, frame, parameters, sanitize
from models.silero_vad.vad import HostFrontEnd, LstmScan, _im2col

CONFIG = SileroVadConfig()


def random_model(seed: int = 0) -> SileroVad:
    rng = np.random.default_rng(seed)
    model = SileroVad(CONFIG)
    params = [(k, mx.array(rng.normal(0, 0.1, v.shape).astype(np.float32))) for k, v in parameters(model)]
    model.load_weights(params, strict=True)
    return model


def test_config_round_trip_drops_unknown_keys() -> None:
    data = CONFIG.to_dict()
    assert data["model_type"] == "silero_vad"
    assert SileroVadConfig.from_dict({**data, "quantization": None}) == CONFIG
    assert (CONFIG.n_bins, CONFIG.input_size) == (129, 576)


def test_frame_prepends_context_and_zero_pads_the_last_window() -> None:
    audio = np.arange(1, 1201, dtype=np.float32)  # 2 full windows + 176 samples
    windows = frame(audio, CONFIG)
    assert windows.shape == (3, 576)
    np.testing.assert_array_equal(windows[0], np.concatenate([np.zeros(64), audio[:512]]))
    np.testing.assert_array_equal(windows[1], audio[448:1024])
    np.testing.assert_array_equal(windows[2], np.concatenate([audio[960:1200], np.zeros(336)]))
    assert frame(np.zeros(0, np.float32), CONFIG).shape == (0, 576)
    assert frame(np.zeros(512, np.float32), CONFIG).shape == (1, 576)


@pytest.mark.parametrize(("t", "stride"), [(1, 1), (2, 2), (4, 1), (4, 2), (5, 2)])
def test_im2col_is_a_padded_kernel_3_conv_input(t: int, stride: int) -> None:
    h = np.random.default_rng(t).normal(size=(3, t, 5)).astype(np.float32)
    padded = np.pad(h, ((0, 0), (1, 1), (0, 0)))
    t_out = (t - 1) // stride + 1
    expected = np.concatenate(
        [padded[:, k : k + stride * (t_out - 1) + 1 : stride] for k in range(3)], axis=2
    )
    np.testing.assert_array_equal(_im2col(h, stride), expected)


def test_host_front_end_matches_the_mlx_module() -> None:
    model = random_model()
    windows = np.random.default_rng(1).normal(0, 0.3, (37, 576)).astype(np.float32)
    ours = HostFrontEnd(model)(windows)
    ref = np.array(model(mx.array(windows)))
    assert ours.shape == ref.shape == (37, 128)
    np.testing.assert_allclose(ours, ref, atol=2e-5 * np.abs(ref).max())
    # batches are independent: one batch of 37 == the windows one at a time
    single = np.concatenate([np.array(model(mx.array(windows[i : i + 1]))) for i in range(3)])
    np.testing.assert_allclose(single, ref[:3], atol=1e-5 * np.abs(ref).max())


def lstm_reference(model: SileroVad, features: np.ndarray) -> np.ndarray:
    """torch.nn.LSTMCell's equations (gates i, f, g, o), then ReLU, the 1×1 conv and a sigmoid."""
    cell = model.lstm_cell
    w_ih, w_hh = np.array(cell.weight_ih, np.float64), np.array(cell.weight_hh, np.float64)
    bias = np.array(cell.bias_ih, np.float64) + np.array(cell.bias_hh, np.float64)
    head_w = np.array(model.final_conv.weight, np.float64).reshape(-1)
    head_b = float(np.array(model.final_conv.bias)[0])
    h, c = np.zeros(128), np.zeros(128)
    out = []
    for x in features.astype(np.float64):
        z = w_ih @ x + w_hh @ h + bias
        i, f, g, o = (z[k * 128 : (k + 1) * 128] for k in range(4))
        c = 1 / (1 + np.exp(-f)) * c + 1 / (1 + np.exp(-i)) * np.tanh(g)
        h = 1 / (1 + np.exp(-o)) * np.tanh(c)
        out.append(1 / (1 + np.exp(-(np.maximum(h, 0) @ head_w + head_b))))
    return np.array(out)


def test_scan_matches_the_lstm_cell_equations_and_carries_state() -> None:
    model = random_model(2)
    features = np.random.default_rng(3).normal(0, 1.0, (50, 128)).astype(np.float32)
    scan = LstmScan(model)
    probs, _ = scan(features)
    assert probs.dtype == np.float32 and probs.shape == (50,)
    np.testing.assert_allclose(probs, lstm_reference(model, features), atol=2e-6)
    first, state = scan(features[:20])
    rest, _ = scan(features[20:], state)
    np.testing.assert_allclose(np.concatenate([first, rest]), probs, atol=1e-7)
    empty, (h, c) = scan(features[:0])
    assert empty.shape == (0,) and not h.any() and not c.any()


def package_like_tensors() -> dict[str, np.ndarray]:
    """Random tensors in the package's (torch) layout."""
    ours = dict(parameters(SileroVad(CONFIG)))
    rng = np.random.default_rng(4)
    out = {}
    for key, value in ours.items():
        shape = tuple(value.shape)
        if key in CONV_WEIGHTS:
            shape = (shape[0], shape[2], shape[1])
        out[key] = rng.normal(size=shape).astype(np.float32)
    return out


def test_sanitize_transposes_exactly_the_conv_weights() -> None:
    tensors = package_like_tensors()
    out = sanitize(tensors, CONFIG)
    assert out.keys() == tensors.keys()
    for key, value in tensors.items():
        expected = value.transpose(0, 2, 1) if key in CONV_WEIGHTS else value
        np.testing.assert_array_equal(out[key], expected)
    assert out["stft_conv.weight"].shape == (258, 256, 1) and out["lstm_cell.weight_hh"].shape == (512, 128)


def test_sanitize_refuses_missing_unknown_and_misshapen_tensors() -> None:
    tensors = package_like_tensors()
    with pytest.raises(WeightsError, match="missing"):
        sanitize({k: v for k, v in tensors.items() if k != "conv2.bias"}, CONFIG)
    with pytest.raises(WeightsError, match="unexpected"):
        sanitize({**tensors, "extra.weight": np.zeros(1, np.float32)}, CONFIG)
    with pytest.raises(WeightsError, match=r"conv1\.weight"):
        sanitize({**tensors, "conv1.weight": tensors["conv1.weight"].transpose(0, 2, 1)}, CONFIG)
