"""Whisper throughput under concurrency, on whatever device MLX (and torch) find: CPU here, CUDA on the
lent GPU. Two views, each against the peers in the same run on the same machine:

  requests  end-to-end long-form transcription of N concurrent requests (the real pipeline: fallback
            ladder, timestamps, seeking) — ours through the MLX worker, which batches the requests'
            windows; mlx-whisper has no batching, so N requests run one after another;
  windows   model throughput on a batch of N 30-s windows (greedy, one pass each): ours
            (`decode_windows`), mlx-whisper (`decoding.decode` on a batch), transformers
            (`WhisperForConditionalGeneration.generate`, fp16 + SDPA on CUDA, fp32 on CPU).

Usage: python bench/whisper_concurrency.py --model-dir DIR [--audio WAV] [--concurrency 1 16]
                                           [--engines ours,mlx-whisper,transformers] [--out JSON]
DIR is a converted model in this project's layout (`mlx-audio-server download whisper-base` prints it).
Installs nothing; a missing peer is reported and skipped. Prints a table last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
import types
import wave
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

import dsp  # noqa: F401  (BLAS preload before mlx)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = ROOT.parent / "shared" / "data" / "speech" / "two_cities_16k.wav"


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c in " '" else " " for c in text).split()


def wer(ref: str, hyp: str) -> float:
    r, h = words(ref), words(hyp)
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)] / max(1, len(r))


def sync() -> None:
    mx.synchronize()


# --- ours -------------------------------------------------------------------------------------------


def load_ours(model_dir: Path) -> Any:
    from models.whisper.family import FAMILY

    return FAMILY.load(model_dir, types.SimpleNamespace(options={}))


async def ours_requests(worker: Any, transcriber: Any, audio: np.ndarray, n: int) -> tuple[float, list[str]]:
    """N concurrent requests through the MLX worker, as the server runs them."""
    from models.tasks import Segment, TranscribeOptions

    async def one() -> str:
        stream = await worker.stream(transcriber.transcribe_stream, audio, TranscribeOptions(language="en"))
        return "".join([s.text async for s in stream if isinstance(s, Segment)]).strip()

    t0 = time.perf_counter()
    texts = await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0, list(texts)


async def ours(model_dir: Path, audio: np.ndarray, windows: list[mx.array], args: Any, record: Any) -> None:
    """Load on the worker thread (as the server does: MLX streams belong to their thread), then measure."""
    from models.worker import MLXWorker

    worker = MLXWorker(max_queue=64)
    worker.start()
    try:
        tr = await worker.run(load_ours, model_dir)
        duration = len(audio) / 16000
        await ours_requests(worker, tr, audio, 1)  # warm-up: kernels, compiled steps
        for n in args.concurrency:
            results = [await ours_requests(worker, tr, audio, n) for _ in range(args.runs)]
            wall, texts = min(results, key=lambda r: r[0])
            record("ours (MLX)", "requests", n, wall, n * duration, texts)
            batch = mx.stack([windows[i % len(windows)] for i in range(n)])
            mx.eval(batch)
            await worker.run(ours_windows, tr, batch)  # warm-up for this batch shape
            times = [await worker.run(ours_windows, tr, batch) for _ in range(args.runs)]
            record("ours (MLX)", "windows", n, float(np.median(times)), n * 30.0)
    finally:
        await worker.stop()


def ours_windows(transcriber: Any, mels: mx.array) -> float:
    from models.whisper.transcribe import LoopOptions, WindowJob, decode_windows

    jobs = [WindowJob(m, (), "en", "transcribe", (0.0,), None, 0) for m in mels]
    t0 = time.perf_counter()
    decode_windows(transcriber.backend, jobs, LoopOptions())
    sync()
    return time.perf_counter() - t0


# --- mlx-whisper ------------------------------------------------------------------------------------


def load_mlx_whisper(model_dir: Path, dtype: mx.Dtype) -> tuple[Any, Path]:
    sys.modules.setdefault(
        "numba", types.SimpleNamespace(jit=lambda *a, **k: lambda f: f)
    )  # word timing only
    from mlx_whisper.load_models import load_model

    cfg = json.loads((model_dir / "config.json").read_text())
    dims = {
        k: cfg[k]
        for k in (
            "n_mels",
            "n_audio_ctx",
            "n_audio_state",
            "n_audio_head",
            "n_audio_layer",
            "n_vocab",
            "n_text_ctx",
            "n_text_state",
            "n_text_head",
            "n_text_layer",
        )
    }
    weights = mx.load(str(model_dir / "model.safetensors"))
    assert isinstance(weights, dict)
    weights = {k: v.astype(dtype) for k, v in weights.items() if k != "encoder.positional_embedding"}
    out = Path(tempfile.mkdtemp(prefix="mlx-whisper-"))
    (out / "config.json").write_text(json.dumps(dims))
    mx.save_safetensors(str(out / "weights.safetensors"), weights)
    return load_model(str(out), dtype=dtype), out


def mlx_whisper_requests(path: Path, audio: np.ndarray, n: int, fp16: bool) -> tuple[float, list[str]]:
    import mlx_whisper

    t0 = time.perf_counter()
    texts = [
        mlx_whisper.transcribe(audio, path_or_hf_repo=str(path), fp16=fp16, language="en")["text"].strip()
        for _ in range(n)
    ]
    return time.perf_counter() - t0, texts


def mlx_whisper_windows(model: Any, mels: mx.array, fp16: bool) -> float:
    from mlx_whisper.decoding import DecodingOptions, decode

    t0 = time.perf_counter()
    decode(model, mels.astype(mx.float16 if fp16 else mx.float32), DecodingOptions(language="en", fp16=fp16))
    sync()
    return time.perf_counter() - t0


# --- transformers -----------------------------------------------------------------------------------


def load_transformers(model_dir: Path) -> Any:
    import torch
    from transformers import WhisperConfig as HFConfig
    from transformers import WhisperForConditionalGeneration

    from models.whisper.convert import transformers_name_map

    cfg = json.loads((model_dir / "config.json").read_text())
    hf = HFConfig(
        vocab_size=cfg["n_vocab"],
        num_mel_bins=cfg["n_mels"],
        d_model=cfg["n_audio_state"],
        encoder_layers=cfg["n_audio_layer"],
        decoder_layers=cfg["n_text_layer"],
        encoder_attention_heads=cfg["n_audio_head"],
        decoder_attention_heads=cfg["n_text_head"],
        encoder_ffn_dim=4 * cfg["n_audio_state"],
        decoder_ffn_dim=4 * cfg["n_text_state"],
        max_source_positions=cfg["n_audio_ctx"],
        max_target_positions=cfg["n_text_ctx"],
        decoder_start_token_id=50258,
        eos_token_id=50257 if cfg["n_vocab"] > 51864 else 50256,
        pad_token_id=50257 if cfg["n_vocab"] > 51864 else 50256,
    )
    cuda = torch.cuda.is_available()
    dtype = torch.float16 if cuda else torch.float32
    model = WhisperForConditionalGeneration(hf).to(dtype)
    names = transformers_name_map(cfg["n_audio_layer"], cfg["n_text_layer"])
    weights = mx.load(str(model_dir / "model.safetensors"))
    assert isinstance(weights, dict)
    state = {}
    for ours, theirs in names.items():
        a = np.array(weights[ours].astype(mx.float32))
        if ours in ("encoder.conv1.weight", "encoder.conv2.weight"):
            a = a.transpose(0, 2, 1)
        state[theirs] = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("k_proj.bias" in k or k == "proj_out.weight" for k in missing), missing
    model.tie_weights()
    model = model.to("cuda" if cuda else "cpu").eval()
    model.config._attn_implementation = "sdpa"
    return model


def transformers_windows(model: Any, mels: mx.array, prefix: list[int]) -> float:
    import torch

    dev = next(model.parameters()).device
    feats = torch.from_numpy(np.array(mels.astype(mx.float32)).transpose(0, 2, 1).copy()).to(dev)
    feats = feats.to(next(model.parameters()).dtype)
    ids = torch.tensor([prefix] * feats.shape[0], device=dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            input_features=feats, decoder_input_ids=ids, max_new_tokens=200, do_sample=False, num_beams=1
        )
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


# --- driver -----------------------------------------------------------------------------------------


def median_time(fn: Any, runs: int) -> float:
    fn()  # warm-up (kernel compilation on a GPU)
    return float(np.median([fn() for _ in range(runs)]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    p.add_argument("--reference", default=None, help="reference text for WER (default: two_cities)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--engines", default="ours,mlx-whisper,transformers")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "whisper_concurrency.json")
    args = p.parse_args()
    engines = args.engines.split(",")
    gpu = mx.default_device() == mx.gpu
    audio = read_wav(args.audio)
    duration = len(audio) / 16000
    reference = args.reference
    if reference is None:
        sys.path.insert(0, str(ROOT))
        from tests.support.data import REFERENCE

        reference = REFERENCE["two_cities"]
    from models.whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram

    n_mels = json.loads((args.model_dir / "config.json").read_text())["n_mels"]
    mel = log_mel_spectrogram(mx.array(audio), n_mels, padding=N_SAMPLES)
    windows = [mel[i : i + N_FRAMES] for i in range(0, mel.shape[0] - N_FRAMES, N_FRAMES)]
    mx.eval(windows)  # lazy arrays belong to this thread's stream: materialise before the worker uses them
    rows: list[dict[str, Any]] = []
    info = {"device": str(mx.default_device()), "machine": platform.machine(), "audio_seconds": duration}
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass

    def record(
        engine: str, view: str, n: int, wall: float, audio_s: float, texts: list[str] | None = None
    ) -> None:
        row = {
            "engine": engine,
            "view": view,
            "n": n,
            "wall_s": round(wall, 4),
            "x_real_time": round(audio_s / wall, 1),
        }
        if texts:
            row["wer"] = round(float(np.mean([wer(reference, t) for t in texts])), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)

    if "ours" in engines:
        asyncio.run(ours(args.model_dir, audio, windows, args, record))
    if "mlx-whisper" in engines:
        try:
            model, path = load_mlx_whisper(args.model_dir, mx.float16 if gpu else mx.float32)
        except ImportError as exc:
            print(f"mlx-whisper not installed: {exc}")
        else:
            for n in args.concurrency:
                mlx_whisper_requests(path, audio, 1, gpu)  # warm-up
                wall, texts = mlx_whisper_requests(path, audio, n, gpu)
                record("mlx-whisper", "requests (sequential)", n, wall, n * duration, texts)
                batch = mx.stack([windows[i % len(windows)] for i in range(n)])
                record(
                    "mlx-whisper",
                    "windows",
                    n,
                    median_time(lambda b=batch: mlx_whisper_windows(model, b, gpu), args.runs),
                    n * 30.0,
                )
    if "transformers" in engines:
        try:
            hf_model = load_transformers(args.model_dir)
        except ImportError as exc:
            print(f"transformers not installed: {exc}")
        else:
            multilingual = json.loads((args.model_dir / "config.json").read_text())["n_vocab"] > 51864
            prefix = [50258, 50259, 50359, 50363] if multilingual else [50257, 50362]
            for n in args.concurrency:
                batch = mx.stack([windows[i % len(windows)] for i in range(n)])
                record(
                    "transformers",
                    "windows",
                    n,
                    median_time(lambda b=batch: transformers_windows(hf_model, b, prefix), args.runs),
                    n * 30.0,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    print(f"\n{info}\n")
    print(f"{'engine':24} {'view':24} {'N':>3} {'wall s':>8} {'x real time':>12} {'WER':>6}")
    for r in rows:
        print(
            f"{r['engine']:24} {r['view']:24} {r['n']:>3} {r['wall_s']:>8.3f} {r['x_real_time']:>12.1f} "
            f"{r.get('wer', float('nan')):>6.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
