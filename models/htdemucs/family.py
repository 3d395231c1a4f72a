"""The HTDemucs family as the registry sees it: convert checkpoints to our layout, load the networks.

`load()` builds one `HTDemucs` per network of the model (one, or the four of the htdemucs_ft bag) and hands
them to the shared long-input code, `models.separation.SegmentedSeparator` (overlapping segments, transition
weights, shifts, the bag's per-source weights, batching across requests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx

from models.errors import WeightsError
from models.htdemucs import FORMATS
from models.htdemucs.convert import convert_checkpoints, read_native
from models.htdemucs.model import HTDemucs
from models.weights import load_into, read_safetensors


def load_networks(model_dir: Path) -> tuple[list[HTDemucs], list[list[float]] | None]:
    """The networks of our layout in `model_dir`, weights loaded strictly, and the bag's weight matrix."""
    configs, files, weights = read_native(Path(model_dir))
    networks = []
    for config, file in zip(configs, files, strict=True):
        try:
            network = HTDemucs(config)
        except ValueError as exc:
            raise WeightsError(f"{file.name}: {exc}") from None
        load_into(network, read_safetensors(file))
        networks.append(network)
    first = networks[0]
    if any(
        (n.sources, n.sample_rate, n.channels) != (first.sources, first.sample_rate, first.channels)
        for n in networks
    ):
        raise WeightsError(f"{model_dir}: the networks disagree on sources, sample rate or channels")
    return networks, weights


class HTDemucsFamily:
    def load(self, model_dir: Path, spec: Any) -> Any:
        from models.separation import SegmentedSeparator

        networks, weights = load_networks(Path(model_dir))
        seconds = networks[0].segment / networks[0].sample_rate
        bag = f"a bag of {len(networks)} networks weighted per source, " if len(networks) > 1 else ""
        details = {
            "backend": "mlx",
            "backend_reason": (
                f"HTDemucs in MLX on the {'GPU' if mx.default_device() == mx.gpu else 'CPU'}, float32, eager; "
                f"{bag}{seconds:.2f} s segments at {networks[0].sample_rate} Hz"
            ),
        }
        return SegmentedSeparator(networks=networks, weights=weights, details=details)

    def convert(self, src_dir: Path, fmt: str, dst_dir: Path) -> None:
        if fmt not in FORMATS:
            raise WeightsError(f"the htdemucs family converts {', '.join(FORMATS)}, not {fmt!r}")
        convert_checkpoints(Path(src_dir), fmt, Path(dst_dir))


FAMILY = HTDemucsFamily()
