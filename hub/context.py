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
    # Sessions that take SQLite's write lock at their first write (hub.db.make_sessionmaker).
    late_writers: sessionmaker[Session] | None = None
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
                   readers=make_sessionmaker(engine, writes=False),
                   late_writers=make_sessionmaker(engine, writes="late"), clock=clock or SystemClock(), gateway=gateway, notifier=notifier)

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
    from flask import current_app, request

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
    from flask import g

    if "db_session" not in g:
        ctx = current()
        mode = request_writes()
        factory = {True: ctx.sessions, False: ctx.readers, "late": ctx.late_writers}[mode] or ctx.sessions
        g.db_session = factory()
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
