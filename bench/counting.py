"""Statements and transactions an engine runs, counted with SQLAlchemy's events."""
from __future__ import annotations

import collections
import threading

from sqlalchemy import event
from sqlalchemy.engine import Engine


class Counter:
    """Counts, from :meth:`reset`, the statements sent to the database (an executemany or a
    multi-row INSERT is one) and the transactions begun. SQLite's BEGIN, which the hub sends
    itself, is a transaction here, not a statement."""

    def __init__(self, engine: Engine):
        self._lock = threading.Lock()
        self.reset()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)

    def reset(self) -> None:
        with self._lock:
            self.statements = 0
            self.transactions = 0
            self.kinds: collections.Counter[str] = collections.Counter()
            self.log: list[str] = []

    def _statement(self, _conn, _cursor, statement, _params, _context, _executemany):
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb == "BEGIN":
            return
        with self._lock:
            self.statements += 1
            self.kinds[verb] += 1
            self.log.append(" ".join(statement.split())[:120])

    def _begin(self, _conn):
        with self._lock:
            self.transactions += 1
