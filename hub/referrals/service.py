"""The referral lifecycle (PROTOCOL.md section 3) and the hub's checks on submission (section 2).

Every operation takes a session, the acting principal and ``now``; it raises a
HubError or returns the referral. Faces commit; nothing here does.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session, load_only, make_transient_to_detached, selectinload

from hub import access, packets
from hub.accounts import service as accounts
from hub.audit.service import record as audit
from hub.audit.models import AuditEntry
from hub.audit.service import entry_rows as audit_rows
from hub.clock import rfc3339
from hub.config import Policy, Settings
from hub.db import InsertChain, UTCDateTime, retry_transient
from hub.directory import cache as directory_cache
from hub.directory.models import Agency, Contact
from hub.errors import BadInput, Conflict, Forbidden, Invalid, NotFound
from hub.notify import service as notify
from hub.referrals.clocks import CLOCK_FOR_STATE, start_clock
from hub.referrals.models import Referral, ReferralEvent, ReferralPacket
from hub.vocabulary import FINAL_STATES, NEEDS, OUTCOMES, PROVINCES, URGENCIES

CODE_ALPHABET = "23456789CDFGHJKMNPQRTVWXY"
REASON_MAX = 500


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[str, ...]
    target: str
    side: str  # "recipient" or "sender"
    needs: str | None = None  # "reason" or "outcome"


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition("acknowledge", ("sent",), "acknowledged", "recipient"),
        Transition("accept", ("sent", "acknowledged"), "accepted", "recipient"),
        Transition("decline", ("sent", "acknowledged"), "declined", "recipient", "reason"),
        Transition("start_care", ("accepted",), "in_care", "recipient"),
        Transition("close", ("in_care",), "closed", "recipient", "outcome"),
        Transition("fail", ("accepted",), "failed", "recipient", "reason"),
        Transition("withdraw", ("sent", "acknowledged", "accepted"), "withdrawn", "sender", "reason"),
    )
}


class Notifier(Protocol):
    """What the lifecycle tells the notification layer; the outbox writes in the same transaction."""

    def referral_changed(self, session: Session, referral: Referral, old: str | None, now: dt.datetime,
                         actor: access.Principal | None) -> None: ...

    def referral_created(self, session: Session, referral: Referral, now: dt.datetime,
                         store: Callable[[InsertChain], None]) -> None:
        """Fire what a new referral starts with: set its ladder state on ``referral`` (not yet
        written), call ``store(chain)``, which adds its rows to an InsertChain (hub.db), add
        the texts that point at them, then run the chain."""


class NullNotifier:
    def referral_changed(self, session, referral, old, now, actor) -> None:
        return None

    def referral_created(self, session, referral, now, store) -> None:
        chain = InsertChain()
        store(chain)
        chain.run(session.connection())


@dataclass(frozen=True)
class Submission:
    to: str
    urgency: str
    child: bool
    needs: tuple[str, ...]
    province: str
    packets: tuple[bytes, ...]
    previous_id: str | None = None


_SUBMISSION_FIELDS = {"to", "urgency", "child", "needs", "province", "packets", "previous_id"}


def parse_submission(data: Any) -> Submission:
    """Validate the JSON of POST /api/v1/referrals; every problem is a BadInput naming the field."""
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object", code="malformed_json")
    unknown = set(data) - _SUBMISSION_FIELDS
    if unknown:
        raise BadInput(f"unknown field(s): {', '.join(sorted(unknown))}", code="unknown_field")
    missing = {"to", "urgency", "child", "needs", "province", "packets"} - set(data)
    if missing:
        raise BadInput(f"missing field(s): {', '.join(sorted(missing))}", code="missing_field")
    to = data["to"]
    if not isinstance(to, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", to):
        raise BadInput("'to' must be an agency id such as \"pp-shelter-a\"", code="invalid_field")
    if data["urgency"] not in URGENCIES:
        raise BadInput("'urgency' must be \"urgent\" or \"normal\"", code="invalid_field")
    if not isinstance(data["child"], bool):
        raise BadInput("'child' must be true or false", code="invalid_field")
    needs = data["needs"]
    if not isinstance(needs, list) or not needs or not all(isinstance(n, str) for n in needs):
        raise BadInput(f"'needs' must be a non-empty list of: {', '.join(NEEDS)}", code="invalid_field")
    bad = [n for n in needs if n not in NEEDS]
    if bad:
        raise BadInput(f"unknown need(s) {', '.join(bad)}; use: {', '.join(NEEDS)}", code="invalid_field")
    if len(set(needs)) != len(needs):
        raise BadInput("'needs' lists a need twice", code="invalid_field")
    if data["province"] not in PROVINCES:
        raise BadInput("'province' must be an ISO 3166-2:KH code such as \"KH-12\"", code="invalid_field")
    pkts = data["packets"]
    if not isinstance(pkts, list) or len(pkts) != 2:
        raise BadInput("'packets' must hold exactly two packets: one to the recipient, one to your own agency",
                       code="invalid_field")
    wires = []
    for i, p in enumerate(pkts):
        if not isinstance(p, dict):
            raise BadInput(f"packets[{i}] must be a packet object {{v, header, ct, sig}}", code="invalid_field")
        wires.append(json.dumps(p, separators=(",", ":")).encode())
    previous = data.get("previous_id")
    if previous is not None and not is_referral_id(previous):
        raise BadInput("'previous_id' must be the UUID of an earlier referral", code="invalid_field")
    return Submission(to=to, urgency=data["urgency"], child=data["child"], needs=tuple(needs),
                      province=data["province"], packets=tuple(wires), previous_id=previous)


def is_referral_id(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def request_fingerprint(raw_body: bytes) -> str:
    return hashlib.sha256(raw_body).hexdigest()


CODE_ATTEMPTS = 8


def create(session: Session, principal: access.Principal, sub: Submission, *, settings: Settings, now: dt.datetime,
           notifier: Notifier | None = None, idempotency_key: str | None = None,
           fingerprint: str | None = None) -> tuple[Referral, bool]:
    """Store a new referral after the hub's checks. Returns (referral, created).

    The directory rows come from the process's cache (hub.directory.cache). What a
    constraint makes unique (the referral id, the packet ids, the open reference
    code, the Idempotency-Key) is not looked up first: the INSERT is the check.
    When one refuses, this call rolls back the session, the unit of work it was
    given, and answers: the first result again for a repeated Idempotency-Key (a
    retry, or a concurrent twin that won the race), a fresh code for a taken one,
    else the same refusal a look-up would have given. So call it as a request's
    one unit of work, and commit after it.
    """
    access.require(principal, "referral.create")
    sender_id = principal.agency_id
    recipient, checked = _checked_packets(session, sender_id, sub, settings)
    previous_id = None
    if sub.previous_id is not None:
        previous = session.get(Referral, sub.previous_id)
        if previous is None or previous.from_agency_id != sender_id:
            raise NotFound("no earlier referral of your agency has that previous_id")
        if previous.status not in ("declined", "failed"):
            raise Conflict("only a declined or failed referral can be routed again", code="wrong_state")
        previous_id = previous.id
    policy: Policy = settings.policies["urgent" if sub.urgency == "urgent" or sub.child else "normal"]

    for _attempt in range(CODE_ATTEMPTS):
        try:
            referral = _store(session, principal, sub, recipient.id, checked, policy, previous_id, now=now,
                              notifier=notifier, idempotency_key=idempotency_key, fingerprint=fingerprint)
            return referral, True
        except sa.exc.IntegrityError as exc:
            session.rollback()
            which = _violated(exc)
        if idempotency_key is not None:
            earlier = session.scalar(sa.select(Referral).where(Referral.from_agency_id == sender_id,
                                                               Referral.idempotency_key == idempotency_key))
            if earlier is not None:
                if earlier.request_sha256 != fingerprint:
                    raise Invalid("this Idempotency-Key was used for a different request; use a new key",
                                  code="idempotency_key_reused")
                return earlier, False
        if which == "open_code":
            continue  # another open referral has this reference code: draw another
        if which == "referral":
            raise Conflict("a referral with this referral_id exists already; seal a new referral",
                           code="duplicate_referral")
        if which == "packet":
            raise packets.ReplayedPacket("this packet was submitted before; seal the referral again")
        raise Conflict("this referral or one of its packets was submitted at the same moment; "
                       "list your sent referrals before trying again", code="duplicate_referral")
    raise Conflict("could not find a free reference code; close old referrals or try again", code="codes_exhausted")


def _checked_packets(session: Session, sender_id: str, sub: Submission, settings: Settings):
    """The recipient and the two packets, each checked against its reader's public bundle (reads only)."""
    recipient = directory_cache.agency(session, sub.to)
    if recipient is None or not recipient.active:
        raise Invalid(f"no active agency {sub.to!r} in the directory", code="unknown_agency")
    if recipient.id == sender_id:
        raise Invalid("an agency cannot refer to itself", code="invalid_recipient")
    if recipient.kind == "committee":
        raise Invalid("committees coordinate and do not receive referrals; refer to a service agency",
                      code="invalid_recipient")
    sender_bundle = directory_cache.bundle(session, sender_id)
    bundles = {sender_id: sender_bundle, recipient.id: directory_cache.bundle(session, recipient.id)}
    checked: dict[str, tuple[bytes, packets.Packet]] = {}
    for wire in sub.packets:
        parsed = packets.parse_packet(wire, max_bytes=settings.packets_max_bytes)
        reader = parsed.header.to_agency
        if reader not in bundles:
            raise Invalid(f"a packet is addressed to {reader!r}; address one to {recipient.id!r} and one to "
                          f"{sender_id!r}", code="wrong_packet_reader")
        if reader in checked:
            raise Invalid(f"two packets are addressed to {reader!r}; address one to {recipient.id!r} and one to "
                          f"{sender_id!r}", code="wrong_packet_reader")
        packets.verify_submission(parsed, submitter=sender_id, sender=sender_bundle, recipient=bundles[reader],
                                  max_bytes=settings.packets_max_bytes)  # parsed once
        checked[reader] = (wire, parsed)
    packets.verify_referral_packets([p for _, p in checked.values()])
    return recipient, checked


