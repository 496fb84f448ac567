"""Clocks and the escalation ladder frozen into each referral (PROTOCOL.md section 4).

The state of every ladder lives in the referral row: the running ``clock``, the
last ladder ``step`` fired (-1: none yet), the ``repeat`` of the last step, and
``next_step_at``, the next moment something is due (a step, a repeat or the
overdue alert). :func:`sweep` claims due rows with ``FOR UPDATE SKIP LOCKED``
and writes them back behind a version fence, so any number of sweeps, in any
number of processes, fire each step once; the outbox's ``dedupe_key`` makes
each message exist once even if a fence were ever crossed.

The same code (:func:`advance`) fires step 0 inside the lifecycle transaction
that starts a clock (:class:`hub.escalation.notifier.LadderNotifier`), so a new
referral and its first text are committed together.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload, sessionmaker

from hub import access
from hub.audit.service import record as audit
from hub.config import Policy
from hub.directory import cache as directory_cache
from hub.directory import service as directory
from hub.db import InsertChain
from hub.directory.models import Agency, Contact
from hub.errors import Conflict, NotFound, log_failure
from hub.escalation.models import LadderStep, fired_bits
from hub.notify import service as notify
from hub.notify.models import OutboxMessage
from hub.referrals import service as referrals
from hub.referrals.clocks import (  # noqa: F401
    CLOCK_FOR_STATE,
    deadline,
    next_firing,
    start_clock,
    step_due_at,
)
from hub.referrals.models import Referral
from hub.vocabulary import OPEN_STATES

log = logging.getLogger("hub.escalation")

# What the recipient is asked to do while each clock runs (the new_referral template's ``action``).
ACTION_FOR_CLOCK = {"ack": "acknowledge", "decide": "decide", "arrive": "confirm_arrival"}
RECIPIENT_TARGETS = ("recipient.duty", "recipient.all")


_policies: dict[str, Policy] = {}


def frozen_policy(referral) -> Policy:
    """The policy frozen into the referral (parsed once per distinct ladder)."""
    key = json.dumps(referral.ladder, sort_keys=True)
    policy = _policies.get(key)
    if policy is None:
        if len(_policies) > 256:
            _policies.clear()
        policy = _policies[key] = Policy.from_json(referral.ladder)
    return policy


# -- targets ------------------------------------------------------------------------------------


class Targets:
    """Resolves a ladder target to contacts when the step fires, caching per transaction.

    The directory does not change under a sweep batch, and many due referrals go to
    the same few agencies, so one lookup per (target, agency) is enough.
    """

    def __init__(self, session: Session):
        self.session = session
        self._cache: dict[tuple, list[Contact]] = {}

    def agency(self, agency_id: str | None) -> directory_cache.AgencyInfo | None:
        # From the process's directory cache (hub.directory.cache: short lifetime, emptied on change).
        if not agency_id:
            return None
        key = ("agency", agency_id)
        if key not in self._cache:
            self._cache[key] = directory_cache.agency(self.session, agency_id)
        return self._cache[key]

    def _contacts(self, agency_id: str, duty_only: bool) -> list[directory_cache.ContactInfo]:
        key = ("agency", agency_id, duty_only)
        if key not in self._cache:
            self._cache[key] = [c for c in directory_cache.contacts(self.session, agency_id, duty_only=duty_only)
                                if c.active]
        return self._cache[key]

    def _committees(self, province: str | None) -> list[Contact]:


        key = ("committee", province)
        if key not in self._cache:
            out: list[Contact] = []
            for agency in directory.coordinator_agencies(self.session, province):
                out.extend(self._contacts(agency.id, False))
            self._cache[key] = out
        return self._cache[key]

    def officer(self, referral) -> list[Contact]:
        """The referring officer's own contact, else the sender agency's duty contact(s)."""
        key = ("officer", referral.from_agency_id, referral.officer_user_id)
        if key not in self._cache:
            found: list[Contact] = []
            if referral.officer_user_id is not None:
                found = list(self.session.scalars(
                    sa.select(Contact).where(Contact.user_id == referral.officer_user_id,
                                             Contact.agency_id == referral.from_agency_id,
                                             Contact.active.is_(True)).order_by(Contact.id)))
            self._cache[key] = found or self._contacts(referral.from_agency_id, True)
        return self._cache[key]

    def resolve(self, referral, target: str) -> list[Contact]:
        """The contacts ``target`` reaches for this referral now (PROTOCOL.md section 4), each once."""
        if target == "recipient.duty":
            found = self._contacts(referral.to_agency_id, True)
        elif target == "recipient.all":
            found = self._contacts(referral.to_agency_id, False)
        elif target == "sender.officer":
            found = self.officer(referral)
        elif target == "sender.all":
            found = self._contacts(referral.from_agency_id, False)
        elif target == "coordinator.province":
            recipient = self.agency(referral.to_agency_id)
            found = self._committees(recipient.province) if recipient is not None and recipient.province else []
        elif target == "coordinator.national":
            found = self._committees(None)
        else:  # config validation keeps this out; a frozen ladder from an older hub might not
            log.error("referral=%s has unknown ladder target %r", referral.id, target)
            found = []
        seen: set[int] = set()
        return [c for c in found if not (c.id in seen or seen.add(c.id))]


def short_name(targets: Targets, agency_id: str) -> str:
    agency = targets.agency(agency_id)
    return (agency.short_name or agency.id) if agency is not None else agency_id


def referral_link(settings, referral) -> str:
    """Where a text points when it carries no one-tap token: the referral's page in the hub."""
    return f"{settings.public_base_url}/r/{referral.id}"


