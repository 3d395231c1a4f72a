"""Every failure leaves as one envelope: {"error": {"message", "type", "param", "code"}}.

Domain errors from below map to statuses in ONE table. FastAPI/Starlette's own errors (validation,
404 routes, 405) are rewritten into the same envelope. 429/503 carry `Retry-After`. An invalid field value
is a 400 `invalid_value`, as the OpenAI API answers (the SDK raises `BadRequestError`), never FastAPI's 422.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models import errors as E

log = logging.getLogger(__name__)

# domain error → (HTTP status, OpenAI error type)
STATUS_TABLE: dict[type[E.DomainError], tuple[int, str]] = {
    E.InvalidRequest: (400, "invalid_request_error"),
    E.EmptyInput: (400, "invalid_request_error"),
    E.InvalidField: (400, "invalid_request_error"),
    E.ModelNotFound: (404, "invalid_request_error"),
    E.VoiceNotFound: (404, "invalid_request_error"),
    E.PayloadTooLarge: (413, "invalid_request_error"),
    E.UnsupportedMedia: (415, "invalid_request_error"),
    E.ModelInUse: (409, "invalid_request_error"),
    E.QueueFull: (429, "rate_limit_error"),
    E.Unavailable: (503, "server_error"),
    E.Cancelled: (499, "invalid_request_error"),
    E.WeightsError: (500, "server_error"),
}


class ApiError(Exception):
    """An HTTP-level failure raised inside `server/` (auth, content type, limits at the edge)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(envelope(message, type, param, code), status_code=status, headers=headers)


def domain_status(exc: E.DomainError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS_TABLE:
            return STATUS_TABLE[cls]
    return 500, "server_error"


def domain_error_payload(exc: E.DomainError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, envelope and headers for a domain error (also used in-band for streams)."""
    status, etype = domain_status(exc)
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return status, envelope(exc.message, etype, exc.param, exc.code), headers


_STATUS_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error"}
_STATUS_CODES = {
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


# pydantic names the member of a union that failed inside `loc` ("voice.str", "voice.VoiceRef.id"): not a
# field the client sent, so left out of `param`.
_UNION_TAG = re.compile(r"^(str|int|float|bool|list|dict|none|[A-Z]\w*|.*\[.*)$")


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str | None, str]:
    errs = exc.errors()
    first = errs[0] if errs else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header", "form")]
    param = ".".join(p for p in loc if not _UNION_TAG.match(p)) or None
    etype = first.get("type", "")
    if etype == "json_invalid":
        return (
            400,
            f"We could not parse the JSON body of your request: {first.get('msg')}",
            None,
            "invalid_json",
        )
    if etype == "missing":
        return 400, f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    if etype == "extra_forbidden":
        return 400, f"Unrecognized request argument supplied: '{param}'.", param, "unknown_parameter"
    msg = first.get("msg", "Invalid value")
    if etype.startswith("model_attributes_type") or (not loc and etype in ("dict_type", "model_type")):
        return 400, "The request body must be a JSON object.", None, "invalid_body"
    return 400, f"Invalid value for '{param}': {msg}.", param, "invalid_value"


# The envelope as an OpenAPI schema, for the 400 that replaces FastAPI's documented 422 everywhere.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "ErrorResponse",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }
    },
}


def openapi_without_422(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents a 422 `{"detail": [...]}` on every route with parameters; this server answers 400
    with the envelope instead. Rewrites `schema` in place (idempotent) and returns it."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = {
                    "description": "Invalid request",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                    },
                }
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorResponse"] = ERROR_SCHEMA
    return schema


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(E.DomainError)
    async def _domain(_req: Request, exc: E.DomainError) -> JSONResponse:
        status, body, headers = domain_error_payload(exc)
        if status >= 500:
            log.error("server error: %s", exc.message)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api(_req: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, param, code = _validation_message(exc)
        return error_response(status, message, param=param, code=code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = f"Unknown endpoint: {_req.method} {_req.url.path}"
        return error_response(
            exc.status_code,
            message,
            type=_STATUS_TYPES.get(exc.status_code, "invalid_request_error"),
            code=_STATUS_CODES.get(exc.status_code),
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _bug(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(
            500, "The server had an error while processing your request.", type="server_error"
        )
