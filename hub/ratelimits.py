"""Rate-limit counts kept in the hub's own database: a ``limits`` storage for ``rate_limit_storage = "database"``.

The ``limits`` library (under Flask-Limiter) keeps its counts in memory, Redis, Memcached or
MongoDB; a hub that has only its database gets a storage here, so that every worker process
(and every host) behind one database shares one count per key.

Fixed windows only (the strategy the hub uses, hub/web/security.py): one row per key, with
the window's end and the count in it. A hit is one statement, an upsert (``INSERT ... ON
CONFLICT DO UPDATE ... RETURNING``, on PostgreSQL and SQLite alike) that starts a new window
when the old one has ended, so two workers counting the same key at once never lose a hit.
Each call runs on a connection of its own in a short transaction of its own: a limit check
never joins, waits for or commits the request's unit of work.

The key is kept as its SHA-256 digest: the keys name client addresses and the user names
typed at sign-in (now and then a password typed in the wrong field), none of which the
table needs in the clear. Rows whose window ended are deleted now and then by the storage
itself (every ``PRUNE_EVERY`` hits of a process).
"""
from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Callable

import sqlalchemy as sa
from limits.storage import Storage
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base

SCHEME = "hub-database"
SETTING = "database"  # [security] rate_limit_storage = "database"
PRUNE_EVERY = 500


class RateLimitWindow(Base):
    """One key's fixed window: its end (milliseconds since the epoch) and the hits counted in it."""

    __tablename__ = "rate_limit_window"
    key_digest: Mapped[bytes] = mapped_column(sa.LargeBinary(32), primary_key=True)
    expires_ms: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    hits: Mapped[int] = mapped_column(sa.Integer)


_TABLE = RateLimitWindow.__table__


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


def prune(conn: sa.Connection, now_ms: int) -> int:
    """Delete the windows that ended before ``now_ms``; how many went."""
    return conn.execute(sa.delete(_TABLE).where(_TABLE.c.expires_ms <= now_ms)).rowcount


class DatabaseStorage(Storage):
    """A ``limits`` storage on the hub's engine (``storage_options={"engine": engine}``)."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, *, engine: Engine,
                 now: Callable[[], float] = time.time, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._writer = engine
        self._reader = engine.execution_options(hub_writes=False)  # SQLite: a read takes no write lock
        self._now = now
        self._postgres = engine.dialect.name == "postgresql"
        self._hits = 0
        self._lock = threading.Lock()
        insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(_TABLE)
        ended = _TABLE.c.expires_ms <= sa.bindparam("now_ms", type_=sa.BigInteger)  # a new window begins
        self._upsert = insert.on_conflict_do_update(
            index_elements=[_TABLE.c.key_digest],
            set_={"hits": sa.case((ended, insert.excluded.hits), else_=_TABLE.c.hits + insert.excluded.hits),
                  "expires_ms": sa.case((ended, insert.excluded.expires_ms), else_=_TABLE.c.expires_ms)},
        ).returning(_TABLE.c.hits)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return sa.exc.SQLAlchemyError

    def _ms(self) -> int:
        return int(self._now() * 1000)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self._ms()
        window = int(expiry * 1000)
        with self._writer.begin() as conn:
            if self._postgres:  # a count lost in a crash costs nothing: no wait for the WAL flush
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            hits = conn.execute(self._upsert, {"key_digest": _digest(key), "expires_ms": now + window,
                                               "hits": amount, "now_ms": now}).scalar_one()
        with self._lock:
            self._hits += 1
            due = self._hits % PRUNE_EVERY == 0
        if due:
            with self._writer.begin() as conn:
                prune(conn, now)
        return hits

    def _row(self, key: str):
        with self._reader.begin() as conn:
            return conn.execute(sa.select(_TABLE.c.hits, _TABLE.c.expires_ms)
                                .where(_TABLE.c.key_digest == _digest(key))).first()

    def get(self, key: str) -> int:
        row = self._row(key)
        return row.hits if row is not None and row.expires_ms > self._ms() else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        now = self._now()
        return row.expires_ms / 1000 if row is not None and row.expires_ms > now * 1000 else now

    def check(self) -> bool:
        try:
            with self._reader.begin() as conn:
                conn.execute(sa.select(sa.func.count()).select_from(_TABLE).where(sa.false()))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        with self._writer.begin() as conn:
            return conn.execute(sa.delete(_TABLE)).rowcount

    def clear(self, key: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(sa.delete(_TABLE).where(_TABLE.c.key_digest == _digest(key)))
