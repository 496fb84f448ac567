"""`hub audit verify`: recompute every leaf, rebuild the tree, check every checkpoint.

Stops at the first problem, in this order: a checkpoint that does not verify against the
published key; then, leaf by leaf, an entry whose bytes do not give its stored leaf hash,
a missing leaf index, an entry out of seq order, a stored subtree that does not match, a
checkpoint whose root is not the root of the leaves below it; then entries left without a
leaf index (an entry below the sequenced ones, or one waiting longer than two intervals).
"""
from __future__ import annotations

import array
import contextlib
import datetime as dt
import hashlib
import itertools
import operator
import queue
import sys
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
    top = store.tree_size(session)
    if session.get_bind().dialect.name == "postgresql":
        passed = _fast(session, roots, upper, top, verdict.figures)
        if passed is not None:  # every check held: only the entries without a leaf index are left
            verdict.figures["pass"] = "chunks"
            return _finish(verdict, passed[0], passed[1], roots, top, session, now, interval, started)
        # Something is wrong: the entry by entry pass below finds it again and names it.
    verdict.figures["pass"] = "entries"
    return _by_entry(verdict, session, roots, upper, top, now, interval, started)


@contextlib.contextmanager
def _ahead(produce):
    """The items of ``produce()``, made one item ahead in a thread: the database works while this one hashes."""
    items: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in produce():
                if stop.is_set():
                    return
                items.put(item)
        except BaseException as exc:  # handed to the checking thread, which raises it
            items.put(exc)
        items.put(None)

    def consume():
        while True:
            item = items.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    fetcher = threading.Thread(target=run, name="audit-verify-fetch", daemon=True)
    fetcher.start()
    try:
        yield consume()
    finally:
        stop.set()
        while fetcher.is_alive():
            try:
                items.get(timeout=0.1)
            except queue.Empty:
                pass
        fetcher.join()


# --- PostgreSQL: whole chunks at a time ---------------------------------------------------------
#
# The database builds each entry's leaf bytes and hands over a chunk of entries as one text, one leaf per
# line, with its seqs in leaf order and the chunk's stored leaf hashes as one bytea. Here a chunk is a
# split, one hash per leaf, one comparison, and the tree built level by level.
#
# The bytes are first spelled the cheap way (to_json and to_char cost most of the database's work): a
# string with no quote and no backslash between plain quotes, any other through to_json; the time as
# timestamp text. These are store.leaf_bytes' bytes unless a string holds a control character or the time
# is out of the ordinary (then they differ from every leaf's bytes: a leaf's bytes hold no raw control
# character). A chunk whose hashes differ is spelled again exactly (to_json escapes strings as json's
# encode_basestring does; the time is store.time_text's expression). The cheap spelling stays one to one
# (a string that holds a quote or a backslash is always escaped), so a leaf counts only when its entry's
# own bytes give the stored hash: the spelling can cost time, never decide a verdict. Any doubt left (a
# line break inside an entry, a NULL, a gap, a mismatch) sends the whole run to the entry by entry pass,
# which names the first problem.

FAST_HEIGHT = 16
FAST_CHUNK = 1 << FAST_HEIGHT
FAST_READERS = 2  # connections building chunks at once: the database's work, not this process's, is the most
_PLAIN = """CASE WHEN strpos({x}, '"') + strpos({x}, '\\') = 0 THEN '"' || {x} || '"' ELSE to_json({x})::text END"""
_CHEAP_LEAF = f"""'{{"action":' || {_PLAIN.format(x="action")} || ',"actor":' || {_PLAIN.format(x="actor")}
             || ',"at":"' || replace(date_trunc('second', timezone('UTC', at))::text, ' ', 'T')
             || 'Z","detail":' || coalesce(detail, 'null')
             || ',"packet_sha256":' || coalesce({_PLAIN.format(x="packet_sha256")}, 'null')
             || ',"referral_id":' || coalesce({_PLAIN.format(x="referral_id")}, 'null')
             || ',"seq":' || seq || '}}'"""
_EXACT_LEAF = """'{"action":' || to_json(action)::text || ',"actor":' || to_json(actor)::text
             || ',"at":"' || to_char(timezone('UTC', at), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
             || '","detail":' || coalesce(detail, 'null')
             || ',"packet_sha256":' || coalesce(to_json(packet_sha256)::text, 'null')
             || ',"referral_id":' || coalesce(to_json(referral_id)::text, 'null')
             || ',"seq":' || seq || '}'"""
