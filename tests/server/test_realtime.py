"""WS /v1/realtime?intent=transcription against a real server: raw WebSocket clients and the official
OpenAI SDK (`client.realtime.connect`), real speech in, transcripts out; both turn-detection modes, both
session dialects, G.711 input, errors that leave the socket open, and the API key at the handshake."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from dsp.resample import resample
from server.app import create_app
from server.realtime import Agreement
from server.settings import Settings
from tests.support.audio import load_audio
from tests.support.data import REFERENCE, normalize, wer
from tests.support.live import serve

pytestmark = pytest.mark.slow
CITIES = "it was the best of times it was the worst of times"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(Settings(cache_dir=tmp_path_factory.mktemp("cache")))) as base:
        yield base


def _ws(base: str, query: str = "?intent=transcription", **kw: Any) -> ClientConnection:
    return connect(base.replace("http://", "ws://") + "/v1/realtime" + query, open_timeout=60, **kw)


def _pcm24(audio16: np.ndarray) -> bytes:
    return (np.clip(resample(audio16, 16_000, 24_000), -1, 1) * 32767).astype("<i2").tobytes()


def _silence(seconds: float) -> np.ndarray:
    return (np.random.default_rng(1).standard_normal(int(seconds * 16_000)) * 1e-4).astype(np.float32)


def _send(ws: ClientConnection, event: dict[str, Any]) -> None:
    ws.send(json.dumps(event))


def _append_all(
    ws: ClientConnection, pcm: bytes, chunk_ms: int = 100, bytes_per_ms: int = 48, speed: float | None = None
) -> None:
    """Append in pieces of `chunk_ms`; `speed`: paced at that many times real time (a microphone is 1)."""
    step = chunk_ms * bytes_per_ms
    for i in range(0, len(pcm), step):
        audio = base64.b64encode(pcm[i : i + step]).decode()
        _send(ws, {"type": "input_audio_buffer.append", "audio": audio})
        if speed is not None:
            time.sleep(chunk_ms / 1000 / speed)


class _StalledClient:
    """A WebSocket client on a raw socket with a 4-KB receive buffer that does not read until asked."""

    def __init__(self, base: str) -> None:
        import os
        import socket

        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        self.sock.settimeout(10)  # a send that cannot finish: the server stopped reading
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /v1/realtime?intent=transcription HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")

    def send(self, payload: bytes) -> bool:
        """One masked text frame; False once the server has gone."""
        import os
        import struct

        n = len(payload)
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 65536:
            length = bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            length = bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        body = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        try:
            self.sock.sendall(b"\x81" + length + mask + body)
        except OSError:
            return False
        return True

    def read_all(self, timeout: float) -> bytes:
        """Everything the server sent, until it closes the connection."""
        self.sock.settimeout(timeout)
        data = b""
        try:
            while chunk := self.sock.recv(1 << 16):
                data += chunk
        except ConnectionResetError:
            pass
        self.sock.close()
        return data


def _configured(ws: ClientConnection, kind: str, session: dict[str, Any]) -> list[dict[str, Any]]:
    """Read session.created, send an update of `kind` (GA or beta), wait for its answer: the events so far."""
    seen: list[dict[str, Any]] = []
    _until(ws, "session.created", seen)
    _send(ws, {"type": kind, "session": session})
    _until(ws, kind.replace("update", "updated"), seen)
    return seen


def _until(
    ws: ClientConnection, kind: str, seen: list[dict[str, Any]], timeout: float = 120
) -> dict[str, Any]:
    while True:
        event = json.loads(ws.recv(timeout=timeout))
        seen.append(event)
        assert "event_id" in event and event["event_id"] not in {e["event_id"] for e in seen[:-1]}
        if event["type"] == kind:
            return event


def test_session_created_then_a_manual_commit_transcribes(base_url: str) -> None:
    with _ws(base_url) as ws:
        created = json.loads(ws.recv(timeout=60))
        assert created["type"] == "session.created"
        session = created["session"]
        assert session["id"].startswith("sess_") and session["type"] == "transcription"
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["input"]["turn_detection"] == {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
        }
        _send(
            ws,
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
            },
        )
        seen: list[dict[str, Any]] = []
        updated = _until(ws, "session.updated", seen)
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        _append_all(ws, _pcm24(load_audio("jfk")))
        _send(ws, {"type": "input_audio_buffer.commit", "event_id": "mine"})
        committed = _until(ws, "input_audio_buffer.committed", seen)
        added = _until(ws, "conversation.item.added", seen)
        done = _until(ws, "conversation.item.input_audio_transcription.completed", seen)
        assert committed["item_id"] == added["item"]["id"] == done["item_id"]
        assert committed["previous_item_id"] is None and added["item"]["role"] == "user"
        assert normalize(done["transcript"]) == normalize(REFERENCE["jfk"])
        assert done["usage"] == {"type": "duration", "seconds": pytest.approx(11.0, abs=0.05)}
        deltas = [e["delta"] for e in seen if e["type"].endswith("transcription.delta")]
        assert "".join(deltas) == done["transcript"]
        assert not [e for e in seen if e["type"] in ("error", "input_audio_buffer.speech_started")]


def test_server_vad_commits_each_turn(base_url: str) -> None:
    """Two utterances with 2 s of silence between them, sent in 30-ms pieces as a microphone would (1.5× real
    time), with a
    1.2-s silence_duration (jfk.wav pauses for ~1 s after "Americans"): two turns, each speech_started →
    speech_stopped → committed → item added → delta → completed, in order."""
    audio = np.concatenate(
        [
            _silence(0.6),
            load_audio("jfk"),
            _silence(2.0),
            load_audio("two_cities_16k")[: 6 * 16_000],
            _silence(2.0),
        ]
    )
    with _ws(base_url) as ws:
        detection = {"type": "server_vad", "silence_duration_ms": 1200}
        seen = _configured(
            ws, "session.update", {"type": "transcription", "audio": {"input": {"turn_detection": detection}}}
        )
        _append_all(ws, _pcm24(audio), chunk_ms=30, speed=1.5)
        first = _until(ws, "conversation.item.input_audio_transcription.completed", seen)
        second = _until(ws, "conversation.item.input_audio_transcription.completed", seen)
    # per turn, in order (the next turn's speech events may come before the last turn's transcript)
    items = [first["item_id"], second["item_id"]]
    assert len(set(items)) == 2
    by_item = {
        i: [e["type"] for e in seen if e.get("item_id", e.get("item", {}).get("id")) == i] for i in items
    }
    others = [e["type"] for e in seen if e.get("item_id", e.get("item", {}).get("id")) not in items]
    assert others == ["session.created", "session.updated"], [
        (e["type"], e.get("audio_start_ms"), e.get("audio_end_ms"), e.get("transcript")) for e in seen
    ]
    for (
        kinds
    ) in by_item.values():  # deltas while the speaker talks (LocalAgreement), and after the final decode
        assert [k for k in kinds if not k.endswith(".delta")] == [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.input_audio_transcription.completed",
        ]
        assert kinds.index("conversation.item.input_audio_transcription.delta") < kinds.index(
            "input_audio_buffer.speech_stopped"
        )
    for done in (first, second):
        deltas = [
            e["delta"] for e in seen if e["type"].endswith(".delta") and e["item_id"] == done["item_id"]
        ]
        # several deltas, and together they say what the final decode says (agreed words can differ from
        # it only where two successive hypotheses both heard them otherwise: never on this speech so far)
        assert len(deltas) >= 2 and wer(done["transcript"], "".join(deltas)) <= 0.1
    started = [e for e in seen if e["type"] == "input_audio_buffer.speech_started"]
    stopped = [e for e in seen if e["type"] == "input_audio_buffer.speech_stopped"]
    assert (
        [e["item_id"] for e in started]
        == [e["item_id"] for e in stopped]
        == [first["item_id"], second["item_id"]]
    )
    # jfk's speech starts ~0.33 s into the clip, 0.6 s in here, less the 300 ms prefix
    assert 500 <= started[0]["audio_start_ms"] <= 800
    assert started[0]["audio_start_ms"] < stopped[0]["audio_end_ms"] < started[1]["audio_start_ms"]
    assert stopped[1]["audio_end_ms"] <= len(audio) * 1000 // 16_000
    assert wer(REFERENCE["jfk"], first["transcript"]) <= 0.05
    assert normalize(second["transcript"]).startswith(CITIES)
    committed = [e for e in seen if e["type"] == "input_audio_buffer.committed"]
    assert committed[1]["previous_item_id"] == first["item_id"]


def _ulaw(audio8k: np.ndarray) -> bytes:
    """G.711 μ-law encoding (the standard's segments, bias 132) of float samples."""
    x = np.clip(np.round(audio8k * 32768), -32768, 32767).astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 132
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def test_beta_dialect_with_g711_ulaw(base_url: str) -> None:
    from dsp.g711 import decode_ulaw

    audio8k = resample(load_audio("jfk"), 16_000, 8_000)
    ulaw = _ulaw(audio8k)
    assert np.abs(decode_ulaw(ulaw) - audio8k).max() < 0.02  # the encoder above is G.711's
    with _ws(base_url) as ws:
        session = {
            "input_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": None,
        }
        seen = _configured(ws, "transcription_session.update", session)
        updated = seen[-1]
        assert updated["session"]["input_audio_format"] == "g711_ulaw"
        assert updated["session"]["turn_detection"] is None
        _append_all(ws, ulaw, bytes_per_ms=8)
        _send(ws, {"type": "input_audio_buffer.commit"})
        created = _until(ws, "conversation.item.created", seen)
        done = _until(ws, "conversation.item.input_audio_transcription.completed", seen)
    assert created["item"]["id"] == done["item_id"]
    assert wer(REFERENCE["jfk"], done["transcript"]) <= 0.15  # telephone bandwidth


def test_bad_events_are_errors_and_the_session_goes_on(base_url: str) -> None:
    with _ws(base_url) as ws:
        seen: list[dict[str, Any]] = []
        _until(ws, "session.created", seen)

        def error_for(raw: str) -> dict[str, Any]:
            ws.send(raw)
            return _until(ws, "error", seen)["error"]

        assert error_for("not json")["code"] == "invalid_json"
        ws.send(b"\x00\x01" * 100)  # audio sent the mlx-audio way, on the OpenAI socket
        assert _until(ws, "error", seen)["error"]["code"] == "invalid_event"
        err = error_for(json.dumps({"type": "response.create", "event_id": "e1"}))
        assert (
            err["code"] == "invalid_event_type"
            and err["event_id"] == "e1"
            and err["type"] == "invalid_request_error"
        )
        err = error_for(json.dumps({"type": "input_audio_buffer.append", "audio": "%%% not base64"}))
        assert err["code"] == "invalid_value" and err["param"] == "audio"
        err = error_for(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c1"}))
        assert err["code"] == "input_audio_buffer_commit_empty" and err["event_id"] == "c1"
        bad = {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}},
            },
        }
        err = error_for(json.dumps(bad))
        assert (
            err["code"] == "invalid_value" and err["param"] == "session.audio.input.turn_detection.threshold"
        )
        err = error_for(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
        assert err["param"] == "session.type"
        long_prompt = {"audio": {"input": {"transcription": {"prompt": "x" * 5000}}}}
        err = error_for(json.dumps({"type": "session.update", "session": long_prompt}))
        assert err["param"] == "session.audio.input.transcription.prompt"
        # still serving: a clear and a valid update are answered
        _send(ws, {"type": "input_audio_buffer.clear"})
        _until(ws, "input_audio_buffer.cleared", seen)
        _send(
            ws,
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"transcription": {"language": "en"}}},
                },
            },
        )
        assert (
            _until(ws, "session.updated", seen)["session"]["audio"]["input"]["transcription"]["language"]
            == "en"
        )


