"""The append-only audit log and its Merkle tree (PROTOCOL.md section 6). No personal data in any column."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, JSONText, UTCDateTime

_BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class AuditEntry(Base):
    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(sa.String(100))
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    referral_id: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    packet_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    detail: Mapped[dict] = mapped_column(JSONText, default=dict)
    # Set once by the sequencer (the database refuses any other change); NULL until then.
    leaf_index: Mapped[int | None] = mapped_column(_BIGINT, unique=True)


class AuditNode(Base):
    """Stored subtree hashes: MTH of leaves [index * 2**height, (index + 1) * 2**height).

    Heights 0 (the leaf hashes), 8, 16, 24 and so on, written by the sequencer when a subtree
    is complete, so that a proof reads a few hundred rows at most, and `hub audit verify`
    can name the first entry whose bytes no longer give its leaf hash.
    """

    __tablename__ = "audit_node"

    height: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column("idx", _BIGINT, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))


class AuditCheckpoint(Base):
    """Every signed checkpoint, kept: the C2SP signed note as served, and its size and root."""

    __tablename__ = "audit_checkpoint"

    size: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    note: Mapped[str] = mapped_column(sa.Text)
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