# count, first and last leaf index, the seqs in leaf order (8 bytes each, big-endian), the leaves' UTF-8.
# Fetched in binary: bytes as they are, nothing decoded on the way.
_ENTRIES_SQL = """
SELECT count(*), min(leaf_index), max(leaf_index), string_agg(int8send(seq), ''::bytea),
       convert_to(string_agg(leaf, E'\\n'), 'UTF8')
FROM (SELECT leaf_index, seq, {leaf} AS leaf
      FROM audit_entry WHERE leaf_index >= %(lo)s AND leaf_index < %(hi)s ORDER BY leaf_index) AS chunk
"""
_CHEAP_SQL = _ENTRIES_SQL.format(leaf=_CHEAP_LEAF)
_EXACT_SQL = _ENTRIES_SQL.format(leaf=_EXACT_LEAF)
_LEAVES_SQL = ("SELECT count(*), string_agg(hash, ''::bytea) FROM (SELECT hash FROM audit_node"
               " WHERE height = 0 AND idx >= %(lo)s AND idx < %(hi)s ORDER BY idx) AS chunk")


@contextlib.contextmanager
def _readers(session: Session, count: int):
    """``count`` cursors on their own connections, each in a transaction that sees this session's snapshot."""
    snapshot = session.execute(sa.text("SELECT pg_export_snapshot()")).scalar()
    connections = [session.get_bind().raw_connection() for _ in range(count)]
    try:
        cursors = []
        for raw in connections:
            raw.rollback()
            cursor = raw.driver_connection.cursor()
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # nosec B608: the id pg_export_snapshot gave
            cursor.execute("SET LOCAL DateStyle = 'ISO'")  # timestamp text as YYYY-MM-DD HH:MI:SS
            cursor.execute("SET LOCAL work_mem = '64MB'")  # a chunk's stored hashes sorted in memory, not on disk
            cursors.append(cursor)
        yield cursors
    finally:
        for raw in connections:
            raw.rollback()
            raw.close()


def _chunks_in_parallel(cursors, top: int):
    """(lo, hi, entries row, leaves row) for each chunk in order, each cursor building every len(cursors)-th."""
    results: dict[int, object] = {}
    ready = threading.Condition()
    starts = list(range(0, top, FAST_CHUNK))
    stop = threading.Event()
    taken = [0]  # chunks handed to the checking thread so far

    def work(k: int, cursor) -> None:
        try:
            for i in range(k, len(starts), len(cursors)):
                params = {"lo": starts[i], "hi": min(starts[i] + FAST_CHUNK, top)}
                cursor.execute(_CHEAP_SQL, params, binary=True)
                entries = cursor.fetchone()
                cursor.execute(_LEAVES_SQL, params, binary=True)
                item = (params["lo"], params["hi"], entries, cursor.fetchone())
                with ready:  # at most two chunks a reader ahead of the checking thread
                    while i >= taken[0] + 2 * len(cursors) and not stop.is_set():
                        ready.wait(0.1)
                    if stop.is_set():
                        return
                    results[i] = item
                    ready.notify_all()
        except BaseException as exc:  # handed to the checking thread, which raises it
            with ready:
                results[-1] = exc
                ready.notify_all()

    threads = [threading.Thread(target=work, args=(k, c), name=f"audit-verify-read-{k}", daemon=True)
               for k, c in enumerate(cursors)]
    for thread in threads:
        thread.start()
    try:
        for i in range(len(starts)):
            with ready:
                while i not in results and -1 not in results:
                    ready.wait()
                if -1 in results:
                    raise results[-1]
                item = results.pop(i)
                taken[0] = i + 1
                ready.notify_all()
            yield item
    finally:
        stop.set()
        with ready:
            ready.notify_all()
        for thread in threads:
            thread.join()


def _leaf_level(entries, lo: int, hi: int, stored: bytes) -> list[bytes] | None:
    """The chunk's leaf hashes if the entries row is whole and every leaf hashes to its stored hash; None
    otherwise."""
    count, first, last, _seqs, text = entries
    if count != hi - lo or first != lo or last != hi - 1 or text is None:
        return None
    datas = text.split(b"\n")
    if len(datas) != count:
        return None
    sha = hashlib.sha256
    level = [sha(b"\x00" + d).digest() for d in datas]
    return level if b"".join(level) == stored else None


