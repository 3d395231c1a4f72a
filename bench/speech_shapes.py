"""What a sentence of a length not seen lately costs Piper, on the MLX model (the GPU's path): 24 distinct
sentences one at a time, twice (cold: their shapes are new; warm: seen once before), and the same in
batches of 8, with the id and frame axes unpadded and padded to buckets (16 ids / 64 frames, what a GPU
load sets, `models/piper/family.py`). MLX builds a cuDNN plan for each convolution shape and keeps them in
an LRU cache (`MLX_CUDA_CONV_CACHE_SIZE`; `models/__init__.py` raises its default): run it with that
variable at 128 (MLX's own default) and without to see what the cache size does. The other benchmarks
repeat one text, so every shape there is warm.

    python bench/speech_shapes.py [--voice-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from dsp.blas import ensure_fast_blas  # noqa: E402

ensure_fast_blas()

from speech_rtf import load  # noqa: E402

WORDS = (
    "time people year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact water room mother area money story month lot right study "
    "book job word business issue side kind head house service friend father power hour game line end member "
    "law car city community name president team minute idea kid body information back parent face others "
    "level office door health person art war history party result change morning reason research girl guy "
    "moment air"
)


def texts(n: int) -> list[str]:
    """n sentences of 3 to 25 words, no two the same."""
    return [
        " ".join(WORDS[(7 * i) % 90 : (7 * i) % 90 + 3 + (i * 5) % 23]).capitalize() + "." for i in range(n)
    ]


def measure(voice_dir: Path | None, n: int) -> dict[str, Any]:
    import mlx.core as mx

    ours, _, _ = load(voice_dir)
    voice, model = ours.voice, ours.voice.model
    sents = [list(ours._phoneme_ids(t)[0]) for t in texts(2 * n)]
    voice.synthesize([sents[0]], seed=[1])  # load-time work out of the way
    rows: list[dict[str, Any]] = []
    for label, part, buckets in (
        ("unpadded", sents[:n], (1, 1)),
        ("padded 16 ids / 64 frames", sents[n:], (16, 64)),
    ):
        model.token_bucket, model.frame_bucket = buckets
        for batch in (b for b in (1, 8) if b <= len(part)):
            groups = [part[i : i + batch] for i in range(0, len(part) - batch + 1, batch)]
            for when in ("cold", "warm"):
                times = []
                for g in groups:
                    t0 = time.perf_counter()
                    voice.synthesize(g, seed=list(range(len(g))))
                    times.append(time.perf_counter() - t0)
                rows.append(
                    {
                        "shapes": label,
                        "batch": batch,
                        "when": when,
                        "calls": len(times),
                        "median_ms": 1e3 * statistics.median(times),
                        "max_ms": 1e3 * max(times),
                        "times_s": times,
                    }
                )
                print(
                    f"{label:26s} B={batch} {when}: median {rows[-1]['median_ms']:7.1f} ms over {len(times)}",
                    flush=True,
                )
    return {
        "machine": {
            "platform": platform.platform(),
            "mlx": mx.__version__,
            "device": str(mx.default_device()),
        },
        "conv_cache_size": os.environ.get("MLX_CUDA_CONV_CACHE_SIZE"),
        "backend": ours.details.get("backend_reason"),
        "rows": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voice-dir", type=Path, help="a Piper voice folder instead of the PyPI package")
    p.add_argument("--sentences", type=int, default=24)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    result = measure(args.voice_dir, args.sentences)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
