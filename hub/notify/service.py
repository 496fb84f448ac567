"""The SMS outbox, its drain, one-tap acknowledgement tokens and coordinator alerts.

A message is written to the outbox in the same transaction as the change that
causes it, so a rolled-back change sends nothing and a committed one is never
lost. ``drain`` hands due messages to the gateway outside any transaction,
up to ``[sms] concurrency`` at a time:

1. claim: whenever a send slot is free, in a short transaction, take as many
   due rows as there are free slots (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
   so parallel drains take different rows), mark them "sending" with
   ``claimed_at`` and one more attempt, commit; so a drain never holds a
   claim it is not sending;
2. send: each claimed message on its own thread, holding no lock and no
   transaction; the gateway gives up after ``[sms] send_timeout`` to connect
   and again for the answer;
3. record: one short transaction per message, in the drain's thread: "sent"
   with the provider's id, back to "queued" with exponential backoff on a
   retryable error, or "failed" (non-retryable, or the last attempt) with an
   alert and the escalation hook.

A row left "sending" (the process died between 1 and 3) is reclaimed by a
later drain once its lease (:func:`lease`: twice the send timeout plus
:data:`LEASE_MARGIN`) has passed: a killed drain strands at most
``concurrency`` messages, for at most the lease plus one tick. If the process
died after the gateway took a message and before step 3 committed, the
reclaimed message goes out a second time: Twilio's Messages API has no
idempotency key. That is the only way a text is sent twice, at most the
messages in flight at the kill; for a referral alert, twice is better than
never. A drain told to stop (``stop``) claims nothing more and records what
it is sending before it returns. Nothing ever deletes a message.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import random
import secrets
import threading
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from hub.audit.service import record as audit
from hub.db import InsertChain, UTCDateTime
from hub.errors import Forbidden, NotFound, log_failure
from hub.logs import redact
from hub.notify.gateways import GatewayError, SmsGateway
from hub.notify.models import AckToken, Alert, OutboxMessage, WebhookSeen
from hub.notify.sms import render_sms

log = logging.getLogger("hub.notify")

MAX_ATTEMPTS = 8
BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_CAP = dt.timedelta(minutes=30)
BACKOFF_JITTER = 0.2  # +-20 %
LEASE_MARGIN = dt.timedelta(seconds=5)

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

_OUTBOX = OutboxMessage.__table__
_ACK = AckToken.__table__
_ALERT = Alert.__table__


# The dialects' INSERT ... ON CONFLICT (dedupe_key) DO NOTHING: SQLAlchemy 2.1 gives it a cache key, so
# each statement below compiles once per engine.
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _dedupe_insert(dialect: str, table: sa.Table) -> sa.Insert:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, every column a bind parameter.

    Built once per dialect at import and compiled once (see above); a list of
    parameter sets runs as one executemany (batched multi-row VALUES).
    """
    values = {c.name: sa.bindparam(c.name) for c in table.c if c.name != "id"}  # typed as the column when compiled
    return (_INSERTS[dialect](table).values(values).on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(table.c.id))


_INSERT_OUTBOX = {dialect: _dedupe_insert(dialect, _OUTBOX) for dialect in _INSERTS}
_INSERT_ALERT = {dialect: _dedupe_insert(dialect, _ALERT) for dialect in _INSERTS}
_INSERT_ACK = sa.insert(_ACK).values({c.name: sa.bindparam(c.name) for c in _ACK.c
                                      if c.name not in ("used_at", "voided_at")})


def _unnest_insert(table: sa.Table, varying: dict[str, type], constant: dict[str, Any]) -> postgresql.Insert:
    """PostgreSQL, many rows: ``INSERT ... SELECT * FROM unnest(:a_col::type[], ...)``.

    One short statement and one parameter set (an array per varying column) for
    any number of rows: nothing per row to compile, render or parse, and the row
    values in the order given. ``created_at`` and the like come from ``constant``. The arrays are
    TEXT[], not VARCHAR(n)[]: a cast to VARCHAR(n) would cut a long value silently, the column refuses it.
    """
    rows = sa.func.unnest(*[sa.bindparam(f"a_{n}", type_=postgresql.ARRAY(t)) for n, t in varying.items()]) \
        .table_valued(*[sa.column(n, t) for n, t in varying.items()]).render_derived()
    select = sa.select(*[rows.c[n] for n in varying], *constant.values())
    return postgresql.insert(table).from_select([*varying, *constant], select)


