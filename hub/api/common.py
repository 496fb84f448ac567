"""Helpers shared by the API views: who is calling, the request's JSON, the unit of work."""
from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, TypeVar

from flask import g, request
from sqlalchemy.orm import Session

from hub.access import Principal
from hub.accounts import service as accounts
from hub.errors import BadInput, TooLarge, Unauthenticated
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
    with session.no_autoflush:  # a sighting must not be flushed by the check's own reads in a read-only unit
        result = check(session)
    if (session.new or session.dirty or session.deleted) and is_read_only(session):
        result = check(restart_as_writer())
        g.commit_sighting = True
    return result


MAX_JSON_DEPTH = 32


def _no_constant(name: str):
    raise BadInput(f"the request body holds {name}, which is not JSON; send numbers only", code="malformed_json")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadInput(f"the number {text[:20]}... is too large for the hub", code="malformed_json")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise BadInput("the request body names a field twice in one object", code="duplicate_field")
    return out


def _depth(value: Any) -> int:
    """How deeply ``value`` nests arrays and objects (iteratively: no recursion on what a client sent)."""
    if not isinstance(value, (dict, list)):
        return 0
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item)
                     if isinstance(child, (dict, list)))
    return deepest


def strict_json(raw: bytes) -> Any:
    """Parse a request body as JSON, strictly: UTF-8 only, no NaN or Infinity, no field twice in one
    object, nesting at most :data:`MAX_JSON_DEPTH` deep. BadInput (400) for anything else."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("the request body is not UTF-8 text", code="malformed_json") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_no_duplicates)
    except RecursionError:
        data = None
        depth_exceeded = True
    except ValueError:  # JSONDecodeError, and integers of more than 4300 digits
        raise BadInput("the request body is not valid JSON", code="malformed_json") from None
    else:
        depth_exceeded = _depth(data) > MAX_JSON_DEPTH
    if depth_exceeded:
        raise BadInput(f"the request body nests deeper than {MAX_JSON_DEPTH} levels", code="too_deep")
    if _SURROGATE_ESCAPE.search(raw) and not _encodable(data):
        raise BadInput("the request body holds a \\u escape that is no character (a lone surrogate)",
                       code="malformed_json")
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodable(value: Any) -> bool:
    """Every string (and key) in ``value`` is text UTF-8 can carry: no lone surrogate from a \\u escape."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def check_body() -> None:
    """before_request of /api/v1: a body, on any route, is strict JSON or 400 (:func:`strict_json`), even
    where the view reads none. The submission is checked by its view (its long strings first)."""
    if request.endpoint == "api.create_referral":
        return
    raw = request.get_data(cache=True)
    if raw and not isinstance(strict_json(raw), dict):
        raise BadInput("the request body must be a JSON object", code="malformed_json")


def json_body(allowed: set[str] | None = None, required: set[str] = frozenset()) -> dict[str, Any]:
    """The request's JSON object; BadInput for anything else."""
    raw = request.get_data(cache=True)
    data: Any = strict_json(raw) if raw else {}
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


def refuse_long_strings(raw: bytes, max_bytes: int, *, max_quotes: int = 20_000) -> None:
    """Before a submission is parsed: 413 if any string in it (a packet's ciphertext) is longer than
    ``max_bytes``, for such a packet is over ``packets.max_bytes`` whatever the rest says; 400 for a
    body of more strings than any submission has. A scan in C (``bytes.find``), one step per quote."""
    if raw.count(b'"') > max_quotes:
        raise BadInput("the request body holds more strings than a submission has", code="malformed_json")
    start = 0
    while True:
        end = raw.find(b'"', start)
        stop = len(raw) if end < 0 else end
        if stop - start > max_bytes:
            raise TooLarge(f"a packet is over {max_bytes} bytes (packets.max_bytes); this hub refuses it unread",
                           code="packet_too_large")
        if end < 0:
            return
        start = end + 1


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
