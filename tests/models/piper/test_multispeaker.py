"""A multi-speaker Piper voice: no real one is reachable here, so piper-tts 1.8.0's own training model
(`piper.train.vits.models.SynthesizerTrn`, 3 speakers, small random weights) is exported to ONNX the way
its `export_onnx.py` does, converted by our loader, and held to onnxruntime on the same file for each
speaker, on both backends (the MLX model and the numpy CPU path); the server then lists its speakers as
voices and OpenAI's names map onto them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.errors import InvalidRequest
from models.families import get_family
from models.piper.family import PiperVoice, choose_backend
from models.piper.speech import PiperSynthesizer
from models.tasks import SpeechOptions
from tests.support.piper import ONNX_NAME

SPEAKERS = {"amy": 0, "bob": 1, "cat": 2}
IDS = [1, 0, 20, 0, 35, 0, 3, 0, 59, 0, 61, 0, 14, 0, 27, 0, 88, 0, 45, 0, 2]
MAX_ABS = 2e-4  # as for the real voice (tests/models/piper/test_parity.py)


def _torch_export(torch: Any, model: Any, example: tuple[Any, ...], onnx_path: Path) -> None:
    torch.onnx.export(
        model,
        (*example, torch.LongTensor([0])),
        str(onnx_path),
        opset_version=15,
        input_names=["input", "input_lengths", "scales", "sid"],
        output_names=["output"],
        dynamic_axes={
            "input": {0: "batch_size", 1: "phonemes"},
            "input_lengths": {0: "batch_size"},
            "output": {0: "batch_size", 2: "time"},
        },
        dynamo=False,
    )


def _export(out_dir: Path, package_data: Path) -> Path:
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("piper.train.vits.models")
    torch.manual_seed(0)
    model = models.SynthesizerTrn(
        n_vocab=256,
        spec_channels=513,
        segment_size=32,
        inter_channels=48,
        hidden_channels=64,
        filter_channels=128,
        n_heads=2,
        n_layers=2,
        kernel_size=3,
        p_dropout=0.0,
        resblock="2",
        resblock_kernel_sizes=(3, 5, 7),
        resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
        upsample_rates=(8, 8, 4),
        upsample_initial_channel=64,
        upsample_kernel_sizes=(16, 16, 8),
        n_speakers=len(SPEAKERS),
        gin_channels=32,
    )
    model.eval()
    with torch.no_grad():
        model.dec.remove_weight_norm()
        for (
            param
        ) in model.parameters():  # trained values: no two norms alike (the exporter shares equal ones)
            param.add_(0.02 * torch.randn_like(param))
        model.dp.flows[0].m.fill_(
            -1.0
        )  # the affine ends the reverse flow: log-durations near 1 (~3 frames per id)
        model.dp.flows[0].logs.mul_(0.1)

    def infer_forward(text: Any, text_lengths: Any, scales: Any, sid: Any = None) -> Any:
        audio = model.infer(
            text,
            text_lengths,
            noise_scale=scales[0],
            length_scale=scales[1],
            noise_scale_w=scales[2],
            sid=sid,
        )[0]
        return audio.unsqueeze(1)

    model.forward = infer_forward
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "multi.onnx"
    example = (torch.randint(0, 256, (1, 30)), torch.LongTensor([30]), torch.FloatTensor([0.667, 1.0, 0.8]))
    with warnings.catch_warnings():  # the TorchScript exporter, as piper's export_onnx.py uses it
        warnings.simplefilter("ignore")
        _torch_export(torch, model, example, onnx_path)
    voice = json.loads((package_data / (ONNX_NAME + ".json")).read_text())
    voice.update(num_speakers=len(SPEAKERS), speaker_id_map=SPEAKERS, dataset="multi")
    (out_dir / "multi.onnx.json").write_text(json.dumps(voice))
    return onnx_path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, package_data: Path) -> Path:
    return _export(tmp_path_factory.mktemp("multi") / "src", package_data)


@pytest.fixture(scope="module")
def synthesizer(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> PiperSynthesizer:
    family = get_family("piper")
    dst = tmp_path_factory.mktemp("multi-converted")
    family.convert(exported.parent, "piper", dst)
    loaded = family.load(dst, None)
    assert isinstance(loaded, PiperSynthesizer)
    return loaded


def _reference(exported: Path, speaker: int) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    feeds = {
        "input": np.array([IDS], np.int64),
        "input_lengths": np.array([len(IDS)], np.int64),
        "scales": np.array([0, 1, 0], np.float32),
        "sid": np.array([speaker], np.int64),
    }
    return session.run(None, feeds)[0].reshape(-1)  # (1, 1, 1, samples) as piper exports it


@pytest.mark.parametrize("backend", ["cpu", "mlx"])
def test_each_speaker_matches_onnxruntime(
    synthesizer: PiperSynthesizer, exported: Path, backend: str
) -> None:
    voice: PiperVoice = synthesizer.voice
    assert voice.config.n_speakers == 3 and voice.voices == ["amy", "bob", "cat"]
    assert choose_backend(voice.model, backend, "float32")[0] == backend
    try:
        outs = {}
        for name, sid in SPEAKERS.items():
            ours = voice.synthesize([IDS], speaker=name, noise_scale=0, noise_w=0)[0]
            theirs = _reference(exported, sid)
            assert ours.shape == theirs.shape and len(ours) > 1000  # the same durations
            assert np.abs(ours - theirs).max() <= MAX_ABS * max(1.0, np.abs(theirs).max())
            outs[name] = ours
        # the speaker embedding matters: each speaker's audio differs from the others'
        amy, bob = outs["amy"], outs["bob"]
        assert len(amy) != len(bob) or np.abs(amy - bob).max() > 1e-3
        batch = voice.synthesize([IDS, IDS[:11]], speaker="cat", noise_scale=0, noise_w=0)
        np.testing.assert_allclose(batch[0], outs["cat"], atol=5e-5)
    finally:
        choose_backend(voice.model)


def test_speakers_are_the_voices(synthesizer: PiperSynthesizer) -> None:
    assert [v.id for v in synthesizer.voices()] == ["amy", "bob", "cat"]
    assert {v.language for v in synthesizer.voices()} == {"en-US"}
    # OpenAI's names map onto the speakers in order (alloy → the first, ash → the second, …)
    assert synthesizer._speaker("alloy") == "amy" and synthesizer._speaker("ash") == "bob"
    assert synthesizer._speaker("cat") == "cat"
    with pytest.raises(InvalidRequest, match=r"Unknown voice 'dave' .*use one of amy, bob, cat") as caught:
        synthesizer.check("Hello.", SpeechOptions(voice="dave"))
    assert caught.value.param == "voice"
