"""Twilio webhooks seen before change nothing: an SMS reply posted twice acts and answers once; a
delivery report must be for the message at its address, and a replayed one changes nothing.
Signed for real (the SDK's RequestValidator through tests/fake_twilio)."""
from __future__ import annotations

import sqlalchemy as sa

from hub.notify.models import Alert, OutboxMessage, WebhookSeen
from tests.integration.test_webhooks import (  # noqa: F401  (fixtures)
    PUBLIC,
    SHELTER_A_PHONE,
    app,
    audit,
    contacts,
    outbox_status,
    post_to_client,
    replies,
    sent_message,
    settings,
    status_of,
)


def _post(client, request):
    return client.post(request.url[len(PUBLIC):], data=request.params, headers=request.headers)


def _outbox(db) -> list[tuple]:
    with db() as s:
        return [tuple(r) for r in s.execute(sa.select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.body)
                                            .order_by(OutboxMessage.id))]


def test_replayed_ack_by_sms_acts_and_answers_once(client, db, fake_twilio, contacts, submit):
    ref = submit()
    request = fake_twilio.signed_inbound(f"{PUBLIC}/webhooks/twilio/sms", SHELTER_A_PHONE, f"ACK {ref['code']}")
    first = _post(client, request)
    assert len(replies(first)) == 1
    assert status_of(db, ref["id"]) == "acknowledged"
    commands, outbox = len(audit(db, "sms.command")), _outbox(db)

    second = _post(client, request)  # the very same signed request, posted again
    assert replies(second) == []  # no second reply
    assert len(audit(db, "sms.command")) == commands
    assert _outbox(db) == outbox


def test_replayed_beds_reply_is_not_applied_again(client, db, fake_twilio, contacts):
    from hub.directory.models import Agency

    first = fake_twilio.signed_inbound(f"{PUBLIC}/webhooks/twilio/sms", SHELTER_A_PHONE, "BEDS 3")
    assert len(replies(_post(client, first))) == 1
    other = fake_twilio.signed_inbound(f"{PUBLIC}/webhooks/twilio/sms", SHELTER_A_PHONE, "BEDS 5")
    assert len(replies(_post(client, other))) == 1
    assert replies(_post(client, first)) == []  # an old "BEDS 3" replayed does not undo "BEDS 5"
    with db() as s:
        assert s.get(Agency, "pp-shelter-a").beds_available == 5


def test_sms_without_a_message_sid_changes_nothing(client, db, fake_twilio, contacts, submit):
    ref = submit()
    request = fake_twilio.signed_inbound(f"{PUBLIC}/webhooks/twilio/sms", SHELTER_A_PHONE, f"ACK {ref['code']}")
    params = {k: v for k, v in request.params.items() if k not in ("MessageSid", "SmsMessageSid", "SmsSid")}
    stripped = fake_twilio.sign(request.url, params)
    assert replies(_post(client, stripped)) == []
    assert status_of(db, ref["id"]) == "sent"


def test_replayed_status_report_changes_nothing(client, db, fake_twilio, sent_message):
    report = fake_twilio.signed_status(sent_message, "undelivered", error_code=30003)
    assert _post(client, report).status_code == 204
    assert outbox_status(db) == "undelivered"
    with db() as s:
        alerts = s.scalar(sa.select(sa.func.count()).select_from(Alert))
        seen = s.scalar(sa.select(sa.func.count()).select_from(WebhookSeen))
    assert _post(client, report).status_code == 204
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Alert)) == alerts == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(WebhookSeen)) == seen


def test_status_report_for_another_message_is_refused(client, db, fake_twilio, sent_message):
    report = fake_twilio.signed_status(sent_message, "failed", error_code=30003)
    # Twilio's signature over another message's id at this message's address: a genuine signature
    # (the auth token signed it) for a report that is not this message's.
    forged = fake_twilio.sign(report.url, {**report.params, "MessageSid": "SM" + "1" * 32})
    response = _post(client, forged)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "callback_mismatch"
    assert outbox_status(db) == "sent"


def test_status_report_to_another_number_is_refused(client, db, fake_twilio, sent_message):
    report = fake_twilio.signed_status(sent_message, "failed", error_code=30003)
    forged = fake_twilio.sign(report.url, {**report.params, "To": "+447700900999"})
    response = _post(client, forged)
    assert response.status_code == 403
    assert outbox_status(db) == "sent"
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Alert)) == 0


def test_status_report_without_a_message_sid_is_refused(client, db, fake_twilio, sent_message):
    report = fake_twilio.signed_status(sent_message, "delivered")
    params = {k: v for k, v in report.params.items() if k not in ("MessageSid", "SmsSid")}
    assert _post(client, fake_twilio.sign(report.url, params)).status_code == 403
    assert outbox_status(db) == "sent"


def test_sent_text_keeps_no_one_tap_token(db, settings, clock, fake_twilio, twilio_gateway, submit):
    from hub.notify.service import drain

    ref = submit()
    with db() as s:
        [queued] = s.scalars(sa.select(OutboxMessage.body).where(OutboxMessage.referral_id == ref["id"])).all()
    assert "/a/" in queued and "[redacted]" not in queued  # kept whole until sent, to send and retry it
    drain(db, twilio_gateway, clock, settings=settings)
    [texted] = [m.body for m in fake_twilio.messages if ref["code"] in m.body]
    token = texted.split("/a/")[1].split()[0]
    with db() as s:
        [kept] = s.scalars(sa.select(OutboxMessage.body).where(OutboxMessage.referral_id == ref["id"])).all()
    assert token not in kept
    assert "/a/[redacted]" in kept


def test_the_daily_run_forgets_old_webhook_keys_and_a_replay_inside_the_window_still_changes_nothing(
        app, client, db, clock, fake_twilio, contacts):
    from hub.directory.models import Agency
    from hub.scheduler import run_retention

    ctx = app.extensions["hub"]
    window = ctx.settings.retention_webhooks_seen_for
    old = fake_twilio.signed_inbound(f"{PUBLIC}/webhooks/twilio/sms", SHELTER_A_PHONE, "BEDS 2")
    assert len(replies(_post(client, old))) == 1
    clock.advance(seconds=window.total_seconds() - 3 * 86400)
    first = fake_twilio.signed_inbound(f"{PUBLIC}/webhooks/twilio/sms", SHELTER_A_PHONE, "BEDS 3")
    assert len(replies(_post(client, first))) == 1
    later = fake_twilio.signed_inbound(f"{PUBLIC}/webhooks/twilio/sms", SHELTER_A_PHONE, "BEDS 5")
    assert len(replies(_post(client, later))) == 1
    clock.advance(days=4)  # "BEDS 2" is past the window now; the other two are 4 days old

    run_retention(ctx)
    with db() as s:
        kept = list(s.scalars(sa.select(WebhookSeen.key).order_by(WebhookSeen.key)))
    assert kept == sorted(f"sms:{r.params['MessageSid']}" for r in (first, later)), kept
    assert replies(_post(client, first)) == []  # a replay inside the window changes nothing still
    with db() as s:
        assert s.get(Agency, "pp-shelter-a").beds_available == 5
    run_retention(ctx)  # a second run at once forgets nothing more
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(WebhookSeen)) == 2
