"""The Piper family as the registry sees it: convert a voice's ONNX export to our layout, load it, and
synthesize from phoneme ids.

Text → phonemes (espeak-ng) is the text front end's job (`models/text/`); this voice takes IPA phoneme
strings (`phoneme_ids`) or id lists (`synthesize`).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from models.cpu import vocoder_bf16, wants_cpu_path
from models.cpu.conv import describe as describe_convs
from models.errors import InvalidRequest, WeightsError
from models.layers.conv import convs_for_device
from models.piper.config import PiperConfig
from models.piper.convert import convert_voice
from models.piper.model import Piper
from models.weights import load_into, read_config, read_safetensors

BOS, EOS, PAD = "^", "$", "_"
# On a GPU, the id and frame axes are padded up to multiples of these (`Piper.frame_bucket`): a few dozen
# shapes in all instead of one per sentence length (docs/benchmarks.md, "Speech: Piper" on the H200)
GPU_TOKEN_BUCKET, GPU_FRAME_BUCKET = 16, 64


def choose_backend(model: Piper, prefer: str | None = None, precision: str | None = None) -> tuple[str, str]:
    """The one place that decides how the HiFi-GAN generator runs, at load: (backend, reason). On MLX's CPU
    device the model in numpy (`cpu_encoder.py`, `cpu_decoder.py`: convolutions in `models.cpu.conv`;
    docs/benchmarks.md) unless `options.backend = "mlx"`, its generator's convolutions with bfloat16
    products where the CPU has them unless `options.vocoder_precision = "float32"` (`models.cpu.vocoder_bf16`);
    the MLX model elsewhere."""
    bf16 = vocoder_bf16(precision)  # checked on every device
    if wants_cpu_path(prefer):
        from models.piper.cpu_decoder import CPUDecoder
        from models.piper.cpu_encoder import CPUEncoder

        model.cpu_encoder = CPUEncoder(model)
        model.cpu_decoder = CPUDecoder(model.flow, model.dec, bf16)
        model.token_bucket = model.frame_bucket = 1  # rows run one at a time here: nothing to pad
        return (
            "cpu",
            f"CPU: the Piper model in numpy over its MLX parameters (generator convolutions: "
            f"{describe_convs(bf16)})",
        )
    model.cpu_encoder = model.cpu_decoder = None
    reason = convs_for_device(model)
    if mx.default_device() == mx.gpu:
        model.token_bucket, model.frame_bucket = GPU_TOKEN_BUCKET, GPU_FRAME_BUCKET
        return "mlx", f"{reason}, shapes padded to {GPU_TOKEN_BUCKET} ids / {GPU_FRAME_BUCKET} frames"
    model.token_bucket = model.frame_bucket = 1
    return "mlx", reason


class PiperVoice:
    """A loaded Piper voice: float32 mono audio at `sample_rate` from phoneme ids."""

    def __init__(self, model: Piper, backend: str = "mlx", reason: str | None = None) -> None:
        self.model = model
        self.config = model.config
        self.sample_rate = self.config.sample_rate
        names = sorted(self.config.speaker_id_map, key=self.config.speaker_id_map.__getitem__)
        self.voices: list[str] = names or ["default"]
        self.details = {
            "backend": backend,
            **({"backend_reason": reason} if reason else {}),
            "device": str(mx.default_device()),
            "sample_rate": self.sample_rate,
            "espeak_voice": self.config.espeak_voice,
            "speakers": len(self.voices),
        }

    def phoneme_ids(self, phonemes: str) -> list[int]:
        """IPA phonemes (one codepoint each, NFD as piper splits them) → ids: `^`, then each phoneme's ids
        followed by the pad `_`, then `$` (piper's `phonemes_to_ids`). Phonemes not in the map are dropped,
        as piper does."""
        table = self.config.phoneme_id_map
        ids = [*table[BOS], *table[PAD]]
        for ph in unicodedata.normalize("NFD", phonemes):
            if ph in table:
                ids += [*table[ph], *table[PAD]]
        return [*ids, *table[EOS]]

    def synthesize(
        self,
        phoneme_ids: list[list[int]],
        *,
        speaker: str | int | None = None,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w: float | None = None,
        seed: int | list[int] | None = None,
    ) -> list[np.ndarray]:
        """A batch of id sequences → one float32 waveform (n,) each at `sample_rate`, as one batch.

        The scales default to the voice's own (`.onnx.json` "inference"); noise_scale = noise_w = 0 is
        deterministic. `seed` fixes the noise: one for all rows or one per row (a row's noise depends on
        its own seed only, not on what it is batched with)."""
        c = self.config
        if not phoneme_ids or any(len(p) == 0 for p in phoneme_ids):
            raise InvalidRequest("nothing to synthesize: an empty phoneme sequence")
        bad = [i for p in phoneme_ids for i in p if not 0 <= i < c.num_symbols]
        if bad:
            raise InvalidRequest(f"phoneme ids out of range 0..{c.num_symbols - 1}: {bad[:5]}")
        lengths = [len(p) for p in phoneme_ids]
        step = self.model.token_bucket
        width = -(-max(lengths) // step) * step  # padded past the longest row: masked like a batch's rows
        ids = np.zeros((len(phoneme_ids), width), np.int32)
        for i, p in enumerate(phoneme_ids):
            ids[i, : len(p)] = p
        out = self.model(
            mx.array(ids),
            mx.array(np.array(lengths, np.int32)),
            noise_scale=c.noise_scale if noise_scale is None else float(noise_scale),
            length_scale=c.length_scale if length_scale is None else float(length_scale),
            noise_w=c.noise_w if noise_w is None else float(noise_w),
            speaker=self._speaker(speaker, len(phoneme_ids)),
            seed=seed,
        )
        audio = np.array(out.audio, np.float32)
        return [audio[i, :n].copy() for i, n in enumerate(out.lengths)]

    def _speaker(self, speaker: str | int | None, batch: int) -> mx.array | None:
        c = self.config
        if c.n_speakers <= 1:
            if speaker not in (None, 0, *self.voices):
                raise InvalidRequest(
                    f"unknown voice {speaker!r} (this model has {self.voices[0]!r})", param="voice"
                )
            return None
        if speaker is None:
            sid = 0
        elif isinstance(speaker, int):
            sid = speaker
        elif speaker in c.speaker_id_map:
            sid = c.speaker_id_map[speaker]
        else:
            raise InvalidRequest(f"unknown voice {speaker!r}", param="voice")
        if not 0 <= sid < c.n_speakers:
            raise InvalidRequest(f"speaker id {sid} out of range 0..{c.n_speakers - 1}", param="voice")
        return mx.array([sid] * batch, dtype=mx.int32)


class PiperFamily:
    def load(self, model_dir: Path, spec: Any) -> Any:
        """A `models.tasks.Synthesizer` over the voice (`speech.PiperSynthesizer`). Float32: the voice is
        15M parameters, and its durations are ceil()ed from exp(logw)."""
        from models.piper.speech import PiperSynthesizer  # it builds on PiperVoice, defined here

        config = PiperConfig.from_dict(read_config(model_dir))
        if not config.phoneme_id_map:
            raise WeightsError(f"{model_dir}/config.json has no phoneme_id_map")
        model = Piper(config)
        load_into(model, read_safetensors(model_dir))
        options = getattr(spec, "options", None) or {}
        backend, reason = choose_backend(model, options.get("backend"), options.get("vocoder_precision"))
        return PiperSynthesizer(PiperVoice(model, backend, reason), getattr(spec, "id", Path(model_dir).name))

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None:
        if fmt != "piper":
            raise WeightsError(f"the piper family converts the 'piper' format only, not {fmt!r}")
        convert_voice(Path(src_dir), Path(dst_dir))


FAMILY = PiperFamily()
