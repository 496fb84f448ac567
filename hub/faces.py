"""What every HTTP face shares: the app's HubContext and the request's one session."""
from __future__ import annotations

from typing import Callable

from flask import current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge
from sqlalchemy.orm import Session

from hub.context import HubContext


def current() -> HubContext:
    return current_app.extensions["hub"]


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def writes(view: Callable | None = None, *, late: bool = False) -> Callable:
    """Mark a view's unit of work as writing (needed on GET, e.g. for an audit entry).

    ``late=True``: on SQLite its write lock is taken at its first write rather than at its
    start (hub.db.make_sessionmaker): for views whose writes are guarded by constraints or
    by locking reads, not by what their plain reads saw.
    """
    def mark(fn: Callable) -> Callable:
        fn.hub_writes = "late" if late else True
        return fn

    return mark(view) if view is not None else mark


def request_writes() -> bool | str:
    """This request's unit of work: True (writes), "late" (writes, lock at the first write) or False.

    Every method but GET/HEAD/OPTIONS writes; a view marked with :func:`writes` says how.
    """
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    mark = getattr(view, "hub_writes", None)
    if mark is not None:
        return mark
    return request.method not in READ_METHODS


def db() -> Session:
    """The request's session: one unit of work per request, closed at teardown.

    Whether it may write is decided here, before it begins (:func:`request_writes`): on
    SQLite a writing unit takes the write lock once, a reading one never.
    """
    if "db_session" not in g:
        ctx = current()
        factory = {True: ctx.sessions, False: ctx.readers, "late": ctx.late_writers}[request_writes()]
        g.db_session = (factory or ctx.sessions)()
    return g.db_session


def is_read_only(session: Session) -> bool:
    return session.get_bind().get_execution_options().get("hub_writes", True) is False


def restart_as_writer() -> Session:
    """End the request's read-only unit (it has only read) and begin one that writes, in its place.

    For the rare read-only request that must write after all (a token's or session's
    last-seen time, at most once a minute): restarting is safe where upgrading a read
    lock on SQLite is not. The caller reads again what it needs.
    """
    old = g.pop("db_session", None)
    if old is not None:
        old.rollback()
        old.close()
    g.db_session = current().sessions()
    return g.db_session


def after_request(response):
    """A read-only request whose token or session check recorded a sighting commits that alone."""
    if g.pop("commit_sighting", False) and "db_session" in g:
        g.db_session.commit()
    return response


def teardown(exc: BaseException | None) -> None:
    """End of a request: roll back what was not committed and give the connection back."""
    g.pop("commit_sighting", None)
    session = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()


# -- request size limits -------------------------------------------------------------------------
# MAX_CONTENT_LENGTH (hub.wiring) is the largest body the hub reads: a submission of two packets.
# Only the routes that carry packets or photos get it; every other route reads a small body,
# refused with 413 (and the error envelope) before a byte of it is parsed.

API_BODY_LIMIT = 16 * 1024       # an acknowledgement, a decline's reason, a bed count
WEBHOOK_BODY_LIMIT = 64 * 1024   # Twilio posts a few hundred bytes
FORM_BODY_LIMIT = 256 * 1024     # web forms without photos
LARGE_BODY_ENDPOINTS = frozenset({"api.create_referral", "web.new_referral"})


def body_limit(endpoint: str | None) -> int | None:
    """The largest body ``endpoint`` reads; None: the app's MAX_CONTENT_LENGTH."""
    if endpoint in LARGE_BODY_ENDPOINTS:
        return None
    if endpoint and endpoint.startswith("api."):
        return API_BODY_LIMIT
    if endpoint and endpoint.startswith("notify."):
        return WEBHOOK_BODY_LIMIT
    return FORM_BODY_LIMIT


def limit_body() -> None:
    """before_request: this route's body limit, checked on Content-Length at once and on the stream."""
    limit = body_limit(request.endpoint)
    if limit is None:
        return
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"this request may carry at most {limit // 1024} KiB")
