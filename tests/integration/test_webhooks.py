"""Twilio webhooks: replies by SMS and delivery reports, signed for real with the SDK's RequestValidator.

The app is configured as in production behind a proxy: Twilio signs the public
URL (https://hub.example.org/...), the test client requests the path.
"""
from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa

from hub.audit.models import AuditEntry
from hub.directory.models import Agency
from hub.notify.models import Alert, OutboxMessage
from hub.notify.service import drain, enqueue
from hub.notify.sms import render_sms
from hub.referrals.models import Referral
from tests.factories import add_contact, body_secrets

PUBLIC = "https://hub.example.org"
INBOUND = f"{PUBLIC}/webhooks/twilio/sms"
SECOND_TOKEN = "rotated-in-token-0123456789abcdef"
STRANGER = "+447700900555"  # a number no contact has
SHELTER_A_PHONE = "+447700900301"
SHELTER_B_PHONE = "+447700900302"
OFFICER_PHONE = "+447700900303"


@pytest.fixture
def settings(settings, fake_twilio):
    """Production-like: the twilio gateway, a public https URL, two auth tokens (the second rotated in)."""
    sms = dataclasses.replace(settings.sms, gateway="twilio", account_sid=fake_twilio.account_sid,
                              auth_tokens=(fake_twilio.auth_tokens[0], SECOND_TOKEN),
                              from_number=fake_twilio.phone_number, api_base=fake_twilio.base_url)
    return dataclasses.replace(settings, public_base_url=PUBLIC, sms=sms)


def make_app(settings, engine, clock, gateway):
    from hub import create_app
    from hub.escalation.notifier import LadderNotifier
    from hub.web.sms import notify_bp

    app = create_app(settings, engine=engine, clock=clock, gateway=gateway, notifier=LadderNotifier(settings))
    app.config["TESTING"] = True
    if "notify" not in app.blueprints:  # until create_app registers it
        app.register_blueprint(notify_bp)
    return app


@pytest.fixture
def app(settings, engine, clock, twilio_gateway):
    return make_app(settings, engine, clock, twilio_gateway)


@pytest.fixture
def post_to_client(client):
    """A FakeTwilio callback_poster that posts into the Flask test client."""

    def poster(url, params, headers):
        assert url.startswith(PUBLIC)
        return client.post(url[len(PUBLIC):], data=dict(params), headers=dict(headers)).status_code

    return poster


@pytest.fixture
def contacts(db, network):
    return {
        "a": add_contact(db, "pp-shelter-a", SHELTER_A_PHONE),
        "b": add_contact(db, "pp-shelter-b", SHELTER_B_PHONE),
        "officer": add_contact(db, "pp-shelter-a", OFFICER_PHONE, role="officer"),
    }


def text(client, fake_twilio, from_: str, body: str, token: str | None = None):
    """An SMS from ``from_`` as Twilio would POST it, signed with the account's token (or ``token``)."""
    request = fake_twilio.signed_inbound(INBOUND, from_, body)
    if token is not None:
        request = fake_twilio.sign(INBOUND, request.params, token=token)
    return client.post("/webhooks/twilio/sms", data=request.params, headers=request.headers)


def replies(response) -> list[str]:
    assert response.status_code == 200, response.data
    assert response.mimetype == "application/xml"
    return [m.text for m in ET.fromstring(response.data).iter("Message")]


def reply_text(settings, template: str, lang: str, **values) -> str:
    return render_sms(template, lang, settings.templates_dir / "sms", **values)


def status_of(db, referral_id: str) -> str:
    with db() as session:
        return session.get(Referral, referral_id).status


def audit(db, action: str) -> list[AuditEntry]:
    with db() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)
                                    .order_by(AuditEntry.seq)))


def all_audit_text(db) -> str:
    with db() as session:
        return json.dumps([[e.actor, e.action, e.detail] for e in session.scalars(sa.select(AuditEntry))],
                          ensure_ascii=False)


# -- signatures ----------------------------------------------------------------------------------


