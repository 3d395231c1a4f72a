"""The vocoders' 1-D convolutions on this CPU: our direct C kernel (float32, and bfloat16 products where the
CPU has AVX-512 BF16) vs im2col + OpenBLAS sgemm (numpy) vs
MLX's per-tap matmuls (`models.layers.conv.DilatedConv1d`, the MLX model's path) vs torch's conv1d (oneDNN),
on the shapes of Piper's HiFi-GAN (medium voices) and Kokoro's iSTFTNet generator, for one second of
audio. Interleaved rounds (--runs), in each the best of 5 back-to-back calls of an engine, then the median
over rounds; GFLOP/s = 2·T·K·C_in·C_out / time. "max_abs_err_vs_torch" is against torch's float32 conv;
the bfloat16 kernel's is its rounding (~2.3e-3 of the output's RMS).

    .venv/bin/python bench/conv_cpu.py [--runs 7] [--out bench/results/conv_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsp.blas import ensure_fast_blas

ensure_fast_blas()  # the OpenBLAS preload must precede the first `import mlx`

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from models.cpu import conv as cpu_conv  # noqa: E402
from models.layers.conv import DilatedConv1d  # noqa: E402

# (name, frames, c_in, c_out, k, dilation) for one second of audio
SHAPES = [
    ("piper stage 1 (689 fr, 128 ch)", 689, 128, 128, 7, 3),
    ("piper stage 2 (5512 fr, 64 ch)", 5512, 64, 64, 5, 2),
    ("piper stage 3 (22050 fr, 32 ch)", 22050, 32, 32, 3, 12),
    ("piper stage 3 k=7", 22050, 32, 32, 7, 1),
    ("kokoro stage 1 (400 fr, 256 ch)", 400, 256, 256, 7, 3),
    ("kokoro stage 2 (2400 fr, 128 ch)", 2400, 128, 128, 11, 5),
    ("kokoro stage 2 k=3", 2400, 128, 128, 3, 1),
]


def _time(fn, runs: int) -> list[float]:
    fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def measure(name: str, t: int, c_in: int, c_out: int, k: int, d: int, runs: int) -> dict:
    import torch

    rng = np.random.default_rng(0)
    pad = d * (k - 1) // 2
    x = rng.standard_normal((t, c_in), np.float32)
    w = (rng.standard_normal((k, c_in, c_out), np.float32) / np.sqrt(k * c_in)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    layer = DilatedConv1d(c_in, c_out, k, dilation=d, padding=pad)
    layer.weight = mx.array(w.transpose(2, 0, 1))
    layer.bias = mx.array(b)
    xm = mx.array(x[None])
    xt = torch.from_numpy(x.T.copy())[None]
    wt = torch.from_numpy(w.transpose(2, 1, 0).copy())
    bt = torch.from_numpy(b)

    weight = cpu_conv.ConvWeight(w)
    weight_bf16 = cpu_conv.ConvWeight(w, bf16=True)

    def ours(c_kernel: bool, wt: cpu_conv.ConvWeight = weight) -> np.ndarray:
        cpu_conv.use_c_kernel(c_kernel)
        return cpu_conv.conv1d(x, wt, b, dilation=d, padding=pad)

    engines = {
        "sgemm": lambda: ours(False),
        "mlx taps": lambda: mx.eval(layer(xm)),
        "torch": lambda: torch.nn.functional.conv1d(xt, wt, bt, padding=pad, dilation=d),
    }
    if cpu_conv.available():
        engines = {"C kernel": lambda: ours(True), **engines}
    if cpu_conv.bf16_available():
        engines = {"C kernel bf16": lambda: ours(True, weight_bf16), **engines}
    ref = torch.nn.functional.conv1d(xt, wt, bt, padding=pad, dilation=d)[0].T.numpy()
    err = {
        e: float(np.abs(f() - ref).max())
        for e, f in engines.items()
        if e in ("C kernel bf16", "C kernel", "sgemm")
    }
    times: dict[str, list[float]] = {e: [] for e in engines}
    for _ in range(runs):  # interleaved rounds; in each, the best of 5 back-to-back calls (other engines'
        for e, f in engines.items():  # thread pools spin for a while after their turn: the first call pays)
            times[e].append(min(_time(f, 5)))
    cpu_conv.use_c_kernel(True)
    flops = 2 * t * k * c_in * c_out
    return {
        "shape": name,
        "frames": t,
        "c_in": c_in,
        "c_out": c_out,
        "k": k,
        "dilation": d,
        "max_abs_err_vs_torch": err,
        "ms": {e: 1e3 * statistics.median(v) for e, v in times.items()},
        "gflops": {e: flops / statistics.median(v) / 1e9 for e, v in times.items()},
        "raw_s": times,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    rows = []
    for shape in SHAPES:
        row = measure(*shape, runs=args.runs)
        rows.append(row)
        cells = "  ".join(f"{e} {g:6.1f}" for e, g in row["gflops"].items())
        print(f"{row['shape']:36s} GFLOP/s: {cells}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"machine": platform.processor() or platform.machine(), "runs": args.runs}
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
