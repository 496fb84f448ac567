"""`hub audit verify`: recompute every leaf, rebuild the tree, check every checkpoint.

Stops at the first problem, in this order: a checkpoint that does not verify against the
published key; then, leaf by leaf, an entry whose bytes do not give its stored leaf hash,
a missing leaf index, an entry out of seq order, a stored subtree that does not match, a
checkpoint whose root is not the root of the leaves below it; then entries left without a
leaf index (an entry below the sequenced ones, or one waiting longer than two intervals).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import queue
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.audit import note, store, tree
from hub.audit.models import AuditCheckpoint, AuditEntry, AuditNode

CHUNK = 50_000


@dataclass
class Verdict:
    ok: bool = True
    problem: str | None = None
    entries: int = 0
    leaves: int = 0
    checkpoints: int = 0
    latest: int | None = None
    waiting: int = 0
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)

    def fail(self, problem: str) -> "Verdict":
        self.ok = False
        self.problem = problem
        return self


def _checkpoints(session: Session, verifier: str | None, verdict: Verdict) -> list[AuditCheckpoint] | None:
    cps = list(session.scalars(sa.select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
    verdict.checkpoints = len(cps)
    if cps and verifier is None:
        verdict.fail("checkpoints exist but there is no verifier key (keys/hub-audit.vkey)")
        return None
    for cp in cps:
        try:
            opened = note.open_checkpoint(cp.note, verifier)
        except note.NoteError as exc:
            verdict.fail(f"checkpoint of size {cp.size}: {exc}")
            return None
        if opened.size != cp.size or opened.root != bytes(cp.root):
            verdict.fail(f"checkpoint of size {cp.size}: its stored size or root differs from its signed note")
            return None
    if cps:
        verdict.latest = cps[-1].size
    return cps


def verify(session: Session, *, verifier: str | None, now: dt.datetime, interval: dt.timedelta) -> Verdict:
    started = time.perf_counter()
    verdict = Verdict()
    cps = _checkpoints(session, verifier, verdict)
    if cps is None:
        return verdict
    roots = {cp.size: bytes(cp.root) for cp in cps}
    upper = {(h, i): bytes(v) for h, i, v in session.execute(
        sa.select(AuditNode.height, AuditNode.index, AuditNode.hash).where(AuditNode.height > 0))}
    t = AuditEntry.__table__.c
    nodes_t = AuditNode.__table__.c
    lo_p, hi_p = sa.bindparam("lo"), sa.bindparam("hi")
    dialect = session.get_bind().dialect
    entries_sql = _driver_sql(sa.select(*store.leaf_columns(session)).where(
        t.leaf_index >= lo_p, t.leaf_index < hi_p).order_by(t.leaf_index), dialect)
    nodes_sql = _driver_sql(sa.select(nodes_t.idx, nodes_t.hash).where(
        nodes_t.height == 0, nodes_t.idx >= lo_p, nodes_t.idx < hi_p), dialect)
    # Straight to the driver (a SQLAlchemy Row per entry costs more than hashing it), and one
    # chunk ahead in a thread, so that the database works while this one hashes.
    cursor = session.connection().connection.cursor()
    top = store.tree_size(session)
    chunks: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        try:
            for lo in range(0, top, CHUNK):
                if stop.is_set():
                    return
                rows = _run(cursor, entries_sql, lo, lo + CHUNK)
                chunks.put((rows, dict(_run(cursor, nodes_sql, lo, lo + CHUNK))))
        except BaseException as exc:  # handed to the checking thread, which raises it
            chunks.put(exc)
        chunks.put(None)

    fetcher = threading.Thread(target=fetch, name="audit-verify-fetch", daemon=True)
    fetcher.start()
    try:
        return _check_leaves(verdict, chunks, roots, upper, top, session, now, interval, started)
    finally:
        stop.set()
        while fetcher.is_alive():
            try:
                chunks.get(timeout=0.1)
            except queue.Empty:
                pass
        fetcher.join()


def _driver_sql(stmt, dialect):
    compiled = stmt.compile(dialect=dialect)
    return str(compiled), compiled


def _run(cursor, prepared, lo: int, hi: int) -> list:
    sql, compiled = prepared
    params = {**compiled.params, "lo": lo, "hi": hi}
    args = tuple(params[n] for n in compiled.positiontup) if compiled.positional else params
    cursor.execute(sql, args)
    return cursor.fetchall()


def _check_leaves(verdict, chunks, roots, upper, top, session, now, interval, started) -> Verdict:
    t = AuditEntry.__table__.c
    sha = hashlib.sha256
    enc = store._enc
    frontier = tree.Frontier()
    stack = frontier.stack
    expected, last_seq, last_seq_index = 0, 0, None
    while True:
        item = chunks.get()
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        rows, stored = item
        for seq, at, actor, action, rid, psha, detail, index in rows:
            if index != expected:
                where = f"after seq {last_seq} (leaf index {expected - 1})" if expected else "at the start"
                return verdict.fail(f"leaf index {expected} is missing {where}: an entry was deleted"
                                    f" or its index changed")
            if seq <= last_seq:
                return verdict.fail(f"entry seq {seq} (leaf index {index}) is out of seq order after seq "
                                    f"{last_seq} (leaf index {last_seq_index}): entries were reordered or inserted")
            data = ('{"action":%s,"actor":%s,"at":%s,"detail":%s,"packet_sha256":%s,"referral_id":%s,"seq":%d}' % (
                enc(action), enc(actor), enc(at), "null" if detail is None else detail,
                "null" if psha is None else enc(psha), "null" if rid is None else enc(rid), seq)).encode("utf-8")
            h = sha(b"\x00" + data).digest()
            want = stored.get(index)
            if want is None:
                return verdict.fail(f"entry seq {seq} (leaf index {index}) has no stored leaf hash: "
                                    "the tree's nodes were deleted")
            if h != bytes(want):
                return verdict.fail(f"entry seq {seq} (leaf index {index}) does not match its leaf hash:"
                                    " the entry was changed or replaced")
            # Frontier.append, watching each completed subtree of a stored height go by.
            size, height = expected, 0
            while size & 1:
                h = sha(b"\x01" + stack.pop() + h).digest()
                size >>= 1
                height += 1
                if not height & 7:
                    idx = ((expected + 1) >> height) - 1
                    if upper.get((height, idx)) != h:
                        return verdict.fail(
                            f"the stored subtree over leaf indices {idx << height} to {((idx + 1) << height) - 1}"
                            " is missing or does not match its entries: the tree's nodes were changed")
            stack.append(h)
            expected += 1
            frontier.size = expected
            last_seq, last_seq_index = seq, index
            if expected in roots and frontier.root() != roots[expected]:
                return verdict.fail(f"checkpoint of size {expected}: its root is not the root of the entries"
                                    " (stored tree nodes were rewritten to match changed entries)")
    if expected < top:
        return verdict.fail(f"leaf index {expected} is missing after seq {last_seq}: an entry was deleted")
    verdict.leaves = expected
    for size in roots:
        if size > expected:
            return verdict.fail(f"checkpoint of size {size} is beyond the tree of {expected} leaves:"
                                " entries were deleted")
    waiting = session.execute(sa.select(t.seq, t.at).where(t.leaf_index.is_(None)).order_by(t.seq)).all()
    verdict.waiting = len(waiting)
    for seq, at in waiting:
        if seq < last_seq:
            return verdict.fail(f"entry seq {seq} (no leaf index) lies below sequenced entries (seq {last_seq}):"
                                " it was inserted after the fact")
        if now - at > 2 * interval:
            return verdict.fail(f"entry seq {seq} has had no leaf index for longer than two sequencing intervals"
                                f" ({2 * interval}): the sequencer is not running or is held back")
    verdict.entries = expected + len(waiting)
    verdict.seconds = time.perf_counter() - started
    return verdict
