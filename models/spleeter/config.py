"""The hyper-parameters of a Spleeter model (deezer/spleeter's `configs/*.json` and `model/functions/unet.py`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ACTIVATIONS = ("leaky_relu", "relu", "elu")
MASK_EXTENSIONS = ("zeros", "average")


@dataclass(frozen=True)
class SpleeterConfig:
    # one U-Net per source, in output order (2stems; 4stems: vocals, drums, bass, other; 5stems adds piano)
    sources: tuple[str, ...] = ("vocals", "accompaniment")
    sample_rate: int = 44100
    channels: int = 2  # audio channels = the U-Nets' input and output channels
    n_fft: int = 4096  # frame_length: Hann window, centred frames, zero padding at the edges
    hop_length: int = 1024  # frame_step
    frequency_bins: int = 1024  # F: the bins the U-Nets see (below 11 kHz at 44.1 kHz)
    frames: int = 512  # T: STFT frames per U-Net pass
    conv_filters: tuple[int, ...] = (16, 32, 64, 128, 256, 512)  # the encoder's 5×5 stride-2 convolutions
    # unet.py: LeakyReLU(0.2) in the encoder and ReLU in the decoder by default; 5stems uses ELU for both
    conv_activation: str = "leaky_relu"
    deconv_activation: str = "relu"
    batch_norm_eps: float = 1e-3  # Keras BatchNormalization's default, as Spleeter trains it
    separation_exponent: float = 2.0  # ratio masks from |estimate|^2
    epsilon: float = 1e-10  # added to the masks' denominator (and epsilon / n_sources to each numerator)
    mask_extension: str = "zeros"  # the masks above F: zeros (cut) or each frame's average over the F bins

    def __post_init__(self) -> None:
        for name in ("conv_activation", "deconv_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(f"{name} must be one of {ACTIVATIONS}, got {getattr(self, name)!r}")
        if self.mask_extension not in MASK_EXTENSIONS:
            raise ValueError(f"mask_extension must be one of {MASK_EXTENSIONS}, got {self.mask_extension!r}")
        if not 0 < self.frequency_bins <= self.n_fft // 2 + 1:
            raise ValueError(f"frequency_bins {self.frequency_bins} out of range for n_fft {self.n_fft}")
        down = 2 ** len(self.conv_filters)
        if self.frames % down or self.frequency_bins % down:
            raise ValueError(f"frames and frequency_bins must be multiples of {down} (the U-Net's depth)")

    @property
    def segment(self) -> int:
        """Samples of audio whose centred STFT has exactly `frames` frames: (T − 1) hops."""
        return (self.frames - 1) * self.hop_length

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpleeterConfig:
        """Build from a JSON object; keys that are not fields (`model_type`, ...) are dropped on purpose."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        if "sources" in kw:
            kw["sources"] = tuple(str(s) for s in kw["sources"])
        if "conv_filters" in kw:
            kw["conv_filters"] = tuple(int(c) for c in kw["conv_filters"])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sources"] = list(self.sources)
        out["conv_filters"] = list(self.conv_filters)
        return {"model_type": "spleeter", **out}


# The published models (deezer/spleeter configs/{2,4,5}stems/base_config.json).
STEMS: Mapping[int, SpleeterConfig] = {
    2: SpleeterConfig(),
    4: SpleeterConfig(sources=("vocals", "drums", "bass", "other")),
    5: SpleeterConfig(
        sources=("vocals", "piano", "drums", "bass", "other"), conv_activation="elu", deconv_activation="elu"
    ),
}
