"""What a running hub holds: settings, the engine, a session factory, the clock, collaborators.

Every process that opens a session builds one of these (create_app, every `hub`
command), so the wiring is the same everywhere: the complete metadata
(:mod:`hub.models`), the SMS gateway, the ladder that hears of lifecycle changes,
and the hook by which notify tells the ladder that a text failed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import hub.models  # noqa: F401  (every table in the metadata, whatever this process imported before)
from hub.clock import Clock, SystemClock
from hub.config import Settings
from hub.db import make_engine, make_sessionmaker
from hub.escalation.notifier import LadderNotifier
from hub.escalation.service import delivery_failed
from hub.notify.gateways import make_gateway


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
    on_delivery_failed: Callable | None = delivery_failed

    @classmethod
    def build(cls, settings: Settings, *, engine: Engine | None = None, clock: Clock | None = None,
              gateway: Any = None, notifier: Any = None) -> "HubContext":
        engine = engine or make_engine(settings.database_url)
        return cls(settings=settings, engine=engine, sessions=make_sessionmaker(engine),
                   readers=make_sessionmaker(engine, writes=False), late_writers=make_sessionmaker(engine, writes="late"),
                   clock=clock or SystemClock(),
                   gateway=gateway if gateway is not None else make_gateway(dataclasses.asdict(settings.sms)),
                   notifier=notifier if notifier is not None else LadderNotifier(settings))
