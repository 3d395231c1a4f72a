"""The Silero VAD family as the registry sees it: convert the silero-vad package's safetensors to our layout,
load it, and serve `models.tasks.VoiceActivityDetector`.

Only `silero_vad_16k.safetensors` is ever read: the package's `.jit` (a pickle) and `.onnx` files are the
references the tests compare against, never weights we load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import mlx.core as mx
import numpy as np
from safetensors.numpy import load_file

from dsp.loudness import normalize_loudness
from models.cpu import ops
from models.errors import WeightsError
from models.silero_vad.model import SileroVad, SileroVadConfig, frame, sanitize
from models.silero_vad.stream import VadStream
from models.silero_vad.vad import HostFrontEnd, LstmScan, speech_regions
from models.tasks import TurnOptions, VadOptions
from models.weights import load_into, read_config, read_safetensors

SILERO_FILE = "silero_vad_16k.safetensors"  # in the package's data/ directory
BATCH_WINDOWS = 1024  # windows per front-end batch: 33 s of audio, a few MB of activations


class SileroVadDetector:
    """A loaded Silero VAD implementing `models.tasks.VoiceActivityDetector` (mono float32 at 16 kHz).

    The front end runs on every window of the file at once (in batches): in MLX on a GPU, in numpy on the
    CPU (`HostFrontEnd`), chosen once here (`front_end`: "mlx" or "numpy"; default by the device); the
    LSTM scan always on the host (`LstmScan`)."""

    sample_rate = 16_000

    def __init__(self, model: SileroVad, front_end: Literal["mlx", "numpy"] | None = None) -> None:
        if model.config.sample_rate != self.sample_rate:
            raise WeightsError(f"only the 16 kHz Silero VAD is supported, not {model.config.sample_rate} Hz")
        self.model = model
        self.config = model.config
        self.front_end = front_end or ("numpy" if mx.default_device() == mx.cpu else "mlx")
        self.host_front_end = HostFrontEnd(model)
        self.scan = LstmScan(model)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Mono float32 audio (n,) → the LSTM's input for each of its ceil(n / 512) windows, (N, 128)."""
        return self.window_features(frame(_mono(audio), self.config))

    def window_features(self, windows: np.ndarray) -> np.ndarray:
        """Network inputs (N, 576) (`model.frame`: 64 samples of context, then the window) → (N, 128)."""
        batches = [windows[s : s + BATCH_WINDOWS] for s in range(0, len(windows), BATCH_WINDOWS)]
        if not batches:
            return np.zeros((0, self.config.hidden_size), np.float32)
        if self.front_end == "numpy":
            # Batches in parallel on the shared pool, each with single-threaded BLAS: the elementwise
            # work runs on every core too (1 h of audio, 2 cores: ~1.3 s, against ~1.5 s in one thread).
            with ops.serial_blas():
                return np.concatenate(list(ops.pool().map(self.host_front_end, batches)))
        out = []
        for batch in batches:
            y = self.model(mx.array(batch))
            mx.eval(y)
            out.append(np.array(y))
        return np.concatenate(out)

    def speech_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Probability of speech for each consecutive 512-sample window (the last one zero-padded), as
        float32 (N,). The recurrent state starts at zeros, like the reference after `reset_states()`."""
        probs, _ = self.scan(self.features(audio))
        return probs

    def stream(self, options: TurnOptions) -> VadStream:
        """Turn detection over live audio (`stream.VadStream`): the same probabilities, window by window."""
        return VadStream(self, options)

    def speech_segments(self, audio: np.ndarray, options: VadOptions) -> list[tuple[int, int]]:
        """Speech regions as sample ranges [start, end), as silero-vad's `get_speech_timestamps`.

        With `options.loudness_lufs` the model hears a louder copy of quiet audio: its features are STFT
        magnitudes with no log or level normalisation, so speech 40 dB down reads as silence (on jfk.wav at
        −55 LUFS it keeps 5.7 of 10.1 s of speech, nothing at −65). Noise is not turned into speech by it:
        white, pink and brown noise and mains hum raised to −23 LUFS give no region. The caller's samples
        are untouched."""
        audio = _mono(audio)
        if options.loudness_lufs is not None:
            audio = normalize_loudness(audio, self.sample_rate, options.loudness_lufs)
        probs = self.speech_probabilities(audio)
        return speech_regions(
            probs, len(audio), options, sample_rate=self.sample_rate, window=self.config.window_size
        )


def _mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got {audio.shape}")
    return audio


class SileroVadFamily:
    def load(self, model_dir: Path, spec: Any) -> SileroVadDetector:
        """Float32 always: the model is 0.3M parameters, and half precision moves its probabilities."""
        config = SileroVadConfig.from_dict(read_config(model_dir))
        model = SileroVad(config)
        load_into(model, read_safetensors(model_dir))
        return SileroVadDetector(model)

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None:
        if fmt != "silero":
            raise WeightsError(f"the silero_vad family converts the 'silero' format only, not {fmt!r}")
        src = Path(src_dir) / SILERO_FILE
        if not src.is_file():
            raise WeightsError(f"{src} is missing: reinstall the silero-vad package (6.x ships it)")
        config = SileroVadConfig()
        try:
            tensors = load_file(str(src))
        except Exception as exc:
            raise WeightsError(f"cannot read {src}: {exc}") from None
        weights = {k: mx.array(v) for k, v in sanitize(tensors, config).items()}
        dst = Path(dst_dir)
        dst.mkdir(parents=True, exist_ok=True)
        mx.save_safetensors(
            str(dst / "model.safetensors"), weights, metadata={"format": "mlx", "source": SILERO_FILE}
        )
        (dst / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")


FAMILY = SileroVadFamily()
