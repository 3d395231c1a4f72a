"""The hyper-parameters of a Hybrid Transformer Demucs network: `demucs.htdemucs.HTDemucs`'s keyword
arguments, under demucs's own names, as its checkpoints store them (`kwargs` of a `.th` package, the
`kwargs` metadata of demucs 4.1's safetensors files).

`HTDEMUCS` and `HTDEMUCS_6S` are the published models' settings: demucs's `conf/config.yaml` `htdemucs`
section with the `grids/mmi.py` overrides (`dconv_mode=3`, 5 transformer layers; 7.8 s training segments,
`segment=39/5`), and `bottom_channels=512` for htdemucs (and each network of htdemucs_ft), 0 for
htdemucs_6s. The bottom channels are inferred, not read from a checkpoint (none is reachable here): these
parameter counts (41,984,456 and 27,414,996 as float32) match, to the size of a safetensors header, the files
demucs-mlx 1.6.1 publishes for them (168,005,865 and 109,726,583 bytes; htdemucs_ft 4× the first), and no
other value of `bottom_channels` or `dconv_mode` does. A converted checkpoint carries its own kwargs, so
these defaults only describe the models and drive the tests.

What the MLX network runs (`unsupported()` names anything else, and the network refuses it): complex as
channels (`cac=True`, so no Wiener filtering: demucs skips it too), no `multi_freqs`, every encoder layer
a frequency layer (the last may collapse the frequencies to one and merge the time branch), the "sin"
position embedding without random shift, dense attention, pre-norm transformer layers with layer norms.
Inference only: dropout and the training-time options are ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

SOURCES_4 = ("drums", "bass", "other", "vocals")
SOURCES_6 = ("drums", "bass", "other", "vocals", "guitar", "piano")


def _fraction(value: Any) -> Fraction:
    """A segment length in seconds: a number, a "39/5" string, a Fraction, or demucs 4.1's JSON form
    {"_type": "fraction", "numerator": 39, "denominator": 5}. Floats go through their decimal text (7.8 →
    39/5), so int(segment · samplerate) matches demucs's."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, Mapping) and value.get("_type") == "fraction":
        return Fraction(int(value["numerator"]), int(value["denominator"]))
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"segment must be a number or a fraction, not {value!r}")
    return Fraction(str(value))


