"""The hyper-parameters of a Piper VITS voice, as read from its ONNX export and `.onnx.json`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PiperConfig:
    # text encoder (relative-position transformer over phoneme ids)
    num_symbols: int = 256
    hidden_channels: int = 192
    inter_channels: int = 192  # the latent z's channels
    filter_channels: int = 768  # FFN width
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3  # FFN conv kernel
    window_size: int = 4  # relative positions attended to: ±window_size
    # stochastic duration predictor (only its inference half is exported)
    dp_filter_channels: int = 192
    dp_kernel_size: int = 3
    dp_n_layers: int = 3  # DDSConv layers, dilation kernel**i
    dp_n_flows: int = 3  # ConvFlows used in reverse (the training-time 4th is never run)
    num_bins: int = 10  # rational-quadratic spline bins
    tail_bound: float = 5.0
    # the residual coupling flow (WaveNet, mean only)
    flow_kernel_size: int = 5
    flow_dilation_rate: int = 1
    flow_n_layers: int = 4
    flow_n_flows: int = 4
    # HiFi-GAN generator
    resblock: str = "2"  # "1": ResBlock1 (convs1/convs2), "2": ResBlock2 (convs)
    resblock_kernel_sizes: tuple[int, ...] = (3, 5, 7)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 2), (2, 6), (3, 12))
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    upsample_initial_channel: int = 256
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8)
    # speakers
    n_speakers: int = 1
    gin_channels: int = 0
    # the voice (.onnx.json)
    sample_rate: int = 22050
    noise_scale: float = 0.667
    length_scale: float = 1.0
    noise_w: float = 0.8
    espeak_voice: str = "en-us"
    phoneme_id_map: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    speaker_id_map: Mapping[str, int] = field(default_factory=dict)

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame: the product of the upsampling rates."""
        hop = 1
        for r in self.upsample_rates:
            hop *= r
        return hop

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PiperConfig:
        """Build from a JSON object; keys that are not fields (`model_type`, ...) are dropped on purpose."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        for key in ("resblock_kernel_sizes", "upsample_rates", "upsample_kernel_sizes"):
            if key in kw:
                kw[key] = tuple(int(v) for v in kw[key])
        if "resblock_dilation_sizes" in kw:
            kw["resblock_dilation_sizes"] = tuple(
                tuple(int(v) for v in d) for d in kw["resblock_dilation_sizes"]
            )
        if "phoneme_id_map" in kw:
            kw["phoneme_id_map"] = {str(k): tuple(int(i) for i in v) for k, v in kw["phoneme_id_map"].items()}
        if "speaker_id_map" in kw:
            kw["speaker_id_map"] = {str(k): int(v) for k, v in kw["speaker_id_map"].items()}
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["phoneme_id_map"] = {k: list(v) for k, v in self.phoneme_id_map.items()}
        out["speaker_id_map"] = dict(self.speaker_id_map)
        return {"model_type": "piper", **out}
