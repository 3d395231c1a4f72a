"""Whisper on a long recording: one block (window after window) vs VAD chunks decoded as one batch.

The recording is every clip of ``../shared/data/speech`` (jfk, beckett, two_cities), in turn, with 2 s of
silence between clips, repeated ``--repeat`` times (default 3: ~3.3 minutes). Engines, same weights, same
machine, one process:

- ``ours``: the server's default path (no ``chunking_strategy``): the openai-whisper long-form loop.
- ``ours-vad``: ``chunking_strategy="auto"``: Silero VAD (ours, MLX) → ≤ 30-s chunks → decoded together,
  ``max_batch`` windows at a time (4 on the CPU, 16 on a GPU). The VAD pass is included in the time.
- ``faster-whisper``: ``WhisperModel.transcribe`` (one block; float32 on the CPU, float16 on CUDA).
- ``faster-whisper-batched``: ``BatchedInferencePipeline`` (its Silero VAD + batched chunks, the same
  batch size as ours).

Greedy, English, timestamps on, temperature fallback as shipped; warm-up once, then the median of
``--runs``. × real time = audio seconds / wall seconds. WER against the concatenated reference texts.

    .venv/bin/python bench/whisper_long.py [--models tiny.en base] [--repeat 3] [--runs 2]
    .venv/bin/python bench/whisper_long.py --report    # the table again from bench/results/whisper_long.json

Where the weight packages are not installed (the lent GPU), point at converted directories instead:
``--model-dir DIR --vad-dir DIR --audio long.wav --reference-file long.txt`` (one model).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from whisper_rtf import Unavailable, ct2_dir, load_ours, on_gpu, read_clip, run_and_report  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "whisper_long.json"
ENGINES = ("ours", "ours-vad", "faster-whisper", "faster-whisper-batched")
CLIPS = ("jfk", "beckett", "two_cities_16k")


def recording(repeat: int) -> tuple[Any, str]:
    import numpy as np
    from scipy.io import wavfile

    from tests.support.data import REFERENCE, speech

    gap = np.zeros(2 * 16_000, np.float32)
    parts, refs = [], []
    for _ in range(repeat):
        for name in CLIPS:
            sr, pcm = wavfile.read(speech(f"{name}.wav"))
            assert sr == 16_000
            parts += [(pcm / 32768.0).astype(np.float32), gap]
            refs.append(REFERENCE[name.removesuffix("_16k")])
    return np.concatenate(parts[:-1]), " ".join(refs)


def prepare(engine: str, ctx: dict[str, Any]) -> Callable[[Any], str]:
    batch = 16 if ctx["gpu"] else 4
    if engine in ("ours", "ours-vad"):
        from models.batching import collect_transcription
        from models.families import builtin_models, get_family
        from models.registry import Registry
        from models.tasks import TranscribeOptions, VadOptions
        from models.weights import model_dir

        tr = ctx["ours"]
        vad = None
        if engine == "ours-vad":
            spec = Registry(builtin_models()).get("silero-vad")
            vad_dir = ctx["vad_dir"] or model_dir(spec, Path(ctx["cache"]))
            vad = get_family(spec.family).load(vad_dir, spec)

        def run_ours(audio: Any) -> str:
            speech = None
            if vad is not None:  # what the server does for chunking_strategy="auto"
                speech = tuple(vad.speech_segments(audio, VadOptions.for_windows(30.0)))
            opts = TranscribeOptions(language="en", speech=speech)
            return collect_transcription(tr.transcribe_stream(audio, opts)).text

        return run_ours
    try:
        from faster_whisper import BatchedInferencePipeline, WhisperModel
    except ImportError as e:
        raise Unavailable("not installed") from e
    if ctx["ct2_dir"] is None:
        raise Unavailable("no CTranslate2 directory here")
    if "fw" not in ctx:
        device = "cuda" if ctx["gpu"] else "cpu"
        ctx["fw"] = WhisperModel(
            str(ctx["ct2_dir"]), device=device, compute_type="float16" if ctx["gpu"] else "float32"
        )
    fw = ctx["fw"]
    if engine == "faster-whisper":

        def run_fw(audio: Any) -> str:
            segments, _ = fw.transcribe(audio, language="en", beam_size=1, vad_filter=False)
            return "".join(s.text for s in segments)

        return run_fw
    pipe = BatchedInferencePipeline(model=fw)

    def run_batched(audio: Any) -> str:
        segments, _ = pipe.transcribe(audio, language="en", beam_size=1, batch_size=batch)
        return "".join(s.text for s in segments)

    return run_batched


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import mlx.core as mx

    try:
        import jiwer  # noqa: F401  (tests.support.data.wer normalises with it)

        from tests.support.data import wer
    except ImportError:  # the lent GPU has neither: a plain word-level distance
        from whisper_concurrency import wer

    if args.audio:
        audio, reference = read_clip(args.audio), args.reference_file.read_text()
    else:
        audio, reference = recording(args.repeat)
    duration = len(audio) / 16_000
    gpu = on_gpu()
    rows = []
    for model in args.models:
        if args.model_dir:
            from models.whisper.family import FAMILY

            tr = FAMILY.load(args.model_dir, type("Spec", (), {"options": {}})())
            ct2 = None
        else:
            tr, _ = load_ours(model, Path(args.cache))
            ct2 = ct2_dir(model, Path(args.cache))
        ctx: dict[str, Any] = {
            "ours": tr,
            "gpu": gpu,
            "cache": args.cache,
            "ct2_dir": ct2,
            "vad_dir": args.vad_dir,
        }
        for engine in args.engines:
            row: dict[str, Any] = {"engine": engine, "model": model}
            try:
                run = prepare(engine, ctx)
                text = run(audio)  # warm-up
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    text = run(audio)
                    times.append(time.perf_counter() - t0)
            except Unavailable as e:
                rows.append(row | {"status": str(e)})
                continue
            median = statistics.median(times)
            row |= {"status": "ok", "times_s": times, "rtf": duration / median, "wer": wer(reference, text)}
            print(f"{model} {engine}: {row['rtf']:.1f}x  WER {row['wer']:.3f}", flush=True)
            rows.append(row)
    return {
        "seconds": duration,
        "repeat": args.repeat,
        "runs": args.runs,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "mlx": getattr(mx, "__version__", None),
            "device": str(mx.default_device()),
        },
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['seconds']:.0f} s recording, median of {result['runs']} runs, device {result['machine']['device']}",
        "| model | engine | × real time | WER |",
        "|---|---|---:|---:|",
    ]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['engine']} | {r['status']} | |")
        else:
            lines.append(f"| {r['model']} | {r['engine']} | {r['rtf']:.1f} | {r['wer']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny.en", "base"], choices=["tiny.en", "base"])
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--cache", default=os.environ.get("MLX_AUDIO_CACHE", "/tmp/mlxcache"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--model-dir", type=Path, help="a converted Whisper directory (instead of the packages)")
    p.add_argument("--vad-dir", type=Path, help="a converted Silero VAD directory")
    p.add_argument("--audio", type=Path, help="a 16-kHz mono wav instead of the built recording")
    p.add_argument("--reference-file", type=Path, help="its reference text")
    p.add_argument("--report", action="store_true")
    run_and_report(p.parse_args(), measure, table)


if __name__ == "__main__":
    main()