_NOW = sa.bindparam("now", type_=UTCDateTime())
_OUTBOX_VARYING = {"dedupe_key": sa.Text, "to_phone": sa.Text, "contact_id": sa.Integer, "lang": sa.Text,
                   "template": sa.Text, "body": sa.Text, "referral_id": sa.Text, "clock": sa.Text,
                   "step": sa.Integer, "repeat": sa.Integer, "callback_nonce": sa.Text}
_INSERT_OUTBOX_PG_MANY = _unnest_insert(_OUTBOX, _OUTBOX_VARYING, {
    "status": sa.literal("queued", sa.String), "attempts": sa.literal(0, sa.Integer), "created_at": _NOW,
    "updated_at": _NOW,
}).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(_OUTBOX.c.id)
_ACK_VARYING = {"token_hash": sa.Text, "referral_id": sa.Text, "clock": sa.Text, "contact_id": sa.Integer}
_INSERT_ACK_PG_MANY = _unnest_insert(_ACK, _ACK_VARYING, {"created_at": _NOW})


def _connection(session: Session) -> sa.Connection:
    """The session's connection, after flushing its pending changes (as an ORM statement would):
    a text or token may reference the referral the same transaction has just created."""
    if session.autoflush:
        session.flush()
    return session.connection()


def _statement(session: Session, statements: dict[str, sa.Insert]) -> sa.Insert:
    dialect = session.get_bind().dialect.name
    try:
        return statements[dialect]
    except KeyError:  # pragma: no cover - the hub runs on these two only
        raise RuntimeError(f"the outbox needs SQLite or PostgreSQL, not {dialect}") from None


def _attach(session: Session, model: type, row_id: int, values: dict[str, Any]):
    """The ORM object of a row this transaction has just inserted with ``values``, without reading it back."""
    key = session.identity_key(model, row_id)
    existing = session.identity_map.get(key)
    if existing is not None:  # pragma: no cover - an id reused after a rolled-back savepoint
        session.refresh(existing)
        return existing
    obj = model(id=row_id, **values)
    make_transient_to_detached(obj)  # as if loaded: clean, nothing to write on flush
    session.add(obj)
    return obj


def _message_params(row: dict, now: dt.datetime, templates: Path) -> dict[str, Any]:
    """One outbox row's column values from an :func:`enqueue_many` row; renders the text."""
    template, lang = row["template"], row["lang"]
    return {
        "dedupe_key": row["dedupe_key"], "to_phone": row["to_phone"], "contact_id": row.get("contact_id"),
        "lang": lang, "template": template, "body": render_sms(template, lang, templates, **row.get("values", {})),
        "referral_id": row.get("referral_id"), "clock": row.get("clock"), "step": row.get("step"),
        "repeat": row.get("repeat"), "status": "queued", "attempts": 0, "next_attempt_at": None,
        "claimed_at": None, "provider_id": None, "callback_nonce": secrets.token_urlsafe(24), "last_error": None,
        "created_at": now, "sent_at": None, "updated_at": now,
    }


def enqueue(session: Session, *, dedupe_key: str, to_phone: str, lang: str, template: str, values: dict,
            now: dt.datetime, settings, contact_id: int | None = None, referral_id: str | None = None,
            clock: str | None = None, step: int | None = None, repeat: int | None = None) -> OutboxMessage | None:
    """Queue one SMS in the caller's transaction; None if ``dedupe_key`` was queued before.

    The text is rendered now (``templates/sms/<template>.<lang>.txt``), so a
    template error shows where the message is caused, not in the drain. Two
    transactions queueing the same key at once store one row: the second
    waits for the first and then stores nothing. Callers that only need to
    know how many were stored use :func:`enqueue_many`.
    """
    params = _message_params(dict(dedupe_key=dedupe_key, to_phone=to_phone, lang=lang, template=template,
                                  values=values, contact_id=contact_id, referral_id=referral_id, clock=clock,
                                  step=step, repeat=repeat), now, settings.templates_dir / "sms")
    message_id = _connection(session).execute(_statement(session, _INSERT_OUTBOX), params).scalar_one_or_none()
    if message_id is None:
        return None
    return _attach(session, OutboxMessage, message_id, params)


