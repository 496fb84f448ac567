"""Replies by SMS (PROTOCOL.md section 5): a parsed command becomes the same hub action as in the web or API.

The sender is known only by the phone number Twilio vouches for (the webhook
checks the signature before this runs). Whatever is not the sender's to act
on, an unknown number, an unknown code, another agency's referral, gets one
neutral answer, so a reply never tells whether a referral exists. Every
command is an audit entry with its kind and outcome; never the text or the
number.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.audit.service import record as audit
from hub.clock import FixedClock
from hub.directory.models import Agency, Contact
from hub.errors import BadInput, Conflict, Forbidden, HubError, Invalid, NotFound
from hub.notify.commands import Command, parse_command
from hub.phones import InvalidPhone, normalize_phone
from hub.notify.sms import render_sms

UNKNOWN_ACTOR = "unknown-number"
DECIDING_ROLES = ("caseworker", "agency_admin")
# The state a referral is in once each command has been carried out (or later in its life).
DONE_STATES = {
    "ack": ("acknowledged", "accepted", "in_care"),
    "accept": ("accepted", "in_care"),
    "decline": ("declined",),
}
TRANSITION = {"ack": "acknowledge", "accept": "accept", "decline": "decline"}
ACTION = {"ack": "acknowledge", "accept": "accept", "decline": "decline", "beds": "beds"}


@dataclass(frozen=True)
class Reply:
    """What to answer: an SMS template in a language, or nothing (``template`` None)."""

    template: str | None
    lang: str
    values: dict = field(default_factory=dict)
    outcome: str = ""

    def text(self, templates_dir) -> str | None:
        if self.template is None:
            return None
        return render_sms(self.template, self.lang, templates_dir, **self.values)


def contact_principal(contact: Contact):
    """The principal a contact acts as when it replies by SMS or taps a one-tap link."""
    from hub.accounts.access import Principal

    agency = contact.agency
    return Principal(kind="contact", agency_id=contact.agency_id, role=contact.role, province=agency.province,
                     agency_kind=agency.kind, display=f"contact:{contact.id}")


def contacts_for_phone(session: Session, phone: str | None) -> list[Contact]:
    """Active contacts of active agencies with this number (one person may serve two agencies)."""
    try:
        e164 = normalize_phone(phone or "")
    except InvalidPhone:
        return []
    stmt = (sa.select(Contact).join(Agency, Agency.id == Contact.agency_id)
            .where(Contact.phone == e164, Contact.active.is_(True), Agency.active.is_(True))
            .order_by(Contact.id))
    return list(session.scalars(stmt))


def handle_sms(session: Session, *, from_phone: str | None, body: str | None, now: dt.datetime, settings,
               notifier=None) -> Reply:
    """Carry out one inbound SMS in the caller's transaction and say what to answer."""
    command = parse_command(body or "")
    contacts = contacts_for_phone(session, from_phone)
    if not contacts:
        reply = _reserved(command) or Reply("reply_neutral", command.lang, outcome="unknown_number")
        _audit(session, now, UNKNOWN_ACTOR, command, reply)
        return reply
    contact = contacts[0]
    reply, referral_id, actor = _act(session, command, contacts, now=now, settings=settings, notifier=notifier)
    _audit(session, now, actor or f"contact:{contact.id}", command, reply, referral_id)
    return reply


def _reserved(command: Command) -> Reply | None:
    # STOP and friends belong to the carrier and Twilio: answer with nothing.
    if command.problem == "reserved_keyword":
        return Reply(None, command.lang, outcome="carrier_keyword")
    return None


def _audit(session: Session, now: dt.datetime, actor: str, command: Command, reply: Reply,
           referral_id: str | None = None) -> None:
    kind = "reserved" if command.problem == "reserved_keyword" else command.kind
    audit(session, at=now, actor=actor, action="sms.command", referral_id=referral_id,
          detail={"kind": kind, "outcome": reply.outcome})


