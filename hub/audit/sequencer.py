"""The sequencer: gives committed entries their leaf indices, in seq order, then signs a checkpoint.

One at a time under a database lock: a PostgreSQL advisory lock, or SQLite's write lock
(every hub transaction there begins IMMEDIATE). Leaf indices are 0, 1, 2, ... with no gaps,
and an entry's index never changes (the database refuses it), so the tree of any size
already signed never changes under a reader.

On PostgreSQL entries commit out of seq order: entry 41 may become visible after entry 42.
Assigning 42 before 41 exists would either leave 41 out or put it after 42. So, as a CT log
sequences only what is durably in its queue, the sequencer takes only the committed prefix:

1. it reads W, the last seq the sequence has handed out;
2. then the transactions of this database that hold a transaction id (``pg_stat_activity``);
3. it waits until every one of them has ended.

Every seq up to W was taken by a transaction that already had a transaction id (the column
default, refhub_audit_next_seq, makes sure of it), so after step 3 every entry with seq <= W
is committed or gone for good, and the entries with seq <= W and no leaf index are exactly
the next ones, in order. A transaction that stays open longer than ``wait`` holds the tree
back (this run sequences nothing new and the next run tries again); `hub audit verify`
reports entries left without a leaf index for more than two intervals.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.audit import keys, note, store
from hub.db import session_scope
from hub.audit.models import AuditCheckpoint, AuditEntry, AuditNode

log = logging.getLogger("hub.audit")

LOCK_KEY = 0x72656668_75626175 & 0x7FFFFFFFFFFFFFFF  # "refhubau": one sequencer at a time
BATCH = 20_000


@dataclass
class SequenceReport:
    sequenced: int = 0
    size: int = 0
    checkpoint: int | None = None  # the size of the checkpoint signed by this run
    skipped: str | None = None  # why this run did nothing (another sequencer, a long transaction)


def _lock(session: Session, *, wait: bool) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        session.execute(sa.text("SELECT 1"))  # BEGIN IMMEDIATE: the database's write lock is ours
        return True
    if wait:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        return True
    return bool(session.scalar(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}))


def committed_horizon(session: Session, *, wait: float, sleep: Callable[[float], None] = time.sleep) -> int | None:
    """The seq W below which (inclusive) no entry can commit any more; None if one may, still."""
    if session.get_bind().dialect.name != "postgresql":
        return None  # SQLite: we hold the write lock, so everything that exists is committed
    w = session.execute(sa.text(
        "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM audit_entry_seq_seq")).scalar()
    # Transactions of this database that hold a transaction id now (other databases' do not matter).
    running = _running(session)
    deadline = time.monotonic() + wait
    pause = 0.002
    while running:
        running &= _running(session)
        if not running:
            break
        if time.monotonic() >= deadline:
            return -1
        sleep(pause)
        pause = min(pause * 2, 0.05)
    return int(w)


def _running(session: Session) -> set[tuple[int, str]]:
    session.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
    return {(pid, str(xid)) for pid, xid in session.execute(sa.text(
        "SELECT pid, backend_xid FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"))}


def _last_sequenced_seq(session: Session, size: int) -> int:
    if size == 0:
        return 0
    seq = session.scalar(sa.select(AuditEntry.seq).where(AuditEntry.leaf_index == size - 1))
    if seq is None:
        raise store.TreeDamaged(f"no entry holds leaf index {size - 1}")
    return seq


def _assign(session: Session, seqs: list[int], first: int) -> int:
    """leaf_index = first, first + 1, ... for the entries ``seqs`` (in that order); the rows changed."""
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(sa.text(
            "UPDATE audit_entry AS a SET leaf_index = v.leaf FROM unnest(CAST(:seqs AS bigint[]),"
            " CAST(:leaves AS bigint[])) AS v(seq, leaf) WHERE a.seq = v.seq AND a.leaf_index IS NULL"),
            {"seqs": seqs, "leaves": list(range(first, first + len(seqs)))}).rowcount
    t = AuditEntry.__table__.c
    return session.execute(
        sa.update(AuditEntry.__table__).where(t.seq == sa.bindparam("b_seq"), t.leaf_index.is_(None))
        .values(leaf_index=sa.bindparam("b_leaf")),
        [{"b_seq": seq, "b_leaf": first + i} for i, seq in enumerate(seqs)]).rowcount


def _store_nodes(session: Session, rows: list[dict]) -> None:
    """The new tree nodes, in one statement on PostgreSQL (arrays, not a row of parameters each)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text(
            "INSERT INTO audit_node (height, idx, hash) SELECT * FROM unnest(CAST(:h AS smallint[]),"
            " CAST(:i AS bigint[]), CAST(:x AS bytea[]))"),
            {"h": [r["height"] for r in rows], "i": [r["index"] for r in rows], "x": [r["hash"] for r in rows]})
    else:
        session.execute(sa.insert(AuditNode), rows)


