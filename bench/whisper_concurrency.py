"""Whisper throughput under concurrency, on whatever device MLX (and torch) find: CPU here, CUDA on the
lent GPU. Two views, each against the peers in the same run on the same machine:

  requests  end-to-end long-form transcription of N concurrent requests (the real pipeline: fallback
            ladder, timestamps, seeking) — ours through the MLX worker, which batches the requests'
            windows (and, with beam search, their beams); mlx-whisper has no batching, so N requests run
            one after another; transformers (CUDA only) decodes the N recordings as one batched long-form
            `generate` (timestamps, fallback, conditioning on the previous window);
  windows   model throughput on a batch of N 30-s windows (one pass each, temperature 0): ours
            (`decode_windows`), mlx-whisper (`decoding.decode` on a batch; greedy only),
            transformers (`WhisperForConditionalGeneration.generate`, fp16 + SDPA on CUDA, fp32 on CPU).

Usage: python bench/whisper_concurrency.py --model-dir [NAME=]DIR [[NAME=]DIR ...] [--audio WAV]
                                           [--concurrency 1 16] [--beams 1 5]
                                           [--engines ours,mlx-whisper,transformers] [--out JSON]
DIR is a converted model in this project's layout (`mlx-audio-server download whisper-base` prints it);
several are measured one after another in the same process. Installs nothing; a missing peer is reported
and skipped. Ours also records where its time went (log-mel, encoder, decoder steps and rows per step).
The JSON is rewritten after every row, so a run cut short keeps what it measured. Prints a table last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import types
import wave
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from dsp.blas import ensure_fast_blas

ensure_fast_blas()  # the OpenBLAS preload must precede the first `import mlx`

# isort: split
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

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

STAGE: dict[str, float] = {}


def reset_stage() -> None:
    STAGE.clear()
    STAGE.update(mel_s=0.0, encoder_s=0.0, windows=0, steps=0, rows=0)


def stage_split(wall: float) -> dict[str, float]:
    """Where ours spent ``wall``: log-mel and encoder timed around their (synchronising) calls, the rest
    is the decoder (prefill, steps, token rules, fallback re-decodes, the loop's host work)."""
    s = dict(STAGE)
    decoder = wall - s["mel_s"] - s["encoder_s"]
    steps = max(int(s["steps"]), 1)
    return {
        "mel_s": round(s["mel_s"], 4),
        "encoder_s": round(s["encoder_s"], 4),
        "encoder_windows": int(s["windows"]),
        "decoder_s": round(decoder, 4),
        "steps": int(s["steps"]),
        "rows_per_step": round(s["rows"] / steps, 2),
        "decoder_ms_per_step": round(1e3 * decoder / steps, 3),
    }


def load_ours(model_dir: Path) -> Any:
    from models.whisper import transcribe as loop
    from models.whisper.cpu_backend import CPUSession
    from models.whisper.family import FAMILY
    from models.whisper.mlx_backend import MLXSession

    tr = FAMILY.load(model_dir, types.SimpleNamespace(options={}))
    backend = tr.backend
    encode, log_mel = backend.encode, loop.log_mel

    def timed_encode(mel: Any) -> Any:
        t0 = time.perf_counter()
        out = encode(mel)  # evaluates its result
        STAGE["encoder_s"] = STAGE.get("encoder_s", 0.0) + time.perf_counter() - t0
        STAGE["windows"] = STAGE.get("windows", 0) + (mel.shape[0] if mel.ndim == 3 else 1)
        return out

    def timed_log_mel(audio: Any, n_mels: int) -> Any:
        t0 = time.perf_counter()
        out = log_mel(audio, n_mels)  # evaluates its result
        STAGE["mel_s"] = STAGE.get("mel_s", 0.0) + time.perf_counter() - t0
        return out

    backend.encode, loop.log_mel = timed_encode, timed_log_mel
    for session in (MLXSession, CPUSession):  # the MLX and the CPU backends' decoders
        if getattr(session, "_bench_counted", False):  # count decoder steps and their rows (once)
            continue

        def counting(step: Any) -> Any:
            def counted_step(self: Any, tokens: Any) -> Any:
                STAGE["steps"] = STAGE.get("steps", 0) + 1
                STAGE["rows"] = STAGE.get("rows", 0) + tokens.shape[0]
                return step(self, tokens)

            return counted_step

        session.step = counting(session.step)  # type: ignore[method-assign]
        session._bench_counted = True  # type: ignore[attr-defined]
    return tr


async def ours_requests(
    worker: Any, transcriber: Any, audio: np.ndarray, n: int, beam: int
) -> tuple[float, list[str], dict[str, float]]:
    """N concurrent requests through the MLX worker, as the server runs them."""
    from models.tasks import Segment, TranscribeOptions

    options = TranscribeOptions(language="en", beam_size=beam if beam > 1 else None)

    async def one() -> str:
        stream = await worker.stream(transcriber.transcribe_stream, audio, options)
        return "".join([s.text async for s in stream if isinstance(s, Segment)]).strip()

    reset_stage()
    t0 = time.perf_counter()
    texts = await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - t0
    return wall, list(texts), stage_split(wall)


async def ours(model_dir: Path, audio: np.ndarray, windows: list[mx.array], args: Any, record: Any) -> None:
    """Load on the worker thread (as the server does: MLX streams belong to their thread), then measure."""
    from models.worker import MLXWorker

    worker = MLXWorker(max_queue=64)
    worker.start()
    try:
        tr = await worker.run(load_ours, model_dir)
        duration = len(audio) / 16000
        for beam in args.beams:
            await ours_requests(worker, tr, audio, 1, beam)  # warm-up: kernels, compiled steps
            for n in args.concurrency:
                results = [await ours_requests(worker, tr, audio, n, beam) for _ in range(args.runs)]
                wall, texts, stages = min(results, key=lambda r: r[0])
                record("ours (MLX)", "requests", n, beam, wall, n * duration, texts, stages=stages)
                batch = mx.stack([windows[i % len(windows)] for i in range(n)])
                mx.eval(batch)
                await worker.run(ours_windows, tr, batch, beam)  # warm-up for this batch shape
                runs = [await worker.run(ours_windows, tr, batch, beam) for _ in range(args.runs)]
                wall, texts, stages = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
                record("ours (MLX)", "windows", n, beam, wall, n * 30.0, window_texts=texts, stages=stages)
    finally:
        await worker.stop()


def ours_windows(transcriber: Any, mels: mx.array, beam: int) -> tuple[float, list[str], dict[str, float]]:
    from models.whisper.transcribe import LoopOptions, WindowJob, decode_windows

    jobs = [WindowJob(m, (), "en", "transcribe", (0.0,), beam if beam > 1 else None, 0) for m in mels]
    reset_stage()
    t0 = time.perf_counter()
    out = decode_windows(transcriber.backend, jobs, LoopOptions())
    sync()
    wall = time.perf_counter() - t0
    return wall, [r.decoded.text for r in out], stage_split(wall)


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


def mlx_whisper_windows(model: Any, mels: mx.array, fp16: bool) -> tuple[float, list[str]]:
    from mlx_whisper.decoding import DecodingOptions, decode

    t0 = time.perf_counter()
    out = decode(
        model, mels.astype(mx.float16 if fp16 else mx.float32), DecodingOptions(language="en", fp16=fp16)
    )
    sync()
    return time.perf_counter() - t0, [r.text for r in out]


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
        decoder_start_token_id=50258 if cfg["n_vocab"] > 51864 else 50257,
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


def transformers_windows(
    model: Any, mels: mx.array, prefix: list[int], beam: int, decode: Any
) -> tuple[float, list[str]]:
    import torch

    dev = next(model.parameters()).device
    feats = torch.from_numpy(np.array(mels.astype(mx.float32)).transpose(0, 2, 1).copy()).to(dev)
    feats = feats.to(next(model.parameters()).dtype)
    ids = torch.tensor([prefix] * feats.shape[0], device=dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_features=feats, decoder_input_ids=ids, max_new_tokens=200, do_sample=False, num_beams=beam
        )
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return wall, [decode(row) for row in out.tolist()]


def transformers_requests(model: Any, processor: Any, audio: np.ndarray, n: int, beam: int) -> Any:
    from whisper_rtf import hf_transcribe  # bench/ is on sys.path when this file runs as a script

    t0 = time.perf_counter()
    texts = hf_transcribe(model, processor, [audio] * n, beam)
    return time.perf_counter() - t0, [t.strip() for t in texts]


# --- driver -----------------------------------------------------------------------------------------


def median_time(fn: Any, runs: int) -> tuple[float, list[str]]:
    fn()  # warm-up (kernel compilation on a GPU)
    results = sorted((fn() for _ in range(runs)), key=lambda r: r[0])
    return results[len(results) // 2]


def model_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        return Path(text).name, Path(text)
    return name, Path(path)


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for name in ("mlx", "mlx-cuda-13", "mlx-cpu", "numpy", "torch", "transformers", "mlx-whisper"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=model_arg, nargs="+", required=True, metavar="[NAME=]DIR")
    p.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    p.add_argument("--reference", default=None, help="reference text for WER (default: two_cities)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--beams", type=int, nargs="+", default=[1], help="beam sizes (1: greedy)")
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
    from models.whisper.audio import log_mel_spectrogram
    from models.whisper.constants import N_FRAMES, N_SAMPLES

    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {
        "device": str(mx.default_device()),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "audio": args.audio.name,
        "audio_seconds": duration,
        "concurrency": args.concurrency,
        "beams": args.beams,
        "runs": args.runs,
        "versions": versions(),
    }
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps({"info": info, "rows": rows}, indent=1))

    for model_name, model_dir in args.model_dir:
        cfg = json.loads((model_dir / "config.json").read_text())
        mel = log_mel_spectrogram(mx.array(audio), cfg["n_mels"], padding=N_SAMPLES)
        windows = [mel[i : i + N_FRAMES] for i in range(0, mel.shape[0] - N_FRAMES, N_FRAMES)]
        mx.eval(
            windows
        )  # lazy arrays belong to this thread's stream: materialise before the worker uses them

        def record(
            engine: str,
            view: str,
            n: int,
            beam: int,
            wall: float,
            audio_s: float,
            texts: list[str] | None = None,
            *,
            window_texts: list[str] | None = None,
            stages: dict[str, float] | None = None,
            model_name: str = model_name,
            n_windows: int = len(windows),
        ) -> None:
            row: dict[str, Any] = {
                "model": model_name,
                "engine": engine,
                "view": view,
                "n": n,
                "beam": beam,
                "wall_s": round(wall, 4),
                "x_real_time": round(audio_s / wall, 1),
            }
            if texts:
                row["wer"] = round(float(np.mean([wer(reference, t) for t in texts])), 4)
            if window_texts and len(window_texts) >= n_windows:
                # a sanity check only: the clip's windows decoded independently, joined (a word cut at a
                # window's edge counts as an error)
                row["wer_windows_joined"] = round(wer(reference, " ".join(window_texts[:n_windows])), 4)
            if stages:
                row["stages"] = stages
            rows.append(row)
            save()
            print(json.dumps(row), flush=True)

        def unavailable(engine: str, view: str, beam: int, why: str, model_name: str = model_name) -> None:
            row = {"model": model_name, "engine": engine, "view": view, "beam": beam, "status": why}
            rows.append(row)
            save()
            print(json.dumps(row), flush=True)

        if "ours" in engines:
            asyncio.run(ours(model_dir, audio, windows, args, record))
        if "mlx-whisper" in engines:
            try:
                model, path = load_mlx_whisper(model_dir, mx.float16 if gpu else mx.float32)
            except ImportError as exc:
                print(f"mlx-whisper not installed: {exc}")
            else:
                for beam in args.beams:
                    if beam > 1:
                        unavailable("mlx-whisper", "requests, windows", beam, "no beam search in mlx-whisper")
                        continue
                    for n in args.concurrency:
                        mlx_whisper_requests(path, audio, 1, gpu)  # warm-up
                        wall, texts = mlx_whisper_requests(path, audio, n, gpu)
                        record("mlx-whisper", "requests (sequential)", n, beam, wall, n * duration, texts)
                        batch = mx.stack([windows[i % len(windows)] for i in range(n)])
                        wall, wtexts = median_time(
                            lambda b=batch, m=model: mlx_whisper_windows(m, b, gpu), args.runs
                        )
                        record("mlx-whisper", "windows", n, beam, wall, n * 30.0, window_texts=wtexts)
                del model
        if "transformers" in engines:
            try:
                hf_model = load_transformers(model_dir)
            except ImportError as exc:
                print(f"transformers not installed: {exc}")
            else:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

                def decode(ids: list[int], tok: Any = tok) -> str:
                    return str(tok.decode(ids, skip_special_tokens=True))

                multilingual = cfg["n_vocab"] > 51864
                prefix = [50258, 50259, 50359, 50363] if multilingual else [50257, 50362]
                hf_long = None
                if gpu:
                    sys.path.insert(0, str(ROOT / "bench"))
                    from whisper_rtf import hf_load

                    hf_long = hf_load(model_dir)
                for beam in args.beams:
                    for n in args.concurrency:
                        if hf_long is not None:
                            transformers_requests(*hf_long, audio, 1, beam)  # warm-up
                            results = [
                                transformers_requests(*hf_long, audio, n, beam) for _ in range(args.runs)
                            ]
                            wall, texts = min(results, key=lambda r: r[0])
                            record(
                                "transformers", "requests (one batched generate)", n, beam, wall,
                                n * duration, texts,
                            )  # fmt: skip
                        batch = mx.stack([windows[i % len(windows)] for i in range(n)])
                        wall, wtexts = median_time(
                            lambda b=batch, k=beam, m=hf_model, pf=prefix: transformers_windows(
                                m, b, pf, k, decode
                            ),
                            args.runs,
                        )
                        record("transformers", "windows", n, beam, wall, n * 30.0, window_texts=wtexts)
                del hf_model, hf_long
    save()
    print(f"\n{info}\n")
    print(
        f"{'model':16} {'engine':13} {'view':32} {'beam':>4} {'N':>3} {'wall s':>8} {'x real time':>11} "
        f"{'WER':>6} {'enc s':>7} {'dec ms/step':>11} {'rows/step':>9}"
    )
    for r in rows:
        if "status" in r:
            print(f"{r['model']:16} {r['engine']:13} {r['view']:32} {r['beam']:>4}  {r['status']}")
            continue
        s = r.get("stages") or {}
        w = r.get("wer", r.get("wer_windows_joined", float("nan")))
        print(
            f"{r['model']:16} {r['engine']:13} {r['view']:32} {r['beam']:>4} {r['n']:>3} {r['wall_s']:>8.3f} "
            f"{r['x_real_time']:>11.1f} {w:>6.3f} {s.get('encoder_s', float('nan')):>7.3f} "
            f"{s.get('decoder_ms_per_step', float('nan')):>11.2f} {s.get('rows_per_step', float('nan')):>9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