def test_a_connection_without_the_transcription_intent_is_told_and_closed(base_url: str) -> None:
    with _ws(base_url, query="?model=gpt-realtime") as ws:
        event = json.loads(ws.recv(timeout=30))
        assert event["type"] == "error" and event["error"]["code"] == "unsupported_intent"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
        assert ws.close_code == 1008


def test_the_openai_sdk_transcribes_over_the_socket(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0)
    pcm = _pcm24(load_audio("jfk"))
    with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        conn.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
        for i in range(0, len(pcm), 4800):
            conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + 4800]).decode())
        conn.input_audio_buffer.commit()
        kinds = []
        for event in conn:
            kinds.append(event.type)
            if event.type == "conversation.item.input_audio_transcription.completed":
                transcript = event.transcript
                break
    assert kinds[0] == "session.created" and "session.updated" in kinds and "error" not in kinds
    assert normalize(transcript) == normalize(REFERENCE["jfk"])


def test_the_api_key_is_checked_at_the_handshake(tmp_path: Path) -> None:
    with serve(create_app(Settings(cache_dir=tmp_path / "cache", api_key="sekrit"))) as base:
        with pytest.raises(InvalidStatus):
            _ws(base)
        with pytest.raises(InvalidStatus):
            _ws(base, additional_headers={"Authorization": "Bearer wrong"})
        with _ws(base, additional_headers={"Authorization": "Bearer sekrit"}) as ws:
            assert json.loads(ws.recv(timeout=60))["type"] == "session.created"
        with _ws(base, subprotocols=["realtime", "openai-insecure-api-key.sekrit"]) as ws:  # browsers
            assert ws.subprotocol == "realtime"
            assert json.loads(ws.recv(timeout=60))["type"] == "session.created"


