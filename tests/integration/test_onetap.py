"""One-tap acknowledgement links (/a/<token>), the demo's SMS console, and SMS texts free of victim data."""
from __future__ import annotations

import dataclasses
import hashlib
import io

import pytest
import sqlalchemy as sa

from hub.audit.models import AuditEntry
from hub.directory.models import Agency
from hub.notify.gateways import ConsoleGateway
from hub.notify.models import AckToken, OutboxMessage
from hub.notify.service import drain, enqueue, issue_ack_token, onetap_link, void_ack_tokens
from hub.referrals.models import Referral
from tests.factories import add_contact, body_secrets, fictional_body

NO_LONGER_VALID = "This link is no longer valid"


@pytest.fixture
def contact(db, network) -> int:
    return add_contact(db, "pp-shelter-a", "+447700900401", duty=True)


def token_for(db, clock, referral_id: str, contact_id: int, clock_name: str = "ack") -> str:
    with db() as session, session.begin():
        return issue_ack_token(session, referral_id=referral_id, clock=clock_name, contact_id=contact_id,
                               now=clock.now())


def referral(db, referral_id: str) -> Referral:
    with db() as session:
        ref = session.get(Referral, referral_id)
        session.expunge(ref)
        return ref


def history_length(db, referral_id: str) -> int:
    with db() as session:
        return len(session.get(Referral, referral_id).events)


def page(response) -> str:
    return response.get_data(as_text=True)


def test_link_points_at_the_public_url(settings, db, clock, contact, submit):
    ref = submit()
    raw = token_for(db, clock, ref["id"], contact)
    assert onetap_link(settings, raw) == f"{settings.public_base_url}/a/{raw}"
    assert len(raw) == 43  # 32 random bytes, base64url
    with db() as session:
        stored = session.scalars(sa.select(AckToken.token_hash)).all()
    assert hashlib.sha256(raw.encode()).hexdigest() in stored
    assert raw not in stored


def test_get_shows_the_referral_and_changes_nothing(client, db, clock, contact, submit):
    ref = submit(urgency="urgent")
    raw = token_for(db, clock, ref["id"], contact)

    first = client.get(f"/a/{raw}")
    second = client.get(f"/a/{raw}")  # a link preview, then the person

    assert first.status_code == second.status_code == 200
    html = page(first)
    assert ref["code"] in html and "Urgent" in html and '<form method="post"' in html
    with db() as session:
        sender = session.get(Agency, "pp-ahtjp")
    assert sender.name_en in html
    assert first.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in first.headers["Cache-Control"]
    assert "<script" not in html
    assert referral(db, ref["id"]).status == "sent"


def test_post_acknowledges_once(client, db, clock, contact, submit):
    ref = submit()
    raw = token_for(db, clock, ref["id"], contact)

    response = client.post(f"/a/{raw}")

    assert response.status_code == 200
    assert f"{ref['code']} is acknowledged" in page(response)
    assert response.headers["Referrer-Policy"] == "no-referrer"
    done = referral(db, ref["id"])
    assert (done.status, done.acknowledged_at) == ("acknowledged", clock.now())
    with db() as session:
        entry = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "referral.acknowledged"))
    assert entry.actor == f"contact:{contact}"


def test_second_post_and_get_say_it_is_taken_and_change_nothing(client, db, clock, contact, submit):
    ref = submit()
    raw = token_for(db, clock, ref["id"], contact)
    client.post(f"/a/{raw}")
    events = history_length(db, ref["id"])

    again = client.post(f"/a/{raw}")
    look = client.get(f"/a/{raw}")

    assert again.status_code == look.status_code == 200
    for response in (again, look):
        assert "has been taken by" in page(response) and "<form" not in page(response)
    assert history_length(db, ref["id"]) == events


def test_voided_token_acknowledges_nothing(client, db, clock, contact, submit):
    ref = submit()
    raw = token_for(db, clock, ref["id"], contact)
    with db() as session, session.begin():
        assert void_ack_tokens(session, ref["id"], clock.now()) >= 1  # the duty contact's link too

    assert "<form" not in page(client.get(f"/a/{raw}"))
    response = client.post(f"/a/{raw}")
    assert "is acknowledged" not in page(response)
    assert referral(db, ref["id"]).status == "sent"


