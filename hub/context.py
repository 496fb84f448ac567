"""What a running hub holds: settings, the engine, a session factory, the clock, collaborators."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import Clock, SystemClock
from hub.config import Settings
from hub.db import make_engine, make_sessionmaker


@dataclass
class HubContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    # Sessions for units of work that only read (no write lock on SQLite); see hub.db.
    readers: sessionmaker[Session] | None = None
    gateway: Any = None
    notifier: Any = None
    blueprint_hooks: list[Callable] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, *, engine: Engine | None = None, clock: Clock | None = None,
              gateway: Any = None, notifier: Any = None) -> "HubContext":
        engine = engine or make_engine(settings.database_url)
        if gateway is None:
            from dataclasses import asdict

            from hub.notify.gateways import make_gateway

            gateway = make_gateway(asdict(settings.sms))
        if notifier is None:
            from hub.escalation.notifier import LadderNotifier

            notifier = LadderNotifier(settings)
        return cls(settings=settings, engine=engine, sessions=make_sessionmaker(engine),
                   readers=make_sessionmaker(engine, writes=False), clock=clock or SystemClock(), gateway=gateway, notifier=notifier)

    def after_request(self, response):
        """A read-only request whose token or session check recorded a sighting commits that alone."""
        from flask import g

        if g.pop("commit_sighting", False) and "db_session" in g:
            g.db_session.commit()
        return response

    def teardown(self, exc: BaseException | None) -> None:
        from flask import g

        g.pop("commit_sighting", None)
        session = g.pop("db_session", None)
        if session is not None:
            if exc is not None:
                session.rollback()
            session.close()


def current() -> HubContext:
    from flask import current_app

    return current_app.extensions["hub"]


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def writes(view: Callable) -> Callable:
    """Mark a GET view whose unit of work writes (e.g. an audit entry), so it takes the write lock at once."""
    view.hub_writes = True
    return view


def request_writes() -> bool:
    """Whether this request's unit of work writes: every method but GET/HEAD/OPTIONS, and views marked @writes."""
    from flask import current_app, request

    if request.method not in READ_METHODS:
        return True
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return bool(getattr(view, "hub_writes", False))


def db() -> Session:
    """The request's session: one unit of work per request, closed at teardown.

    Whether it may write is decided here, before it begins (:func:`request_writes`): on
    SQLite a writing unit starts with BEGIN IMMEDIATE, a reading one with a plain BEGIN.
    """
    from flask import g

    if "db_session" not in g:
        ctx = current()
        g.db_session = (ctx.sessions if request_writes() or ctx.readers is None else ctx.readers)()
    return g.db_session


def is_read_only(session: Session) -> bool:
    return session.get_bind().get_execution_options().get("hub_writes", True) is False


def restart_as_writer() -> Session:
    """End the request's read-only unit (it has only read) and begin one that writes, in its place.

    For the rare read-only request that must write after all (a token's or session's
    last-seen time, at most once a minute): restarting is safe where upgrading a read
    lock on SQLite is not. The caller reads again what it needs.
    """
    from flask import g

    old = g.pop("db_session", None)
    if old is not None:
        old.rollback()
        old.close()
    g.db_session = current().sessions()
    return g.db_session
