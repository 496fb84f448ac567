"""The SMS faces: Twilio webhooks, the one-tap acknowledgement page, the demo's SMS console.

Blueprint ``notify_bp`` (no URL prefix):

- ``POST /webhooks/twilio/sms``: a reply by SMS, answered in TwiML;
- ``POST /webhooks/twilio/status/<nonce>``: a delivery report for one outbox message;
- ``GET|POST /a/<token>``: one-tap acknowledgement (GET shows, POST acts);
- ``GET /sms/console``: the demo's phone, the outbox as a page (demo mode with the console gateway only).

Webhooks are checked against X-Twilio-Signature computed over the *public*
URL (``hub.public_base_url`` plus path and query), with every configured auth
token. With no token configured (the demo's console gateway) the webhooks are
disabled: every request is refused with 403, as a forged one would be.
"""
from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, Response, abort, render_template, request
from twilio.twiml.messaging_response import MessagingResponse

from hub.audit.service import record as audit
from hub.context import current, db
from hub.errors import Conflict, Forbidden, NotFound
from hub.web import sms_replies as inbound
from hub.notify.models import OutboxMessage
from hub.notify.service import find_ack_token, record_status, use_ack_token, void_ack_tokens
from hub.notify.signatures import validate_twilio_request

log = logging.getLogger("hub.notify")

notify_bp = Blueprint("notify", __name__)

CONSOLE_LIMIT = 200


# -- webhooks ------------------------------------------------------------------------


def _public_url() -> str:
    """The URL Twilio requested and signed: the configured public base plus path and query."""
    path = request.full_path if request.query_string else request.path
    return current().settings.public_base_url + path


def _check_signature(webhook: str) -> None:
    """403, and nothing written, unless Twilio signed this request."""
    settings = current().settings
    tokens = settings.sms.auth_tokens
    signature = request.headers.get("X-Twilio-Signature")
    if tokens and validate_twilio_request(_public_url(), request.form, signature, tokens):
        return
    cause = "webhooks_disabled" if not tokens else ("missing_signature" if not signature else "bad_signature")
    # A refused request writes nothing, not even an audit entry: a forger must not be able to grow
    # the database. The log line carries no number and no body.
    log.warning("twilio webhook refused webhook=%s cause=%s", webhook, cause)
    if not tokens:
        raise Forbidden("SMS webhooks are disabled: no Twilio auth token is configured (TWILIO_AUTH_TOKEN); "
                        "the demo's console gateway receives no SMS", code="webhooks_disabled")
    raise Forbidden("the X-Twilio-Signature is missing or does not match; check TWILIO_AUTH_TOKEN and that "
                    "hub.public_base_url is the URL configured in Twilio", code="invalid_signature")


def _twiml(text: str | None) -> Response:
    answer = MessagingResponse()
    if text:
        answer.message(text)
    return Response(str(answer), mimetype="application/xml")


@notify_bp.post("/webhooks/twilio/sms")
def inbound_sms():
    _check_signature("sms")
    ctx = current()
    session = db()
    reply = inbound.handle_sms(session, from_phone=request.form.get("From"), body=request.form.get("Body"),
                               now=ctx.clock.now(), settings=ctx.settings, notifier=ctx.notifier)
    session.commit()
    return _twiml(reply.text(ctx.settings.templates_dir / "sms"))


@notify_bp.post("/webhooks/twilio/status/<nonce>")
def status_callback(nonce: str):
    _check_signature("status")
    ctx = current()
    session = db()
    status = request.form.get("MessageStatus") or request.form.get("SmsStatus") or ""
    record_status(session, nonce, status, ctx.clock.now(), error_code=request.form.get("ErrorCode"))
    session.commit()
    return Response(status=204)


# -- one-tap acknowledgement ---------------------------------------------------------


@notify_bp.after_request
def _private_pages(response: Response) -> Response:
    if request.path.startswith("/a/") or request.path == "/sms/console":
        # The token is in the URL: no referrer, no cache, no index, no framing.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'")
    return response


