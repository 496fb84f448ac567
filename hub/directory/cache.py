"""A per-process cache of the directory rows that change rarely: agencies, public bundles, contacts.

A submission needs the recipient agency, two public bundles and the recipient's duty
contacts; a sweep needs the same few agencies again and again. They change when an
operator syncs agencies/*.toml, enrols an agency, adds a contact or hands the duty
over, which is rare. So they are read from this cache:

- Lifetime: an entry is at most :data:`LIFETIME` seconds old (monotonic time). A
  change made by another process (`hub agencies sync`, the other gunicorn worker) is
  seen within that time.
- Invalidation: any commit of a session that changed an agency, contact or agency
  key row (ORM objects or ORM UPDATE/DELETE statements) empties this process's cache
  once the commit is done, so the process that made the change sees it at once.
  :func:`invalidate` empties it by hand.
- Never cached: API tokens and sign-in sessions (a revocation holds at once), a
  missing agency or an agency without keys (enrolment is seen at once).

Entries are plain frozen values (:class:`AgencyInfo`, :class:`ContactInfo`,
``packets.PublicBundle``), never ORM objects bound to a session, and are kept per
database (per connection pool), so two databases in one process never mix.
"""
from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from hub import packets
from hub.clock import rfc3339
from hub.directory.models import Agency, AgencyKey, Contact
from hub.errors import NotFound

LIFETIME = 30.0  # seconds

_DIRECTORY_TABLES = {Agency.__table__, AgencyKey.__table__, Contact.__table__}
_DIRECTORY_CLASSES = (Agency, AgencyKey, Contact)


@dataclass(frozen=True)
class AgencyInfo:
    id: str
    kind: str
    short_name: str
    province: str | None
    active: bool


@dataclass(frozen=True)
class ContactInfo:
    """What texting a contact needs; the same attribute names as :class:`Contact`."""

    id: int
    agency_id: str
    phone: str
    lang: str
    duty: bool
    role: str
    user_id: int | None
    active: bool


_lock = threading.Lock()
_by_pool: "weakref.WeakKeyDictionary[Any, dict[tuple, tuple[float, Any]]]" = weakref.WeakKeyDictionary()


def _entries(session: Session) -> dict[tuple, tuple[float, Any]]:
    pool = session.get_bind().pool
    with _lock:
        entries = _by_pool.get(pool)
        if entries is None:
            entries = _by_pool[pool] = {}
        return entries


def _cached(session: Session, key: tuple, load: Callable[[], Any]) -> Any:
    entries = _entries(session)
    now = time.monotonic()
    hit = entries.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = load()
    if value is not None:
        entries[key] = (now + LIFETIME, value)
    return value


def invalidate() -> None:
    """Forget every cached directory row in this process."""
    with _lock:
        for entries in _by_pool.values():
            entries.clear()


def agency(session: Session, agency_id: str) -> AgencyInfo | None:
    """The agency (active or not), or None if the directory has no such id."""
    def load():
        row = session.execute(sa.select(Agency.id, Agency.kind, Agency.short_name, Agency.province, Agency.active)
                              .where(Agency.id == agency_id)).one_or_none()
        return AgencyInfo(*row) if row is not None else None

    return _cached(session, ("agency", agency_id), load) if isinstance(agency_id, str) else None


def bundle(session: Session, agency_id: str) -> packets.PublicBundle:
    """The agency's public bundle (as ``hub.directory.service.public_bundle``); NotFound if it has no keys."""
    def load():
        rows = session.scalars(sa.select(AgencyKey).where(AgencyKey.agency_id == agency_id)
                               .order_by(AgencyKey.created_at, sa.case((AgencyKey.use == "sign", 0), else_=1),
                                         AgencyKey.kid)).all()
        if not rows:
            return None
        return packets.PublicBundle(agency=agency_id, keys=[
            packets.PublicKey(kid=r.kid, use=r.use, alg=r.alg, public=bytes(r.public),
                              created_at=rfc3339(r.created_at), revoked_at=rfc3339(r.revoked_at) if r.revoked_at else None)
            for r in rows])

    found = _cached(session, ("bundle", agency_id), load)
    if found is None:
        raise NotFound(f"agency {agency_id} has no keys yet; enrol it with `hub agencies enroll {agency_id}`",
                       code="not_enrolled")
    return found


def contacts(session: Session, agency_id: str, *, duty_only: bool = False) -> list[ContactInfo]:
    """Active contacts of an agency, the duty contact first (as ``directory.contacts_for``)."""
    def load():
        stmt = (sa.select(Contact.id, Contact.agency_id, Contact.phone, Contact.lang, Contact.duty, Contact.role,
                          Contact.user_id, Contact.active)
                .where(Contact.agency_id == agency_id, Contact.active.is_(True)))
        if duty_only:
            stmt = stmt.where(Contact.duty.is_(True))
        return tuple(ContactInfo(*row) for row in session.execute(stmt.order_by(Contact.duty.desc(), Contact.id)))

    return list(_cached(session, ("contacts", agency_id, duty_only), load))


# -- invalidation on commit ------------------------------------------------------------------------


@event.listens_for(Session, "before_flush")
def _note_orm_changes(session: Session, _flush_context, _instances) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, _DIRECTORY_CLASSES):
            session.info["directory_changed"] = True
            return


@event.listens_for(Session, "do_orm_execute")
def _note_statements(state) -> None:
    if (state.is_update or state.is_delete or state.is_insert) \
            and getattr(state.statement, "table", None) in _DIRECTORY_TABLES:
        state.session.info["directory_changed"] = True


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session: Session) -> None:
    if session.info.pop("directory_changed", False):
        invalidate()


@event.listens_for(Session, "after_soft_rollback")
def _nothing_changed(session: Session, _previous) -> None:
    session.info.pop("directory_changed", None)