# -- firing a step ------------------------------------------------------------------------------


@dataclass
class Advance:
    """What :func:`advance` did to one referral, and the row values it must write (fenced)."""

    referral_id: str
    version: int
    values: dict[str, Any]
    fired: list[tuple[int, int]] = field(default_factory=list)  # (step, repeat)
    clock: str | None = None  # the clock the steps fired on
    at: dt.datetime | None = None
    messages: int = 0
    alerts: int = 0
    # With advance(defer_alerts=True): the no-contact alerts the caller raises once the row exists.
    deferred_alerts: list[dict] = field(default_factory=list)


def fire_step(session: Session, referral, policy: Policy, step: int, repeat: int, now: dt.datetime, *,
              settings, targets: Targets, outbox: notify.OutboxBatch | None = None) -> int | None:
    """Enqueue ladder step ``step`` (repeat ``repeat``) of the referral's clock; returns contacts reached.

    None means the step is deliberately silent: on the decide and arrive clocks,
    step 0 would text the recipient agency about the very action it has just
    taken (docs/design-notes.md), so it is recorded as fired without a text.

    The step's texts and tokens go into ``outbox`` (the caller flushes it in this
    transaction); without one they are written here, one executemany each.
    """
    clock = referral.clock
    target = policy.ladder[step].notify
    if step == 0 and clock != "ack" and target in RECIPIENT_TARGETS:
        return None
    contacts = targets.resolve(referral, target)
    recipient_side = target in RECIPIENT_TARGETS
    values: dict[str, Any] = {"code": referral.code, "sender": short_name(targets, referral.from_agency_id),
                              "urgency": referral.urgency}
    if step == 0:
        template = "new_referral"
        values["action"] = ACTION_FOR_CLOCK[clock]
    else:
        template = "escalated"
        values["step"] = step
    batch = outbox if outbox is not None else notify.OutboxBatch(session, now=now, settings=settings)
    onetap = clock == "ack" and recipient_side
    for contact in contacts:
        if onetap:
            link = notify.onetap_link(settings, batch.token(referral_id=referral.id, clock=clock,
                                                            contact_id=contact.id))
        else:
            link = referral_link(settings, referral)
        batch.enqueue(dedupe_key=f"step:{referral.id}:{clock}:{step}:{repeat}:{contact.id}", to_phone=contact.phone,
                      lang=contact.lang, template=template, values={**values, "link": link}, contact_id=contact.id,
                      referral_id=referral.id, clock=clock, step=step, repeat=repeat)
    if outbox is None:
        batch.flush()
    log.info("escalation fired referral=%s clock=%s step=%d repeat=%d contacts=%d",
             referral.id, clock, step, repeat, len(contacts))
    return len(contacts)


