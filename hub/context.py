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
                   clock=clock or SystemClock(), gateway=gateway, notifier=notifier)

    def teardown(self, exc: BaseException | None) -> None:
        from flask import g

        session = g.pop("db_session", None)
        if session is not None:
            if exc is not None:
                session.rollback()
            session.close()


def current() -> HubContext:
    from flask import current_app

    return current_app.extensions["hub"]


def db() -> Session:
    """The request's session (one per request, closed at teardown)."""
    from flask import g

    if "db_session" not in g:
        g.db_session = current().sessions()
    return g.db_session
