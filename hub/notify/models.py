"""The SMS outbox, one-tap acknowledgement tokens and coordinator alerts."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime

OUTBOX_STATES = ("queued", "sending", "sent", "delivered", "failed", "undelivered")


class OutboxMessage(Base):
    """A text to send, written in the same transaction as the change that causes it.

    ``dedupe_key`` makes each (referral, clock, step, repeat, contact) message exist once,
    whatever the number of sweeps that try to enqueue it. The body names no person.
    """

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    to_phone: Mapped[str] = mapped_column(sa.String(20))
    contact_id: Mapped[int | None] = mapped_column(sa.ForeignKey("contact.id"))
    lang: Mapped[str] = mapped_column(sa.String(2))
    template: Mapped[str] = mapped_column(sa.String(32))
    body: Mapped[str] = mapped_column(sa.Text)
    referral_id: Mapped[str | None] = mapped_column(sa.ForeignKey("referral.id"), index=True)
    clock: Mapped[str | None] = mapped_column(sa.String(8))
    step: Mapped[int | None] = mapped_column(sa.Integer)
    repeat: Mapped[int | None] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(12), default="queued")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When a drain took the row ("sending"); a row still sending after the lease is reclaimed.
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    provider_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    callback_nonce: Mapped[str] = mapped_column(sa.String(64), unique=True)
    last_error: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (sa.Index("ix_outbox_due", "status", "next_attempt_at"),)


class AckToken(Base):
    """A one-tap acknowledgement link: single use, bound to one referral, clock and contact."""

    __tablename__ = "ack_token"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    referral_id: Mapped[str] = mapped_column(sa.ForeignKey("referral.id"), index=True)
    clock: Mapped[str] = mapped_column(sa.String(8))
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contact.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Alert(Base):
    """Something coordinators must look at: an overdue referral, an SMS that could not be sent."""

    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    referral_id: Mapped[str | None] = mapped_column(sa.ForeignKey("referral.id"), index=True)
    province: Mapped[str | None] = mapped_column(sa.String(8))
    dedupe_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WebhookSeen(Base):
    """A Twilio webhook already acted on, by its key (``sms:<MessageSid>``, ``status:<MessageSid>:<status>``).

    Written in the same transaction as the webhook's effect: a replay (Twilio's retry, or a
    captured request posted again) finds its key and changes nothing; the primary key makes two
    concurrent deliveries of one webhook act once.
    """

    __tablename__ = "webhook_seen"

    key: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
