"""WS /v1/realtime?intent=transcription: the OpenAI Realtime transcription session over a WebSocket.

The protocol state lives in `server.realtime.Session`; this module owns the socket: it reads client events,
sends server events through a bounded queue (a client that stops reading is closed, not waited for),
transcribes committed turns on the MLX worker one after another, and on close cancels what is in flight.
The API key, when one is configured, is checked by `server.middleware` before the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from dsp.resample import resample
from models.errors import DomainError
from models.provider import ModelProvider
from models.registry import ModelSpec
from models.tasks import Segment, TranscribeOptions, Transcriber, TurnOptions, VoiceActivityDetector
from server import realtime as realtime_session
from server.metrics import Metrics
from server.realtime import RATE, Agreement, Session, Turn, event_id
from server.realtime_config import ClientError

log = logging.getLogger(__name__)
router = APIRouter(tags=["realtime"])

SEND_QUEUE = 256  # server events a client may leave unread before it is closed
CLOSE_SLOW = 1008  # policy violation: the client does not read what it asked for


def error_event(
    message: str,
    code: str,
    *,
    param: str | None = None,
    client_event: str | None = None,
    kind: str = "invalid_request_error",
) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": event_id(),
        "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": client_event},
    }


class _Socket:
    """Server events out through a bounded queue, drained by one sender task. `wire` turns an OpenAI
    server event into what this endpoint's clients read (None: nothing)."""

    def __init__(
        self, websocket: WebSocket, wire: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda e: e
    ) -> None:
        self.ws = websocket
        self.wire = wire
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SEND_QUEUE)
        self.too_slow = False

    def send(self, event: dict[str, Any]) -> None:
        message = self.wire(event)
        if message is None:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.too_slow = True

    def close(self) -> None:
        """The sender stops after what is queued."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    async def sender(self) -> None:
        while (event := await self.queue.get()) is not None:
            await self.ws.send_text(json.dumps(event))


async def _transcribe(provider: ModelProvider, turn: Turn) -> tuple[str, float]:
    spec = provider.registry.for_task(turn.config.model, "transcription")
    async with provider.use(spec.id) as model:
        transcriber: Transcriber = model
        audio = turn.audio
        if transcriber.sample_rate != RATE:
            audio = await asyncio.to_thread(resample, audio, RATE, transcriber.sample_rate)
        options = TranscribeOptions(
            language=turn.config.language,
            prompt=turn.config.prompt or None,
            draft=turn.partial and realtime_session.DRAFT_PARTIALS,
        )
        transcriber.check(options)
        texts: list[str] = []
        async for ev in await provider.worker.stream(transcriber.transcribe_stream, audio, options):
            if isinstance(ev, Segment):
                texts.append(ev.text)
    return "".join(texts).strip(), len(turn.audio) / RATE


def _failed(turn: Turn, kind: str, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {
        "type": "conversation.item.input_audio_transcription.failed",
        "event_id": event_id(),
        "item_id": turn.item_id,
        "content_index": 0,
        "error": {"type": kind, "code": code, "message": message, "param": param},
    }


async def _turns(
    provider: ModelProvider, session: Session, out: _Socket, wake: asyncio.Event, metrics: Metrics
) -> None:
    """Transcribe committed turns in commit order (each ends in `completed` or `failed`); between them,
    re-decode the open turn when it is due, and send what the hypotheses agree on."""
    agreements: dict[str, Agreement] = {}
    while True:
        await wake.wait()
        wake.clear()
        while session.turns or session.partial is not None:
            turn = session.turns.pop(0) if session.turns else session.partial
            assert turn is not None
            if turn.partial:
                session.partial = None
            base = {"item_id": turn.item_id, "content_index": 0}
            agreement = agreements.setdefault(turn.item_id, Agreement())
            failure: dict[str, Any] | None = None
            try:
                text, seconds = await _transcribe(provider, turn)
            except DomainError as exc:
                failure = _failed(
                    turn, "invalid_request_error", exc.code, str(exc), getattr(exc, "param", None)
                )
            except Exception:  # a bug: logged; the client hears of it, the session goes on
                log.exception("realtime transcription failed")
                failure = _failed(
                    turn, "server_error", "server_error", "The server had an error while transcribing."
                )
            if failure is None:
                delta = agreement.update(text) if turn.partial else agreement.final(text)
                if delta:
                    out.send(
                        {
                            "type": "conversation.item.input_audio_transcription.delta",
                            "event_id": event_id(),
                            **base,
                            "delta": delta,
                        }
                    )
            if turn.partial:  # a partial that fails is dropped: the turn's final decode answers for it
                continue
            agreements.pop(turn.item_id, None)
            session.in_flight -= 1
            metrics.realtime_turns.labels("failed" if failure else "completed").inc()
            out.send(
                failure
                or {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "event_id": event_id(),
                    **base,
                    "transcript": text,
                    "usage": {"type": "duration", "seconds": round(seconds, 3)},
                }
            )


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    intent = websocket.query_params.get("intent")
    protocols = [
        p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()
    ]
    await websocket.accept(subprotocol="realtime" if "realtime" in protocols else None)
    out = _Socket(websocket)
    sender = asyncio.create_task(out.sender())
    if intent != "transcription":
        out.send(
            error_event(
                "this server runs transcription sessions: connect with ?intent=transcription",
                "unsupported_intent",
                param="intent",
            )
        )
        out.close()
        with contextlib.suppress(Exception):
            await sender
        await websocket.close(code=1008)
        return
    try:
        async with _session(websocket, out) as (session, wake):
            out.send(session.created())
            while not out.too_slow:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(frame.get("code", 1000))
                client_event: str | None = None
                try:
                    message = frame.get("text")
                    if message is None:
                        raise ClientError(
                            "events are JSON text frames; audio goes in input_audio_buffer.append",
                            "invalid_event",
                        )
                    try:
                        event = json.loads(message)
                    except json.JSONDecodeError as exc:
                        raise ClientError(f"the message is not JSON: {exc}", "invalid_json") from None
                    if not isinstance(event, dict):
                        raise ClientError("an event is a JSON object", "invalid_event")
                    client_event = event.get("event_id") if isinstance(event.get("event_id"), str) else None
                    replies = await asyncio.to_thread(session.handle, event)
                except ClientError as exc:
                    out.send(error_event(exc.message, exc.code, param=exc.param, client_event=client_event))
                    continue
                _send_all(out, session, wake, replies)
            await _close_slow(websocket, sender)
    except WebSocketDisconnect:
        pass
    finally:
        await _stop(sender)


def _send_all(out: _Socket, session: Session, wake: asyncio.Event, replies: list[dict[str, Any]]) -> None:
    for reply in replies:
        out.send(reply)
    if session.turns or session.partial is not None:
        wake.set()


async def _close_slow(websocket: WebSocket, sender: asyncio.Task[None]) -> None:
    """The client stopped reading: what is queued for it is dropped, and the close does not wait on it."""
    sender.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=CLOSE_SLOW, reason="events not read"), timeout=5)


async def _stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@contextlib.asynccontextmanager
async def _session(websocket: WebSocket, out: _Socket) -> AsyncIterator[tuple[Session, asyncio.Event]]:
    """A session on the default detector and transcriber, its turns transcribed by a task until it ends."""
    provider: ModelProvider = websocket.app.state.provider
    vad_spec = provider.registry.default_for("vad")
    transcriber = provider.registry.default_for("transcription")
    async with contextlib.AsyncExitStack() as stack:
        turns = None
        if vad_spec is not None:
            detector: VoiceActivityDetector = await stack.enter_async_context(provider.use(vad_spec.id))
            turns = detector.stream(TurnOptions())
        session = Session(
            turns,
            max_seconds=websocket.app.state.settings.max_audio_seconds,
            model=transcriber.id if transcriber is not None else "whisper-1",
        )
        wake = asyncio.Event()
        metrics = websocket.app.state.metrics
        worker = asyncio.create_task(_turns(provider, session, out, wake, metrics))
        metrics.realtime_sessions.inc()
        try:
            yield session, wake
        finally:
            metrics.realtime_sessions.dec()
            await _stop(worker)


# --- mlx-audio's WS /v1/audio/transcriptions/realtime ----------------------------------------------


class _MlxAudioWire:
    """OpenAI server events → mlx-audio's messages: `{"text", "segments", "language", "is_partial"}` as a
    turn's words arrive (the text so far) and when it is done, `{"error", "status": "error"}`."""

    def __init__(self, language: str | None) -> None:
        self.language = language
        self.text: dict[str, str] = {}

    def __call__(self, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event["type"]
        if kind.endswith("transcription.delta"):
            text = self.text[event["item_id"]] = self.text.get(event["item_id"], "") + event["delta"]
            return {"text": text, "segments": None, "language": self.language, "is_partial": True}
        if kind.endswith("transcription.completed"):
            self.text.pop(event["item_id"], None)
            return {
                "text": event["transcript"],
                "segments": None,
                "language": self.language,
                "is_partial": False,
            }
        if kind == "error" or kind.endswith("transcription.failed"):
            return {"error": event["error"]["message"], "status": "error"}
        return None


@router.websocket("/v1/audio/transcriptions/realtime")
async def mlx_audio_realtime(websocket: WebSocket) -> None:
    """mlx-audio's realtime protocol, so its clients switch without code changes: a JSON config first
    (`model`, `language`, `sample_rate`, default 16000), then binary little-endian int16 frames, and
    `{"action": "stop"}` to end (what was said so far is finished first). Turns come from our Silero
    server_vad (500 ms of silence) with the same deltas; an unknown model name (mlx-audio's default is a
    Hugging Face repo) means the default transcriber, which the `ready` message names."""
    await websocket.accept()
    try:
        config = await websocket.receive_json()
    except (WebSocketDisconnect, json.JSONDecodeError, KeyError):
        await websocket.close(code=1003)
        return
    config = config if isinstance(config, dict) else {}
    language = config.get("language") if isinstance(config.get("language"), str) else None
    language = None if language in (None, "", "Detect") else language
    wire = _MlxAudioWire(language)
    out = _Socket(websocket, wire)
    sender = asyncio.create_task(out.sender())
    provider: ModelProvider = websocket.app.state.provider
    name = config.get("model")
    spec: ModelSpec | None
    try:
        spec = provider.registry.for_task(name if isinstance(name, str) else None, "transcription")
    except DomainError:
        spec = provider.registry.default_for("transcription")
    try:
        async with _session(websocket, out) as (session, wake):
            try:
                rate = config.get("sample_rate", 16_000)
                session.use_raw_pcm(
                    int(rate) if isinstance(rate, int | float) else -1,
                    spec.id if spec else "whisper-1",
                    language,
                )
            except ClientError as exc:
                out.send(error_event(exc.message, exc.code, param=exc.param))
                out.close()
                await sender
                await websocket.close(code=1003)
                return
            await websocket.send_json(
                {"status": "ready", "message": "Ready to transcribe", "model": session.config.model}
            )
            while not out.too_slow:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                try:
                    if message.get("bytes") is not None:
                        replies = await asyncio.to_thread(session.append_pcm, message["bytes"])
                    elif _is_stop(message.get("text")):
                        _send_all(out, session, wake, await asyncio.to_thread(session.finish))
                        while session.in_flight:
                            await asyncio.sleep(0.05)  # the last turn's transcript leaves first
                        break
                    else:
                        continue
                except ClientError as exc:
                    out.send(error_event(exc.message, exc.code, param=exc.param))
                    continue
                _send_all(out, session, wake, replies)
            if out.too_slow:
                await _close_slow(websocket, sender)
                return
        out.close()
        await sender
        await websocket.close()
    except WebSocketDisconnect:
        pass
    finally:
        await _stop(sender)


def _is_stop(text: Any) -> bool:
    try:
        return isinstance(text, str) and json.loads(text).get("action") == "stop"
    except (json.JSONDecodeError, AttributeError):
        return False
