"""The SMS outbox, its drain, one-tap acknowledgement tokens and coordinator alerts.

A message is written to the outbox in the same transaction as the change that
causes it, so a rolled-back change sends nothing and a committed one is never
lost. ``drain`` hands due messages to the gateway outside any transaction:

1. claim: in a short transaction, take due rows (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL, so parallel drains take different rows), mark them "sending"
   with ``claimed_at`` and one more attempt, commit;
2. send: call the gateway for each, holding no lock and no transaction;
3. record: one short transaction per message: "sent" with the provider's id,
   back to "queued" with exponential backoff on a retryable error, or "failed"
   (non-retryable, or the last attempt) with an alert and the escalation hook.

A row left "sending" (the process died between 1 and 3) is reclaimed by a
later drain once its lease (:data:`LEASE`) has passed. If the process died
after the gateway took the message and before step 3 committed, the reclaimed
message goes out a second time: Twilio's Messages API has no idempotency key.
That is the only way a text is sent twice; for a referral alert, twice is
better than never. Nothing ever deletes a message.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import random
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from hub.audit.service import record as audit
from hub.db import all_models, skip_locked
from hub.errors import NotFound
from hub.notify.gateways import GatewayError, SmsGateway
from hub.notify.models import AckToken, Alert, OutboxMessage
from hub.notify.sms import render_sms

log = logging.getLogger("hub.notify")

MAX_ATTEMPTS = 8
BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_CAP = dt.timedelta(minutes=30)
BACKOFF_JITTER = 0.2  # +-20 %
LEASE = dt.timedelta(minutes=5)

# Outbox states in the order a message moves through them. The three final
# states share the top rank: whichever arrives first stays, except that
# failed/undelivered replace "sent" and nothing replaces "delivered".
_RANK = {"queued": 0, "sending": 1, "sent": 2, "failed": 3, "undelivered": 3, "delivered": 3}
FINAL = frozenset({"delivered", "failed", "undelivered"})

# Twilio's MessageStatus values, as outbox states (None: not a change worth recording).
PROVIDER_STATUS = {
    "accepted": "sent", "scheduled": "sent", "queued": "sent", "sending": "sent", "sent": "sent",
    "delivered": "delivered", "read": "delivered",
    "undelivered": "undelivered", "failed": "failed", "canceled": "failed",
}


# -- enqueue -----------------------------------------------------------------


def _insert(session: Session, model: type, values: dict[str, Any], *returning: Any):
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING ..., on SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the hub runs on these two only
        raise RuntimeError(f"the outbox needs SQLite or PostgreSQL, not {dialect}")
    stmt = insert(model).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(*returning)
    return session.execute(stmt).scalar_one_or_none()


def enqueue(session: Session, *, dedupe_key: str, to_phone: str, lang: str, template: str, values: dict,
            now: dt.datetime, settings, contact_id: int | None = None, referral_id: str | None = None,
            clock: str | None = None, step: int | None = None, repeat: int | None = None) -> OutboxMessage | None:
    """Queue one SMS in the caller's transaction; None if ``dedupe_key`` was queued before.

    The text is rendered now (``templates/sms/<template>.<lang>.txt``), so a
    template error shows where the message is caused, not in the drain. Two
    transactions queueing the same key at once store one row: the second
    waits for the first and then stores nothing.
    """
    body = render_sms(template, lang, settings.templates_dir / "sms", **values)
    message_id = _insert(session, OutboxMessage, dict(
        dedupe_key=dedupe_key, to_phone=to_phone, contact_id=contact_id, lang=lang, template=template, body=body,
        referral_id=referral_id, clock=clock, step=step, repeat=repeat, status="queued", attempts=0,
        next_attempt_at=None, claimed_at=None, provider_id=None, callback_nonce=secrets.token_urlsafe(24),
        last_error=None, created_at=now, sent_at=None, updated_at=now,
    ), OutboxMessage.id)
    if message_id is None:
        return None
    return session.get(OutboxMessage, message_id)


# -- one-tap tokens --------------------------------------------------------------


def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("ascii", "replace")).hexdigest()


def issue_ack_token(session: Session, *, referral_id: str, clock: str, contact_id: int, now: dt.datetime) -> str:
    """A new one-tap token for this referral, clock and contact; only its SHA-256 is stored."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    session.add(AckToken(token_hash=_token_hash(raw), referral_id=referral_id, clock=clock, contact_id=contact_id,
                         created_at=now))
    session.flush()
    return raw


def onetap_link(settings, token: str) -> str:
    return f"{settings.public_base_url}/a/{token}"