_REFERRAL_COLUMNS = tuple(c.key for c in Referral.__table__.c)
_REFERRAL_MANAGER = sa.inspect(Referral).class_manager


def _new_referral(**values) -> Referral:
    """A new Referral with ``values`` in its dict, as the ORM's loading fills one: what the
    constructor gives (it sets each through its attribute; the model has no validators or
    attribute events), for the row :func:`_store` writes itself. Later sets are tracked as usual."""
    referral = _REFERRAL_MANAGER.new_instance()
    referral.__dict__.update(values)
    return referral


_REFERRAL, _EVENT, _PACKET = Referral.__table__, ReferralEvent.__table__, ReferralPacket.__table__


def _store(session: Session, principal: access.Principal, sub: Submission, recipient_id: str, checked: dict,
           policy: Policy, previous_id: str | None, *, now: dt.datetime, notifier: Notifier | None,
           idempotency_key: str | None, fingerprint: str | None) -> Referral:
    """Write the referral and its rows with step 0 fired: one InsertChain (hub.db), which is
    one statement on PostgreSQL and one INSERT per table on SQLite.

    Plain rows rather than the ORM's unit of work: the rows are new and nothing
    reads them back here. The returned referral is attached to the session as if
    it had been loaded.
    """
    sender_id = principal.agency_id
    referral_id = next(iter(checked.values()))[1].header.referral_id
    code = _random_code()
    referral = _new_referral(
        id=referral_id, code=code, open_code=code, from_agency_id=sender_id, to_agency_id=recipient_id,
        created_by=principal.display, officer_user_id=principal.user_id, urgency=sub.urgency, child=sub.child,
        needs=list(sub.needs), province=sub.province, status="sent", status_reason=None, outcome=None,
        policy=policy.name, ladder=policy.to_json(), step=-1, repeat=0, version=0, owner_user_id=None, owner=None,
        owned_at=None, previous_id=previous_id, created_at=now, acknowledged_at=None, decided_at=None,
        closed_at=None, updated_at=now, idempotency_key=idempotency_key,
        request_sha256=fingerprint if idempotency_key is not None else None,
    )
    start_clock(referral, "ack", now, policy)

    def store(chain: InsertChain) -> None:
        # Core rows, nothing for the ORM to flush or track; the notifier runs the chain.
        chain.add(_REFERRAL, {k: getattr(referral, k) for k in _REFERRAL_COLUMNS})
        chain.add(_EVENT, {"referral_id": referral_id, "state": "sent", "at": now, "actor_agency_id": sender_id,
                           "actor": principal.display})
        stored, entries = [], []
        for reader, (wire, parsed) in checked.items():
            digest = packets.packet_sha256(wire)
            stored.append(dict(referral_id=referral_id, packet_id=parsed.header.packet_id, reader_agency_id=reader,
                               sha256=digest, size=len(wire), wire=wire, created_at=now))
            entries.append(dict(at=now, actor=principal.display, action="packet.stored", referral_id=referral_id,
                                packet_sha256=digest, detail={"reader": reader, "size": len(wire)}))
        entries.append(dict(at=now, actor=principal.display, action="referral.created", referral_id=referral_id,
                            detail={"from": sender_id, "to": recipient_id, "policy": policy.name, "code": code}))
        chain.add(_PACKET, stored)
        chain.add(AuditEntry.__table__, audit_rows(entries))

    # Step 0 sets the ladder state on the referral before store() writes its row; its texts follow.
    (notifier or NullNotifier()).referral_created(session, referral, now, store)
    make_transient_to_detached(referral)  # as if loaded: clean, nothing to write on flush
    session.add(referral)
    return referral


