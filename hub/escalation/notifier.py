"""What the lifecycle tells the escalation engine: LadderNotifier, the hub's Notifier.

``hub.referrals.service`` calls ``referral_changed`` after every change, in the
same transaction, after ``start_clock`` has set the new clock. Everything here
only writes rows (outbox, tokens), so the change and its texts commit or roll
back together.
"""
from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.db import InsertChain
from hub.directory.models import Contact
from hub.escalation.models import fired_bits
from hub.escalation.service import CLOCK_FOR_STATE, Targets, advance, advance_now, frozen_policy, record_steps, short_name
from hub.notify import service as notify
from hub.notify.models import OutboxMessage

log = logging.getLogger("hub.escalation")

# The text everyone notified on a stopped clock gets, by the state that stopped it, and whose
# short name it carries ("recipient" or "sender"). in_care and closed have no text of their own:
# "taken" says the recipient has answered and nothing more is asked of them.
LOOP_TEMPLATE = {
    "acknowledged": ("acknowledged", "recipient"),
    "accepted": ("accepted", "recipient"),
    "declined": ("declined", "recipient"),
    "withdrawn": ("withdrawn", "sender"),
    "in_care": ("taken", "recipient"),
    "failed": ("failed", "recipient"),
    "closed": ("taken", "recipient"),
}


def notified_contacts(session: Session, referral_id: str, clock: str) -> list[int]:
    """Contacts texted on this clock of the referral: ladder steps and overdue alerts."""
    return list(session.scalars(
        sa.select(OutboxMessage.contact_id)
        .where(OutboxMessage.referral_id == referral_id, OutboxMessage.clock == clock,
               OutboxMessage.contact_id.is_not(None))
        .group_by(OutboxMessage.contact_id).order_by(OutboxMessage.contact_id)))


def acting_contact(session: Session, actor) -> set[int]:
    """The contact(s) of whoever made the change; they need no text about their own action."""
    if actor is None:
        return set()
    display = getattr(actor, "display", "") or ""
    if getattr(actor, "kind", None) == "contact" and display.startswith("contact:"):
        try:
            return {int(display.split(":", 1)[1])}
        except ValueError:
            return set()
    user_id = getattr(actor, "user_id", None)
    if user_id is None:
        return set()
    return set(session.scalars(sa.select(Contact.id).where(Contact.user_id == user_id)))


class LadderNotifier:
    """Fires ladders from the lifecycle, and closes the loop when a clock stops.

    - a new referral: step 0 of the ack clock, in the creating transaction;
    - a clock stops: its one-tap tokens are void, and everyone texted on it, plus
      the referring officer, is told who answered (PROTOCOL.md section 4);
      accepted and declined go to the sender, withdrawn to the recipient;
    - a new clock starts: its step 0 (silent on the decide and arrive clocks when it
      would text the recipient who just acted; docs/design-notes.md).
    """

    def __init__(self, settings):
        self.settings = settings

    def referral_changed(self, session: Session, referral, old: str | None, now: dt.datetime, actor) -> None:
        old_clock = CLOCK_FOR_STATE.get(old) if old is not None else None
        if old_clock is not None and old_clock != referral.clock:
            self.clock_stopped(session, referral, old_clock, now, actor)
        if referral.clock is not None:
            advance_now(session, referral, now, settings=self.settings)

    def referral_created(self, session: Session, referral, now: dt.datetime, store) -> None:
        """Step 0 of a new referral's clock, its ladder state set before ``store(chain)`` adds the row.

        So the INSERT carries the state (no UPDATE after it). The referral's rows, the
        step's texts and tokens and the ladder's record go into one InsertChain: one
        statement on PostgreSQL, one per table on SQLite, the referral's row first.
        """
        chain = InsertChain()
        if referral.next_step_at is None or referral.next_step_at > now:
            store(chain)
            chain.run(session.connection())
            return
        targets = Targets(session)
        # Whom step 0 texts, read first. A later step fired at once (step 0 reached nobody)
        # reads or raises its alert before the rows are written: the alert then waits for them (below).
        targets.resolve(referral, frozen_policy(referral).ladder[0].notify)
        outbox = notify.OutboxBatch(session, now=now, settings=self.settings)
        result = advance(session, referral, now, settings=self.settings, targets=targets, outbox=outbox,
                         defer_alerts=True)
        for key, value in result.values.items():
            setattr(referral, key, value)
        referral.ladder_fired = (referral.ladder_fired or 0) | fired_bits(result.clock, [s for s, _r in result.fired])
        store(chain)
        outbox.flush(chain)
        record_steps(session, [result], chain)  # the ladder's record, which the reports count
        chain.run(session.connection())
        for alert in result.deferred_alerts:
            notify.raise_alert(session, **alert)

    def clock_stopped(self, session: Session, referral, clock: str, now: dt.datetime, actor) -> int:
        """Void the clock's tokens and tell those it reached who answered; returns texts queued."""
        notify.void_ack_tokens(session, referral.id, now)
        status = referral.status
        template, side = LOOP_TEMPLATE.get(status, ("taken", "recipient"))
        targets = Targets(session)
        by = short_name(targets, referral.to_agency_id if side == "recipient" else referral.from_agency_id)
        ids = notified_contacts(session, referral.id, clock)
        contacts = list(session.scalars(sa.select(Contact).where(Contact.id.in_(ids)).order_by(Contact.id))) \
            if ids else []
        # The referring officer hears every answer: accepted, declined and a failed placement (the
        # person never arrived or left care) are theirs to act on.
        extra: list[Contact] = list(targets.resolve(referral, "sender.officer"))
        if status == "withdrawn":
            extra += targets.resolve(referral, "recipient.duty")
        skip = acting_contact(session, actor)
        seen: set[int] = set()
        rows = []
        for contact in contacts + extra:
            if contact.id in seen or contact.id in skip or not contact.active:
                continue
            seen.add(contact.id)
            rows.append(dict(dedupe_key=f"loop:{referral.id}:{clock}:{contact.id}", to_phone=contact.phone,
                             lang=contact.lang, template=template, values={"code": referral.code, "by": by},
                             contact_id=contact.id, referral_id=referral.id))
        queued = notify.enqueue_many(session, rows, now=now, settings=self.settings)
        log.info("escalation clock stopped referral=%s clock=%s state=%s told=%d", referral.id, clock, status, queued)
        return queued
