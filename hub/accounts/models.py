"""Users, invitations, server-side sessions, API tokens and wrapped key rings."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, JSONText, UTCDateTime


class User(Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    agency_id: Mapped[str | None] = mapped_column(sa.ForeignKey("agency.id"), index=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(32))
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    lang: Mapped[str] = mapped_column(sa.String(2), default="km")
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    # TOTP (hub.accounts.totp): the secret sealed with AES-GCM under a key derived from HUB_SECRET_KEY,
    # never in the clear; ``totp_pending`` is a secret shown for enrolment but not yet confirmed.
    totp_secret: Mapped[str | None] = mapped_column(sa.String(255))
    totp_pending: Mapped[str | None] = mapped_column(sa.String(255))
    totp_last_counter: Mapped[int | None] = mapped_column(sa.BigInteger)  # a code's time step is used once
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    # The account's sign-in throttle (not a lock-out): wrong passwords from devices this user never
    # signed in on, and the time before which such a device may try again (hub.accounts.service.login).
    failed_logins: Mapped[int] = mapped_column(sa.Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Invitation(Base):
    """A one-time link to set a password. Its secret also unwraps an invitation copy of the key ring."""

    __tablename__ = "invitation"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class UserSession(Base):
    """A signed-in browser. The cookie holds the id and the secret; only the id's hash is stored."""

    __tablename__ = "user_session"

    id_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # "done" (signed in), "totp" (password right, code awaited) or "enrol" (password right, TOTP to set up
    # first): only a "done" session reaches a page or an endpoint.
    stage: Mapped[str] = mapped_column(sa.String(8), default="done", server_default="done")
    idle_seconds: Mapped[int | None] = mapped_column(sa.Integer)  # ended when unseen this long
    code_failures: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")


class RecoveryCode(Base):
    """A one-time TOTP recovery code; only its SHA-256 is stored."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class KnownDevice(Base):
    """A browser that signed in as this user before (its cookie's secret, hashed): the account's throttle
    does not hold it back."""

    __tablename__ = "known_device"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), primary_key=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(sa.Integer, default=0)


class LoginThrottle(Base):
    """Wrong passwords from one client address, and the time before which it may try again."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_failure_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token for an agency's own system; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    agency_id: Mapped[str] = mapped_column(sa.ForeignKey("agency.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WrappedKeyRing(Base):
    """An agency key ring wrapped for one holder (PROTOCOL.md section 1): user:<id>,
    session:<hash>, invite:<id> or recovery. The hub cannot unwrap any of them at rest."""

    __tablename__ = "wrapped_keyring"

    id: Mapped[int] = mapped_column(primary_key=True)
    agency_id: Mapped[str] = mapped_column(sa.ForeignKey("agency.id"), index=True)
    holder: Mapped[str] = mapped_column(sa.String(100))
    document: Mapped[dict] = mapped_column(JSONText)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (sa.UniqueConstraint("agency_id", "holder", name="uq_wrapped_keyring_holder"),)
