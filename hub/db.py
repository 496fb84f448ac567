"""Database plumbing: declarative Base, engines for SQLite and PostgreSQL, a UTC type, session scope."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import time
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from hub.errors import Unavailable

UTC = dt.timezone.utc


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use hub.clock")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(TypeDecorator):
    """JSON kept as text, the same on SQLite and PostgreSQL (and diffable in migrations)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    def process_result_value(self, value: str | None, dialect) -> Any:
        return None if value is None else json.loads(value)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the hub's pragmas: SQLite in WAL mode with foreign keys on.

    Bound parameters are kept out of error messages and SQL logs: a decline reason or a
    phone number must not reach a log through a database error.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = sa.create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no branch
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        # pysqlite's own transaction handling defers BEGIN; emit it ourselves. A unit of work
        # that writes takes the write lock once (BEGIN IMMEDIATE: never an upgrade from a read
        # lock, so two writers cannot deadlock): at its start by default, or, for a unit bound
        # with hub_writes="late" (see make_sessionmaker), just before its first write or
        # locking read (SELECT ... FOR UPDATE). A read-only unit (hub_writes=False) begins
        # deferred and never takes it, so reads wait for no writer.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn, _record):
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):
            writes = conn.get_execution_options().get("hub_writes", True)
            if writes is False:
                conn.exec_driver_sql("BEGIN")
            elif writes is True:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            # "late": the first write or locking read begins it (below)

        @event.listens_for(engine, "before_cursor_execute")
        def _lock_late(conn, _cursor, statement, _params, context, _executemany):
            if conn.get_execution_options().get("hub_writes", True) != "late":
                return
            dbapi_conn = conn.connection.driver_connection
            if dbapi_conn.in_transaction:
                return
            compiled = getattr(context, "compiled", None)
            locking = getattr(getattr(compiled, "statement", None), "_for_update_arg", None) is not None
            if locking or not statement.lstrip().upper().startswith(_READ_PREFIXES):
                dbapi_conn.execute("BEGIN IMMEDIATE")

        _guard_reads(engine)
        return engine
    # No pre-ping (a round trip on every checkout): connections are recycled before a server
    # or a firewall would drop them, and a connection that died anyway (PostgreSQL restarted)
    # fails its request with a 503 and invalidates the whole pool, so the next request
    # connects afresh (tests/integration/test_pg_restart.py).
    kwargs.setdefault("pool_recycle", 300)
    engine = sa.create_engine(url, **kwargs)
    _guard_reads(engine)
    return engine


class WriteInReadOnlyUnit(RuntimeError):
    """A unit of work declared read-only tried to write: declare the view or command as writing."""


_READ_PREFIXES = ("SELECT", "BEGIN", "PRAGMA", "SHOW", "SAVEPOINT", "RELEASE", "ROLLBACK")