def _violated(exc: sa.exc.IntegrityError) -> str:
    """Which uniqueness an INSERT of :func:`_store` broke: open_code, referral, packet, idempotency or other."""
    orig = exc.orig
    name = getattr(getattr(orig, "diag", None), "constraint_name", None) or ""  # PostgreSQL names it
    text = f"{name} {orig}"  # SQLite: "UNIQUE constraint failed: referral.open_code"
    if "open_code" in text:
        return "open_code"
    if "packet_id" in text:
        return "packet"
    if "idempotency" in text:
        return "idempotency"
    if "pk_referral" in text or "referral.id" in text:
        return "referral"
    return "other"


def _random_code() -> str:
    return "R-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(4))


def _locked(session: Session, referral_id: str) -> Referral | None:
    """The referral row, locked (``FOR UPDATE`` on PostgreSQL) and read fresh from the database.

    ``populate_existing`` matters: without it a referral already in the session (loaded
    unlocked a moment before) comes back as that stale copy, and a state check on it lets
    two answers both win. On SQLite the transaction holds the database's write lock.
    """
    return session.scalar(sa.select(Referral).where(Referral.id == referral_id).with_for_update()
                          .execution_options(populate_existing=True))


def get_for(session: Session, principal: access.Principal, referral_id: str, *, lock: bool = False) -> Referral:
    """The referral if the principal's agency sends or receives it; NotFound otherwise (no existence oracle)."""
    if not is_referral_id(referral_id):
        raise NotFound("no such referral")
    referral = _locked(session, referral_id) if lock else session.get(Referral, referral_id)
    if referral is None:
        raise NotFound("no such referral")
    access.require(principal, "referral.view", referral=referral)
    return referral


