"""Replies by SMS (PROTOCOL.md section 5): a parsed command becomes one service call, as in the web or API.

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

from hub.accounts import service as accounts
from hub.audit.service import record as audit
from hub.clock import FixedClock
from hub.directory import service as directory
from hub.directory.models import Agency, Contact
from hub.errors import Forbidden, HubError, NotFound
from hub.notify.commands import Command, parse_command
from hub.notify.service import first_sighting
from hub.notify.sms import render_sms
from hub.phones import InvalidPhone, normalize_phone
from hub.referrals import service as referrals

UNKNOWN_ACTOR = "unknown-number"
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


def handle_sms(session: Session, *, from_phone: str | None, body: str | None, now: dt.datetime,
               notifier=None, message_sid: str | None = None) -> Reply:
    """Carry out one inbound SMS in the caller's transaction and say what to answer.

    An SMS whose ``MessageSid`` was acted on before (Twilio retrying, or a captured request
    posted again) changes nothing and is answered with nothing, so no second reply goes out.
    """
    command = parse_command(body or "")
    if not message_sid or not first_sighting(session, f"sms:{message_sid}", now):
        return Reply(None, command.lang, outcome="replay" if message_sid else "no_message_sid")
    contacts = contacts_for_phone(session, from_phone)
    if not contacts:
        reply = _reserved(command) or Reply("reply_neutral", command.lang, outcome="unknown_number")
        _audit(session, now, UNKNOWN_ACTOR, command, reply)
        return reply
    reply, referral_id, actor = _act(session, command, contacts, now=now, notifier=notifier)
    _audit(session, now, actor or f"contact:{contacts[0].id}", command, reply, referral_id)
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


def _act(session: Session, command: Command, contacts: list[Contact], *, now: dt.datetime,
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
    answer = referrals.answer_by_code(session, contacts, command.code, TRANSITION[command.kind], now=now,
                                      reason=command.reason, notifier=notifier)
    if answer.outcome == "unknown_code":
        return Reply("reply_neutral", lang, outcome="unknown_code"), None, None
    contact, referral = answer.contact, answer.referral
    lang, actor = contact.lang, f"contact:{contact.id}"
    if answer.outcome == "done":
        return (Reply("reply_ok", lang, {"code": referral.code, "action": ACTION[command.kind]}, outcome="done"),
                referral.id, actor)
    if answer.outcome == "already":
        by = (answer.by.short_name or answer.by.id) if answer.by is not None else ""
        return (Reply("reply_already", lang, {"code": referral.code, "state": answer.state, "by": by},
                      outcome="already"), referral.id, actor)
    if answer.outcome == "not_allowed":
        return Reply("reply_neutral", lang, outcome="not_allowed"), referral.id, actor
    return Reply("reply_error", lang, outcome="invalid"), referral.id, actor


def _beds(session: Session, command: Command, contacts: list[Contact], *, now: dt.datetime
          ) -> tuple[Reply, str | None, str | None]:
    sheltering = [c for c in contacts if c.agency.beds_total is not None] or contacts
    if len(sheltering) != 1:
        # The number serves several shelters: which one is meant cannot be told from "BEDS 3".
        return Reply("reply_error", contacts[0].lang, outcome="ambiguous_agency"), None, None
    contact = sheltering[0]
    actor = f"contact:{contact.id}"
    try:
        with session.begin_nested():
            directory.set_capacity(session, accounts.contact_principal(contact), contact.agency_id, command.beds,
                                   clock=FixedClock(now))
    except (Forbidden, NotFound):
        return Reply("reply_neutral", contact.lang, outcome="not_allowed"), None, actor
    except HubError:
        return Reply("reply_error", contact.lang, outcome="invalid"), None, actor
    return Reply("reply_ok", contact.lang, {"code": "", "action": "beds"}, outcome="done"), None, actor
