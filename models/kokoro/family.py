"""The Kokoro family as the registry sees it: convert a checkpoint to our layout, load it, speak.

Our layout: `config.json` (hexgrad's, vocab included), `model.safetensors` (our names and layouts, float32),
`voices.safetensors` (voice name → style table [510, 256]). At load, `options.voices_dir` adds every
hexgrad voice pack (`*.pt`) of that directory, read without unpickling anything but tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from models.cpu import vocoder_bf16, wants_cpu_path
from models.cpu.conv import describe as describe_convs
from models.errors import WeightsError
from models.kokoro import FORMATS
from models.kokoro.checkpoint import (
    pth_state_dict,
    read_voice_pack,
    read_voice_packs_npz,
    safetensors_state_dict,
)
from models.kokoro.config import KokoroConfig
from models.kokoro.convert import onnx_state_dict
from models.kokoro.model import Kokoro
from models.kokoro.weights import to_mlx
from models.layers.conv import convs_for_device
from models.layers.lstm import fused_lstm_available, use_fused_lstm
from models.weights import load_into, read_config, read_safetensors

VOICES_FILE = "voices.safetensors"
# On a GPU, the token and frame axes are padded up to multiples of these (`Kokoro.frame_bucket`): a few
# dozen shapes instead of one per sentence length (docs/benchmarks.md; frames are 40 a second)
GPU_TOKEN_BUCKET, GPU_FRAME_BUCKET = 16, 32
STYLE_ROWS, STYLE_DIM = 510, 256


def choose_backend(model: Kokoro, prefer: str | None = None, precision: str | None = None) -> tuple[str, str]:
    """The one place that decides how the generator runs: (backend, reason). On MLX's CPU device the
    numpy generator (`cpu_generator.py`: convolutions in `models.cpu.conv`, with bfloat16 products where
    the CPU has them unless `options.vocoder_precision = "float32"`: `models.cpu.vocoder_bf16`) unless
    `options.backend = "mlx"`; the MLX model everywhere else, on CUDA each LSTM pass as one kernel
    (`models.layers.lstm.use_fused_lstm`)."""
    bf16 = vocoder_bf16(precision)  # checked on every device
    if wants_cpu_path(prefer):
        from models.kokoro.cpu_generator import CPUGenerator

        model.decoder.cpu_generator = CPUGenerator(model.decoder.generator, bf16)
        use_fused_lstm(model, False)
        model.token_bucket = model.frame_bucket = 1  # one row at a time here: nothing to pad
        return "cpu", f"CPU: the MLX model, its iSTFTNet generator in numpy ({describe_convs(bf16)})"
    model.decoder.cpu_generator = None
    reason = convs_for_device(model)
    fused = fused_lstm_available()
    use_fused_lstm(model, fused)
    if fused:
        reason += ", each LSTM pass one CUDA kernel"
    if mx.default_device() == mx.gpu:
        model.token_bucket, model.frame_bucket = GPU_TOKEN_BUCKET, GPU_FRAME_BUCKET
        return "mlx", f"{reason}, shapes padded to {GPU_TOKEN_BUCKET} tokens / {GPU_FRAME_BUCKET} frames"
    model.token_bucket = model.frame_bucket = 1
    return "mlx", reason


def _one(src_dir: Path, pattern: str) -> Path:
    found = sorted(src_dir.glob(pattern))
    if len(found) != 1:
        raise WeightsError(f"{src_dir}: expected one {pattern}, found {[p.name for p in found]}")
    return found[0]


def _style_table(name: str, pack: np.ndarray) -> np.ndarray:
    table = np.asarray(pack, np.float32).reshape(pack.shape[0], -1)
    if table.shape != (STYLE_ROWS, STYLE_DIM):
        raise WeightsError(f"voice {name}: a style table is [{STYLE_ROWS}, 1, {STYLE_DIM}], not {pack.shape}")
    return table


def read_voices(src_dir: Path) -> dict[str, np.ndarray]:
    """Every voice pack in a directory: `*.pt` files there or under `voices/`, and `voices*.npz` archives."""
    voices: dict[str, np.ndarray] = {}
    for archive in sorted(src_dir.glob("voices*.npz")):
        voices.update(read_voice_packs_npz(archive))
    for pack in sorted([*src_dir.glob("*.pt"), *src_dir.glob("voices/*.pt")]):
        voices[pack.stem] = read_voice_pack(pack)
    return {name: _style_table(name, v) for name, v in voices.items()}


def convert_kokoro(src_dir: Path, fmt: str, dst_dir: Path) -> None:
    config_dict = KokoroConfig.default().to_dict()
    if fmt == "kokoro-onnx":
        vocab_file = src_dir / "vocab.json"
        if vocab_file.is_file():
            vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
            config_dict["vocab"] = vocab.get("vocab", vocab)
        config = KokoroConfig.from_dict(config_dict)
        state = onnx_state_dict(_one(src_dir, "*.onnx"), config)
    elif fmt in ("kokoro", "kokoro-safetensors"):
        if (src_dir / "config.json").is_file():
            config_dict = read_config(src_dir)
        config = KokoroConfig.from_dict(config_dict)
        if fmt == "kokoro":
            state = pth_state_dict(_one(src_dir, "*.pth"), config)
        else:
            state = safetensors_state_dict(_one(src_dir, "*.safetensors"), config)
    else:
        raise WeightsError(f"the kokoro family converts {', '.join(FORMATS)}, not {fmt!r}")
    model = Kokoro(config)
    load_into(model, to_mlx(state))  # strict: every parameter, every shape
    voices = read_voices(src_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(dst_dir / "model.safetensors"), dict(tree_flatten(model.parameters())))
    if voices:
        mx.save_safetensors(str(dst_dir / VOICES_FILE), {k: mx.array(v) for k, v in voices.items()})
    (dst_dir / "config.json").write_text(json.dumps(config.to_dict(), ensure_ascii=False, indent=1))


class KokoroFamily:
    def load(self, model_dir: Path, spec: Any) -> Any:
        from models.kokoro.speech import KokoroSynthesizer

        config = KokoroConfig.from_dict(read_config(model_dir))
        model = Kokoro(config)
        load_into(model, read_safetensors(model_dir / "model.safetensors"))
        styles: dict[str, np.ndarray] = {}
        if (model_dir / VOICES_FILE).is_file():
            styles = {k: np.array(v) for k, v in mx.load(str(model_dir / VOICES_FILE)).items()}  # type: ignore[union-attr]
        voices_dir = (getattr(spec, "options", None) or {}).get("voices_dir")
        if voices_dir:
            path = Path(voices_dir).expanduser()
            if not path.is_dir():
                raise WeightsError(f"options.voices_dir {path} is not a directory")
            styles.update(read_voices(path))
        options = getattr(spec, "options", None) or {}
        backend, reason = choose_backend(model, options.get("backend"), options.get("vocoder_precision"))
        return KokoroSynthesizer(
            model, styles, getattr(spec, "id", Path(model_dir).name), backend=backend, reason=reason
        )

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None:
        convert_kokoro(Path(src_dir), fmt, Path(dst_dir))


FAMILY = KokoroFamily()
