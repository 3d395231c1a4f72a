"""The hyper-parameters of Kokoro-82M (hexgrad's `config.json`: StyleTTS 2 with a PL-BERT and an
iSTFTNet decoder) and its phoneme vocabulary.

`config.json` next to this file is Kokoro-82M v1.0's (Apache-2.0), every number checked against the int8
ONNX export's initializer shapes and node attributes (tests/models/kokoro/test_convert.py). The nested
`istftnet` and `plbert` objects stay plain dicts, keyed as in hexgrad's file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_JSON = Path(__file__).with_name("config.json")

ISTFTNET: Mapping[str, Any] = {
    "upsample_rates": [10, 6],
    "upsample_kernel_sizes": [20, 12],
    "upsample_initial_channel": 512,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "gen_istft_n_fft": 20,
    "gen_istft_hop_size": 5,
}
# One ALBERT layer's weights shared by all `num_hidden_layers`; `embedding_size` is not in hexgrad's file
# (transformers' AlbertConfig default, 128, which KModel gets).
PLBERT: Mapping[str, Any] = {
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 2048,
    "max_position_embeddings": 512,
    "num_hidden_layers": 12,
    "dropout": 0.1,
}


@dataclass(frozen=True)
class KokoroConfig:
    n_token: int = 178  # phoneme ids (embedding rows); the vocab maps 114 of them
    hidden_dim: int = 512
    style_dim: int = 128  # a voice's style vector is 2·style_dim: [decoder half | prosody half]
    n_layer: int = 3  # duration encoder LSTM + AdaLayerNorm pairs; text encoder CNN depth
    max_dur: int = 50  # duration classes per phoneme
    text_encoder_kernel_size: int = 5
    dropout: float = 0.2
    n_mels: int = 80  # unused at inference (StyleTTS 2 training)
    dim_in: int = 64  # unused at inference
    max_conv_dim: int = 512  # unused at inference
    multispeaker: bool = True
    istftnet: Mapping[str, Any] = field(default_factory=lambda: dict(ISTFTNET))
    plbert: Mapping[str, Any] = field(default_factory=lambda: dict(PLBERT))
    vocab: Mapping[str, int] = field(default_factory=dict)  # phoneme (one character) → id

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KokoroConfig:
        """Build from hexgrad's `config.json` object; keys that are not fields are dropped on purpose, and
        missing nested keys take v1.0's values."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        kw["istftnet"] = {**ISTFTNET, **kw.get("istftnet", {})}
        kw["plbert"] = {**PLBERT, **kw.get("plbert", {})}
        if "vocab" in kw:
            kw["vocab"] = {str(k): int(v) for k, v in kw["vocab"].items()}
        return cls(**kw)

    @classmethod
    def default(cls) -> KokoroConfig:
        """Kokoro-82M v1.0 (the `config.json` shipped next to this module)."""
        return cls.from_dict(json.loads(CONFIG_JSON.read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        """hexgrad's `config.json` layout (what `kokoro.KModel(config=...)` takes), vocab included."""
        out = dataclasses.asdict(self)
        out["istftnet"], out["plbert"], out["vocab"] = (
            dict(self.istftnet),
            dict(self.plbert),
            dict(self.vocab),
        )
        return out
