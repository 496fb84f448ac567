"""Database plumbing: declarative Base, engines for SQLite and PostgreSQL, a UTC type, session scope."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import re
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
    what would be one per table. Every sub-statement runs to completion, and foreign
    keys are checked at the end of the statement, so a row may point at one the same
    chain inserts. A unique constraint that refuses raises IntegrityError naming it, as
    a lone INSERT would. Elsewhere (SQLite, in process: no round trips to save) each
    table's rows are one INSERT, in the order they were added.

    ``conflict_ok``: ``ON CONFLICT DO NOTHING`` (a row that exists already is skipped).
    The statements are built once per shape (tables, columns, row counts) and reused,
    so each compiles once per engine.
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
                conn.execute(_single_insert(conn.dialect.name, table, conflict_ok), rows if len(rows) > 1 else rows[0])
            return
        shape = tuple((table.name, tuple(rows[0]), len(rows), conflict_ok) for table, rows, conflict_ok in parts)
        stmt = _CHAINS.get(shape)
        if stmt is None:
            if len(_CHAINS) > 64:
                _CHAINS.clear()
            stmt = _CHAINS[shape] = _chain_statement(parts)
        params: dict[str, Any] = {}
        for i, (_table, rows, _ok) in enumerate(parts):
            for j, row in enumerate(rows):
                for name, value in row.items():
                    params[f"w{i}_{j}_{name}"] = value
        conn.execute(stmt, params)


_CHAINS: dict[tuple, sa.TextClause] = {}
_SINGLE: dict[tuple, sa.Insert] = {}


def _single_insert(dialect: str, table: sa.Table, conflict_ok: bool) -> sa.Insert:
    key = (dialect, table.name, conflict_ok)
    stmt = _SINGLE.get(key)
    if stmt is None:
        if conflict_ok:
            stmt = (postgresql if dialect == "postgresql" else sqlite).insert(table).on_conflict_do_nothing()
        else:
            stmt = sa.insert(table)
        _SINGLE[key] = stmt
    return stmt


def _chain_statement(parts) -> sa.TextClause:
    """The chain as text with typed bind parameters: a multi-row INSERT has no cache key in
    SQLAlchemy (it would compile on every run), a text clause has one (compiles once)."""
    ctes, binds = [], []
    for i, (table, rows, conflict_ok) in enumerate(parts):
        names = list(rows[0])
        values = []
        for j in range(len(rows)):
            row = {n: sa.bindparam(f"w{i}_{j}_{n}", type_=table.c[n].type) for n in names}
            binds.extend(row.values())
            values.append(row)
        ins = postgresql.insert(table).values(values)
        if conflict_ok:
            ins = ins.on_conflict_do_nothing()
        ctes.append(ins.returning(sa.literal_column("1")).cte(f"w{i}"))
    sql = str(sa.select(sa.literal_column("1")).add_cte(*ctes).compile(dialect=_NAMED_PG))
    sql = re.sub(r"(:w\d+_\d+_\w+)::", r"\1 ::", sql)  # ":name::TYPE" is no bind name to text(); ":name ::TYPE" is
    # The bind parameters keep their column types: the UTC and JSON conversions still apply.
    return sa.text(sql).bindparams(*binds)


_NAMED_PG = postgresql.dialect(paramstyle="named")
