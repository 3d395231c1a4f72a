"""The closed set of domain errors raised below `server/`. `server/errors.py` maps each to an HTTP status."""

from __future__ import annotations


class DomainError(Exception):
    """Base class. `code` is a stable machine-readable string; `param` names the offending field."""

    code: str = "error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(DomainError):
    """The request is well-formed but asks for something that cannot be done (400)."""

    code = "invalid_request"


class InvalidField(DomainError):
    """A field has an invalid value (400, code invalid_value)."""

    code = "invalid_value"


class ModelNotFound(DomainError):
    """Unknown model id or alias (404)."""

    code = "model_not_found"


class VoiceNotFound(DomainError):
    code = "voice_not_found"


class PayloadTooLarge(DomainError):
    """Upload bytes, audio duration or text length over a configured limit (413)."""

    code = "payload_too_large"


class UnsupportedMedia(DomainError):
    """Undecodable or unsupported audio (415)."""

    code = "unsupported_media"


class EmptyInput(DomainError):
    """An empty upload or empty text (400)."""

    code = "empty_input"


class ModelInUse(DomainError):
    """Unload refused: requests are using the model (409; retrying later is right)."""

    code = "model_in_use"


class QueueFull(DomainError):
    """The worker's queue is at its configured depth (429 with Retry-After)."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """The server is shutting down or a model cannot be loaded right now (503 with Retry-After)."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 5.0, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Cancelled(DomainError):
    """The job was cancelled (client went away). Never sent to a client; logged."""

    code = "cancelled"


class WeightsError(DomainError):
    """Weights missing, corrupt, or not matching the model's shapes (500: a server-side fault)."""

    code = "weights_error"
