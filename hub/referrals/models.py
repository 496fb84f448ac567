"""Referrals: routing metadata, the sealed packets, the history."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base, JSONText, UTCDateTime
from hub.vocabulary import FINAL_STATES, OPEN_STATES  # noqa: F401  (the states, defined once)


class Referral(Base):
    __tablename__ = "referral"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(8), index=True)
    # Set while the referral is open, NULL once final: unique among open referrals.
    open_code: Mapped[str | None] = mapped_column(sa.String(8), unique=True)
    from_agency_id: Mapped[str] = mapped_column(sa.ForeignKey("agency.id"))
    to_agency_id: Mapped[str] = mapped_column(sa.ForeignKey("agency.id"))
    created_by: Mapped[str] = mapped_column(sa.String(100))
    officer_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    urgency: Mapped[str] = mapped_column(sa.String(8))
    child: Mapped[bool] = mapped_column(sa.Boolean)
    needs: Mapped[list] = mapped_column(JSONText)
    province: Mapped[str] = mapped_column(sa.String(8), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    policy: Mapped[str] = mapped_column(sa.String(32))
    ladder: Mapped[dict] = mapped_column(JSONText)
    # Escalation state: the running clock, the ladder step reached, the next due time.
    clock: Mapped[str | None] = mapped_column(sa.String(8))
    clock_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    step: Mapped[int] = mapped_column(sa.Integer, default=-1)
    repeat: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_step_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    # When the running clock runs out (NULL without a clock), and when its overdue alert was raised.
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The ack clock's deadline, kept once the clock stops (reports: late_share).
    ack_deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Which ladder steps ever fired, on which clock: bits (hub.escalation.models.ladder_bit), for the reports;
    # NULL is none.
    ladder_fired: Mapped[int | None] = mapped_column(sa.BigInteger, server_default="0")
    overdue_alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A text of the current step failed: the next step is due at once, not at its time.
    step_failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(sa.Integer, default=0)
    # The coordinator who took the escalation: a user, or the display name of a committee's system.
    owner_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    owner: Mapped[str | None] = mapped_column(sa.String(100))
    owned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    previous_id: Mapped[str | None] = mapped_column(sa.ForeignKey("referral.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The Idempotency-Key the sender submitted it with, and the hash of that request: a retry with
    # the key gets this referral again, another request with it a refusal (migration 0007).
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200))
    request_sha256: Mapped[str | None] = mapped_column(sa.String(64))

    packets: Mapped[list["ReferralPacket"]] = relationship(back_populates="referral", order_by="ReferralPacket.id")
    events: Mapped[list["ReferralEvent"]] = relationship(back_populates="referral", order_by="ReferralEvent.id")

    __table_args__ = (
        sa.Index("ix_referral_due", "next_step_at", "status"),
        # The reports: a window of one receiving agency (a province is its few agencies) in one range scan.
        sa.Index("ix_referral_to_created", "to_agency_id", "created_at"),
        # The inbox and the sent box, newest first: hub.referrals.service.list_for walks these.
        sa.Index("ix_referral_inbox", "to_agency_id", "created_at", "id"),
        sa.Index("ix_referral_sent", "from_agency_id", "created_at", "id"),
        # The web's boxes: an agency's open referrals (closed_at NULL), then its closed ones newest first
        # (migration 0006).
        sa.Index("ix_referral_inbox_order", "to_agency_id", "closed_at"),
        sa.Index("ix_referral_sent_order", "from_agency_id", "closed_at"),
        # One referral per sender and key (NULLs distinct: no key, no place taken).
        sa.Index("uq_referral_idempotency", "from_agency_id", "idempotency_key", unique=True),
    )


class ReferralPacket(Base):
    """A sealed packet, stored as the opaque bytes the sender submitted."""

    __tablename__ = "referral_packet"

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_id: Mapped[str] = mapped_column(sa.ForeignKey("referral.id"), index=True)
    packet_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    reader_agency_id: Mapped[str] = mapped_column(sa.ForeignKey("agency.id"))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.Integer)
    wire: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # NULL once retention shreds it
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    referral: Mapped[Referral] = relationship(back_populates="packets")

    __table_args__ = (sa.UniqueConstraint("referral_id", "reader_agency_id", name="uq_referral_packet_reader"),)


class ReferralEvent(Base):
    """One line of a referral's history: the state it entered, when, by which agency."""

    __tablename__ = "referral_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_id: Mapped[str] = mapped_column(sa.ForeignKey("referral.id"), index=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor_agency_id: Mapped[str | None] = mapped_column(sa.ForeignKey("agency.id"))
    actor: Mapped[str] = mapped_column(sa.String(100))

    referral: Mapped[Referral] = relationship(back_populates="events")
