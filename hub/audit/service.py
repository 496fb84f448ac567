"""Appending to the audit log. Entries carry ids and actions, never personal data."""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.audit.models import AuditEntry

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


_INSERT = sa.insert(AuditEntry.__table__)


def record_many(session: Session, entries: list[dict[str, Any]]) -> None:
    """Append several entries (each with :func:`record`'s keyword arguments) in one INSERT, now.

    Runs after the rows they name are flushed (an ORM bulk INSERT flushes the session first).
    """
    if not entries:
        return
    rows = [{"at": e["at"], "actor": e["actor"], "action": e["action"], "referral_id": e.get("referral_id"),
             "packet_sha256": e.get("packet_sha256"), "detail": _checked(e.get("detail"))} for e in entries]
    session.execute(_INSERT, rows)