def test_forged_signature_is_refused_and_changes_nothing(client, db, fake_twilio, contacts, submit):
    ref = submit()
    response = text(client, fake_twilio, SHELTER_A_PHONE, f"ACK {ref['code']}", token="a-forger-s-guess")

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "invalid_signature"
    assert status_of(db, ref["id"]) == "sent"
    assert audit(db, "sms.command") == []
    assert audit(db, "sms.rejected") == []  # a forger cannot even grow the audit log
    assert SHELTER_A_PHONE not in all_audit_text(db)


def test_missing_signature_is_refused(client, db, fake_twilio, contacts, submit):
    ref = submit()
    request = fake_twilio.signed_inbound(INBOUND, SHELTER_A_PHONE, f"ACK {ref['code']}")
    response = client.post("/webhooks/twilio/sms", data=request.params)

    assert response.status_code == 403
    assert status_of(db, ref["id"]) == "sent"
    assert response.get_json()["error"]["code"] == "invalid_signature"
    assert audit(db, "sms.rejected") == []


def test_signature_of_the_internal_url_is_refused(client, db, fake_twilio, contacts, submit):
    ref = submit()
    request = fake_twilio.signed_inbound("http://10.0.0.5:8000/webhooks/twilio/sms", SHELTER_A_PHONE,
                                         f"ACK {ref['code']}")
    response = client.post("/webhooks/twilio/sms", data=request.params, headers=request.headers)

    assert response.status_code == 403
    assert status_of(db, ref["id"]) == "sent"


def test_tampered_body_is_refused(client, db, fake_twilio, contacts, submit):
    ref = submit()
    request = fake_twilio.signed_inbound(INBOUND, SHELTER_A_PHONE, "HELP")
    forged = dict(request.params, Body=f"ACK {ref['code']}")
    response = client.post("/webhooks/twilio/sms", data=forged, headers=request.headers)

    assert response.status_code == 403
    assert status_of(db, ref["id"]) == "sent"


def test_rotated_second_token_validates(client, db, fake_twilio, contacts, submit):
    ref = submit()
    response = text(client, fake_twilio, SHELTER_A_PHONE, f"ACK {ref['code']}", token=SECOND_TOKEN)

    assert replies(response) == [f"Thank you. {ref['code']} is acknowledged."]
    assert status_of(db, ref["id"]) == "acknowledged"


def test_webhooks_are_disabled_without_auth_tokens(settings, engine, clock, db, fake_twilio, contacts):
    no_tokens = dataclasses.replace(settings, sms=dataclasses.replace(settings.sms, gateway="console",
                                                                      auth_tokens=()))
    client = make_app(no_tokens, engine, clock, None).test_client()
    response = text(client, fake_twilio, SHELTER_A_PHONE, "HELP")

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "webhooks_disabled"
    assert audit(db, "sms.command") == []


# -- commands --------------------------------------------------------------------------------------


def test_ack_by_sms_acknowledges_and_answers_in_english(client, db, fake_twilio, contacts, submit):
    ref = submit()
    response = text(client, fake_twilio, SHELTER_A_PHONE, f"ack {ref['code'].lower()}")

    assert replies(response) == [f"Thank you. {ref['code']} is acknowledged."]
    assert status_of(db, ref["id"]) == "acknowledged"
    [entry] = audit(db, "referral.acknowledged")
    assert entry.actor == f"contact:{contacts['a']}"
    [command] = audit(db, "sms.command")
    assert (command.actor, command.detail) == (f"contact:{contacts['a']}", {"kind": "ack", "outcome": "done"})


def test_khmer_reply_acknowledges_and_answers_in_khmer(client, db, settings, fake_twilio, network, submit):
    contact = add_contact(db, "pp-shelter-a", SHELTER_A_PHONE, lang="km")
    ref = submit()
    response = text(client, fake_twilio, SHELTER_A_PHONE, f"បានទទួល {ref['code']}")

    assert replies(response) == [reply_text(settings, "reply_ok", "km", code=ref["code"], action="acknowledge")]
    assert replies(response)[0].startswith("អរគុណ")
    assert status_of(db, ref["id"]) == "acknowledged"
    assert audit(db, "sms.command")[0].actor == f"contact:{contact}"