def enqueue_many(session: Session, rows: list[dict], *, now: dt.datetime, settings) -> int:
    """Queue many SMS in the caller's transaction, in one executemany; returns how many were stored.

    Each row holds :func:`enqueue`'s keyword arguments (``dedupe_key``, ``to_phone``,
    ``lang``, ``template``, ``values``; optionally ``contact_id``, ``referral_id``,
    ``clock``, ``step``, ``repeat``). Every text is rendered first, so a template
    error raises before anything is written. A ``dedupe_key`` repeated in ``rows``
    is stored once (its first row); one queued before, by this or another
    transaction, is not stored again (ON CONFLICT DO NOTHING, as :func:`enqueue`).
    """
    if not rows:
        return 0
    templates = settings.templates_dir / "sms"
    params, seen = [], set()
    for row in rows:
        one = _message_params(row, now, templates)
        if one["dedupe_key"] not in seen:
            seen.add(one["dedupe_key"])
            params.append(one)
    conn = _connection(session)
    if len(params) == 1:
        return int(conn.execute(_statement(session, _INSERT_OUTBOX), params[0]).scalar_one_or_none() is not None)
    if conn.dialect.name == "postgresql":
        arrays = {f"a_{n}": [p[n] for p in params] for n in _OUTBOX_VARYING}
        return len(conn.execute(_INSERT_OUTBOX_PG_MANY, {**arrays, "now": now}).all())
    return len(conn.execute(_statement(session, _INSERT_OUTBOX), params).all())


# -- one-tap tokens --------------------------------------------------------------


def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("ascii", "replace")).hexdigest()


def _new_token() -> tuple[str, str]:
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    return raw, _token_hash(raw)


def _token_row(token_hash: str, referral_id: str, clock: str, contact_id: int, now: dt.datetime) -> dict:
    return {"token_hash": token_hash, "referral_id": referral_id, "clock": clock, "contact_id": contact_id,
            "created_at": now}


def _store_tokens(session: Session, params: list[dict]) -> None:
    """Insert token rows (one executemany); the rows share one ``created_at``."""
    if not params:
        return
    conn = _connection(session)
    if len(params) > 1 and conn.dialect.name == "postgresql":
        arrays = {f"a_{n}": [p[n] for p in params] for n in _ACK_VARYING}
        conn.execute(_INSERT_ACK_PG_MANY, {**arrays, "now": params[0]["created_at"]})
    else:
        conn.execute(_INSERT_ACK, params if len(params) > 1 else params[0])


def issue_ack_tokens(session: Session, items, *, now: dt.datetime) -> list[str]:
    """New one-tap tokens, one per ``(referral_id, clock, contact_id)`` in ``items``, in one executemany.

    Returns the raw tokens in the order of ``items``; only their SHA-256 is stored.
    """
    raws, params = [], []
    for referral_id, clock, contact_id in items:
        raw, token_hash = _new_token()
        raws.append(raw)
        params.append(_token_row(token_hash, referral_id, clock, contact_id, now))
    _store_tokens(session, params)
    return raws


def issue_ack_token(session: Session, *, referral_id: str, clock: str, contact_id: int, now: dt.datetime) -> str:
    """A new one-tap token for this referral, clock and contact; only its SHA-256 is stored."""
    return issue_ack_tokens(session, [(referral_id, clock, contact_id)], now=now)[0]


class OutboxBatch:
    """Texts and one-tap tokens gathered in one transaction and written together by :meth:`flush`.

    The escalation sweep fires hundreds of ladder steps in one transaction; this
    writes all their tokens in one executemany and all their texts in another
    (:func:`enqueue_many`: rendered then, deduplicated by ``dedupe_key``, ON
    CONFLICT DO NOTHING). Nothing is written until :meth:`flush`, which must run
    in the same transaction; a rollback before or after it stores nothing.
    """

    def __init__(self, session: Session, *, now: dt.datetime, settings):
        self.session, self.now, self.settings = session, now, settings
        self._tokens: list[dict] = []
        self._messages: list[dict] = []

    def __len__(self) -> int:
        return len(self._messages) + len(self._tokens)

    def token(self, *, referral_id: str, clock: str, contact_id: int) -> str:
        """A new one-tap token (raw), stored (as its SHA-256) at the next :meth:`flush`."""
        raw, token_hash = _new_token()
        self._tokens.append(_token_row(token_hash, referral_id, clock, contact_id, self.now))
        return raw

    def enqueue(self, **row: Any) -> None:
        """A text to queue at the next :meth:`flush`; ``row`` holds :func:`enqueue`'s keyword arguments
        (without ``session``, ``now``, ``settings``)."""
        self._messages.append(row)

    def flush(self, chain: InsertChain | None = None) -> int | None:
        """Write what was gathered; returns the texts stored (those whose ``dedupe_key`` was new).

        With ``chain``, the rendered texts and the tokens are added to it instead (written when
        the caller runs it, with its other rows); returns None.
        """
        tokens, messages = self._tokens, self._messages
        self._tokens, self._messages = [], []
        if chain is not None:
            templates, params, seen = self.settings.templates_dir / "sms", [], set()
            for row in messages:
                one = _message_params(row, self.now, templates)
                if one["dedupe_key"] not in seen:
                    seen.add(one["dedupe_key"])
                    params.append(one)
            chain.add(_OUTBOX, params, conflict_ok=True)  # a dedupe_key queued before is skipped
            chain.add(_ACK, tokens)
            return None
        stored = enqueue_many(self.session, messages, now=self.now, settings=self.settings)  # renders first
        _store_tokens(self.session, tokens)
        return stored


