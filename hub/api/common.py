"""Helpers shared by the API views: who is calling, the request's JSON, the unit of work."""
from __future__ import annotations

import json
from typing import Any

from flask import g, request

from hub.access import Principal
from hub.accounts import service as accounts
from hub.errors import BadInput, Unauthenticated
from hub.faces import current, db

SESSION_COOKIE = "refhub_session"


def principal() -> Principal:
    """The authenticated caller, or 401."""
    if "principal" in g:
        return g.principal
    ctx = current()
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("use 'Authorization: Bearer <token>' with a token from `hub tokens create`")
        g.principal = accounts.authenticate_token(db(), token.strip(), ctx.clock)
        db().commit()
        return g.principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        if request.method not in ("GET", "HEAD") and not request.is_json:
            # A cross-site form can carry the cookie but not a JSON content type.
            raise BadInput("send JSON with 'Content-Type: application/json'", code="json_required")
        g.principal, g.keyring = accounts.resume(db(), cookie, clock=ctx.clock)
        db().commit()
        return g.principal
    raise Unauthenticated("sign in, or send 'Authorization: Bearer <token>'")


def json_body(allowed: set[str] | None = None, required: set[str] = frozenset()) -> dict[str, Any]:
    """The request's JSON object; BadInput for anything else."""
    raw = request.get_data(cache=True)
    if not raw:
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadInput("the request body is not valid JSON", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object", code="malformed_json")
    if allowed is not None:
        unknown = set(data) - allowed
        if unknown:
            raise BadInput(f"unknown field(s): {', '.join(sorted(unknown))}", code="unknown_field")
    missing = set(required) - set(data)
    if missing:
        raise BadInput(f"missing field(s): {', '.join(sorted(missing))}", code="missing_field")
    return data


def query_arg(name: str, allowed: tuple[str, ...] | None = None, default: str | None = None) -> str | None:
    value = request.args.get(name, default)
    if value is not None and allowed is not None and value not in allowed:
        raise BadInput(f"'{name}' must be one of: {', '.join(allowed)}", code="invalid_field")
    return value


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"'{name}' must be a whole number", code="invalid_field") from None
    if not low <= value <= high:
        raise BadInput(f"'{name}' must be between {low} and {high}", code="invalid_field")
    return value