def coordinator_scope(session: Session, principal: access.Principal) -> tuple[bool, str | None]:
    """(national, province) of a coordinator: the province of their committee; none means national."""
    agency = session.get(Agency, principal.agency_id) if principal.agency_id else None
    province = agency.province if agency is not None else None
    return province is None, province


def in_coordinator_scope(stmt: sa.Select, national: bool, province: str | None) -> sa.Select:
    """Narrow a SELECT over referrals to a coordinator's scope: the province of the receiving agency."""
    if national:
        return stmt
    recipient_province = sa.select(Agency.province).where(Agency.id == Referral.to_agency_id).scalar_subquery()
    return stmt.where(recipient_province == province)


def view_for(session: Session, principal: access.Principal, referral_id: str) -> tuple[Referral, bool]:
    """A referral as its page shows it: (referral, is_party).

    The sender and recipient agencies see it whole (``is_party``); a coordinator sees the
    metadata of a referral in their scope; anyone else gets NotFound, whether it exists or not.
    """
    if access.allowed(principal, "escalations.view"):
        if not is_referral_id(referral_id):
            raise NotFound("no such referral")
        national, province = coordinator_scope(session, principal)
        referral = session.scalar(in_coordinator_scope(sa.select(Referral).where(Referral.id == referral_id),
                                                       national, province))
        if referral is None:
            raise NotFound("no such referral")
        return referral, False
    return get_for(session, principal, referral_id), True


def transition(session: Session, principal: access.Principal, referral_id: str, name: str, *, now: dt.datetime,
               reason: str | None = None, outcome: str | None = None, note: str | None = None,
               notifier: Notifier | None = None) -> Referral:
    """Move a referral along the lifecycle table; anything else is a 409.

    Every face calls this one function. It locks the referral row first and reads its
    state fresh, so of two answers at the same moment exactly one wins and the other gets
    the 409; the notifier then touches tokens and the outbox, always in that order
    (referral, tokens, outbox: ARCHITECTURE.md "Locks and races"). A deadlock or
    serialization failure is retried here a few times, then reported as 503.
    """
    return retry_transient(session, lambda: _transition(session, principal, referral_id, name, now=now,
                                                        reason=reason, outcome=outcome, note=note,
                                                        notifier=notifier))