def onetap_link(settings, token: str) -> str:
    return f"{settings.public_base_url}/a/{token}"


def find_ack_token(session: Session, raw: str, *, lock: bool = False, usable: bool = True) -> AckToken | None:
    """The token if it exists and (``usable``) is neither used nor void; None for anything else.

    ``lock`` takes its row lock and reads it fresh: callers hold the referral's lock first.
    """
    if not raw or len(raw) > 100:
        return None
    stmt = sa.select(AckToken).where(AckToken.token_hash == _token_hash(raw))
    if usable:
        stmt = stmt.where(AckToken.used_at.is_(None), AckToken.voided_at.is_(None))
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
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
    values = dict(kind=kind, referral_id=referral_id, province=province, dedupe_key=dedupe_key, raised_at=now,
                  resolved_at=None)
    alert_id = _connection(session).execute(_statement(session, _INSERT_ALERT), values).scalar_one_or_none()
    if alert_id is None:
        return None
    audit(session, at=now, actor="hub", action="alert.raised", referral_id=referral_id, detail={"kind": kind})
    return _attach(session, Alert, alert_id, values)


FailedHook = Callable[[Session, OutboxMessage, dt.datetime], None]


def _message_failed(session: Session, message: OutboxMessage, now: dt.datetime, on_failed: FailedHook | None) -> None:
    """A message ended failed or undelivered: hand it to the layer that owns its referral.

    ``on_failed`` is given at wiring time by the escalation engine (it raises the
    coordinators' alert and moves the ladder on); notify itself knows no referral.
    Without one, the alert is raised here, without a province.
    """
    if on_failed is not None:
        on_failed(session, message, now)
        return
    raise_alert(session, kind="sms_failed", referral_id=message.referral_id, province=None,
                dedupe_key=f"sms_failed:{message.id}", now=now)


# -- status changes ----------------------------------------------------------------


def move_status(message: OutboxMessage, status: str, now: dt.datetime) -> bool:
    """Move ``message`` to ``status`` if that is forward (see :data:`_RANK`); True if it moved."""
    if message.status in FINAL or _RANK[status] <= _RANK[message.status]:
        return False
    message.status = status
    message.updated_at = now
    return True


def first_sighting(session: Session, key: str, now: dt.datetime) -> bool:
    """Record that the webhook ``key`` is being acted on, in the caller's transaction; False if it was
    before (a replay: act on nothing). Two concurrent deliveries of one key: the second waits for the
    first's transaction and then finds the key."""
    dialect = session.get_bind().dialect.name
    stmt = (_INSERTS[dialect](WebhookSeen.__table__).values(key=key[:120], seen_at=now)
            .on_conflict_do_nothing(index_elements=["key"]).returning(WebhookSeen.__table__.c.key))
    return _connection(session).execute(stmt).scalar_one_or_none() is not None


def forget_webhooks_seen(session: Session, *, before: dt.datetime) -> int:
    """Delete the webhook keys seen before ``before`` (the daily retention run); how many went."""
    return session.execute(sa.delete(WebhookSeen).where(WebhookSeen.seen_at < before)
                           .execution_options(synchronize_session=False)).rowcount or 0