def _fast(session: Session, roots: dict[int, bytes], upper: dict, top: int,
          figures: dict) -> tuple[int, int] | None:
    """(leaves, last seq) if every leaf, stored node and checkpoint root checks out; None at the first doubt."""
    sha = hashlib.sha256
    stack: list[bytes] = []  # the frontier: roots of the perfect subtrees of [0, size), largest first
    size, last_seq = 0, 0
    figures["respelled"] = 0
    with _readers(session, FAST_READERS + 1) as cursors:
        spare = cursors.pop()  # this thread's: a chunk spelled again exactly
        for lo, hi, entries, (stored_count, stored) in _chunks_in_parallel(cursors, top):
            if stored_count != hi - lo:
                return None
            level = _leaf_level(entries, lo, hi, stored)
            if level is None:
                figures["respelled"] += 1
                spare.execute(_EXACT_SQL, {"lo": lo, "hi": hi}, binary=True)
                entries = spare.fetchone()
                level = _leaf_level(entries, lo, hi, stored)
                if level is None:
                    return None
            seqs = array.array("q", entries[3])
            if sys.byteorder == "little":  # int8send is big-endian
                seqs.byteswap()
            if len(seqs) != hi - lo or not all(map(operator.lt, itertools.chain((last_seq,), seqs), seqs)):
                return None
            levels = [level]
            height = 0
            while len(level) > 1:
                pairs = iter(level)
                level = [sha(b"\x01" + a + b).digest() for a, b in zip(pairs, pairs)]
                height += 1
                levels.append(level)
                if not height % store.STEP:
                    base = lo >> height
                    if any(upper.get((height, base + j)) != h for j, h in enumerate(level)):
                        return None
            for cp in sorted(s for s in roots if lo < s <= hi):
                if _root(stack, _pieces(levels, lo, cp)) != roots[cp]:
                    return None
            for height, node in _pieces(levels, lo, hi):
                step = 1 << height
                count_at = size >> height
                while count_at & 1:
                    node = sha(b"\x01" + stack.pop() + node).digest()
                    count_at >>= 1
                    height += 1
                    if not height % store.STEP and upper.get((height, ((size + step) >> height) - 1)) != node:
                        return None
                stack.append(node)
                size += step
            last_seq = seqs[-1]
    return size, last_seq


def _pieces(levels: list[list[bytes]], lo: int, end: int) -> list[tuple[int, bytes]]:
    """The perfect subtrees that make [lo, end) inside one chunk, largest first, as (height, hash)."""
    out, at, rest = [], 0, end - lo
    for height in range(len(levels) - 1, -1, -1):
        if rest >> height & 1:
            out.append((height, levels[height][at >> height]))
            at += 1 << height
    return out


def _root(stack: list[bytes], pieces: list[tuple[int, bytes]]) -> bytes:
    nodes = stack + [h for _, h in pieces]
    if not nodes:
        return tree.EMPTY_ROOT
    h = nodes[-1]
    for left in reversed(nodes[:-1]):
        h = tree.node_hash(left, h)
    return h


# --- any database: entry by entry ---------------------------------------------------------------


def _by_entry(verdict, session, roots, upper, top, now, interval, started) -> Verdict:
    t = AuditEntry.__table__.c
    nodes_t = AuditNode.__table__.c
    lo_p, hi_p = sa.bindparam("lo"), sa.bindparam("hi")
    dialect = session.get_bind().dialect
    entries_sql = _driver_sql(sa.select(*store.leaf_columns(session)).where(
        t.leaf_index >= lo_p, t.leaf_index < hi_p).order_by(t.leaf_index), dialect)
    nodes_sql = _driver_sql(sa.select(nodes_t.idx, nodes_t.hash).where(
        nodes_t.height == 0, nodes_t.idx >= lo_p, nodes_t.idx < hi_p), dialect)
    # Straight to the driver (a SQLAlchemy Row per entry costs more than hashing it).
    cursor = session.connection().connection.cursor()

    def chunks():
        for lo in range(0, top, CHUNK):
            rows = _run(cursor, entries_sql, lo, lo + CHUNK)
            yield rows, dict(_run(cursor, nodes_sql, lo, lo + CHUNK))

    with _ahead(chunks) as items:
        return _check_leaves(verdict, items, roots, upper, top, session, now, interval, started)


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
    for rows, stored in chunks:
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
    return _finish(verdict, expected, last_seq, roots, top, session, now, interval, started)


def _finish(verdict, expected, last_seq, roots, top, session, now, interval, started) -> Verdict:
    """The checks after the last leaf: deleted tail entries, checkpoints beyond, entries still waiting."""
    t = AuditEntry.__table__.c
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
