"""Retention: the packets of referrals final for longer than ``[retention] packets_after`` are shredded.

A shredded packet's sealed bytes are gone from the database (``wire`` set to NULL); its
row stays with the packet id, size and SHA-256, and the referral keeps its metadata and
history, so reports and the audit log are unchanged and `hub audit verify` still passes
(the log holds packet hashes, never packet bytes). Each run that shreds anything writes
one audit entry (``retention.shredded``: how many referrals and packets, and the
referral ids). Opening a shredded packet is 410 Gone.

On SQLite the shredding transaction runs with ``PRAGMA secure_delete`` so the freed pages
are overwritten with zeros, and the write-ahead log is checkpointed and truncated after it;
on PostgreSQL the command runs ``VACUUM referral_packet`` afterwards, so the old row versions
are reclaimed (their space is marked free, as PostgreSQL does; the disk blocks are reused,
not wiped).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from hub.audit.service import record as audit
from hub.errors import HubError
from hub.referrals.models import Referral, ReferralPacket
from hub.vocabulary import FINAL_STATES

BATCH = 500
log = logging.getLogger("hub.referrals")


@dataclass(frozen=True)
class Shredded:
    referrals: int
    packets: int
    cutoff: dt.datetime


def due(session: Session, cutoff: dt.datetime, limit: int = BATCH) -> list[str]:
    """Ids of referrals final since before ``cutoff`` whose packets still hold bytes."""
    stmt = (sa.select(Referral.id).where(Referral.status.in_(FINAL_STATES), Referral.closed_at.is_not(None),
                                          Referral.closed_at < cutoff)
            .where(sa.exists().where(ReferralPacket.referral_id == Referral.id, ReferralPacket.wire.is_not(None)))
            .order_by(Referral.closed_at, Referral.id).limit(limit))
    return list(session.scalars(stmt))


def shred(session: Session, *, now: dt.datetime, packets_after: dt.timedelta, actor: str = "hub") -> Shredded:
    """Shred, in the caller's transaction, every packet of a referral final before ``now - packets_after``."""
    cutoff = now - packets_after
    if session.get_bind().dialect.name == "sqlite":
        session.execute(sa.text("PRAGMA secure_delete = ON"))
    referral_ids: list[str] = []
    packets = 0
    while True:
        batch = due(session, cutoff)
        if not batch:
            break
        result = session.execute(sa.update(ReferralPacket).where(ReferralPacket.referral_id.in_(batch),
                                                                 ReferralPacket.wire.is_not(None))
                                 .values(wire=None).execution_options(synchronize_session=False))
        packets += result.rowcount or 0
        referral_ids.extend(batch)
    if referral_ids:
        audit(session, at=now, actor=actor, action="retention.shredded",
              detail={"referrals": len(referral_ids), "packets": packets, "cutoff": cutoff.isoformat(),
                      "referral_ids": sorted(referral_ids)})
    return Shredded(referrals=len(referral_ids), packets=packets, cutoff=cutoff)


def compact(engine: sa.Engine) -> None:
    """After a shred has committed: free what the old bytes occupied (see the module docstring)."""
    statement = {"sqlite": "PRAGMA wal_checkpoint(TRUNCATE)", "postgresql": "VACUUM referral_packet"}.get(
        engine.dialect.name)
    if statement is None:  # pragma: no cover - the hub runs on these two only
        return
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(statement)
    except sa.exc.DBAPIError:
        # Another process holds the log open (SQLite) or the table (PostgreSQL): the bytes are already
        # out of every row; the next checkpoint or autovacuum frees their pages.
        log.warning("retention: %s did not run now; it is left to the database", statement.split()[0].lower())


def run(sessions: sessionmaker[Session], engine: sa.Engine, *, now: dt.datetime, packets_after: dt.timedelta,
        actor: str = "hub") -> Shredded:
    """One retention run in its own transaction, then :func:`compact` if anything was shredded."""
    with sessions() as session, session.begin():
        report = shred(session, now=now, packets_after=packets_after, actor=actor)
    if report.packets:
        compact(engine)
    return report


def shredded(session: Session, referral_id: str, reader_agency_id: str | None) -> bool:
    """Whether the packet of ``referral_id`` for ``reader_agency_id`` was shredded (its row, no bytes)."""
    return session.scalar(sa.select(sa.func.count()).select_from(ReferralPacket).where(
        ReferralPacket.referral_id == referral_id, ReferralPacket.reader_agency_id == reader_agency_id,
        ReferralPacket.wire.is_(None))) > 0


class PacketShredded(HubError):
    """410: the packet was shredded by retention; the referral's metadata stays readable."""

    status = 410
    code = "packet_shredded"