def find_ack_token(session: Session, raw: str, *, lock: bool = False) -> AckToken | None:
    """The token if it exists and is neither used nor void; None for anything else."""
    if not raw or len(raw) > 100:
        return None
    stmt = sa.select(AckToken).where(AckToken.token_hash == _token_hash(raw), AckToken.used_at.is_(None),
                                     AckToken.voided_at.is_(None))
    if lock:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def use_ack_token(session: Session, token: AckToken, now: dt.datetime) -> bool:
    """Mark the token used; False if another request used or voided it first."""
    result = session.execute(
        sa.update(AckToken)
        .where(AckToken.token_hash == token.token_hash, AckToken.used_at.is_(None), AckToken.voided_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        token.used_at = now
        return True
    return False


def void_ack_tokens(session: Session, referral_id: str, now: dt.datetime) -> int:
    """Void every unused token of the referral (its clock stopped); returns how many."""
    result = session.execute(
        sa.update(AckToken)
        .where(AckToken.referral_id == referral_id, AckToken.used_at.is_(None), AckToken.voided_at.is_(None))
        .values(voided_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


# -- alerts ----------------------------------------------------------------------


def raise_alert(session: Session, *, kind: str, referral_id: str | None, province: str | None, dedupe_key: str,
                now: dt.datetime) -> Alert | None:
    """Raise an alert for coordinators once per ``dedupe_key``; None if it was raised before."""
    alert_id = _insert(session, Alert, dict(kind=kind, referral_id=referral_id, province=province,
                                            dedupe_key=dedupe_key, raised_at=now, resolved_at=None), Alert.id)
    if alert_id is None:
        return None
    audit(session, at=now, actor="hub", action="alert.raised", referral_id=referral_id, detail={"kind": kind})
    return session.get(Alert, alert_id)


def _referral_province(session: Session, referral_id: str | None) -> str | None:
    if referral_id is None:
        return None
    from hub.referrals.models import Referral  # the table only; notify does not use the lifecycle

    return session.scalar(sa.select(Referral.province).where(Referral.id == referral_id))


def _message_failed(session: Session, message: OutboxMessage, now: dt.datetime) -> None:
    """A message ended failed or undelivered: tell coordinators and let the ladder move on."""
    raise_alert(session, kind="sms_failed", referral_id=message.referral_id,
                province=_referral_province(session, message.referral_id),
                dedupe_key=f"sms_failed:{message.id}", now=now)
    try:
        # Imported here: escalation imports notify, never the other way round at module level.
        from hub.escalation.service import delivery_failed
    except ImportError:
        # The escalation engine has no delivery_failed yet: the failed row and the
        # alert are the record it will find; the sweep's own deadline still escalates.
        log.warning("sms failed message=%s; escalation has no delivery_failed hook", message.id)
        return
    delivery_failed(session, message, now)


# -- status changes ----------------------------------------------------------------


def advance(message: OutboxMessage, status: str, now: dt.datetime) -> bool:
    """Move ``message`` to ``status`` if that is forward (see :data:`_RANK`); True if it moved."""
    if message.status in FINAL or _RANK[status] <= _RANK[message.status]:
        return False
    message.status = status
    message.updated_at = now
    return True


def record_status(session: Session, nonce: str, provider_status: str, now: dt.datetime,
                  error_code: str | None = None) -> OutboxMessage:
    """A delivery report for the message with this callback nonce. NotFound for an unknown nonce."""
    stmt = sa.select(OutboxMessage).where(OutboxMessage.callback_nonce == nonce)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    message = session.scalar(stmt) if nonce and len(nonce) <= 64 else None
    if message is None:
        raise NotFound("no message has this status callback address")
    status = PROVIDER_STATUS.get((provider_status or "").lower())
    if status is not None and advance(message, status, now):
        if status in ("failed", "undelivered"):
            message.last_error = f"provider reported {status}" + (f" (error {error_code[:10]})" if error_code else "")
            log.warning("sms %s message=%s error_code=%s", status, message.id, error_code)
            _message_failed(session, message, now)
        session.flush()
    return message


# -- drain -------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainReport:
    """What one drain did: messages sent, put back for a later try, failed for good, taken over from a dead drain."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    reclaimed: int = 0

    def __bool__(self) -> bool:
        """True if this drain took any message (so another may find more)."""
        return bool(self.sent or self.retried or self.failed)


@dataclass(frozen=True)
class _Claim:
    id: int
    to: str
    body: str
    nonce: str
    attempts: int
    claimed_at: dt.datetime


def backoff(attempts: int, rng: random.Random | None = None) -> dt.timedelta:
    """Wait before attempt ``attempts + 1``: 30 s, 1 min, 2 min, ... capped at 30 min, each +-20 %."""
    base = min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)
    factor = (rng or random).uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)
    return base * factor


def _claim(session_factory: sessionmaker[Session], now: dt.datetime, limit: int) -> tuple[list[_Claim], int]:
    due = sa.or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now)
    stuck = sa.and_(OutboxMessage.status == "sending",
                    sa.or_(OutboxMessage.claimed_at.is_(None), OutboxMessage.claimed_at <= now - LEASE))
    with session_factory() as session, session.begin():
        stmt = (sa.select(OutboxMessage)
                .where(sa.or_(sa.and_(OutboxMessage.status == "queued", due), stuck))
                .order_by(OutboxMessage.id).limit(limit))
        rows = list(session.scalars(skip_locked(stmt, session)))
        claims, reclaimed = [], 0
        for row in rows:
            if row.status == "sending":
                reclaimed += 1
                log.warning("sms reclaimed message=%s: a drain stopped mid-send; it may go out twice", row.id)
            row.status = "sending"
            row.attempts += 1
            row.claimed_at = now
            row.updated_at = now
            claims.append(_Claim(row.id, row.to_phone, row.body, row.callback_nonce, row.attempts, now))
    return claims, reclaimed


def _mine(session: Session, claim: _Claim) -> OutboxMessage | None:
    """The claimed row, unless another drain reclaimed it meanwhile (then its result stands)."""
    stmt = sa.select(OutboxMessage).where(OutboxMessage.id == claim.id, OutboxMessage.attempts == claim.attempts)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


# The gateway took the message: one UPDATE, fenced on our claim (attempts), no SELECT first.
# A status callback may have beaten us to it: then its (later) status stays.
_RECORD_SENT = (
    sa.update(OutboxMessage)
    .where(OutboxMessage.id == sa.bindparam("claim_id"), OutboxMessage.attempts == sa.bindparam("claim_attempts"))
    .values(status=sa.case((OutboxMessage.status.in_(("queued", "sending")), "sent"), else_=OutboxMessage.status),
            provider_id=sa.bindparam("provider_id"), sent_at=sa.bindparam("now"), last_error=None,
            updated_at=sa.bindparam("now"))
)


def _record_sent(engine: sa.Engine, claim: _Claim, provider_id: str, now: dt.datetime) -> bool:
    with engine.begin() as conn:
        result = conn.execute(_RECORD_SENT, {"claim_id": claim.id, "claim_attempts": claim.attempts,
                                             "provider_id": provider_id, "now": now})
    return result.rowcount == 1


def drain(session_factory: sessionmaker[Session], gateway: SmsGateway, now: dt.datetime, *, settings,
          limit: int = 100) -> DrainReport:
    """Hand up to ``limit`` due messages to ``gateway``; see the module docstring for the guarantees."""
    all_models()  # a bare `hub sms drain` has imported no other domain: the foreign keys need their tables
    claims, reclaimed = _claim(session_factory, now, limit)
    if not claims:
        return DrainReport(reclaimed=reclaimed)
    with session_factory() as session:
        engine = session.get_bind()
    callbacks = settings.sms.status_callbacks and getattr(gateway, "name", None) == "twilio"
    sent = retried = failed = 0
    for claim in claims:
        callback = f"{settings.public_base_url}/webhooks/twilio/status/{claim.nonce}" if callbacks else None
        try:
            result = gateway.send(to=claim.to, body=claim.body, status_callback=callback)
            error: GatewayError | None = None
        except GatewayError as exc:
            result, error = None, exc
        except Exception as exc:  # a gateway bug: keep the message and try again later
            log.exception("sms gateway raised %s for message=%s", type(exc).__name__, claim.id)
            result, error = None, GatewayError(f"the gateway failed unexpectedly ({type(exc).__name__})", True)

        if error is None:
            sent += _record_sent(engine, claim, result.provider_id, now)
            continue
        with session_factory() as session, session.begin():
            message = _mine(session, claim)
            if message is None or message.status != "sending":
                # Reclaimed by another drain, or a delivery report came in: the provider took it
                # after all (a timeout after Twilio had the message); trying again would send it twice.
                continue
            if error.retryable and claim.attempts < MAX_ATTEMPTS:
                message.status = "queued"
                message.next_attempt_at = now + backoff(claim.attempts)
                message.last_error = error.message[:200]
                message.updated_at = now
                retried += 1
                log.info("sms retry message=%s attempt=%d next=%s", claim.id, claim.attempts,
                         message.next_attempt_at.isoformat())
            else:
                message.status = "failed"
                message.last_error = error.message[:200]
                message.updated_at = now
                failed += 1
                log.warning("sms failed message=%s attempts=%d retryable=%s", claim.id, claim.attempts,
                            error.retryable)
                session.flush()
                _message_failed(session, message, now)
    return DrainReport(sent=sent, retried=retried, failed=failed, reclaimed=reclaimed)


def drain_all(session_factory: sessionmaker[Session], gateway: SmsGateway, now: dt.datetime, *, settings,
              limit: int = 100) -> DrainReport:
    """Drain until nothing is due at ``now``; the sum of the reports."""
    total = DrainReport()
    while True:
        report = drain(session_factory, gateway, now, settings=settings, limit=limit)
        total = DrainReport(*(a + b for a, b in zip(
            (total.sent, total.retried, total.failed, total.reclaimed),
            (report.sent, report.retried, report.failed, report.reclaimed))))
        if not report:
            return total
