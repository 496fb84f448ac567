"""The one place where errors become HTTP responses: {"error": {"code", "message"}}."""
from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from hub.errors import HubError, log_failure
from hub.faces import body_limit
from hub.packets import PacketError

log = logging.getLogger("hub.http")

PACKET_STATUS = {"packet_too_large": 413, "malformed_packet": 400, "unsupported_version": 400}


def envelope(status: int, code: str, message: str):
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HubError)
    def _hub_error(exc: HubError):
        response = envelope(exc.status, exc.code, exc.message)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(PacketError)
    def _packet_error(exc: PacketError):
        return envelope(PACKET_STATUS.get(exc.code, 422), exc.code, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
                429: "rate_limited"}.get(exc.code or 500, "http_error")
        message = exc.description or exc.name
        if exc.code == 413:
            limit = body_limit(request.endpoint)
            message = ("the request is larger than the hub accepts; packets may be at most packets.max_bytes"
                       if limit is None else
                       f"the request is larger than this address accepts (at most {limit // 1024} KiB)")
        if not request.path.startswith("/api/") and exc.code == 404:
            return exc
        return envelope(exc.code or 500, code, message)

    @app.errorhandler(sa.exc.OperationalError)
    @app.errorhandler(sa.exc.InterfaceError)
    def _db_down(exc):
        log.error("database unavailable: %s", type(exc).__name__)
        response = envelope(503, "database_unavailable", "the database does not answer; try again in a minute")
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Never echo the exception: it may carry request data.
        log_failure(log, "unhandled error on %s %s", request.method, request.url_rule)
        return envelope(500, "internal_error", "the hub failed; the error is logged with this request's time")