def _guard_reads(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _read_only(conn, _cursor, statement, _params, _context, _executemany):
        if conn.get_execution_options().get("hub_writes", True) is False \
                and not statement.lstrip().upper().startswith(_READ_PREFIXES):
            # On SQLite the write would have to upgrade a read lock, which can fail under load.
            raise WriteInReadOnlyUnit(f"a read-only unit of work tried to run {statement.split(None, 1)[0]}")


def make_sessionmaker(engine: Engine, *, writes: bool | str = True) -> sessionmaker[Session]:
    """Sessions for units of work that write (the default) or only read (``writes=False``).

    A read-only unit never takes SQLite's write lock; any write in it raises
    :class:`WriteInReadOnlyUnit`. ``writes="late"``: on SQLite the write lock is taken at
    the first write or ``SELECT ... FOR UPDATE``, and each read before it sees its own
    snapshot; only for units whose writes are guarded by constraints or locking reads,
    not by what plain reads saw (a submission: its uniqueness is the constraints'). On
    PostgreSQL all three are ordinary transactions.
    """
    bind = engine if writes is True else engine.execution_options(hub_writes=writes)
    return sessionmaker(bind=bind, expire_on_commit=False)


@contextlib.contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# SQLSTATEs after which the same work, tried again, can succeed: a deadlock victim and a
# serialization failure (PostgreSQL); SQLite reports a busy database as OperationalError.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
RETRIES = 4


def is_transient(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in TRANSIENT_SQLSTATES


def retry_transient(session: Session, work, *, attempts: int = RETRIES):
    """Run ``work()`` in a savepoint; after a deadlock or serialization failure roll back to it and try again.

    Bounded: after ``attempts`` tries the failure is reported as Unavailable (503 with
    Retry-After). Any other error passes through untouched.
    """
    for attempt in range(attempts):
        try:
            with session.begin_nested():
                return work()
        except sa.exc.DBAPIError as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts - 1:
                raise Unavailable("the hub is busy with another answer to this referral; try again in a moment",
                                  code="busy", retry_after=1) from None
            time.sleep(random.uniform(0.005, 0.02) * 2 ** attempt)


class InsertChain:
    """New rows of several tables, gathered and then written together by :meth:`run`.

    On PostgreSQL they go in ONE statement, a chain of data-modifying CTEs
    (``WITH w0 AS (INSERT ... RETURNING 1), w1 AS (...) SELECT 1``): one round trip for
    what would be one per table. Each table's rows travel as one JSON parameter, which
    ``jsonb_populate_recordset`` turns into rows of the table's own column types: a
    parameter per table rather than per value, and the same text for any number of rows,
    so psycopg converts the statement once (it caches only statements of at most 50
    parameters) and prepares it on the server after a few runs. Every sub-statement runs
    to completion, and foreign keys are checked at the end of the statement, so a row may
    point at one the same chain inserts. A unique constraint that refuses raises
    IntegrityError naming it, as a lone INSERT would. Elsewhere (SQLite, in process: no
    round trips to save) each table's rows are one INSERT, in the order they were added,
    compiled once and sent as the driver's SQL with a tuple a row.

    Either way the values are converted by their columns' own types first (the UTC and
    JSON conversions apply as in any statement); on PostgreSQL they are then spelled as
    JSON, a time in ISO 8601 and bytes in PostgreSQL's hex form. The engine's events see
    every statement (the SQLite write lock, the read-only guard, the bench's counter).

    ``conflict_ok``: ``ON CONFLICT DO NOTHING`` (a row that exists already is skipped).
    The statements are built once per shape (tables and their columns) and reused.
    """

    def __init__(self) -> None:
        self._parts: list[tuple[sa.Table, list[dict[str, Any]], bool]] = []

    def add(self, table: sa.Table, rows: dict[str, Any] | list[dict[str, Any]], *, conflict_ok: bool = False) -> None:
        rows = [rows] if isinstance(rows, dict) else list(rows)
        if rows:
            self._parts.append((table, rows, conflict_ok))

    def __len__(self) -> int:
        return len(self._parts)

    def run(self, conn: sa.Connection) -> None:
        parts, self._parts = self._parts, []
        if not parts:
            return
        if conn.dialect.name != "postgresql":
            for table, rows, conflict_ok in parts:
                insert = _cached(_INSERTS, (conn.dialect.name, table.name, tuple(rows[0]), conflict_ok),
                                 lambda: _Insert(table, rows[0], conflict_ok, conn.dialect))
                insert.run(conn, rows)
            return
        shape = tuple((table.name, tuple(rows[0]), conflict_ok) for table, rows, conflict_ok in parts)
        chain = _cached(_CHAINS, shape, lambda: _Chain(parts, conn.dialect))
        conn.execute(chain.statement, chain.params(parts))


def _cached(cache: dict, key: tuple, build):
    found = cache.get(key)
    if found is None:
        if len(cache) > 64:
            cache.clear()
        found = cache[key] = build()
    return found


class _Insert:
    """One table's INSERT of InsertChain elsewhere than on PostgreSQL, compiled once: its SQL and its
    columns' conversions (the types' own, as a compiled statement would apply them), sent as the
    driver's SQL with one tuple a row (the engine's events still see it)."""

    def __init__(self, table: sa.Table, row: dict[str, Any], conflict_ok: bool, dialect) -> None:
        if conflict_ok:
            stmt = (postgresql if dialect.name == "postgresql" else sqlite).insert(table).on_conflict_do_nothing()
        else:
            stmt = sa.insert(table)
        compiled = stmt.compile(dialect=dialect, column_keys=list(row))
        order = compiled.positiontup or []
        if set(order) != set(row):  # a column default the statement would compute: not for a plain row
            raise ValueError(f"InsertChain: {table.name} has columns with defaults outside the row: "
                             f"{sorted(set(order) - set(row))}")
        self.sql = compiled.string
        self.columns = [(key, table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) for key in order]

    def run(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        params = [tuple(row[key] if convert is None else convert(row[key]) for key, convert in self.columns)
                  for row in rows]
        conn.exec_driver_sql(self.sql, params if len(params) > 1 else params[0])


class _Chain:
    """One shape of InsertChain on PostgreSQL: its statement, and how its rows become its parameters."""

    def __init__(self, parts, dialect) -> None:
        quote = dialect.identifier_preparer.quote
        ctes, self.columns = [], []
        for i, (table, rows, conflict_ok) in enumerate(parts):
            columns = [table.c[key] for key in rows[0]]
            names = ", ".join(quote(c.name) for c in columns)
            self.columns.append([(key, c.name, _conversion(c.type, dialect)) for key, c in zip(rows[0], columns)])
            table_name = dialect.identifier_preparer.format_table(table)
            ctes.append(f"w{i} AS (INSERT INTO {table_name} ({names}) SELECT {names} "  # nosec B608: schema names only
                        f"FROM jsonb_populate_recordset(NULL::{table_name}, CAST(:w{i} AS JSONB))"
                        + (" ON CONFLICT DO NOTHING" if conflict_ok else "") + " RETURNING 1)")
        self.statement = sa.text("WITH " + ", ".join(ctes) + " SELECT 1")

    def params(self, parts) -> dict[str, str]:
        out = {}
        for i, (_table, rows, _ok) in enumerate(parts):
            columns = self.columns[i]
            out[f"w{i}"] = json.dumps(
                [{name: (convert(row[key]) if convert is not None else row[key]) for key, name, convert in columns}
                 for row in rows], ensure_ascii=False, separators=(",", ":"), default=_json_value)
        return out


def _conversion(type_: sa.types.TypeEngine, dialect) -> Any:
    """The hub's own conversion of a column's values (a TypeDecorator's), or None; the driver's
    adaptation (psycopg's Binary and the like) is JSON's here."""
    if isinstance(type_, TypeDecorator):
        return lambda value: type_.process_bind_param(value, dialect)
    return None


def _json_value(value: Any) -> str:
    """What json.dumps cannot spell, as PostgreSQL reads it from text: times and bytes."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    raise TypeError(f"an InsertChain value of type {type(value).__name__} has no JSON spelling")


_CHAINS: dict[tuple, _Chain] = {}
_INSERTS: dict[tuple, _Insert] = {}