@dataclass(frozen=True)
class HTDemucsConfig:
    sources: tuple[str, ...] = SOURCES_4
    audio_channels: int = 2
    channels: int = 48
    channels_time: int | None = None
    growth: float = 2
    nfft: int = 4096
    wiener_iters: int = 0
    end_iters: int = 0
    wiener_residual: bool = False
    cac: bool = True
    depth: int = 4
    rewrite: bool = True
    multi_freqs: tuple[float, ...] = ()
    multi_freqs_depth: int = 3
    freq_emb: float = 0.2
    emb_scale: float = 10
    emb_smooth: bool = True
    kernel_size: int = 8
    time_stride: int = 2
    stride: int = 4
    context: int = 1
    context_enc: int = 0
    norm_starts: int = 4
    norm_groups: int = 4
    dconv_mode: int = 1
    dconv_depth: int = 2
    dconv_comp: float = 8
    dconv_init: float = 1e-3
    bottom_channels: int = 0
    t_layers: int = 5
    t_emb: str = "sin"
    t_hidden_scale: float = 4.0
    t_heads: int = 8
    t_dropout: float = 0.0
    t_max_positions: int = 10000
    t_norm_in: bool = True
    t_norm_in_group: bool = False
    t_group_norm: bool = False
    t_norm_first: bool = True
    t_norm_out: bool = True
    t_max_period: float = 10000.0
    t_weight_decay: float = 0.0
    t_lr: float | None = None
    t_layer_scale: bool = True
    t_gelu: bool = True
    t_weight_pos_embed: float = 1.0
    t_sin_random_shift: int = 0
    t_cape_mean_normalize: bool = True
    t_cape_augment: bool = True
    t_cape_glob_loc_scale: tuple[float, ...] = (5000.0, 1.0, 1.4)
    t_sparse_self_attn: bool = False
    t_sparse_cross_attn: bool = False
    t_mask_type: str = "diag"
    t_mask_random_seed: int = 42
    t_sparse_attn_window: int = 500
    t_global_window: int = 100
    t_sparsity: float = 0.95
    t_auto_sparsity: bool = False
    t_cross_first: bool = False
    rescale: float = 0.1
    samplerate: int = 44100
    segment: Fraction = field(default_factory=lambda: Fraction(10))
    use_train_segment: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HTDemucsConfig:
        """From demucs's kwargs (or our config.json); keys that are not fields are dropped on purpose
        (demucs's kwargs of other model classes, our own metadata)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        for key in ("sources", "multi_freqs", "t_cape_glob_loc_scale"):
            if key in kw:
                kw[key] = tuple(kw[key] or ())
        if "segment" in kw:
            kw["segment"] = _fraction(kw["segment"])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """demucs's kwargs as JSON: lists for sequences, the segment as demucs 4.1 encodes a Fraction."""
        out = dataclasses.asdict(self)
        for key in ("sources", "multi_freqs", "t_cape_glob_loc_scale"):
            out[key] = list(out[key])
        seg = self.segment
        out["segment"] = {"_type": "fraction", "numerator": seg.numerator, "denominator": seg.denominator}
        return out

    def demucs_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `demucs.htdemucs.HTDemucs` (segment as a Fraction, as demucs keeps it)."""
        out = self.to_dict()
        out["segment"] = self.segment
        return out

    @property
    def segment_samples(self) -> int:
        """The training segment in samples, as demucs computes it: int(segment · samplerate)."""
        return int(self.segment * self.samplerate)

    def layers(self) -> list[dict[str, Any]]:
        """Per encoder index, as `HTDemucs.__init__` derives them: kernel, stride, padding of the
        frequency layer, whether it is the last one (frequencies collapse to one; the time layer beside it
        is `empty`), GroupNorm or not, and the channels in and out of both branches."""
        out = []
        chin, chin_z = self.audio_channels, self.audio_channels * 2
        chout, chout_z = self.channels_time or self.channels, self.channels
        freqs = self.nfft // 2
        for index in range(self.depth):
            freq = freqs > 1
            ker, stri, pad, last_freq = self.kernel_size, self.stride, True, False
            if not freq:
                ker, stri = self.time_stride * 2, self.time_stride
            if freq and freqs <= self.kernel_size:
                ker, pad, last_freq = freqs, False, True
            if last_freq:
                chout_z = max(chout, chout_z)
                chout = chout_z
            # the decoder layer of this index maps (chout, chout_z) back to (dec_chout, dec_chout_z)
            stems = self.audio_channels * len(self.sources)
            out.append(
                {
                    "freq": freq,
                    "kernel_size": ker,
                    "stride": stri,
                    "pad": pad,
                    "last_freq": last_freq,
                    "norm": index >= self.norm_starts,
                    "chin": chin,
                    "chout": chout,
                    "chin_z": chin_z,
                    "chout_z": chout_z,
                    "dec_chout": stems if index == 0 else chin,
                    "dec_chout_z": 2 * stems if index == 0 else chin_z,
                    "freqs_in": freqs,
                }
            )
            chin, chin_z = chout, chout_z
            chout, chout_z = int(self.growth * chout), int(self.growth * chout_z)
            if freq:
                freqs = 1 if freqs <= self.kernel_size else freqs // self.stride
            out[-1]["freqs_out"] = freqs
        return out

    def unsupported(self) -> list[str]:
        """What this config asks that the MLX network does not implement (empty when it runs)."""
        why = []
        if not self.cac:
            why.append("cac=False (magnitude masks with Wiener filtering)")
        if self.multi_freqs:
            why.append("multi_freqs (MultiWrap frequency bands)")
        if self.t_layers and self.t_emb != "sin":
            why.append(f"t_emb={self.t_emb!r} (only 'sin')")
        if self.t_layers and self.t_sin_random_shift:
            why.append("t_sin_random_shift > 0 (a random position shift at inference)")
        if self.t_layers and (self.t_sparse_self_attn or self.t_sparse_cross_attn):
            why.append("sparse attention")
        if self.t_layers and not self.t_norm_first:
            why.append("t_norm_first=False (post-norm transformer layers)")
        if self.t_layers and (self.t_group_norm or (self.t_norm_in_group and not self.t_norm_in)):
            why.append("group norms in the transformer (t_group_norm, t_norm_in_group)")
        layers = self.layers()
        if not all(layer["freq"] for layer in layers):
            why.append("encoder layers past the frequency branch (depth too large for nfft)")
        if any(layer["last_freq"] for layer in layers[:-1]):
            why.append("a frequency layer after the one that collapses the frequencies")
        if self.nfft % 4:
            why.append("nfft not a multiple of 4")
        return why


# The published networks (htdemucs_ft is a bag of four HTDEMUCS networks, one per source).
HTDEMUCS = HTDemucsConfig(dconv_mode=3, bottom_channels=512, t_dropout=0.02, segment=Fraction(39, 5))
HTDEMUCS_6S = dataclasses.replace(HTDEMUCS, sources=SOURCES_6, bottom_channels=0)