def _invalid():
    # One page for unknown, used, void and stopped: a token tells nothing about why.
    return render_template("web/onetap_invalid.html", lang="km"), 404


def _page(name: str, token, referral, contact, **extra):
    from hub.directory.models import Agency

    sender = db().get(Agency, referral.from_agency_id)
    lang = contact.lang if contact.lang in ("en", "km") else "km"
    return render_template(f"web/{name}.html", lang=lang, token=token, code=referral.code,
                           urgency=referral.urgency, sender=sender, **extra)


def _taken_by(referral):
    """The agency that acknowledged the referral (the recipient, or a coordinator who took it)."""
    from hub.directory.models import Agency
    from hub.referrals.models import ReferralEvent

    agency_id = db().scalar(
        sa.select(ReferralEvent.actor_agency_id)
        .where(ReferralEvent.referral_id == referral.id,
               ReferralEvent.state.in_(("acknowledged", "accepted", "declined")))
        .order_by(ReferralEvent.id).limit(1)) or referral.to_agency_id
    return db().get(Agency, agency_id)


def _load(raw: str, *, lock: bool = False):
    """(token, referral, contact) for a usable token, else None."""
    from hub.directory.models import Contact
    from hub.referrals.models import Referral

    session = db()
    token = find_ack_token(session, raw, lock=lock and session.get_bind().dialect.name == "postgresql")
    if token is None:
        return None
    referral = session.get(Referral, token.referral_id)
    contact = session.get(Contact, token.contact_id)
    if referral is None or contact is None or not contact.active:
        return None
    return token, referral, contact


def _still_open(token, referral) -> bool:
    return referral.status == "sent" and referral.clock == token.clock


@notify_bp.get("/a/<token>")
def onetap(token: str):
    """The confirmation page: shows code, urgency and sender, and changes nothing (link previews GET)."""
    found = _load(token)
    if found is None:
        return _invalid()
    ack, referral, contact = found
    if not _still_open(ack, referral):
        return _page("onetap_done", token, referral, contact, state="taken", by=_taken_by(referral))
    return _page("onetap_confirm", token, referral, contact)


@notify_bp.post("/a/<token>")
def onetap_acknowledge(token: str):
    """Acknowledge as the token's contact, once. The token itself is the capability and is single use."""
    from hub.referrals import service as referrals

    ctx = current()
    session = db()
    found = _load(token, lock=True)
    if found is None:
        return _invalid()
    ack, referral, contact = found
    if not _still_open(ack, referral):
        return _page("onetap_done", token, referral, contact, state="taken", by=_taken_by(referral))
    now = ctx.clock.now()
    if not use_ack_token(session, ack, now):
        session.rollback()
        return _invalid()
    try:
        with session.begin_nested():
            referrals.transition(session, inbound.contact_principal(contact), referral.id, "acknowledge", now=now,
                                 notifier=ctx.notifier)
    except Conflict:
        session.rollback()  # someone else was quicker: change nothing, not even the token
        return _page("onetap_done", token, referral, contact, state="taken", by=_taken_by(referral))
    except (Forbidden, NotFound):
        session.rollback()
        return _page("onetap_done", token, referral, contact, state="not_allowed")
    void_ack_tokens(session, referral.id, now)
    audit(session, at=now, actor=f"contact:{contact.id}", action="onetap.used", referral_id=referral.id,
          detail={"clock": ack.clock})
    session.commit()
    return _page("onetap_done", token, referral, contact, state="acknowledged")


# -- the demo's phone -------------------------------------------------------------------


def _console_enabled() -> bool:
    ctx = current()
    gateway = getattr(ctx.gateway, "name", None) or ctx.settings.sms.gateway
    return ctx.settings.mode == "demo" and gateway == "console"


@notify_bp.get("/sms/console")
def sms_console():
    """Every text the demo 'sent', newest first. It shows bodies: it exists only with the console gateway."""
    if not _console_enabled():
        abort(404)
    messages = db().scalars(
        sa.select(OutboxMessage).order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(CONSOLE_LIMIT)).all()
    return render_template("web/sms_console.html", messages=messages, limit=CONSOLE_LIMIT)
