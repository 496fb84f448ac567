"""Leaf bytes from the table, and subtree hashes from the stored nodes (PROTOCOL.md section 6).

Leaf bytes: the entry as a JSON object with exactly the seven keys, sorted, no spaces, UTF-8,
times as RFC 3339 UTC with ``Z`` and whole seconds, absent values ``null``. The time is
formatted by the database (one expression per dialect, truncating to whole seconds) and
``detail`` is the stored JSON text, which the hub always writes sorted and compact
(hub.db.JSONText): what is hashed is what is stored.

Stored nodes (table audit_node) are the leaf hashes (height 0) and the roots of complete
aligned subtrees of 2**8, 2**16, ... leaves. Any subtree hash of a tree of size N is then
made from at most 255 nodes of each stored height, read in one query.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.audit import tree
from hub.audit.models import AuditCheckpoint, AuditEntry, AuditNode

STEP = 8  # stored heights are multiples of 8: 0 (leaves), 8, 16, 24, ...
_enc = json.encoder.encode_basestring  # the escaping of json.dumps(..., ensure_ascii=False)


class TreeDamaged(Exception):
    """A stored node the tree needs is missing: the tables were changed behind the hub."""


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def leaf_bytes(seq: int, at: str, actor: str, action: str, referral_id: str | None,
               packet_sha256: str | None, detail: str | None) -> bytes:
    """The leaf bytes of one entry; ``at`` already formatted, ``detail`` the stored JSON text."""
    return ('{"action":%s,"actor":%s,"at":%s,"detail":%s,"packet_sha256":%s,"referral_id":%s,"seq":%d}' % (
        _enc(action), _enc(actor), _enc(at), "null" if detail is None else detail,
        "null" if packet_sha256 is None else _enc(packet_sha256),
        "null" if referral_id is None else _enc(referral_id), seq)).encode("utf-8")


def leaf_bytes_of(entry: AuditEntry) -> bytes:
    """The same bytes from a loaded entry (tests, and code that holds the object)."""
    detail = None if entry.detail is None else json.dumps(entry.detail, ensure_ascii=False,
                                                          separators=(",", ":"), sort_keys=True)
    return leaf_bytes(entry.seq, format_time(entry.at), entry.actor, entry.action, entry.referral_id,
                      entry.packet_sha256, detail)


def time_text(session: Session):
    col = AuditEntry.__table__.c.at
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", col), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    return sa.func.strftime("%Y-%m-%dT%H:%M:%SZ", col)


def leaf_columns(session: Session) -> list:
    """seq, at (text), actor, action, referral_id, packet_sha256, detail (text), leaf_index."""
    t = AuditEntry.__table__.c
    return [t.seq, time_text(session), t.actor, t.action, t.referral_id, t.packet_sha256,
            sa.type_coerce(t.detail, sa.Text), t.leaf_index]


def leaf_of_row(row: Sequence) -> bytes:
    return leaf_bytes(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


# --- the tree's size and checkpoints ------------------------------------------------------------


def tree_size(session: Session) -> int:
    """Leaves sequenced so far (leaf indices have no gaps: the largest index plus one)."""
    top = session.scalar(sa.select(sa.func.max(AuditEntry.leaf_index)))
    return 0 if top is None else top + 1


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalar(sa.select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))


# --- subtree hashes from stored nodes -----------------------------------------------------------


def _stored_height(h: int) -> int:
    return (h // STEP) * STEP


def _needs(lo: int, hi: int, out: set[tuple[int, int]]) -> None:
    n = hi - lo
    if n & (n - 1) == 0 and lo % n == 0:  # a perfect, aligned subtree
        h = n.bit_length() - 1
        s = _stored_height(h)
        out.update((s, i) for i in range(lo >> s, hi >> s))
        return
    k = tree.split_point(n)
    _needs(lo, lo + k, out)
    _needs(lo + k, hi, out)


def _compute(lo: int, hi: int, nodes: dict[tuple[int, int], bytes]) -> bytes:
    n = hi - lo
    if n & (n - 1) == 0 and lo % n == 0:
        h = n.bit_length() - 1
        s = _stored_height(h)
        try:
            parts = [nodes[(s, i)] for i in range(lo >> s, hi >> s)]
        except KeyError as exc:
            raise TreeDamaged(f"stored tree node {exc.args[0]} is missing") from None
        return parts[0] if len(parts) == 1 else tree.root_of_nodes(parts)
    k = tree.split_point(n)
    return tree.node_hash(_compute(lo, lo + k, nodes), _compute(lo + k, hi, nodes))


def _runs(indices: Iterable[int]) -> Iterator[tuple[int, int]]:
    run_start = prev = None
    for i in sorted(indices):
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if run_start is not None:
            yield run_start, prev
        run_start = prev = i
    if run_start is not None:
        yield run_start, prev


def fetch_nodes(session: Session, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored nodes asked for, in one query (missing ones are simply absent)."""
    if not wanted:
        return {}
    t = AuditNode.__table__.c
    by_height: dict[int, list[int]] = {}
    for h, i in wanted:
        by_height.setdefault(h, []).append(i)
    clauses = [sa.and_(t.height == h, t.idx.between(a, b)) for h, idx in by_height.items() for a, b in _runs(idx)]
    rows = session.execute(sa.select(t.height, t.idx, t.hash).where(sa.or_(*clauses)))
    return {(h, i): bytes(v) for h, i, v in rows}


def range_hashes(session: Session, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH(D[lo:hi]) for each range, from the stored nodes, in one database round trip."""
    wanted: set[tuple[int, int]] = set()
    for lo, hi in ranges:
        _needs(lo, hi, wanted)
    nodes = fetch_nodes(session, wanted)
    return [_compute(lo, hi, nodes) for lo, hi in ranges]


def root(session: Session, size: int) -> bytes:
    return tree.EMPTY_ROOT if size == 0 else range_hashes(session, [(0, size)])[0]


def new_nodes(session: Session, old: int, leaf_hashes: Sequence[bytes]) -> list[dict]:
    """The node rows to store when leaves ``old .. old+len-1`` join a tree of ``old`` leaves."""
    new = old + len(leaf_hashes)
    rows = [{"height": 0, "index": old + i, "hash": h} for i, h in enumerate(leaf_hashes)]
    made = {(0, old + i): h for i, h in enumerate(leaf_hashes)}
    height = STEP
    while (new >> height) > (old >> height):
        child = height - STEP
        blocks = range(old >> height, new >> height)
        wanted = {(child, j) for b in blocks for j in range(b << STEP, (b + 1) << STEP)} - made.keys()
        have = {**fetch_nodes(session, wanted), **made}
        for b in blocks:
            try:
                parts = [have[(child, j)] for j in range((b << STEP), (b + 1) << STEP)]
            except KeyError as exc:
                raise TreeDamaged(f"stored tree node {exc.args[0]} is missing") from None
            h = tree.root_of_nodes(parts)
            made[(height, b)] = h
            rows.append({"height": height, "index": b, "hash": h})
        height += STEP
    return rows
