"""Live transcription latency over `WS /v1/realtime?intent=transcription`: N clients at once, each streaming
real speech at real time (40-ms pieces of pcm16 at 24 kHz, as a microphone would) with server_vad, against
our server on this machine.

Per turn: how long after the speech started the first delta arrived, how long after the turn's end (the
VAD's decision, `audio_end_ms`: its silence_duration already waited) the completed transcript arrived, and
its WER. Times are measured at the client from when the audio at that position was sent.

    .venv/bin/python bench/realtime_latency.py [--sessions 1 4] [--out docs/results/realtime_latency.json]
        [--model whisper-base] [--full-partials]

`--model`: the transcription model the sessions ask for (default: tiny.en, the default transcriber);
`--full-partials`: re-decode open turns over whole 30-s windows instead of drafts (the draft's
effect). The same audio is also sent once to /v1/audio/transcriptions: the WER a turn must not exceed.

No peer runs here: mlx-audio's realtime server needs macOS (Metal), and speaches sends one completed event
per pause (no deltas) — there is nothing to time against ours for the first-delta figure.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dsp.blas import ensure_fast_blas  # noqa: E402

ensure_fast_blas()

import numpy as np  # noqa: E402
from machine import machine, write_results  # noqa: E402

CHUNK_MS = 40


def _speech() -> tuple[np.ndarray, str]:
    from tests.support.audio import load_audio
    from tests.support.data import REFERENCE

    quiet = (np.random.default_rng(0).standard_normal(16_000) * 1e-4).astype(np.float32)
    return np.concatenate([quiet, load_audio("jfk"), quiet, quiet]), REFERENCE["jfk"]


def _client(base: str, pcm: bytes, result: dict[str, Any], model: str) -> None:
    from websockets.sync.client import connect

    sent_at: list[float] = []  # wall time each chunk left
    step = CHUNK_MS * 48  # bytes of 24-kHz pcm16 per chunk
    events: list[tuple[float, dict[str, Any]]] = []
    with connect(
        base.replace("http://", "ws://") + "/v1/realtime?intent=transcription", open_timeout=120
    ) as ws:
        ws.recv(timeout=120)  # session.created
        detection = {"type": "server_vad", "silence_duration_ms": 1200}
        ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "transcription",
                        "audio": {"input": {"transcription": {"model": model}, "turn_detection": detection}},
                    },
                }
            )
        )

        def reader() -> None:
            while True:
                event = json.loads(ws.recv(timeout=300))
                events.append((time.perf_counter(), event))
                if event["type"].endswith("transcription.completed"):
                    return

        thread = threading.Thread(target=reader)
        thread.start()
        start = time.perf_counter()
        for i, at in enumerate(range(0, len(pcm), step)):
            delay = start + i * CHUNK_MS / 1000 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent_at.append(time.perf_counter())
            ws.send(
                json.dumps(
                    {
                        "type": "input_audio_buffer.append",
                        "audio": base64.b64encode(pcm[at : at + step]).decode(),
                    }
                )
            )
        thread.join()

    def sent(ms: int) -> float:
        return sent_at[min(len(sent_at) - 1, ms // CHUNK_MS)]

    deltas = "".join(e["delta"] for _, e in events if e["type"].endswith("transcription.delta"))
    started = next(e for _, e in events if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for _, e in events if e["type"] == "input_audio_buffer.speech_stopped")
    first_delta = next(t for t, e in events if e["type"].endswith("transcription.delta"))
    done_at, done = next((t, e) for t, e in events if e["type"].endswith("transcription.completed"))
    result.update(
        first_delta_after_speech_start_s=first_delta - sent(started["audio_start_ms"] + 300),
        completed_after_turn_end_s=done_at - sent(stopped["audio_end_ms"]),
        deltas=sum(e["type"].endswith("transcription.delta") for _, e in events),
        transcript=done["transcript"],
        delta_text=deltas,
        # words of the deltas (never retracted) that the completed transcript does not begin with
        delta_words_retracted=_differing(deltas, done["transcript"]),
    )


def _differing(deltas: str, transcript: str) -> int:
    def norm(text: str) -> list[str]:
        return ["".join(ch for ch in w.lower() if ch.isalnum()) for w in text.split()]

    shown, final = norm(deltas), norm(transcript)
    return sum(a != b for a, b in zip(shown, final, strict=False)) + max(0, len(shown) - len(final))


def _http_wer(base: str, audio: np.ndarray, reference: str, model: str) -> float:
    import httpx

    from dsp.encode import encode
    from tests.support.data import wer

    wav = encode(audio, 16_000, "wav")
    r = httpx.post(
        f"{base}/v1/audio/transcriptions",
        files={"file": ("jfk.wav", wav, "audio/wav")},
        data={"model": model},
        timeout=300,
    )
    r.raise_for_status()
    return float(wer(reference, r.json()["text"]))


def measure(sessions: list[int], model: str, full_partials: bool = False) -> dict[str, Any]:

    from server import realtime
    from server.app import create_app
    from server.settings import Settings
    from tests.support.data import wer
    from tests.support.live import serve

    audio, reference = _speech()
    from dsp.resample import resample

    realtime.DRAFT_PARTIALS = not full_partials
    pcm = (np.clip(resample(audio, 16_000, 24_000), -1, 1) * 32767).astype("<i2").tobytes()
    rows = []
    settings = Settings(cache_dir=Path(tempfile.gettempdir()) / "mlx-audio-bench")
    with serve(create_app(settings), timeout=900) as base:
        _client(base, pcm, {}, model)  # warm-up: models loaded, kernels compiled
        http_wer = _http_wer(base, audio, reference, model)
        for n in sessions:
            results: list[dict[str, Any]] = [{} for _ in range(n)]
            threads = [threading.Thread(target=_client, args=(base, pcm, r, model)) for r in results]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            row = {
                "sessions": n,
                "first_delta_after_speech_start_s": statistics.median(
                    r["first_delta_after_speech_start_s"] for r in results
                ),
                "completed_after_turn_end_s": statistics.median(
                    r["completed_after_turn_end_s"] for r in results
                ),
                "deltas_per_turn": statistics.median(r["deltas"] for r in results),
                "wer": statistics.mean(wer(reference, r["transcript"]) for r in results),
                "delta_words_retracted": sum(r["delta_words_retracted"] for r in results),
                "raw": results,
            }
            rows.append(row)
            print(
                f"{n} session(s): first delta {row['first_delta_after_speech_start_s']:.2f} s after speech starts, "
                f"completed {row['completed_after_turn_end_s']:.2f} s after the turn ends, "
                f"{row['deltas_per_turn']:.0f} deltas, WER {row['wer']:.3f} (HTTP {http_wer:.3f}), "
                f"{row['delta_words_retracted']} delta words not in the transcript",
                flush=True,
            )
    return {
        "machine": machine(),
        "audio": "jfk.wav (11 s) between 1-s silences, 40-ms pieces at real time, server_vad 1.2 s",
        "partials": "whole 30-s windows" if full_partials else "drafts",
        "model": model,
        "http_transcription_wer": http_wer,
        "rows": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 4])
    p.add_argument("--out", type=Path)
    p.add_argument("--model", default="whisper-tiny.en", help="the transcription model of the sessions")
    p.add_argument("--full-partials", action="store_true", help="whole-window re-decodes, not drafts")
    args = p.parse_args()
    result = measure(args.sessions, args.model, args.full_partials)
    write_results(args.out, result)


if __name__ == "__main__":
    main()
