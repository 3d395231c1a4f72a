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
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from dsp.resample import resample
from models.errors import DomainError
from models.provider import ModelProvider
from models.tasks import Segment, TranscribeOptions, Transcriber, TurnOptions, VoiceActivityDetector
from server.realtime import RATE, Agreement, ClientError, Session, Turn, event_id

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
    """Server events out through a bounded queue, drained by one sender task."""

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SEND_QUEUE)
        self.too_slow = False

    def send(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
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
        options = TranscribeOptions(language=turn.config.language, prompt=turn.config.prompt or None)
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


async def _turns(provider: ModelProvider, session: Session, out: _Socket, wake: asyncio.Event) -> None:
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
            try:
                text, seconds = await _transcribe(provider, turn)
            except DomainError as exc:
                if not turn.partial:
                    agreements.pop(turn.item_id, None)
                    out.send(
                        _failed(
                            turn, "invalid_request_error", exc.code, str(exc), getattr(exc, "param", None)
                        )
                    )
                continue
            except Exception:  # a bug: logged; the client hears of it, the session goes on
                log.exception("realtime transcription failed")
                if not turn.partial:
                    agreements.pop(turn.item_id, None)
                    out.send(
                        _failed(
                            turn,
                            "server_error",
                            "server_error",
                            "The server had an error while transcribing.",
                        )
                    )
                continue
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
            if turn.partial:
                continue
            agreements.pop(turn.item_id, None)
            out.send(
                {
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
    provider: ModelProvider = websocket.app.state.provider
    settings = websocket.app.state.settings
    vad_spec = provider.registry.default_for("vad")
    transcriber_spec = provider.registry.default_for("transcription")
    stack = contextlib.AsyncExitStack()
    wake = asyncio.Event()
    worker: asyncio.Task[None] | None = None
    try:
        turns = None
        if vad_spec is not None:
            detector: VoiceActivityDetector = await stack.enter_async_context(provider.use(vad_spec.id))
            turns = detector.stream(TurnOptions())
        session = Session(
            turns,
            max_seconds=settings.max_audio_seconds,
            model=transcriber_spec.id if transcriber_spec is not None else "whisper-1",
        )
        out.send(session.created())
        worker = asyncio.create_task(_turns(provider, session, out, wake))
        while not out.too_slow:
            message = await websocket.receive_text()
            client_event: str | None = None
            try:
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
            for reply in replies:
                out.send(reply)
            if session.turns or session.partial is not None:
                wake.set()
        # the client stopped reading: what is queued for it is dropped, and the close does not wait on it
        sender.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code=CLOSE_SLOW, reason="events not read"), timeout=5)
    except WebSocketDisconnect:
        pass
    finally:
        if worker is not None:
            worker.cancel()
        sender.cancel()
        for task in (worker, sender):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await stack.aclose()