def raise_overdue(session: Session, referral, now: dt.datetime, *, targets: Targets) -> int:
    """One overdue alert per referral and clock, for the coordinators' board and /metrics; 1 if raised now.

    It texts nobody: the ladder is the one voice that texts people about a referral, and its own
    coordinator steps reach the committees on this clock (docs/design-notes.md, "Overdue alerts").
    """
    recipient = targets.agency(referral.to_agency_id)
    province = recipient.province if recipient is not None else None
    alert = notify.raise_alert(session, kind="overdue", referral_id=referral.id, province=province,
                               dedupe_key=f"overdue:{referral.id}:{referral.clock}", now=now)
    if alert is None:
        return 0
    log.warning("escalation overdue referral=%s clock=%s", referral.id, referral.clock)
    return 1


def advance(session: Session, referral, now: dt.datetime, *, settings, targets: Targets | None = None,
            outbox: notify.OutboxBatch | None = None, defer_alerts: bool = False) -> Advance:
    """Fire everything due on the referral's clock at ``now``; return the new ladder state to write.

    Fires each due step once (a step that reaches nobody hands over to the next
    step at once), raises the overdue alert once, and computes ``next_step_at``.
    Writes nothing to the referral row: :func:`apply` does, behind the fence.
    Missed repeats after downtime collapse into one text (the latest due).
    The texts and tokens go into ``outbox`` if given (the caller flushes it in
    this transaction), else they are written before this returns.
    """
    targets = targets or Targets(session)
    if outbox is None:
        outbox = notify.OutboxBatch(session, now=now, settings=settings)
        result = advance(session, referral, now, settings=settings, targets=targets, outbox=outbox,
                         defer_alerts=defer_alerts)
        outbox.flush()
        return result
    out = Advance(referral.id, referral.version, {})
    if referral.status not in OPEN_STATES or referral.clock is None or referral.clock_started_at is None:
        out.values = {"next_step_at": None}
        return out
    policy = frozen_policy(referral)
    clock, started, last = referral.clock, referral.clock_started_at, len(policy.ladder) - 1
    out.clock, out.at = clock, now
    step, repeat, alerted = referral.step, referral.repeat, referral.overdue_alerted_at
    alert_at = deadline(policy, clock, started) + settings.alert_after
    if alerted is None and now >= alert_at:
        out.alerts += raise_overdue(session, referral, now, targets=targets)
        alerted = now
    # A text of the current step failed (delivery_failed), or the previous step reached nobody:
    # the next one fires now, whatever its time.
    at_once = referral.step_failed_at is not None and step >= 0
    while True:
        nstep, nrep = next_firing(step, repeat, last)
        if not at_once:
            if step_due_at(policy, clock, started, nstep, nrep) > now:
                break
            if nrep > 0:  # after downtime, one repeat for all the missed ones
                first = step_due_at(policy, clock, started, last, 0)
                nrep = max(nrep, int((now - first) / policy.repeat_every))
        reached = fire_step(session, referral, policy, nstep, nrep, now, settings=settings, targets=targets,
                            outbox=outbox)
        step, repeat = nstep, nrep
        out.fired.append((step, repeat))
        out.messages += reached or 0
        at_once = reached == 0 and step < last
        if reached == 0 and step == last and repeat == 0:
            alert = dict(kind="no_contact", referral_id=referral.id, province=referral.province,
                         dedupe_key=f"no_contact:{referral.id}:{clock}", now=now)
            if defer_alerts:
                out.deferred_alerts.append(alert)
            else:
                notify.raise_alert(session, **alert)
    next_at = step_due_at(policy, clock, started, *next_firing(step, repeat, last))
    if alerted is None:
        next_at = min(next_at, alert_at)
    out.values = {"step": step, "repeat": repeat, "next_step_at": next_at, "overdue_alerted_at": alerted,
                  "step_failed_at": None}
    return out


