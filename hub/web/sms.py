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

from hub.directory.models import Agency
from hub.errors import Forbidden
from hub.faces import current, db
from hub.notify.models import OutboxMessage
from hub.notify.service import record_status
from hub.notify.signatures import validate_twilio_request
from hub.referrals import service as referrals
from hub.vocabulary import DEFAULT_LANGUAGE, LANGUAGES
from hub.web import sms_replies

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
    reply = sms_replies.handle_sms(session, from_phone=request.form.get("From"), body=request.form.get("Body"),
                                   now=ctx.clock.now(), notifier=ctx.notifier,
                                   message_sid=request.form.get("MessageSid"))
    session.commit()
    return _twiml(reply.text(ctx.settings.templates_dir / "sms"))


@notify_bp.post("/webhooks/twilio/status/<nonce>")
def status_callback(nonce: str):
    _check_signature("status")
    ctx = current()
    session = db()
    status = request.form.get("MessageStatus") or request.form.get("SmsStatus") or ""
    record_status(session, nonce, status, ctx.clock.now(), error_code=request.form.get("ErrorCode"),
                  on_failed=ctx.on_delivery_failed, message_sid=request.form.get("MessageSid"),
                  to_phone=request.form.get("To"))
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


def _page(name: str, token: str, tap: referrals.TapResult, **extra):
    referral, contact = tap.referral, tap.contact
    sender = db().get(Agency, referral.from_agency_id)
    lang = contact.lang if contact.lang in LANGUAGES else DEFAULT_LANGUAGE
    return render_template(f"web/{name}.html", lang=lang, token=token, code=referral.code,
                           urgency=referral.urgency, sender=sender, **extra)


@notify_bp.get("/a/<token>")
def onetap(token: str):
    """The confirmation page: shows code, urgency and sender, and changes nothing (link previews GET)."""
    settings = current().settings
    tap = referrals.tapped(db(), token, now=current().clock.now(), lifetime=settings.sms.onetap_lifetime)
    if tap is None:
        return _invalid()
    if tap.state == "expired":
        return _page("onetap_expired", token, tap), 410
    if tap.state == "taken":
        return _page("onetap_done", token, tap, state="taken", by=tap.by)
    return _page("onetap_confirm", token, tap)


@notify_bp.post("/a/<token>")
def onetap_acknowledge(token: str):
    """Acknowledge as the token's contact, once. The token itself is the capability and is single use."""
    ctx = current()
    session = db()
    tap = referrals.acknowledge_by_token(session, token, now=ctx.clock.now(), notifier=ctx.notifier,
                                         lifetime=ctx.settings.sms.onetap_lifetime)
    if tap is None:
        session.rollback()
        return _invalid()
    if tap.state == "expired":
        session.rollback()
        return _page("onetap_expired", token, tap), 410
    session.commit()
    return _page("onetap_done", token, tap, state=tap.state, by=tap.by)


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