def _transition(session: Session, principal: access.Principal, referral_id: str, name: str, *, now: dt.datetime,
                reason: str | None, outcome: str | None, note: str | None, notifier: Notifier | None) -> Referral:
    t = TRANSITIONS[name]
    referral = get_for(session, principal, referral_id, lock=True)
    action = {"sender": "referral.withdraw"}.get(t.side, "referral.acknowledge" if name == "acknowledge"
                                                 else "referral.decide")
    access.require(principal, action, referral=referral)
    if referral.status not in t.sources:
        raise AlreadyAnswered(referral, name, answered_by(session, referral))
    if t.needs == "reason":
        reason = (reason or "").strip()
        if not reason:
            raise BadInput(f"a reason is required to {name}", code="reason_required")
        if len(reason) > REASON_MAX:
            raise BadInput(f"the reason is longer than {REASON_MAX} characters", code="invalid_field")
        referral.status_reason = reason
    if t.needs == "outcome":
        if outcome not in OUTCOMES:
            raise BadInput(f"'outcome' must be one of: {', '.join(OUTCOMES)}", code="invalid_field")
        if note is not None and (not isinstance(note, str) or len(note) > REASON_MAX):
            raise BadInput(f"'note' must be text of at most {REASON_MAX} characters", code="invalid_field")
        referral.outcome = outcome
        referral.status_reason = note
    old = referral.status
    referral.status = t.target
    referral.version += 1
    referral.updated_at = now
    if t.target == "acknowledged":
        referral.acknowledged_at = now
    if t.target in ("accepted", "declined"):
        referral.decided_at = now
        if referral.acknowledged_at is None:
            referral.acknowledged_at = now
    if t.target in FINAL_STATES:
        referral.closed_at = now
        referral.open_code = None
    start_clock(referral, CLOCK_FOR_STATE.get(t.target), now)
    session.add(ReferralEvent(referral=referral, state=t.target, at=now, actor_agency_id=principal.agency_id,
                              actor=principal.display))
    audit(session, at=now, actor=principal.display, action=f"referral.{t.target}", referral_id=referral.id,
          detail={"from_state": old, "outcome": referral.outcome} if t.target == "closed" else {"from_state": old})
    session.flush()
    (notifier or NullNotifier()).referral_changed(session, referral, old, now, principal)
    return referral


class AlreadyAnswered(Conflict):
    """The referral is no longer in a state this action can start from: someone else answered first.

    Every face shows the same refusal: a 409 in the API, a reply in the contact's language
    by SMS, a page for a one-tap link. ``by`` is the agency whose answer moved it on.
    """

    code = "wrong_state"

    def __init__(self, referral: Referral, name: str, by: Agency | None):
        t = TRANSITIONS[name]
        who = f" by {by.id}" if by is not None and referral.status != "withdrawn" else ""
        super().__init__(f"{referral.code} was already {referral.status.replace('_', ' ')}{who}; it cannot be "
                         f"{_PAST[name]} now (allowed from: {', '.join(t.sources)})")
        self.referral = referral
        self.state = referral.status
        self.by = by


_PAST = {"acknowledge": "acknowledged", "accept": "accepted", "decline": "declined", "start_care": "put in care",
         "close": "closed", "fail": "marked failed", "withdraw": "withdrawn"}


def answered_by(session: Session, referral: Referral) -> Agency | None:
    """The agency whose answer took the referral out of ``sent``: the recipient, or a sender who withdrew."""
    agency_id = session.scalar(
        sa.select(ReferralEvent.actor_agency_id)
        .where(ReferralEvent.referral_id == referral.id, ReferralEvent.state != "sent")
        .order_by(ReferralEvent.id).limit(1))
    return session.get(Agency, agency_id) if agency_id else None


@dataclass(frozen=True)
class TapResult:
    """What a one-tap POST did: ``state`` is "acknowledged", "taken" (someone answered first) or
    "not_allowed"; ``referral`` and ``contact`` are what the page shows."""

    state: str
    referral: Referral
    contact: Any
    by: Agency | None = None


def _expired(token, now: dt.datetime | None, lifetime: dt.timedelta | None) -> bool:
    """A one-tap link older than ``[sms] onetap_lifetime`` acts on nothing (``tapped`` says "expired")."""
    return now is not None and lifetime is not None and now >= token.created_at + lifetime


