"""The append-only audit log (PROTOCOL.md section 6). No personal data in any column."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, JSONText, UTCDateTime


class AuditEntry(Base):
    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(sa.String(100))
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    referral_id: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    packet_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    detail: Mapped[dict] = mapped_column(JSONText, default=dict)
