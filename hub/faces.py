"""What every HTTP face shares: the app's HubContext and the request's one session."""
from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from hub.context import HubContext


def current() -> HubContext:
    return current_app.extensions["hub"]


def db() -> Session:
    """The request's session (one per request, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = current().sessions()
    return g.db_session


def teardown(exc: BaseException | None) -> None:
    """End of a request: roll back what was not committed and give the connection back."""
    session = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()