def test_local_agreement_emits_what_two_hypotheses_share_and_never_retracts() -> None:
    a = Agreement()  # each hypothesis's last word is held back: the audio may end inside it
    assert a.update("And so my") == ""  # one hypothesis: nothing agreed yet
    assert a.update("And so, my fellow") == "And so,"  # case and punctuation aside, "and so" agree
    assert a.update("And so my fellow Americans") == " my"
    assert a.update("And then my fellow Americans ask") == ""  # disagrees with what was sent: wait
    assert a.update("And so my fellow Americans asked") == ""  # one agreeing hypothesis after it
    assert a.update("And so my fellow Americans asked not what") == " fellow Americans"
    assert a.final("And so, my fellow Americans, ask not what your country can do.") == (
        " ask not what your country can do."
    )
    b = Agreement()
    b.update("Hello there you")
    assert b.update("Hello there friend") == "Hello there"
    assert b.final("Goodbye.") == ""  # the final decode disagrees: nothing taken back, nothing added
    c = Agreement()  # both hypotheses heard "asked"; the final decode hears "ask": one word in six
    c.update("And so my fellow Americans asked not")
    assert c.update("And so my fellow Americans asked not what") == "And so my fellow Americans asked"
    assert c.final("And so my fellow Americans ask not what your country") == " not what your country"
    assert c.final("Something else entirely, and longer than before.") == ""