def record_status(session: Session, nonce: str, provider_status: str, now: dt.datetime,
                  error_code: str | None = None, on_failed: FailedHook | None = None, *,
                  message_sid: str | None = None, to_phone: str | None = None) -> OutboxMessage:
    """A delivery report for the message with this callback nonce. NotFound for an unknown nonce.

    The report must be for that message: its ``MessageSid`` the provider's id of the text we sent
    (recorded from this report if the send's own record has not come in yet) and its ``To`` the
    number we texted; otherwise Forbidden and nothing changes. A report seen before (same message,
    same status) changes nothing.
    """
    stmt = sa.select(OutboxMessage).where(OutboxMessage.callback_nonce == nonce).with_for_update()
    message = session.scalar(stmt) if nonce and len(nonce) <= 64 else None
    if message is None:
        raise NotFound("no message has this status callback address")
    sid_ok = bool(message_sid) and len(message_sid) <= 64 and message.provider_id in (None, message_sid)
    if not sid_ok or to_phone != message.to_phone:
        log.warning("sms status refused message=%s cause=%s", message.id, "sid" if not sid_ok else "to")
        raise Forbidden("this delivery report is not for the message at this address", code="callback_mismatch")
    status = PROVIDER_STATUS.get((provider_status or "").lower())
    if not first_sighting(session, f"status:{message_sid}:{(provider_status or '')[:20].lower()}", now):
        return message
    if message.provider_id is None:
        message.provider_id = message_sid
    if status is not None and move_status(message, status, now):
        if status in ("failed", "undelivered"):
            message.last_error = f"provider reported {status}" + (f" (error {error_code[:10]})" if error_code else "")
            log.warning("sms %s message=%s error_code=%s", status, message.id, error_code)
            _message_failed(session, message, now, on_failed)
    session.flush()
    return message


# -- drain -------------------------------------------------------------------------


def lease(settings) -> dt.timedelta:
    """How long a claim holds a message: the longest a send can take (connect, then answer, each
    within ``send_timeout``) plus a margin; after that another drain may send it."""
    return 2 * settings.sms.send_timeout + LEASE_MARGIN


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


def _claim(session_factory: sessionmaker[Session], now: dt.datetime, limit: int,
           held_for: dt.timedelta) -> tuple[list[_Claim], int]:
    """Up to ``limit`` due messages (queued and due, or left "sending" longer than ``held_for``), marked sending."""
    due = sa.or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now)
    stuck = sa.and_(OutboxMessage.status == "sending",
                    sa.or_(OutboxMessage.claimed_at.is_(None), OutboxMessage.claimed_at <= now - held_for))
    with session_factory() as session, session.begin():
        stmt = (sa.select(OutboxMessage)
                .where(sa.or_(sa.and_(OutboxMessage.status == "queued", due), stuck))
                .order_by(OutboxMessage.id).limit(limit).with_for_update(skip_locked=True))
        rows = list(session.scalars(stmt))
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
    return session.scalar(sa.select(OutboxMessage)
                          .where(OutboxMessage.id == claim.id, OutboxMessage.attempts == claim.attempts)
                          .with_for_update())


# The gateway took the message: one UPDATE, fenced on our claim (attempts), no SELECT first.
# A status callback may have beaten us to it: then its (later) status stays.
_RECORD_SENT = (
    sa.update(OutboxMessage)
    .where(OutboxMessage.id == sa.bindparam("claim_id"), OutboxMessage.attempts == sa.bindparam("claim_attempts"))
    .values(status=sa.case((OutboxMessage.status.in_(("queued", "sending")), "sent"), else_=OutboxMessage.status),
            provider_id=sa.bindparam("provider_id"), sent_at=sa.bindparam("now"), last_error=None,
            updated_at=sa.bindparam("now"), body=sa.bindparam("sent_body"))
)


def kept_body(body: str, gateway) -> str:
    """What the outbox keeps of a text once it is sent (or failed for good): the one-tap link's token
    is gone, so the database never holds a live link after the phone has it. The demo's console
    gateway keeps the whole text: its /sms/console page is the demo's phone."""
    return body if getattr(gateway, "name", None) == "console" else redact(body)


def _send(gateway: SmsGateway, claim: _Claim, callback: str | None):
    """One send, on a sending thread: the provider's result, or the GatewayError to record."""
    try:
        return gateway.send(to=claim.to, body=claim.body, status_callback=callback)
    except GatewayError as exc:
        return exc
    except Exception as exc:  # a gateway bug: keep the message and try again later
        log_failure(log, "sms gateway raised %s for message=%s", type(exc).__name__, claim.id)
        return GatewayError(f"the gateway failed unexpectedly ({type(exc).__name__})", True)


