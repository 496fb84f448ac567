"""The network directory: agencies, their SMS contacts and their public keys."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base, JSONText, UTCDateTime
from hub.vocabulary import AGENCY_KINDS  # noqa: E402,F401


class Agency(Base):
    __tablename__ = "agency"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    name_en: Mapped[str] = mapped_column(sa.String(200))
    name_km: Mapped[str] = mapped_column(sa.String(200))
    short_name: Mapped[str] = mapped_column(sa.String(32))
    province: Mapped[str | None] = mapped_column(sa.String(8), index=True)
    services: Mapped[list] = mapped_column(JSONText, default=list)
    beds_total: Mapped[int | None] = mapped_column(sa.Integer)
    beds_available: Mapped[int | None] = mapped_column(sa.Integer)
    beds_updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # when beds_available was last set
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    contacts: Mapped[list["Contact"]] = relationship(back_populates="agency", order_by="Contact.id")
    keys: Mapped[list["AgencyKey"]] = relationship(back_populates="agency", order_by="AgencyKey.created_at")

    __table_args__ = (
        sa.CheckConstraint("beds_available IS NULL OR beds_available >= 0", name="beds_nonnegative"),
    )

    @property
    def is_coordinator(self) -> bool:
        return self.kind == "committee"


class Contact(Base):
    """A phone that the hub texts for an agency. The duty contact is texted first."""

    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    agency_id: Mapped[str] = mapped_column(sa.ForeignKey("agency.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str] = mapped_column(sa.String(20), index=True)
    lang: Mapped[str] = mapped_column(sa.String(2), default="km")
    duty: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    role: Mapped[str] = mapped_column(sa.String(32), default="caseworker")
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    # "file": listed in agencies/<id>.toml, so a sync deactivates it when it leaves the file;
    # "manual": added with `hub contacts add` (or the web), which a sync leaves alone.
    source: Mapped[str] = mapped_column(sa.String(16), default="file", server_default="file")

    agency: Mapped[Agency] = relationship(back_populates="contacts")

    __table_args__ = (sa.UniqueConstraint("agency_id", "phone", name="uq_contact_agency_phone"),)


class AgencyKey(Base):
    """One public key of an agency (PROTOCOL.md section 1). Private halves never reach this table."""

    __tablename__ = "agency_key"

    kid: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    agency_id: Mapped[str] = mapped_column(sa.ForeignKey("agency.id"), index=True)
    use: Mapped[str] = mapped_column(sa.String(8))
    alg: Mapped[str] = mapped_column(sa.String(32))
    public: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    agency: Mapped[Agency] = relationship(back_populates="keys")
