"""Appending to the audit log. Entries carry ids and actions, never personal data."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from hub.audit.models import AuditEntry

# detail keys that may hold text typed by a person are refused: the log stays free of personal data.
_FORBIDDEN_DETAIL = {"name", "names", "body", "person", "story", "reason", "note", "message", "text"}


def record(session: Session, *, at: dt.datetime, actor: str, action: str,
           referral_id: str | None = None, packet_sha256: str | None = None,
           detail: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry in the caller's transaction."""
    detail = dict(detail or {})
    bad = _FORBIDDEN_DETAIL.intersection(detail)
    if bad:
        raise ValueError(f"audit detail may not carry free text ({', '.join(sorted(bad))})")
    entry = AuditEntry(at=at, actor=actor, action=action, referral_id=referral_id,
                       packet_sha256=packet_sha256, detail=detail)
    session.add(entry)
    return entry
