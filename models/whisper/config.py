"""Whisper model configuration: openai/whisper's `ModelDimensions` plus the decoding metadata that ships
with a checkpoint (alignment heads, suppressed token ids, language token ids).

Our `config.json` uses openai's dimension names (as mlx-community checkpoints do); `from_dict` drops
unknown keys on purpose so configs written by other tools (`model_type`, `quantization`, ...) load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The multilingual vocabulary has 51865 tokens (51866 with the 100th language, Cantonese, in large-v3);
# the English-only one 51864. openai/whisper derives both facts from n_vocab the same way.
_MULTILINGUAL_MIN_VOCAB = 51865


@dataclass(frozen=True)
class WhisperConfig:
    n_mels: int = 80
    n_audio_ctx: int = 1500
    n_audio_state: int = 384
    n_audio_head: int = 6
    n_audio_layer: int = 4
    n_vocab: int = 51864
    n_text_ctx: int = 448
    n_text_state: int = 384
    n_text_head: int = 6
    n_text_layer: int = 4
    # (decoder layer, head) pairs whose cross-attention follows time; None: openai's default, the
    # last half of the decoder layers, all heads.
    alignment_heads: tuple[tuple[int, int], ...] | None = None
    suppress_ids: tuple[int, ...] = field(default_factory=tuple)
    suppress_ids_begin: tuple[int, ...] = field(default_factory=tuple)
    lang_ids: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("n_audio_state", "n_text_state"):
            heads = getattr(self, name.replace("state", "head"))
            if getattr(self, name) % heads:
                raise ValueError(f"{name}={getattr(self, name)} is not divisible by {heads} heads")
        for layer, head in self.alignment_heads or ():
            if not (0 <= layer < self.n_text_layer and 0 <= head < self.n_text_head):
                raise ValueError(f"alignment head ({layer}, {head}) outside the decoder")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WhisperConfig:
        """Build from a JSON object; keys that are not fields are ignored, lists become tuples."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        if kwargs.get("alignment_heads") is not None:
            kwargs["alignment_heads"] = tuple((int(a), int(b)) for a, b in kwargs["alignment_heads"])
        for key in ("suppress_ids", "suppress_ids_begin", "lang_ids"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(int(t) for t in kwargs[key])
            else:
                kwargs.pop(key, None)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists) with ``model_type`` set, as written to config.json."""
        out: dict[str, Any] = {"model_type": "whisper"}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "alignment_heads" and value is not None:
                value = [list(pair) for pair in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def preset(cls, name: str) -> WhisperConfig:
        """The dimensions of an official checkpoint by openai's name (``tiny.en`` … ``large-v3-turbo``)."""
        try:
            return cls.from_dict(PRESETS[name])
        except KeyError:
            raise KeyError(f"unknown whisper size {name!r}; known: {sorted(PRESETS)}") from None

    @property
    def is_multilingual(self) -> bool:
        return self.n_vocab >= _MULTILINGUAL_MIN_VOCAB

    @property
    def num_languages(self) -> int:
        """Language tokens in the vocabulary: 99, or 100 for large-v3 (English-only vocabularies hold 99 too)."""
        return self.n_vocab - 51765 - int(self.is_multilingual)

    @property
    def head_dim(self) -> int:
        return self.n_text_state // self.n_text_head


def _dims(mels: int, state: int, heads: int, layers: int, vocab: int, text_layers: int | None = None) -> dict:
    return {
        "n_mels": mels,
        "n_audio_ctx": 1500,
        "n_audio_state": state,
        "n_audio_head": heads,
        "n_audio_layer": layers,
        "n_vocab": vocab,
        "n_text_ctx": 448,
        "n_text_state": state,
        "n_text_head": heads,
        "n_text_layer": layers if text_layers is None else text_layers,
    }


EN, MULTI, MULTI_V3 = 51864, 51865, 51866

# openai/whisper's published ModelDimensions for every official checkpoint.
PRESETS: dict[str, dict[str, int]] = {
    "tiny.en": _dims(80, 384, 6, 4, EN),
    "tiny": _dims(80, 384, 6, 4, MULTI),
    "base.en": _dims(80, 512, 8, 6, EN),
    "base": _dims(80, 512, 8, 6, MULTI),
    "small.en": _dims(80, 768, 12, 12, EN),
    "small": _dims(80, 768, 12, 12, MULTI),
    "medium.en": _dims(80, 1024, 16, 24, EN),
    "medium": _dims(80, 1024, 16, 24, MULTI),
    "large-v1": _dims(80, 1280, 20, 32, MULTI),
    "large-v2": _dims(80, 1280, 20, 32, MULTI),
    "large-v3": _dims(128, 1280, 20, 32, MULTI_V3),
    "large-v3-turbo": _dims(128, 1280, 20, 32, MULTI_V3, text_layers=4),
}
