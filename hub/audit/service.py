"""Appending to the audit log. Entries carry ids and actions, never personal data."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.audit import note, store, tree
from hub.audit.models import AuditCheckpoint, AuditEntry
from hub.errors import BadInput, NotFound

# detail keys that may hold text typed by a person are refused: the log stays free of personal data.
_FORBIDDEN_DETAIL = {"name", "names", "body", "person", "story", "reason", "note", "message", "text"}


def _checked(detail: dict[str, Any] | None) -> dict[str, Any]:
    detail = dict(detail or {})
    bad = _FORBIDDEN_DETAIL.intersection(detail)
    if bad:
        raise ValueError(f"audit detail may not carry free text ({', '.join(sorted(bad))})")
    return detail


def record(session: Session, *, at: dt.datetime, actor: str, action: str,
           referral_id: str | None = None, packet_sha256: str | None = None,
           detail: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry in the caller's transaction."""
    detail = _checked(detail)
    entry = AuditEntry(at=at, actor=actor, action=action, referral_id=referral_id,
                       packet_sha256=packet_sha256, detail=detail)
    session.add(entry)
    return entry


# --- reading the log (PROTOCOL.md section 6, "Served") -------------------------------------------

MAX_ENTRIES = 1000


@dataclass(frozen=True)
class Reader:
    """Who asks for entries: a hub admin reads all; an agency its own actions and its referrals';
    a coordinator also the referrals of its scope (``province`` None: national)."""

    everything: bool = False
    agency_id: str | None = None
    coordinator: bool = False
    province: str | None = None


@dataclass(frozen=True)
class Parties:
    """What the read rule needs to know of the log's actors and referrals, looked up by the caller.

    ``actor_agency``: actor ("user:3", "token:1", "contact:7") -> its agency id.
    ``referrals``: referral id -> (sending agency, receiving agency, referral province, receiving agency's province).
    """

    actor_agency: dict[str, str | None]
    referrals: dict[str, tuple[str, str, str | None, str | None]]


# The audit log sits below the domains that know users and referrals: the face passes a lookup.
PartiesLookup = Callable[[Session, set[str], set[str]], Parties]


def may_read(reader: Reader, actor: str, referral_id: str | None, parties: Parties) -> bool:
    """The one read rule of the audit log."""
    if reader.everything:
        return True
    if reader.agency_id is not None and parties.actor_agency.get(actor) == reader.agency_id:
        return True
    if referral_id is None or referral_id not in parties.referrals:
        return False
    sender, recipient, province, recipient_province = parties.referrals[referral_id]
    if reader.agency_id is not None and reader.agency_id in (sender, recipient):
        return True
    if reader.coordinator:
        return reader.province is None or reader.province in (province, recipient_province)
    return False


def _checkpoint_for(session: Session, size: int) -> AuditCheckpoint:
    latest = store.latest_checkpoint(session)
    if latest is None or size > latest.size:
        raise NotFound(f"no checkpoint covers a tree of size {size}; the latest is "
                       f"{latest.size if latest else 0}: GET /audit/checkpoint")
    return latest


def latest_checkpoint_text(session: Session) -> str:
    latest = store.latest_checkpoint(session)
    if latest is None:
        raise NotFound("the hub has signed no audit checkpoint yet; try again after the next sequencing")
    return latest.note


def consistency(session: Session, old: int, new: int) -> dict:
    """The RFC 9162 consistency proof between the trees of sizes ``old`` and ``new``."""
    if old > new:
        raise BadInput("'from' must not be larger than 'size'", code="invalid_field")
    _checkpoint_for(session, new)
    path = store.range_hashes(session, tree.consistency_ranges(old, new))
    return {"from": old, "size": new, "path": [note.b64(h) for h in path]}


def _readable(session: Session, reader: Reader, rows: list, lookup: PartiesLookup) -> list:
    if reader.everything:
        return rows
    parties = lookup(session, {r[2] for r in rows}, {r[4] for r in rows if r[4] is not None})
    return [r for r in rows if may_read(reader, r[2], r[4], parties)]


def inclusion(session: Session, reader: Reader, index: int, size: int, lookup: PartiesLookup) -> dict:
    """The inclusion proof of leaf ``index`` in the tree of ``size``, for an entry the reader may read."""
    if index >= size:
        raise BadInput("'index' must be below 'size'", code="invalid_field")
    _checkpoint_for(session, size)
    t = AuditEntry.__table__.c
    rows = session.execute(sa.select(*store.leaf_columns(session)).where(t.leaf_index == index)).all()
    if not _readable(session, reader, rows, lookup):
        raise NotFound("no such entry, or not one you may read")
    hashes = store.range_hashes(session, [(index, index + 1)] + tree.inclusion_ranges(index, size))
    return {"index": index, "size": size, "leaf_hash": note.b64(hashes[0]), "path": [note.b64(h) for h in hashes[1:]]}


def entries(session: Session, reader: Reader, start: int, end: int, lookup: PartiesLookup) -> dict:
    """Leaf indices start .. end-1 (at most 1,000), only the entries the reader may read."""
    if end < start:
        raise BadInput("'end' must not be below 'start'", code="invalid_field")
    if end - start > MAX_ENTRIES:
        raise BadInput(f"ask for at most {MAX_ENTRIES} entries at a time", code="invalid_field")
    _checkpoint_for(session, end)
    t = AuditEntry.__table__.c
    rows = session.execute(sa.select(*store.leaf_columns(session))
                           .where(t.leaf_index >= start, t.leaf_index < end).order_by(t.leaf_index)).all()
    return {"entries": [{"leaf_index": r[7], "entry": store.leaf_of_row(r).decode("utf-8")}
                        for r in _readable(session, reader, rows, lookup)]}

_INSERT = sa.insert(AuditEntry.__table__)


def record_many(session: Session, entries: list[dict[str, Any]]) -> None:
    """Append several entries (each with :func:`record`'s keyword arguments) in one INSERT, now.

    Runs after the rows they name are flushed (an ORM bulk INSERT flushes the session first).
    """
    if not entries:
        return
    session.execute(_INSERT, entry_rows(entries))


def entry_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The audit_entry rows :func:`record_many` would insert (details checked), for a caller that
    writes them together with its own rows (hub.db.InsertChain)."""
    return [{"at": e["at"], "actor": e["actor"], "action": e["action"], "referral_id": e.get("referral_id"),
             "packet_sha256": e.get("packet_sha256"), "detail": _checked(e.get("detail"))} for e in entries]