def tapped(session: Session, raw_token: str, *, now: dt.datetime | None = None,
           lifetime: dt.timedelta | None = None) -> TapResult | None:
    """What a one-tap link's GET shows, changing nothing.

    None for a link the hub never sent (or to a contact no longer active). A link that
    was sent but whose referral has moved on (answered through any face, which also
    voids the link) shows who answered: the person holding it was texted about it.
    A link older than ``lifetime`` (at ``now``) is "expired".
    """
    token = notify.find_ack_token(session, raw_token, usable=False)
    if token is None:
        return None
    referral = session.get(Referral, token.referral_id)
    contact = session.get(Contact, token.contact_id)
    if referral is None or contact is None or not contact.active:
        return None
    if _expired(token, now, lifetime) and not token.used_at:
        return TapResult("expired", referral, contact)
    if token.used_at or token.voided_at or referral.status != "sent" or referral.clock != token.clock:
        return TapResult("taken", referral, contact, answered_by(session, referral))
    return TapResult("open", referral, contact)


def acknowledge_by_token(session: Session, raw_token: str, *, now: dt.datetime,
                         notifier: Notifier | None = None, lifetime: dt.timedelta | None = None
                         ) -> TapResult | None:
    """A one-tap link's POST: acknowledge as the token's contact, once; None for an unusable link.

    Locks in the hub's one order: the referral (fresh), then the token, then (through the
    notifier) the other tokens and the outbox.
    """
    return retry_transient(session, lambda: _acknowledge_by_token(session, raw_token, now=now, notifier=notifier,
                                                                   lifetime=lifetime))


def _acknowledge_by_token(session: Session, raw_token: str, *, now: dt.datetime,
                          notifier: Notifier | None, lifetime: dt.timedelta | None = None) -> TapResult | None:
    first = notify.find_ack_token(session, raw_token, usable=False)
    if first is None:
        return None
    if _expired(first, now, lifetime) and not first.used_at:
        contact = session.get(Contact, first.contact_id)
        referral = session.get(Referral, first.referral_id)
        if referral is None or contact is None or not contact.active:
            return None
        return TapResult("expired", referral, contact)
    referral = _locked(session, first.referral_id)
    token = notify.find_ack_token(session, raw_token, lock=True)
    contact = session.get(Contact, first.contact_id)
    if referral is None or contact is None or not contact.active:
        return None
    if token is None or referral.status != "sent" or referral.clock != token.clock:
        # Someone was quicker (a colleague's reply, the web, another tap): change nothing.
        return TapResult("taken", referral, contact, answered_by(session, referral))
    principal = accounts.contact_principal(contact)
    try:
        with session.begin_nested():
            _transition(session, principal, referral.id, "acknowledge", now=now, reason=None, outcome=None,
                        note=None, notifier=notifier)
    except AlreadyAnswered as exc:
        return TapResult("taken", referral, contact, exc.by)
    except (Forbidden, NotFound):
        return TapResult("not_allowed", referral, contact)
    notify.use_ack_token(session, token, now)
    audit(session, at=now, actor=principal.display, action="onetap.used", referral_id=referral.id,
          detail={"clock": token.clock})
    return TapResult("acknowledged", referral, contact)


@dataclass(frozen=True)
class SmsAnswer:
    """What an SMS command about a referral came to. ``outcome``: "done", "already" (the referral is past
    this action; ``state`` and ``by`` say how), "unknown_code", "not_allowed" or "invalid"."""

    outcome: str
    contact: Any = None
    referral: Referral | None = None
    state: str | None = None
    by: Agency | None = None


def answer_by_code(session: Session, contacts: list, code: str, name: str, *, now: dt.datetime,
                   reason: str | None = None, notifier: Notifier | None = None) -> SmsAnswer:
    """An SMS command (ACK, ACCEPT, DECLINE) from a phone that is these contacts, about reference ``code``.

    Only a referral addressed to one of the contacts' agencies is found; anything else is
    "unknown_code", so a reply never tells whether a referral exists.
    """
    by_agency = {c.agency_id: c for c in contacts}
    # Codes are unique among open referrals; a closed one may share its code with an older one.
    referral = session.scalar(
        sa.select(Referral)
        .where(Referral.code == code, Referral.to_agency_id.in_(by_agency))
        .order_by(Referral.open_code.is_(None), Referral.created_at.desc())
        .limit(1))
    if referral is None:
        return SmsAnswer("unknown_code")
    contact = by_agency[referral.to_agency_id]
    try:
        with session.begin_nested():  # a refused command leaves nothing behind
            done = transition(session, accounts.contact_principal(contact), referral.id, name, now=now,
                              reason=reason, notifier=notifier)
    except AlreadyAnswered as exc:
        return SmsAnswer("already", contact, exc.referral, exc.state, exc.by)
    except (Forbidden, NotFound):
        return SmsAnswer("not_allowed", contact, referral)
    except (BadInput, Invalid):
        return SmsAnswer("invalid", contact, referral)
    return SmsAnswer("done", contact, done)