def sequence(session: Session, *, wait: float = 5.0, batch: int = BATCH, block: bool = True) -> SequenceReport:
    """Give the committed prefix of new entries their leaf indices and store the tree's nodes.

    Runs in the caller's transaction (which must commit to release the lock). ``block=False``
    skips the run when another sequencer holds the lock.
    """
    report = SequenceReport()
    if not _lock(session, wait=block):
        report.skipped = "another sequencer is running"
        return report
    # The wait comes before this transaction touches audit_entry: it holds no table lock while it waits.
    horizon = committed_horizon(session, wait=wait)
    size = store.tree_size(session)
    report.size = size
    if horizon == -1:
        report.skipped = "a transaction that may hold an audit entry is still open"
        log.warning("audit sequencer: a transaction stayed open longer than %.1f s; sequencing waits", wait)
        return report
    last_seq = _last_sequenced_seq(session, size)
    t = AuditEntry.__table__.c
    columns = store.leaf_columns(session)
    while True:
        stmt = sa.select(*columns).where(t.seq > last_seq, t.leaf_index.is_(None)).order_by(t.seq).limit(batch)
        if horizon is not None:
            stmt = stmt.where(t.seq <= horizon)
        rows = session.execute(stmt).all()
        if not rows:
            break
        leaf_bytes, sha = store.leaf_bytes, hashlib.sha256
        hashes = [sha(b"\x00" + leaf_bytes(*r[:7])).digest() for r in rows]
        updated = _assign(session, [r[0] for r in rows], size)
        if updated not in (-1, len(rows)):
            raise store.TreeDamaged("an entry got a leaf index from elsewhere while the sequencer held the lock")
        _store_nodes(session, store.new_nodes(session, size, hashes))
        size += len(rows)
        report.sequenced += len(rows)
        last_seq = rows[-1][0]
        if len(rows) < batch:
            break
    report.size = size
    return report


def checkpoint(session: Session, now: dt.datetime, *, origin: str, signer) -> AuditCheckpoint | None:
    """Sign and keep a checkpoint of the current tree if it grew since the last one."""
    size = store.tree_size(session)
    last = store.latest_checkpoint(session)
    if last is not None and last.size >= size:
        return None
    if last is None and size == 0:
        return None
    root = store.root(session, size)
    cp = AuditCheckpoint(size=size, root=root, note=note.sign(origin, size, root, signer), signed_at=now)
    session.add(cp)
    session.flush()
    return cp


def run(session: Session, now: dt.datetime, *, origin: str, signer: Callable[[], object], wait: float = 5.0,
        block: bool = True) -> SequenceReport:
    """Sequence, then sign a checkpoint if the tree grew: what the scheduler job and `hub audit checkpoint` do.

    ``signer`` is called only when there is something to sign (it unwraps the key).
    """
    report = sequence(session, wait=wait, block=block)
    if report.skipped and report.skipped.startswith("another"):
        return report
    last = store.latest_checkpoint(session)
    if report.size > (last.size if last else 0):
        cp = checkpoint(session, now, origin=origin, signer=signer())
        report.checkpoint = cp.size if cp else None
    return report


def tick(sessions, now: dt.datetime, *, settings, block: bool = True, wait: float = 5.0) -> SequenceReport:
    """One sequencing run in its own transaction, committed: the scheduler job and `hub audit checkpoint`."""
    with session_scope(sessions) as session:
        return run(session, now, origin=settings.audit_origin, wait=wait, block=block,
                   signer=lambda: keys.signing_key(settings, may_create=store.latest_checkpoint(session) is None))