def test_ack_twice_says_who_acknowledged_it_and_changes_nothing_more(client, db, fake_twilio, contacts, submit):
    ref = submit()
    first = text(client, fake_twilio, SHELTER_A_PHONE, f"ACK {ref['code']}")
    again = text(client, fake_twilio, SHELTER_A_PHONE, f"ACK {ref['code']}")

    assert replies(first) == [f"Thank you. {ref['code']} is acknowledged."]
    assert replies(again) == [f"refhub: {ref['code']} was already acknowledged by Hope Shelter A. Nothing was changed."]
    assert len(audit(db, "referral.acknowledged")) == 1
    assert [e.detail["outcome"] for e in audit(db, "sms.command")] == ["done", "already"]


def test_unknown_number_and_foreign_code_get_the_same_neutral_reply(client, db, settings, fake_twilio, contacts,
                                                                    submit):
    ref = submit()  # addressed to pp-shelter-a
    stranger = replies(text(client, fake_twilio, STRANGER, f"ACK {ref['code']}"))
    other_agency = replies(text(client, fake_twilio, SHELTER_B_PHONE, f"ACK {ref['code']}"))
    unknown_code = replies(text(client, fake_twilio, SHELTER_A_PHONE, "ACK R-2222"))

    assert stranger == other_agency == unknown_code == [reply_text(settings, "reply_neutral", "en")]
    assert status_of(db, ref["id"]) == "sent"
    entries = audit(db, "sms.command")
    assert [(e.actor, e.detail) for e in entries] == [
        ("unknown-number", {"kind": "ack", "outcome": "unknown_number"}),
        (f"contact:{contacts['b']}", {"kind": "ack", "outcome": "unknown_code"}),
        (f"contact:{contacts['a']}", {"kind": "ack", "outcome": "unknown_code"}),
    ]
    assert all(e.referral_id is None for e in entries)
    logged = all_audit_text(db)
    assert STRANGER not in logged and SHELTER_B_PHONE not in logged and "ACK R-2222" not in logged


def test_unknown_number_is_answered_in_the_language_it_wrote(client, settings, fake_twilio, contacts):
    response = text(client, fake_twilio, STRANGER, "ជំនួយ")
    assert replies(response) == [reply_text(settings, "reply_neutral", "km")]


def test_beds_sets_the_agency_capacity(client, db, settings, fake_twilio, contacts):
    response = text(client, fake_twilio, SHELTER_A_PHONE, "BEDS 3")

    assert replies(response) == [reply_text(settings, "reply_ok", "en", code="", action="beds")]
    with db() as session:
        assert session.get(Agency, "pp-shelter-a").beds_available == 3
    assert audit(db, "sms.command")[0].detail == {"kind": "beds", "outcome": "done"}


def test_accept_by_a_caseworker_accepts(client, db, fake_twilio, contacts, submit):
    ref = submit()
    response = text(client, fake_twilio, SHELTER_A_PHONE, f"ACCEPT {ref['code']}")

    assert replies(response) == [f"Thank you. {ref['code']} is accepted."]
    assert status_of(db, ref["id"]) == "accepted"


def test_decline_keeps_the_reason_out_of_the_audit_log(client, db, fake_twilio, contacts, submit):
    ref = submit()
    response = text(client, fake_twilio, SHELTER_A_PHONE, f"DECLINE {ref['code']} no bed this week")

    assert replies(response) == [f"Thank you. {ref['code']} is declined."]
    with db() as session:
        referral = session.get(Referral, ref["id"])
        assert (referral.status, referral.status_reason) == ("declined", "no bed this week")
    assert "no bed this week" not in all_audit_text(db)


def test_officer_contact_cannot_accept_by_sms(client, db, settings, fake_twilio, contacts, submit):
    ref = submit()
    response = text(client, fake_twilio, OFFICER_PHONE, f"ACCEPT {ref['code']}")

    assert replies(response) == [reply_text(settings, "reply_neutral", "en")]
    assert status_of(db, ref["id"]) == "sent"


