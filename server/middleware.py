"""Pure-ASGI middleware at the edge: request id + access log + metrics, API-key auth, body-size limit."""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from server.errors import envelope
from server.logs import request_id_var
from server.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("mlx_audio.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


async def send_error(
    send: Send,
    status: int,
    message: str,
    *,
    code: str,
    headers: dict[str, str] | None = None,
    type: str = "invalid_request_error",
) -> None:
    body = json.dumps(envelope(message, type, None, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Assigns a request id (client's `X-Request-ID` when sane), logs one access line, records metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given and _SAFE_ID.match(given) else f"req_{secrets.token_hex(12)}"
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        status = {"code": 500}
        t0 = time.perf_counter()

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            dt = time.perf_counter() - t0
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if scope["type"] == "http":
                self.metrics.requests.labels(scope["method"], route, str(status["code"])).inc()
                self.metrics.latency.labels(route).observe(dt)
            access_log.info(
                "%s %s %s %.1fms",
                scope.get("method", "WS"),
                scope["path"],
                status["code"],
                dt * 1000,
                extra={"status": status["code"], "duration_ms": round(dt * 1000, 1), "route": route},
            )
            request_id_var.reset(token)


class AuthMiddleware:
    """Bearer API key on every route but /health (and CORS preflights). WebSockets may also pass the key
    as the subprotocol `openai-insecure-api-key.<key>` (browsers cannot set headers)."""

    OPEN_PATHS = frozenset({"/health"})

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None

    def _ok(self, scope: Scope) -> bool:
        assert self.key is not None
        auth = _header(scope, b"authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key):
            return True
        if scope["type"] == "websocket":
            for proto in (_header(scope, b"sec-websocket-protocol") or "").split(","):
                proto = proto.strip()
                if proto.startswith("openai-insecure-api-key.") and hmac.compare_digest(
                    proto.removeprefix("openai-insecure-api-key.").encode(), self.key
                ):
                    return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.key is None
            or scope["type"] not in ("http", "websocket")
            or scope["path"] in self.OPEN_PATHS
            or (
                scope["type"] == "http"
                and scope["method"] == "OPTIONS"
                and _header(scope, b"access-control-request-method")
            )
            or self._ok(scope)
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "invalid API key"})
            return
        has = _header(scope, b"authorization") is not None
        message = (
            "Incorrect API key provided."
            if has
            else "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
        )
        await send_error(send, 401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


class BodyLimitMiddleware:
    """413 for bodies over the limit: at once from Content-Length, or as soon as a chunked body passes it.
    The rest of a too-large body is never read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app, self.default_bytes, self.per_path = app, max_bytes, dict(per_path or {})

    @staticmethod
    def _message(limit: int) -> str:
        return f"Request body too large: the limit is {limit / (1024 * 1024):g} MiB."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.default_bytes)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await send_error(send, 413, self._message(limit), code="payload_too_large")
            return
        state = {"seen": 0, "over": False, "started": False}

        async def _receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["over"] = True
                    raise _BodyTooLarge()
            return message

        async def _send(message: Message) -> None:
            if state["over"]:
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await send_error(send, 413, self._message(limit), code="payload_too_large")
                return
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, _receive, _send)
        except _BodyTooLarge:
            if not state["started"]:
                await send_error(send, 413, self._message(limit), code="payload_too_large")


class _BodyTooLarge(Exception):
    pass