def _record(session_factory: sessionmaker[Session], claim: _Claim, outcome, now: dt.datetime,
            on_failed: FailedHook | None, gateway=None) -> str | None:
    """Write one send's outcome, fenced on the claim; "sent", "retried", "failed", or None if it was not ours."""
    if not isinstance(outcome, GatewayError):
        with session_factory() as session, session.begin():
            result = session.connection().execute(_RECORD_SENT, {
                "claim_id": claim.id, "claim_attempts": claim.attempts, "provider_id": outcome.provider_id,
                "now": now, "sent_body": kept_body(claim.body, gateway)})
        return "sent" if result.rowcount == 1 else None
    error = outcome
    with session_factory() as session, session.begin():
        message = _mine(session, claim)
        if message is None or message.status != "sending":
            # Reclaimed by another drain, or a delivery report came in: the provider took it
            # after all (a timeout after Twilio had the message); trying again would send it twice.
            return None
        message.last_error = error.message[:200]
        message.updated_at = now
        if error.retryable and claim.attempts < MAX_ATTEMPTS:
            message.status = "queued"
            message.next_attempt_at = now + backoff(claim.attempts)
            log.info("sms retry message=%s attempt=%d next=%s", claim.id, claim.attempts,
                     message.next_attempt_at.isoformat())
            return "retried"
        message.status = "failed"
        message.body = kept_body(message.body, gateway)  # never sent again: its link need not stay readable
        log.warning("sms failed message=%s attempts=%d retryable=%s", claim.id, claim.attempts, error.retryable)
        session.flush()
        _message_failed(session, message, now, on_failed)
        return "failed"


def drain(session_factory: sessionmaker[Session], gateway: SmsGateway, clock, *, settings,
          concurrency: int | None = None, stop: threading.Event | None = None,
          executor: Executor | None = None, on_failed: FailedHook | None = None) -> DrainReport:
    """Hand due messages to ``gateway``, ``concurrency`` (default ``[sms] concurrency``) at a time, until none
    is due at a claim or ``stop`` is set; see the module docstring for the guarantees.

    The sends run on ``executor`` (at least ``concurrency`` threads; the scheduler keeps one), else on
    threads of this call's own. ``clock`` times claims and records; ``gateway`` must be safe to call from
    several threads (both of hub.notify.gateways are). ``on_failed`` hears of each message that failed
    for good (the escalation engine's hook, given at wiring time).
    """
    slots = concurrency or settings.sms.concurrency
    held_for = lease(settings)
    callbacks = settings.sms.status_callbacks and getattr(gateway, "name", None) == "twilio"
    pool = executor or ThreadPoolExecutor(slots, thread_name_prefix="hub-sms-send")
    in_flight: dict[Future, _Claim] = {}
    counts = {"sent": 0, "retried": 0, "failed": 0}
    reclaimed = 0
    more = True
    claim_error: Exception | None = None
    try:
        while True:
            free = slots - len(in_flight)
            if more and free > 0 and not (stop is not None and stop.is_set()):
                try:
                    claims, stuck = _claim(session_factory, clock.now(), free, held_for)
                except Exception as exc:  # the database went away: record what is in flight, then report it
                    claims, stuck, claim_error = [], 0, exc
                reclaimed += stuck
                more = len(claims) == free  # fewer than asked for: nothing else is due now
                for claim in claims:
                    callback = (f"{settings.public_base_url}/webhooks/twilio/status/{claim.nonce}"
                                if callbacks else None)
                    in_flight[pool.submit(_send, gateway, claim, callback)] = claim
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                claim = in_flight.pop(future)
                outcome = future.result()  # a BaseException (the process is going down) propagates
                try:
                    recorded = _record(session_factory, claim, outcome, clock.now(), on_failed, gateway)
                except Exception:
                    # The row stays "sending" and is reclaimed after its lease (a second copy if it was sent).
                    log_failure(log, "sms outcome of message=%s not recorded; it is reclaimed after the lease",
                                claim.id)
                    continue
                if recorded is not None:
                    counts[recorded] += 1
    finally:
        if executor is None:
            pool.shutdown(wait=True)
    if claim_error is not None:
        raise claim_error
    return DrainReport(sent=counts["sent"], retried=counts["retried"], failed=counts["failed"], reclaimed=reclaimed)