def list_for(session: Session, principal: access.Principal, *, box: str, status: str | None = None,
             limit: int = 50, offset: int = 0, cursor: str | None = None) -> list[Referral]:
    """The agency's inbox or sent referrals, newest first (ties by id), with their histories.

    ``cursor`` (from :func:`cursor_after` of the last row of the previous page) starts
    the page just after that row: the index ``(to_agency_id | from_agency_id,
    created_at, id)`` is entered there, so every page costs the same however deep it
    is and however many other agencies' referrals the table holds. ``offset`` still
    works, and costs more the deeper it goes.
    """
    if box not in ("inbox", "sent"):
        raise BadInput("'box' must be \"inbox\" or \"sent\"", code="invalid_field")
    if status is not None and status not in set(t.target for t in TRANSITIONS.values()) | {"sent"}:
        raise BadInput("unknown 'status'", code="invalid_field")
    column = Referral.to_agency_id if box == "inbox" else Referral.from_agency_id
    stmt = sa.select(Referral).where(column == principal.agency_id)
    if status:
        stmt = stmt.where(Referral.status == status)
    if cursor is not None:
        at, last_id = _parse_cursor(cursor)
        stmt = stmt.where(sa.tuple_(Referral.created_at, Referral.id) < sa.tuple_(
            sa.literal(at, UTCDateTime()), sa.literal(last_id, sa.String())))
    # The history goes with every row of the list: load it in one query, not one per referral.
    stmt = (stmt.options(selectinload(Referral.events))
            .order_by(Referral.created_at.desc(), Referral.id.desc()).limit(limit).offset(offset))
    return list(session.scalars(stmt))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def cursor_after(referral: Referral) -> str:
    """The ``cursor`` that lists what comes after ``referral`` (opaque to clients: its time and id)."""
    micros = (referral.created_at - _EPOCH) // dt.timedelta(microseconds=1)
    return packets.b64u_encode(f"{micros}.{referral.id}".encode())


def _parse_cursor(cursor: Any) -> tuple[dt.datetime, str]:
    bad = BadInput("'cursor' must be the next_cursor of an earlier page", code="invalid_field")
    if not isinstance(cursor, str) or len(cursor) > 100:
        raise bad
    try:
        micros, _, referral_id = packets.b64u_decode(cursor).decode("ascii").partition(".")
        at = _EPOCH + dt.timedelta(microseconds=int(micros))
    except (ValueError, OverflowError, UnicodeDecodeError, packets.PacketError):
        raise bad from None
    if not is_referral_id(referral_id):
        raise bad
    return at, referral_id


def packet_for(session: Session, principal: access.Principal, referral: Referral, *, now: dt.datetime) -> ReferralPacket | None:
    """The packet addressed to the caller's agency; fetching it is an audit entry."""
    pkt = session.scalar(sa.select(ReferralPacket).where(ReferralPacket.referral_id == referral.id,
                                                         ReferralPacket.reader_agency_id == principal.agency_id))
    if pkt is not None and pkt.wire is not None:
        audit(session, at=now, actor=principal.display, action="packet.fetched", referral_id=referral.id,
              packet_sha256=pkt.sha256)
    return pkt


def _time(value: dt.datetime | None) -> str | None:
    return rfc3339(value) if value else None


def metadata(referral: Referral) -> dict[str, Any]:
    """What any party with need-to-know may see: routing metadata, never a name, birth date or story."""
    return {
        "id": referral.id,
        "code": referral.code,
        "from": referral.from_agency_id,
        "to": referral.to_agency_id,
        "urgency": referral.urgency,
        "child": referral.child,
        "needs": list(referral.needs),
        "province": referral.province,
        "status": referral.status,
        "policy": referral.policy,
        "clock": referral.clock,
        "step": referral.step,
        "next_step_at": _time(referral.next_step_at),
        "created_at": _time(referral.created_at),
        "acknowledged_at": _time(referral.acknowledged_at),
        "decided_at": _time(referral.decided_at),
        "closed_at": _time(referral.closed_at),
        "previous_id": referral.previous_id,
        "history": [{"state": e.state, "at": _time(e.at), "actor_agency": e.actor_agency_id} for e in referral.events],
    }


def party_view(referral: Referral) -> dict[str, Any]:
    """Metadata plus what only the two agencies see: the decline/withdraw reason and the outcome."""
    out = metadata(referral)
    out["reason"] = referral.status_reason
    out["outcome"] = referral.outcome
    return out