class FenceLost(Exception):
    """The referral changed between reading it and writing its ladder state back."""


def apply(session: Session, result: Advance, referral=None) -> None:
    """Write one referral's new ladder state: UPDATE ... WHERE id = :id AND version = :v.

    Pass the loaded ``referral`` to keep that object in step with the row.
    """
    bits = _fired_bits(result)
    stmt = (sa.update(Referral).where(Referral.id == result.referral_id, Referral.version == result.version)
            .values(**result.values, version=result.version + 1,
                    **({"ladder_fired": sa.func.coalesce(Referral.ladder_fired, 0).op("|")(sa.literal(bits, sa.BigInteger))}
                       if bits else {})))
    if referral is None:
        stmt = stmt.execution_options(synchronize_session=False)
    if session.execute(stmt).rowcount != 1:
        raise FenceLost(result.referral_id)
    record_steps(session, [result])
    if referral is not None:
        for key, value in result.values.items():
            setattr(referral, key, value)
        if bits:
            referral.ladder_fired = (referral.ladder_fired or 0) | bits
        referral.version = result.version + 1


def _fired_bits(result: Advance) -> int:
    """The referral.ladder_fired bits of the steps this advance fired (the record's facts, on the row)."""
    return fired_bits(result.clock, [step for step, _repeat in result.fired])


def advance_now(session: Session, referral, now: dt.datetime, *, settings) -> Advance:
    """Fire what is due on one referral in the caller's transaction (the lifecycle's), fenced."""
    if referral.next_step_at is None or referral.next_step_at > now:
        return Advance(referral.id, referral.version, {})
    result = advance(session, referral, now, settings=settings)
    apply(session, result, referral)
    return result


def delivery_failed(session: Session, message, now: dt.datetime) -> None:
    """A text ended failed or undelivered: alert the coordinators and, for the referral's current clock,
    step and repeat, move on now. Handed to notify as its ``on_failed`` hook at wiring time.

    Sets ``next_step_at = now`` (fenced), so the next sweep fires the next step.
    A failure of an earlier step or repeat, of another clock, or of a referral
    no longer open changes nothing.
    """
    if message.referral_id is None:
        notify.raise_alert(session, kind="sms_failed", referral_id=None, province=None,
                           dedupe_key=f"sms_failed:{message.id}", now=now)
        return
    notify.raise_alert(session, kind="sms_failed", referral_id=message.referral_id,
                       province=session.scalar(sa.select(Referral.province).where(Referral.id == message.referral_id)),
                       dedupe_key=f"sms_failed:{message.id}", now=now)
    if message.step is None or message.clock is None:
        return
    for _attempt in range(3):  # lose the fence only to a change that made this moot, or try again
        row = session.execute(
            sa.select(Referral.status, Referral.clock, Referral.step, Referral.repeat, Referral.next_step_at,
                      Referral.version).where(Referral.id == message.referral_id)).one_or_none()
        if (row is None or row.status not in OPEN_STATES or row.clock != message.clock or row.step != message.step
                or row.repeat != (message.repeat or 0)
                or (row.next_step_at is not None and row.next_step_at <= now)):
            return
        result = session.execute(
            sa.update(Referral).where(Referral.id == message.referral_id, Referral.version == row.version)
            .values(next_step_at=now, step_failed_at=now, version=row.version + 1)
            .execution_options(synchronize_session="fetch"))
        if result.rowcount == 1:
            log.info("escalation delivery failed referral=%s clock=%s step=%d: next step at the next sweep",
                     message.referral_id, row.clock, row.step)
            return


