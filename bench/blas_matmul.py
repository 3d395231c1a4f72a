"""MLX CPU float32 matmul throughput: the wheel's reference BLAS vs a preloaded OpenBLAS, with numpy as a peer.

Each configuration runs in its own subprocess (several interleaved rounds), because the BLAS preload (`dsp/blas.py`) only works before
`mlx` is first imported. Prints a table last and writes everything to `bench/results/blas_matmul.json`.

    .venv/bin/python bench/blas_matmul.py [--sizes 256 512 1024 2048] [--min-time 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "blas_matmul.json"
SIZES = (256, 512, 1024, 2048)

# (name, label, environment overrides, engine)
CONFIGS: tuple[tuple[str, str, dict[str, str], str], ...] = (
    ("mlx-reference", "MLX, reference BLAS", {"MLX_AUDIO_BLAS": "off"}, "mlx"),
    ("mlx-openblas", "MLX + OpenBLAS", {}, "mlx"),
    ("numpy", "numpy", {}, "numpy"),
)


def _time_reps(step: Any, min_time: float, min_reps: int = 3, max_reps: int = 200) -> list[float]:
    step()  # warm-up (allocations, thread pools, kernel selection)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def worker(engine: str, sizes: list[int], min_time: float) -> dict[str, Any]:
    """Measure one engine in this process (the caller chose the BLAS through the environment)."""
    out: dict[str, Any] = {"engine": engine, "sizes": {}}
    if engine == "mlx":
        sys.path.insert(0, str(ROOT))
        from dsp.blas import ensure_fast_blas

        status = ensure_fast_blas()  # the preload, before mlx

        # isort: split
        import mlx.core as mx

        out["blas"] = {"loaded": status.loaded, "library": status.library, "reason": status.reason}
        out["mlx_version"] = getattr(mx, "__version__", None)
        out["device"] = str(mx.default_device())
        for n in sizes:
            xa = mx.random.normal((n, n), dtype=mx.float32)
            xb = mx.random.normal((n, n), dtype=mx.float32)
            mx.eval(xa, xb)
            times = _time_reps(lambda xa=xa, xb=xb: mx.eval(xa @ xb), min_time)
            out["sizes"][str(n)] = _summary(n, times)
    else:
        import numpy as np

        out["numpy_version"] = np.__version__
        try:
            cfg = np.show_config(mode="dicts")
            out["numpy_blas"] = cfg.get("Build Dependencies", {}).get("blas", {})
        except TypeError:  # numpy < 1.26
            out["numpy_blas"] = None
        rng = np.random.default_rng(0)
        for n in sizes:
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            times = _time_reps(lambda a=a, b=b: a @ b, min_time)
            out["sizes"][str(n)] = _summary(n, times)
    return out


def _summary(n: int, times: list[float]) -> dict[str, Any]:
    flop = 2.0 * n**3
    med = statistics.median(times)
    return {
        "reps": len(times),
        "median_s": med,
        "best_s": min(times),
        "gflops_median": flop / med / 1e9,
        "gflops_best": flop / min(times) / 1e9,
    }


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "model_name": platform.processor() or None,
    }
    if shutil.which("lscpu"):
        text = subprocess.run(
            ["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}
        ).stdout
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
        info["model_name"] = fields.get("Model name") or info["model_name"]
        info["cpus"] = int(fields["CPU(s)"]) if fields.get("CPU(s)", "").isdigit() else None
        info["cores_per_socket"] = fields.get("Core(s) per socket")
        info["sockets"] = fields.get("Socket(s)")
        info["threads_per_core"] = fields.get("Thread(s) per core")
        info["hypervisor"] = fields.get("Hypervisor vendor")
    elif sys.platform == "darwin":
        brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        info["model_name"] = brand.stdout.strip() or info["model_name"]
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds of timed reps per size (at least 3)")
    ap.add_argument("--worker", choices=["mlx", "numpy"], help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every configuration")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--report", action="store_true", help="print the table of an earlier run's JSON (--out)")
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.sizes, args.min_time)))
        return
    if args.report:
        print_report(json.loads(args.out.read_text()))
        return

    # Rounds interleave the configurations, so that a burst of load from elsewhere on a shared machine
    # hits one round, not one configuration; the table reports the best round.
    runs: dict[str, Any] = {
        name: {"label": label, "env": env_over, "rounds": []} for name, label, env_over, _ in CONFIGS
    }
    for rnd in range(args.rounds):
        for name, label, env_over, engine in CONFIGS:
            env = {k: v for k, v in os.environ.items() if k != "MLX_AUDIO_BLAS"} | env_over
            cmd = [sys.executable, __file__, "--worker", engine, "--min-time", str(args.min_time), "--sizes"]
            cmd += [str(n) for n in args.sizes]
            print(f"round {rnd + 1}/{args.rounds}: {label} ...", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stderr}")
            runs[name]["rounds"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for run in runs.values():
        run["best"] = {
            str(n): {
                key: max(r["sizes"][str(n)][key] for r in run["rounds"])
                for key in ("gflops_best", "gflops_median")
            }
            for n in args.sizes
        }

    result: dict[str, Any] = {
        "benchmark": "MLX CPU float32 matmul (n x n @ n x n), GFLOP/s = 2n^3 / time",
        "command": "python bench/blas_matmul.py " + " ".join(sys.argv[1:]),
        "hardware": hardware(),
        "python": platform.python_version(),
        "env": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"Wrote {args.out}\n")
    print_report(result)


def print_report(result: dict[str, Any]) -> None:
    """The hardware line and the Markdown table (median of each configuration's best round)."""
    runs, hw = result["runs"], result["hardware"]
    blas = runs["mlx-openblas"]["rounds"][0]["blas"]
    print(f"Hardware: {hw['model_name']}, {hw.get('cpus') or hw['cpu_count']} CPUs ({hw['platform']})")
    print(
        f"OpenBLAS: {blas['library'] or blas['reason']}; mlx {runs['mlx-openblas']['rounds'][0]['mlx_version']}"
    )
    rounds = len(runs["mlx-openblas"]["rounds"])
    print(f"GFLOP/s: median matmul time, best of {rounds} interleaved rounds (all timings are in the JSON)\n")
    ref, fast, peer = runs["mlx-reference"], runs["mlx-openblas"], runs["numpy"]
    print("| n | MLX, reference BLAS | MLX + OpenBLAS | speed-up | numpy (own OpenBLAS) |")
    print("|---:|---:|---:|---:|---:|")
    for n in ref["best"]:
        r, f, p = (x["best"][n]["gflops_median"] for x in (ref, fast, peer))
        print(f"| {n} | {r:.1f} | {f:.1f} | {f / r:.0f}x | {p:.1f} |")


if __name__ == "__main__":
    main()