def test_sessions_share_passes_and_a_stalled_client_is_closed_without_holding_up_others(
    base_url: str,
) -> None:
    """Three sessions commit at once: their turns share the worker's passes and each gets its own
    transcript. Meanwhile a client that sends without ever reading is closed once its queue is full,
    and the other sessions are not slowed by it."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.metrics import metric

    stalled = _StalledClient(base_url)  # reads nothing: the server's send buffers fill, then its queue
    prompt = "word " * 800  # each session.updated echoes it: ~4 KB an event
    session = {"audio": {"input": {"transcription": {"prompt": prompt}}}}
    update = json.dumps({"type": "session.update", "session": session}).encode()
    for _ in range(4000):  # ~16 MB of events it will not read: more than the socket buffers hold
        if not stalled.send(update):
            break
    names = ["jfk", "beckett", "jfk"]
    clips = {n: load_audio(n) for n in set(names)}
    sockets = [_ws(base_url) for _ in names]
    for ws, name in zip(sockets, names, strict=True):
        _configured(
            ws, "session.update", {"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        )
        _append_all(ws, _pcm24(clips[name]))
    for ws in sockets:
        _send(ws, {"type": "input_audio_buffer.commit"})

    def transcript(ws: ClientConnection) -> str:
        done = _until(ws, "conversation.item.input_audio_transcription.completed", [])
        ws.close()
        return str(done["transcript"])

    with ThreadPoolExecutor(len(sockets)) as pool:
        texts = list(pool.map(transcript, sockets))
    assert normalize(texts[0]) == normalize(texts[2]) == normalize(REFERENCE["jfk"])
    assert wer(REFERENCE["beckett"], texts[1]) <= 0.2
    assert metric(base_url, "mlx_audio_worker_largest_batch") >= 2
    assert metric(base_url, 'mlx_audio_realtime_turns_total{outcome="completed"}') >= 3
    # the server gave up on the stalled client: it closed the connection with most events never sent
    received = stalled.read_all(timeout=60)
    assert received.count(b'"session.updated"') < 2000


def test_closing_the_socket_cancels_its_transcription(base_url: str) -> None:
    from tests.support.metrics import metric

    before = metric(base_url, "mlx_audio_worker_jobs_cancelled")
    long = np.concatenate([load_audio("two_cities_16k")] * 3)  # ~3 min: far longer than the test waits
    with _ws(base_url) as ws:
        _configured(
            ws, "session.update", {"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        )
        _append_all(ws, _pcm24(long), chunk_ms=1000)
        _send(ws, {"type": "input_audio_buffer.commit"})
        _until(ws, "input_audio_buffer.committed", [])
        time.sleep(0.5)  # the decode has started
    deadline = time.monotonic() + 30
    while metric(base_url, "mlx_audio_worker_jobs_cancelled") <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(base_url, "mlx_audio_worker_jobs_cancelled") > before
    with _ws(base_url) as ws:  # and the server goes on
        assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
        assert metric(base_url, "mlx_audio_realtime_sessions") >= 1
    deadline = time.monotonic() + 10
    while metric(base_url, "mlx_audio_realtime_sessions") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(base_url, "mlx_audio_realtime_sessions") == 0  # every closed socket let go


def test_mlx_audio_clients_work_unchanged(base_url: str) -> None:
    """mlx-audio's `WS /v1/audio/transcriptions/realtime`: a JSON config (its default model name, which
    is not ours), binary int16 frames at 16 kHz as its client sends them, `{"action": "stop"}`: partial
    texts while the speaker talks, the final text, then the server closes."""
    audio = np.concatenate([_silence(0.5), load_audio("jfk"), _silence(0.3)])  # stop comes mid-silence
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    url = base_url.replace("http://", "ws://") + "/v1/audio/transcriptions/realtime"
    with connect(url, open_timeout=60) as ws:
        ws.send(
            json.dumps(
                {"model": "mlx-community/whisper-large-v3-turbo", "language": "en", "sample_rate": 16000}
            )
        )
        ready = json.loads(ws.recv(timeout=60))
        assert ready["status"] == "ready" and ready["model"]  # the default transcriber stands in
        for i in range(0, len(pcm), 3200):  # 100 ms frames, 2x real time
            ws.send(pcm[i : i + 3200])
            time.sleep(0.05)
        ws.send(json.dumps({"action": "stop"}))
        messages = []
        with pytest.raises(ConnectionClosed):
            while True:
                messages.append(json.loads(ws.recv(timeout=60)))
    partial = [m for m in messages if m.get("is_partial") is True]
    final = [m for m in messages if m.get("is_partial") is False]
    # one final text per turn (mlx-audio's own server also ends a turn after 0.5 s of silence)
    assert len(final) >= 2 and all(m["text"] and m["language"] == "en" for m in final)
    assert wer(REFERENCE["jfk"], " ".join(m["text"] for m in final)) <= 0.05
    assert partial and all(m["text"] for m in partial)  # words while the speaker talks
    assert [m for m in messages if "error" in m] == []
    # a bad sample rate is an error message and a close
    with connect(url, open_timeout=60) as ws:
        ws.send(json.dumps({"sample_rate": 3}))
        assert json.loads(ws.recv(timeout=30)) == {
            "error": "sample_rate must be 8000..192000 Hz",
            "status": "error",
        }
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