def test_unknown_tokens_look_the_same(client, db, clock, contact, submit):
    responses = [client.get(f"/a/{t}") for t in ("A" * 43, "nonsense", "B" * 43)]
    assert {r.status_code for r in responses} == {404}
    assert len({page(r) for r in responses}) == 1 and NO_LONGER_VALID in page(responses[0])


def test_taken_by_someone_else_shows_who_and_changes_nothing(client, db, clock, network, contact, submit):
    ref = submit()
    acked = client.post(f"/api/v1/referrals/{ref['id']}/acknowledge", headers=network.headers("pp-shelter-a"))
    assert acked.status_code == 200
    # The acknowledgement voided the links out there; this one was issued in the same instant (a race).
    raw = token_for(db, clock, ref["id"], contact)
    events = history_length(db, ref["id"])

    look = client.get(f"/a/{raw}")
    tap = client.post(f"/a/{raw}")

    with db() as session:
        taker = session.get(Agency, "pp-shelter-a")
    for response in (look, tap):
        assert response.status_code == 200
        assert "has been taken by" in page(response) and taker.name_en in page(response)
        assert "<form" not in page(response)
    assert history_length(db, ref["id"]) == events


def test_khmer_contact_reads_khmer_first(client, db, clock, network, submit):
    contact = add_contact(db, "pp-shelter-a", "+447700900402", lang="km", duty=True)
    raw = token_for(db, clock, submit()["id"], contact)
    html = page(client.get(f"/a/{raw}"))
    assert '<html lang="km">' in html
    assert html.index("បញ្ជាក់ទទួល") < html.index("Acknowledge")


def test_sms_console_lists_the_demo_texts_newest_first(client, db, settings, clock, network):
    with db() as session, session.begin():
        for i, template in enumerate(("reply_help", "reply_neutral")):
            clock.advance(minutes=1)
            enqueue(session, dedupe_key=f"k{i}", to_phone="+447700900403", lang="en", template=template, values={},
                    now=clock.now(), settings=settings)
    response = client.get("/sms/console")

    assert response.status_code == 200
    html = page(response)
    assert html.index("could not be processed") < html.index("refhub replies: ACK")
    assert "+447700900403" in html and "queued" in html


def test_sms_console_is_not_there_outside_the_demo(settings, engine, clock):
    from hub import create_app
    from hub.web.sms import notify_bp

    production = dataclasses.replace(settings, mode="production")
    app = create_app(production, engine=engine, clock=clock)
    if "notify" not in app.blueprints:
        app.register_blueprint(notify_bp)
    assert app.test_client().get("/sms/console").status_code == 404


def test_no_sms_body_holds_any_string_from_the_packet_body(client, db, settings, clock, network, contact, submit):
    marker = "ZQX-7731-MARKER"
    body = fictional_body(marker)
    ref = submit(body=body, urgency="urgent", child=True)
    # The notifications a referral causes: the new-referral text with its one-tap link, the loop closed.
    with db() as session, session.begin():
        raw = issue_ack_token(session, referral_id=ref["id"], clock="ack", contact_id=contact, now=clock.now())
        for lang in ("en", "km"):
            enqueue(session, dedupe_key=f"new:{lang}", to_phone="+447700900401", lang=lang, template="new_referral",
                    values={"code": ref["code"], "sender": "pp-ahtjp", "urgency": "urgent", "action": "acknowledge",
                            "link": onetap_link(settings, raw)},
                    now=clock.now(), settings=settings, contact_id=contact, referral_id=ref["id"], clock="ack", step=0)
    client.get(f"/a/{raw}")
    client.post(f"/a/{raw}")
    with db() as session, session.begin():
        enqueue(session, dedupe_key="acked", to_phone="+447700900401", lang="en", template="acknowledged",
                values={"code": ref["code"], "by": "pp-shelter-a"}, now=clock.now(), settings=settings)
    console = ConsoleGateway(stream=io.StringIO())
    drain(db, console, clock, settings=settings)

    with db() as session:
        stored = list(session.scalars(sa.select(OutboxMessage.body)))
    texts = stored + [sent for _, sent, _ in console.sent]
    assert len(stored) >= 3 and len(console.sent) == len(stored)
    leaked = [(s, t) for s in body_secrets(body, marker) for t in texts if s in t]
    assert leaked == []