# -- the sweep ----------------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What one sweep did. ``claimed``: due referrals it took; ``steps``: ladder steps fired (silent and
    unreachable ones included); ``messages``: texts queued; ``alerts``: overdue alerts raised."""

    claimed: int = 0
    steps: int = 0
    messages: int = 0
    alerts: int = 0
    batches: int = 0
    errors: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "steps": self.steps, "messages": self.messages, "alerts": self.alerts,
                "batches": self.batches, "errors": self.errors, "seconds": round(self.seconds, 3)}

    def add(self, result: Advance) -> None:
        self.claimed += 1
        self.steps += len(result.fired)
        self.messages += result.messages
        self.alerts += result.alerts


def due_query(now: dt.datetime, limit: int, *, exclude: Iterable[str] = ()) -> sa.Select:
    """Due open referrals, oldest due first: a range scan of ix_referral_due, whatever exists besides.

    Locked as claimed, skipping rows another sweep holds (PostgreSQL; SQLite locks the whole database)."""
    stmt = (sa.select(Referral)
            .where(Referral.next_step_at <= now, Referral.status.in_(OPEN_STATES))
            .order_by(Referral.next_step_at, Referral.id).limit(limit).with_for_update(skip_locked=True))
    exclude = list(exclude)
    if exclude:
        stmt = stmt.where(Referral.id.not_in(exclude))
    return stmt


def sweep_batch(session: Session, now: dt.datetime, *, settings, limit: int = 500,
                exclude: Iterable[str] = (), report: SweepReport | None = None,
                claimed: list[str] | None = None) -> list[str]:
    """Claim up to ``limit`` due referrals in the caller's transaction and advance each; returns their ids.

    The caller commits (or rolls back: then nothing happened). On PostgreSQL the
    rows stay locked until then, and other sweeps skip them. ``claimed``, if
    given, receives the ids as soon as they are claimed (before any step fires).
    """
    referrals = list(session.scalars(due_query(now, limit, exclude=exclude)))
    ids = [r.id for r in referrals]
    if claimed is not None:
        claimed.extend(ids)
    targets = Targets(session)
    outbox = notify.OutboxBatch(session, now=now, settings=settings)
    results = [advance(session, r, now, settings=settings, targets=targets, outbox=outbox) for r in referrals]
    outbox.flush()  # every text and token of the batch: one executemany each, in this transaction
    apply_many(session, results)
    if report is not None:
        for result in results:
            report.add(result)
    return ids


def apply_many(session: Session, results: list[Advance]) -> None:
    """:func:`apply` for a batch: one executemany per shape of values, every row fenced."""
    groups: dict[tuple[str, ...], list[Advance]] = {}
    for result in results:
        groups.setdefault(tuple(sorted(result.values)), []).append(result)
    table = Referral.__table__
    for keys, group in groups.items():
        stmt = (table.update()
                .where(table.c.id == sa.bindparam("b_id"), table.c.version == sa.bindparam("b_version"))
                .values(version=sa.bindparam("b_new_version"),
                        ladder_fired=sa.func.coalesce(table.c.ladder_fired, 0).op("|")(
                            sa.bindparam("b_fired_bits", type_=sa.BigInteger)),
                        **{k: sa.bindparam(f"b_{k}") for k in keys}))
        params = [{"b_id": r.referral_id, "b_version": r.version, "b_new_version": r.version + 1,
                   "b_fired_bits": _fired_bits(r), **{f"b_{k}": r.values[k] for k in keys}} for r in group]
        changed = session.connection().execute(stmt, params).rowcount
        if changed != len(group):
            raise FenceLost(f"{len(group) - changed} of {len(group)} referrals changed under the sweep")
    record_steps(session, results)


def record_steps(session: Session, results: list[Advance], chain: InsertChain | None = None) -> None:
    """The ladder's record (hub.escalation.models.LadderStep): each first firing of a step, once.

    Called after the fenced write, in its transaction; a row that exists already (a
    repeat, or a step fired again after a clock restarted) is left as it is. With
    ``chain`` the rows are added to it (hub.db.InsertChain), written when the caller runs it.
    """
    rows = [{"referral_id": r.referral_id, "clock": r.clock, "step": step, "fired_at": r.at}
            for r in results if r.clock is not None for step, repeat in r.fired if repeat == 0]
    if not rows:
        return
    if chain is not None:  # written with the caller's other rows
        chain.add(LadderStep.__table__, rows, conflict_ok=True)
        return
    conn = session.connection()
    conn.execute(_RECORD_STEPS[conn.dialect.name == "postgresql"], rows)


# Built once, on the table (not the mapped class: no ORM bulk-insert machinery for a plain row).
_RECORD_STEPS = {True: pg_insert(LadderStep.__table__).on_conflict_do_nothing(),
                 False: sqlite_insert(LadderStep.__table__).on_conflict_do_nothing()}


def sweep(session_factory: sessionmaker[Session], now: dt.datetime, *, settings, limit: int = 500,
          stop: threading.Event | None = None) -> SweepReport:
    """Advance every referral due at ``now``: batches of at most ``limit``, one short transaction each.

    Repeats until nothing due is left that this sweep may take, or ``stop`` is
    set (then it returns after the batch under way; the rest stays due). Any
    number of sweeps may run at once (see the module docstring). A referral
    whose batch fails is retried alone; if it fails alone it is logged, counted
    in ``errors`` and left due for the next sweep.
    """
    started = time.perf_counter()
    report = SweepReport()
    broken: set[str] = set()
    while True:
        batch = SweepReport()
        claimed: list[str] = []
        try:
            with session_factory() as session, session.begin():
                sweep_batch(session, now, settings=settings, limit=limit, exclude=broken, report=batch,
                            claimed=claimed)
        except Exception:
            if not claimed:  # the claim itself failed (database down): try again next tick
                log_failure(log, "escalation sweep could not claim due referrals")
                report.errors += 1
                break
            log_failure(log, "escalation sweep batch failed; retrying its referrals one by one")
            batch = SweepReport()
            _one_by_one(session_factory, now, settings=settings, ids=claimed, broken=broken, report=batch)
        for name in ("claimed", "steps", "messages", "alerts", "errors"):
            setattr(report, name, getattr(report, name) + getattr(batch, name))
        report.batches += 1
        if len(claimed) < limit or (stop is not None and stop.is_set()):
            break
    report.seconds = time.perf_counter() - started
    if report.claimed or report.errors:
        log.info("escalation sweep claimed=%d steps=%d messages=%d alerts=%d errors=%d",
                 report.claimed, report.steps, report.messages, report.alerts, report.errors)
    return report


def _one_by_one(session_factory, now, *, settings, ids: list[str], broken: set[str], report: SweepReport) -> None:
    """After a failed batch: its referrals again, each in its own transaction, to isolate the bad one."""
    for referral_id in ids:
        try:
            with session_factory() as session, session.begin():
                referral = session.scalar(due_query(now, 1).where(Referral.id == referral_id))
                if referral is None:  # done meanwhile by another sweep, or no longer due
                    continue
                result = advance(session, referral, now, settings=settings)
                apply(session, result)
            report.add(result)
        except Exception:
            log_failure(log, "escalation failed for referral=%s; left due for the next sweep", referral_id)
            broken.add(referral_id)
            report.errors += 1


# -- coordinators: the open escalations, and taking one -------------------------------------------


# The coordinator's scope is one rule, kept beside the referrals it narrows.
coordinator_province = referrals.coordinator_scope
_in_scope = referrals.in_coordinator_scope


def open_escalations(session: Session, principal, now: dt.datetime, *, limit: int = 100,
                     offset: int = 0) -> list[tuple[Referral, int]]:
    """Open referrals past their clock's deadline or escalated (step >= 1), in the coordinator's province
    (the national committee sees all), newest due first; each with how many contacts its clock reached."""

    access.require(principal, "escalations.view")
    national, province = coordinator_province(session, principal)
    stmt = (sa.select(Referral)
            .where(Referral.status.in_(OPEN_STATES), Referral.clock.is_not(None),
                   sa.or_(Referral.deadline_at <= now, Referral.step >= 1))
            .options(selectinload(Referral.events))  # the metadata's history, in one query
            .order_by(Referral.deadline_at.desc(), Referral.id).limit(limit).offset(offset))
    rows = list(session.scalars(_in_scope(stmt, national, province)))
    return [(r, c) for r, c in zip(rows, notified_counts(session, rows))]


def notified_counts(session: Session, referrals: list) -> list[int]:
    """For each referral, the number of contacts texted on its running clock."""

    if not referrals:
        return []
    counts = dict(((rid, clock), n) for rid, clock, n in session.execute(
        sa.select(OutboxMessage.referral_id, OutboxMessage.clock, sa.func.count(sa.distinct(OutboxMessage.contact_id)))
        .where(OutboxMessage.referral_id.in_([r.id for r in referrals]), OutboxMessage.clock.is_not(None))
        .group_by(OutboxMessage.referral_id, OutboxMessage.clock)))
    return [counts.get((r.id, r.clock), 0) for r in referrals]


def take(session: Session, principal, referral_id: str, now: dt.datetime, *, settings) -> tuple[Referral, int]:
    """A coordinator takes ownership of an open referral in their province; the other coordinators
    texted about it are told (template ``taken``). Returns the referral and its notified count."""

    access.require(principal, "escalations.take")
    try:
        if str(uuid.UUID(referral_id)) != referral_id.lower():
            raise ValueError
    except (ValueError, AttributeError):
        raise NotFound("no such referral") from None
    national, province = coordinator_province(session, principal)
    stmt = _in_scope(sa.select(Referral).where(Referral.id == referral_id), national, province)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=Referral)
    referral = session.scalar(stmt)
    if referral is None:
        raise NotFound("no such referral in your province")
    if referral.status not in OPEN_STATES:
        raise Conflict(f"the referral is {referral.status}; only an open referral can be taken", code="wrong_state")
    owner_key = f"user:{principal.user_id}" if getattr(principal, "user_id", None) else f"agency:{principal.agency_id}"
    already = (referral.owner_user_id == getattr(principal, "user_id", None) and referral.owner == principal.display)
    if not already:
        previous = referral.owner
        referral.owner_user_id = getattr(principal, "user_id", None)
        referral.owner = principal.display
        referral.owned_at = now
        referral.version += 1
        referral.updated_at = now
        audit(session, at=now, actor=principal.display, action="escalation.taken", referral_id=referral.id,
              detail={"agency": principal.agency_id, "had_owner": previous is not None})
        targets = Targets(session)
        by = short_name(targets, principal.agency_id)
        committees = set(session.scalars(sa.select(Agency.id).where(Agency.kind == "committee")))
        skip = set()
        if getattr(principal, "user_id", None) is not None:
            skip = set(session.scalars(sa.select(Contact.id).where(Contact.user_id == principal.user_id)))
        notified = session.scalars(
            sa.select(Contact).join(OutboxMessage, OutboxMessage.contact_id == Contact.id)
            .where(OutboxMessage.referral_id == referral.id, Contact.agency_id.in_(committees),
                   Contact.active.is_(True)).distinct().order_by(Contact.id))
        notify.enqueue_many(session, [
            dict(dedupe_key=f"take:{referral.id}:{owner_key}:{contact.id}", to_phone=contact.phone, lang=contact.lang,
                 template="taken", values={"code": referral.code, "by": by}, contact_id=contact.id,
                 referral_id=referral.id)
            for contact in notified if contact.id not in skip], now=now, settings=settings)
        session.flush()
    return referral, notified_counts(session, [referral])[0]