# --- added for the web pages (issue 16): the ordered, paginated boxes and member custody --------
# Sealing and opening here happen only with a key ring that a member's session unwrapped
# (PROTOCOL.md section 1): the hub holds no key ring of its own.

def box_page(session: Session, principal: access.Principal, *, box: str, limit: int = 50,
             offset: int = 0) -> tuple[list[Referral], bool]:
    """One page of a box: open referrals before closed ones; among open ones urgent (or child) first, then
    the earliest deadline (most overdue) first; closed ones most recently closed first. Returns (rows, more).

    The cost follows the page and the open referrals, not the box's history: closed referrals are read
    newest first from an index (``ix_referral_*_order``) and only the page's rows are loaded.
    """
    if box not in ("inbox", "sent"):
        raise BadInput("'box' must be \"inbox\" or \"sent\"", code="invalid_field")
    if principal.agency_id is None:
        return [], False
    column = Referral.to_agency_id if box == "inbox" else Referral.from_agency_id
    mine = column == principal.agency_id
    urgent = sa.or_(Referral.urgency == "urgent", Referral.child.is_(True))
    shown = load_only(Referral.id, Referral.code, Referral.from_agency_id, Referral.to_agency_id,
                      Referral.urgency, Referral.child, Referral.needs, Referral.status, Referral.clock,
                      Referral.deadline_at, Referral.next_step_at, Referral.created_at, Referral.updated_at,
                      Referral.closed_at)
    rows: list[Referral] = []
    # The first page needs no count: the open ones, then (if they do not fill it) the newest closed ones.
    n_open = 0 if offset == 0 else (session.scalar(sa.select(sa.func.count()).select_from(Referral)
                                                   .where(mine, Referral.closed_at.is_(None))) or 0)
    if offset == 0 or offset < n_open:
        rows += session.scalars(
            sa.select(Referral).options(shown).where(mine, Referral.closed_at.is_(None))
            .order_by(sa.case((urgent, 0), else_=1), Referral.deadline_at.asc().nulls_last(),
                      Referral.updated_at.desc(), Referral.id)
            .limit(limit + 1).offset(offset))
        if offset == 0:
            n_open = len(rows)
    if len(rows) <= limit:
        rows += session.scalars(
            sa.select(Referral).options(shown).where(mine, Referral.closed_at.is_not(None))
            .order_by(Referral.closed_at.desc(), Referral.id)
            .limit(limit + 1 - len(rows)).offset(max(0, offset - n_open)))
    return rows[:limit], len(rows) > limit


def seal_for_member(session: Session, principal: access.Principal, ring: packets.KeyRing | None, *, to: str,
                    body: bytes, referral_id: str, max_bytes: int) -> tuple[bytes, bytes]:
    """Seal one body to the recipient and to the sender's own archive, with the member's unlocked key ring."""
    access.require(principal, "referral.create")
    if ring is None or ring.agency != principal.agency_id:
        raise Invalid("your session holds no key ring of your agency; sign out and in again, or ask your agency "
                      "admin for a new invitation", code="no_keyring")
    recipient = session.get(Agency, to)
    if recipient is None or not recipient.active:
        raise Invalid(f"no active agency {to!r} in the directory", code="unknown_agency")
    wires = tuple(packets.seal(body, sender=ring, recipient=directory_cache.bundle(session, reader), referral_id=referral_id)
                  for reader in (recipient.id, principal.agency_id))
    if any(len(w) > max_bytes for w in wires):
        raise BadInput("the referral with its photos is larger than the hub accepts; attach fewer photos",
                       code="packet_too_large")
    return wires


def open_for_member(session: Session, principal: access.Principal, ring: packets.KeyRing | None,
                    referral: Referral, *, now: dt.datetime, max_bytes: int) -> dict | None:
    """The body of the packet addressed to the member's agency, opened with their session's key ring.

    Fetching the packet is an audit entry (``packet_for``). None when the packet was shredded or the
    session holds no key ring; a packet that fails a check of PROTOCOL.md section 2 raises PacketError.
    """
    pkt = packet_for(session, principal, referral, now=now)
    if pkt is None or pkt.wire is None or ring is None or ring.agency != principal.agency_id:
        return None
    opened = packets.open_packet(pkt.wire, reader=ring, sender=directory_cache.bundle(session, referral.from_agency_id),
                                 seen=packets.MemorySeenPacketIds(), max_bytes=max_bytes)
    body = json.loads(opened.body)
    return body if isinstance(body, dict) else None