def test_own_referral_in_a_final_state_is_said_to_be_over(client, db, settings, fake_twilio, network, contacts,
                                                          submit):
    ref = submit()
    withdrawn = client.post(f"/api/v1/referrals/{ref['id']}/withdraw", json={"reason": "family found"},
                            headers=network.headers("pp-ahtjp"))
    assert withdrawn.status_code == 200
    response = text(client, fake_twilio, SHELTER_A_PHONE, f"ACK {ref['code']}")

    assert replies(response) == [reply_text(settings, "reply_already", "en", code=ref["code"], state="withdrawn",
                                            by="PP AHTJP")]
    assert status_of(db, ref["id"]) == "withdrawn"


def test_help_lists_the_commands(client, settings, fake_twilio, contacts):
    assert replies(text(client, fake_twilio, SHELTER_A_PHONE, "help")) == [reply_text(settings, "reply_help", "en")]


def test_stop_gets_an_empty_answer(client, db, fake_twilio, contacts):
    for word in ("STOP", "unsubscribe"):
        assert replies(text(client, fake_twilio, SHELTER_A_PHONE, word)) == []


def test_gibberish_gets_a_usage_hint(client, settings, fake_twilio, contacts):
    response = text(client, fake_twilio, SHELTER_A_PHONE, "hello is anyone there")
    assert replies(response) == [reply_text(settings, "reply_error", "en")]


# -- delivery reports -----------------------------------------------------------------------------


@pytest.fixture
def sent_message(db, settings, clock, fake_twilio, twilio_gateway, post_to_client):
    """One text queued and drained to the fake Twilio, whose callbacks post into the test client."""
    fake_twilio.callback_poster = post_to_client
    with db() as session, session.begin():
        enqueue(session, dedupe_key="k", to_phone=SHELTER_A_PHONE, lang="en", template="reply_help", values={},
                now=clock.now(), settings=settings)
    assert drain(db, twilio_gateway, clock, settings=settings).sent == 1
    [message] = fake_twilio.messages
    return message.sid


def outbox_status(db) -> str:
    with db() as session:
        return session.scalars(sa.select(OutboxMessage.status)).one()


def test_delivered_report_marks_the_message_delivered(db, fake_twilio, sent_message):
    assert fake_twilio.deliver(sent_message, "sent") == 204
    assert outbox_status(db) == "sent"
    assert fake_twilio.deliver(sent_message, "delivered") == 204
    assert outbox_status(db) == "delivered"


def test_status_only_moves_forward(db, fake_twilio, sent_message):
    fake_twilio.deliver(sent_message, "delivered")
    fake_twilio.deliver(sent_message, "sent")  # late and out of order
    fake_twilio.deliver(sent_message, "undelivered")  # nothing wins over delivered
    assert outbox_status(db) == "delivered"


def test_undelivered_wins_over_sent_and_raises_one_alert(db, fake_twilio, sent_message):
    fake_twilio.deliver(sent_message, "sent")
    assert fake_twilio.deliver(sent_message, "undelivered") == 204
    fake_twilio.deliver(sent_message, "delivered")  # final stays final
    fake_twilio.deliver(sent_message, "undelivered")

    assert outbox_status(db) == "undelivered"
    with db() as session:
        assert [a.kind for a in session.scalars(sa.select(Alert))] == ["sms_failed"]