def _act(session: Session, command: Command, contacts: list[Contact], *, now: dt.datetime, settings,
         notifier) -> tuple[Reply, str | None, str | None]:
    """(reply, referral id if the command concerned one of theirs, acting contact's name in the log)."""
    lang = contacts[0].lang
    reserved = _reserved(command)
    if reserved is not None:
        return reserved, None, None
    if command.kind == "help":
        return Reply("reply_help", lang, outcome="help"), None, None
    if command.kind == "unknown":
        return Reply("reply_error", lang, outcome=command.problem or "not_understood"), None, None
    if command.kind == "beds":
        return _beds(session, command, contacts, now=now)
    return _lifecycle(session, command, contacts, now=now, notifier=notifier)


def _neutral(lang: str, outcome: str) -> Reply:
    return Reply("reply_neutral", lang, outcome=outcome)


def _lifecycle(session: Session, command: Command, contacts: list[Contact], *, now: dt.datetime,
               notifier) -> tuple[Reply, str | None, str | None]:
    from hub.referrals import service as referrals
    from hub.referrals.models import Referral

    lang = contacts[0].lang
    by_agency = {c.agency_id: c for c in contacts}
    # Codes are unique among open referrals; a closed one may share its code with an older one.
    referral = session.scalar(
        sa.select(Referral)
        .where(Referral.code == command.code, Referral.to_agency_id.in_(by_agency))
        .order_by(Referral.open_code.is_(None), Referral.created_at.desc())
        .limit(1)
    )
    if referral is None:
        return _neutral(lang, "unknown_code"), None, None
    contact = by_agency[referral.to_agency_id]
    lang, actor = contact.lang, f"contact:{contact.id}"
    if command.kind in ("accept", "decline") and contact.role not in DECIDING_ROLES:
        return _neutral(lang, "not_allowed"), referral.id, actor
    ok = Reply("reply_ok", lang, {"code": referral.code, "action": ACTION[command.kind]})
    if referral.status in DONE_STATES[command.kind]:
        # Said twice, or someone at the agency was quicker: it is done, and it is theirs to know.
        return Reply(ok.template, lang, ok.values, outcome="already"), referral.id, actor
    try:
        with session.begin_nested():  # a refused command leaves nothing behind but its audit entry
            referrals.transition(session, contact_principal(contact), referral.id, TRANSITION[command.kind],
                                 now=now, reason=command.reason, notifier=notifier)
    except Conflict:
        session.refresh(referral)
        if referral.status in DONE_STATES[command.kind]:  # a colleague's reply won the race
            return Reply(ok.template, lang, ok.values, outcome="already"), referral.id, actor
        return _neutral(lang, "wrong_state"), referral.id, actor
    except (Forbidden, NotFound):
        return _neutral(lang, "not_allowed"), referral.id, actor
    except (BadInput, Invalid):
        return Reply("reply_error", lang, outcome="invalid"), referral.id, actor
    if command.kind == "ack":
        from hub.notify.service import void_ack_tokens

        void_ack_tokens(session, referral.id, now)  # the ack clock stopped: its one-tap links with it
    return Reply(ok.template, lang, ok.values, outcome="done"), referral.id, actor


def _beds(session: Session, command: Command, contacts: list[Contact], *, now: dt.datetime
          ) -> tuple[Reply, str | None, str | None]:
    from hub.accounts import access
    from hub.directory import service as directory

    sheltering = [c for c in contacts if c.agency.beds_total is not None] or contacts
    if len(sheltering) != 1:
        # The number serves several shelters: which one is meant cannot be told from "BEDS 3".
        return Reply("reply_error", contacts[0].lang, outcome="ambiguous_agency"), None, None
    contact = sheltering[0]
    principal = contact_principal(contact)
    try:
        access.require(principal, "capacity.set", agency_id=contact.agency_id)
        with session.begin_nested():
            directory.set_capacity(session, contact.agency_id, command.beds, actor=principal.display,
                                   clock=FixedClock(now))
    except (Forbidden, NotFound):
        return _neutral(contact.lang, "not_allowed"), None, f"contact:{contact.id}"
    except HubError:
        return Reply("reply_error", contact.lang, outcome="invalid"), None, f"contact:{contact.id}"
    return (Reply("reply_ok", contact.lang, {"code": "", "action": "beds"}, outcome="done"), None,
            f"contact:{contact.id}")
