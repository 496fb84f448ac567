"""One exception tree for the hub, turned into HTTP in one place (hub.api.errors).

Every error carries a snake_case ``code`` (the API's machine-readable name), an
HTTP ``status`` and a message for people: what is wrong and how to fix it.
Messages never include victim data.
"""
from __future__ import annotations


class HubError(Exception):
    status = 400
    code = "bad_request"

    retry_after: int | None = None  # seconds, sent as Retry-After (429, 503)

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class BadInput(HubError):
    """Malformed request: wrong JSON, wrong types, unknown fields (400)."""

    status = 400
    code = "bad_request"


class Unauthenticated(HubError):
    status = 401
    code = "unauthenticated"


class Forbidden(HubError):
    status = 403
    code = "forbidden"


class NotFound(HubError):
    """Missing, or not the caller's to see: the two are never told apart (404)."""

    status = 404
    code = "not_found"


class Conflict(HubError):
    """The thing exists but is in the wrong state for this action (409)."""

    status = 409
    code = "conflict"


class TooLarge(HubError):
    status = 413
    code = "too_large"


class Invalid(HubError):
    """Well-formed but refused: bad signature, unknown key, bad phone number (422)."""

    status = 422
    code = "invalid"


class RateLimited(HubError):
    status = 429
    code = "rate_limited"


class Unavailable(HubError):
    """The database or another service the hub needs is down (503)."""

    status = 503
    code = "unavailable"
    retry_after = 30


class ConfigError(HubError):
    """Configuration cannot be used; raised at start-up, never per request."""

    status = 500
    code = "config_error"


def log_failure(logger, message: str, *args) -> None:
    """Log the exception being handled with its frames and type, but not its text.

    Exception texts can carry data: PostgreSQL's "Failing row contains (...)", a
    value echoed by a library. The frames say where it failed; the type says what.
    Call it inside an ``except`` block instead of ``logger.exception``.
    """
    import sys
    import traceback

    exc = sys.exc_info()[1]
    if exc is None:
        logger.error(message, *args)
        return
    frames = "".join(traceback.format_tb(exc.__traceback__))
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    kind = type(exc).__name__ + (f" (SQLSTATE {sqlstate})" if sqlstate else "")
    logger.error(message + " [%s]\nTraceback, message withheld:\n%s", *args, kind, frames)