def test_forged_status_report_is_refused(client, db, fake_twilio, sent_message):
    report = fake_twilio.signed_status(sent_message, "failed", error_code=30003)
    path = report.url[len(PUBLIC):]
    response = client.post(path, data=report.params, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"})

    assert response.status_code == 403
    assert outbox_status(db) == "sent"


def test_unknown_nonce_is_404(client, fake_twilio):
    report = fake_twilio.sign(f"{PUBLIC}/webhooks/twilio/status/no-such-nonce",
                              {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"})
    response = client.post("/webhooks/twilio/status/no-such-nonce", data=report.params, headers=report.headers)

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_automatic_callbacks_reach_the_hub(db, settings, clock, fake_twilio, twilio_gateway, post_to_client):
    fake_twilio.callback_poster = post_to_client
    fake_twilio.auto_status = ("sent", "delivered")
    with db() as session, session.begin():
        for i in range(3):
            enqueue(session, dedupe_key=f"k{i}", to_phone=SHELTER_A_PHONE, lang="km", template="reply_help",
                    values={}, now=clock.now(), settings=settings)
    drain(db, twilio_gateway, clock, settings=settings)
    fake_twilio.join_callbacks()

    assert [r[2] for r in fake_twilio.callback_results] == [204] * 6
    with db() as session:
        assert set(session.scalars(sa.select(OutboxMessage.status))) == {"delivered"}


# -- with the escalation engine ----------------------------------------------------------------------

DUTY_A = "+447700900107"  # pp-shelter-a's duty contact in agencies/pp-shelter-a.toml (reads Khmer)
ADMIN_A = "+447700900108"  # pp-shelter-a's agency admin (reads English)


def sent_to(fake_twilio, phone: str, code: str) -> list[str]:
    return [m.body for m in fake_twilio.messages if m.to == phone and code in m.body]


def test_undelivered_text_moves_the_ladder_on_at_once(db, settings, clock, fake_twilio, twilio_gateway,
                                                      post_to_client, submit):
    from hub.escalation.service import sweep

    fake_twilio.callback_poster = post_to_client
    ref = submit(urgency="urgent")
    drain(db, twilio_gateway, clock, settings=settings)
    [first] = [m for m in fake_twilio.messages if m.to == DUTY_A]
    with db() as session:
        before = session.scalars(sa.select(OutboxMessage).where(OutboxMessage.referral_id == ref["id"])).all()
    assert {m.step for m in before} == {0}

    clock.advance(minutes=2)  # long before the 30 minutes of the ack clock
    assert fake_twilio.deliver(first.sid, "undelivered") == 204
    sweep(db, clock.now(), settings=settings)

    with db() as session:
        steps = session.scalars(sa.select(OutboxMessage.step).where(OutboxMessage.referral_id == ref["id"])).all()
    assert 1 in steps  # step 1 (the whole agency) is texted now, not at the deadline


def test_replies_and_taps_never_text_what_the_packet_holds(client, db, settings, clock, network, fake_twilio,
                                                           twilio_gateway, submit):
    from hub.escalation.service import sweep
    from tests.factories import fictional_body

    marker = "QZX-4471-MARKER"
    body = fictional_body(marker)
    by_sms = submit(body=body, urgency="urgent", child=True)
    by_tap = submit(body=body)
    overdue = submit(body=body, urgency="urgent")
    drain(db, twilio_gateway, clock, settings=settings)

    # Acknowledged by a Khmer SMS, then accepted by the agency admin in English.
    assert replies(text(client, fake_twilio, DUTY_A, f"បានទទួល {by_sms['code']}"))[0].startswith("អរគុណ")
    assert replies(text(client, fake_twilio, ADMIN_A, f"ACCEPT {by_sms['code']}")) == [
        f"Thank you. {by_sms['code']} is accepted."]
    # Acknowledged through the one-tap link of the text the duty contact received.
    [new_text] = sent_to(fake_twilio, DUTY_A, by_tap["code"])
    path = new_text[new_text.index(f"{PUBLIC}/a/") + len(PUBLIC):].split()[0]
    assert client.get(path).status_code == 200
    assert client.post(path).status_code == 200
    # Nobody answers the third: the ladder climbs, then it is declined by SMS.
    for _ in range(4):
        clock.advance(minutes=31)
        sweep(db, clock.now(), settings=settings)
    text(client, fake_twilio, ADMIN_A, f"DECLINE {overdue['code']} {marker} no bed")
    drain(db, twilio_gateway, clock, settings=settings)

    assert [status_of(db, r["id"]) for r in (by_sms, by_tap, overdue)] == ["accepted", "acknowledged", "declined"]
    with db() as session:
        stored = list(session.scalars(sa.select(OutboxMessage.body)))
        steps = set(session.scalars(sa.select(OutboxMessage.step).where(OutboxMessage.referral_id == overdue["id"])))
    assert {0, 1, 2} <= steps
    texts = stored + [m.body for m in fake_twilio.messages]
    assert [(s, t) for s in body_secrets(body, marker) for t in texts if s in t] == []

