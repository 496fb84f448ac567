"""Helpers shared by the API views: who is calling, the request's JSON, the unit of work."""
from __future__ import annotations

import json
from typing import Any, Callable, TypeVar

from flask import g, request
from sqlalchemy.orm import Session

from hub.access import Principal
from hub.accounts import service as accounts
from hub.errors import BadInput, Unauthenticated
from hub.faces import current, db, is_read_only, restart_as_writer

SESSION_COOKIE = "refhub_session"
T = TypeVar("T")


def principal() -> Principal:
    """The authenticated caller, or 401, checked in the request's own unit of work.

    The token or session is read afresh on every request (a revocation holds at once)
    and in the request's transaction: no commit of its own. See :func:`sighted`.
    """
    if "principal" in g:
        return g.principal
    ctx = current()
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("use 'Authorization: Bearer <token>' with a token from `hub tokens create`")
        g.principal = sighted(lambda session: accounts.authenticate_token(session, token.strip(), ctx.clock))
        return g.principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        # A bad or ended session is 401 whatever the request (checked first)...
        g.principal, g.keyring = sighted(lambda session: accounts.resume(session, cookie, clock=ctx.clock))
        if request.method not in ("GET", "HEAD") and not request.is_json:
            # ...but a cross-site form can carry the cookie, not a JSON content type: refused, and its
            # sighting not kept (a form on another site must not keep a session alive).
            g.pop("commit_sighting", None)
            raise BadInput("send JSON with 'Content-Type: application/json'", code="json_required")
        return g.principal
    raise Unauthenticated("sign in, or send 'Authorization: Bearer <token>'")


def sighted(check: Callable[[Session], T]) -> T:
    """Run an authentication check in the request's unit of work.

    The check may record a sighting (a token's ``last_used_at``, a session's
    ``last_seen_at``, at most once a minute). In a read-only request that write
    needs a writing unit: the read-only one, which has read nothing else yet, is
    restarted as a writer and the check runs again; the sighting is committed after
    the response (the view itself writes nothing). A writing request commits it with
    its own changes.
    """
    session = db()
    result = check(session)
    if (session.new or session.dirty or session.deleted) and is_read_only(session):
        result = check(restart_as_writer())
        g.commit_sighting = True
    return result


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
