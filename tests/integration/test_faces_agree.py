"""One rule, one place: the same question asked through two faces gets the same answer.

Each rule here used to live in a face (or twice); now it lives in a service, and each
test asks it through two faces: the API and the web page, the API and an SMS, a one-tap
link and an SMS.
"""
from __future__ import annotations

import re

import sqlalchemy as sa

from hub.accounts import service as accounts
from hub.db import session_scope
from hub.directory.models import Agency
from hub.notify.service import issue_ack_token
from hub.referrals.models import Referral
from tests.factories import add_contact
from tests.webhelpers import TOTP_ROLES, enrol_totp, sign_in
from tests.integration.test_webhooks import (  # noqa: F401  (fixtures: a production-like Twilio set-up)
    OFFICER_PHONE,
    SHELTER_A_PHONE,
    app,
    contacts,
    replies,
    settings,
    text,
)

PASSWORD = "a long test passphrase 42"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _sign_in(client, db, clock, *, agency: str, role: str, ring=None) -> None:
    with session_scope(db) as s:
        user, token = accounts.add_user(s, agency_id=agency, role=role, name="Test Person (fictional)",
                                        username=f"{agency}.{role}.faces", clock=clock, keyring=ring)
    page = client.get(f"/invite/{token}")
    client.post(f"/invite/{token}", data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": _csrf(page.text)})
    if role in TOTP_ROLES:
        enrol_totp(db, user.username, secret_key=client.application.extensions["hub"].settings.secret_key)
    sign_in(client, user.username, PASSWORD)


def _status(db, referral_id: str) -> str:
    with db() as s:
        return s.get(Referral, referral_id).status


def test_a_coordinator_outside_the_province_sees_the_referral_in_no_face(client, db, network, clock, submit):
    ref = submit(urgency="urgent")  # pp-ahtjp -> pp-shelter-a, Phnom Penh
    _sign_in(client, db, clock, agency="sr-committee", role="coordinator")
    page = client.get(f"/r/{ref['id']}")
    take = client.post(f"/api/v1/escalations/{ref['id']}/take", json={})
    assert page.status_code == 404 and ref["code"] not in page.text
    assert take.status_code == 404
    missing = client.get("/r/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404, "an unknown id and another province's referral look the same"


def test_a_coordinator_of_the_province_sees_metadata_in_both_faces(client, db, network, clock, submit):
    ref = submit(urgency="urgent")
    declined = client.post(f"/api/v1/referrals/{ref['id']}/decline", json={"reason": "no bed tonight"},
                           headers=network.headers("pp-shelter-a"))
    assert declined.status_code == 200
    _sign_in(client, db, clock, agency="pp-committee", role="coordinator")
    page = client.get(f"/r/{ref['id']}")
    assert page.status_code == 200 and ref["code"] in page.text
    assert "no bed tonight" not in page.text, "the reason is for the two agencies only"


def test_capacity_is_refused_to_an_officer_by_sms_and_to_another_agency_by_api(client, db, network, contacts,
                                                                                 fake_twilio):
    with db() as s:
        before = s.get(Agency, "pp-shelter-a").beds_available
    by_sms = replies(text(client, fake_twilio, OFFICER_PHONE, "BEDS 3"))  # an officer contact at the shelter
    by_api = client.put("/api/v1/agencies/pp-shelter-a/capacity", json={"beds_available": 3},
                        headers=network.headers("pp-ahtjp"))
    assert by_api.status_code == 403
    assert by_sms == [replies(text(client, fake_twilio, "+447700900555", "BEDS 3"))[0]], "the neutral reply"
    with db() as s:
        assert s.get(Agency, "pp-shelter-a").beds_available == before
    allowed = replies(text(client, fake_twilio, SHELTER_A_PHONE, "BEDS 3"))
    assert allowed == ["Thank you. Free beds updated."]
    listed = {a["id"]: a for a in client.get("/api/v1/agencies", headers=network.headers("pp-ahtjp"))
              .get_json()["agencies"]}
    assert listed["pp-shelter-a"]["beds_available"] == 3


def test_an_sms_decline_after_an_api_accept_is_told_who_accepted(client, db, network, contacts, fake_twilio, submit):
    ref = submit()
    accepted = client.post(f"/api/v1/referrals/{ref['id']}/accept", headers=network.headers("pp-shelter-a"))
    assert accepted.status_code == 200
    late = replies(text(client, fake_twilio, SHELTER_A_PHONE, f"DECLINE {ref['code']} no bed"))
    assert late == [f"refhub: {ref['code']} was already accepted by Hope Shelter A. Nothing was changed."]
    assert _status(db, ref["id"]) == "accepted"


def test_an_api_ack_after_an_sms_ack_is_a_409_that_names_the_state(client, db, network, contacts, fake_twilio,
                                                                     submit):
    ref = submit()
    assert replies(text(client, fake_twilio, SHELTER_A_PHONE, f"ACK {ref['code']}")) == [
        f"Thank you. {ref['code']} is acknowledged."]
    late = client.post(f"/api/v1/referrals/{ref['id']}/acknowledge", headers=network.headers("pp-shelter-a"))
    assert late.status_code == 409
    assert late.get_json()["error"]["code"] == "wrong_state"
    assert f"{ref['code']} was already acknowledged by pp-shelter-a" in late.get_json()["error"]["message"]
    with db() as s:
        events = s.get(Referral, ref["id"]).events
        assert [e.state for e in events] == ["sent", "acknowledged"]


def test_a_one_tap_after_an_sms_ack_says_who_took_it_and_changes_nothing(client, db, clock, network, contacts,
                                                                              fake_twilio, submit):
    ref = submit()
    duty = add_contact(db, "pp-shelter-a", "+447700900411", duty=True)
    with db() as s, s.begin():
        raw = issue_ack_token(s, referral_id=ref["id"], clock="ack", contact_id=duty, now=clock.now())
    text(client, fake_twilio, SHELTER_A_PHONE, f"ACK {ref['code']}")
    tapped = client.post(f"/a/{raw}")
    # The SMS stopped the ack clock and voided its links; the link's holder is told who answered.
    assert tapped.status_code == 200 and "has been taken by Hope Shelter A" in tapped.text
    with db() as s:
        assert [e.state for e in s.get(Referral, ref["id"]).events] == ["sent", "acknowledged"]
        used = s.execute(sa.text("SELECT count(*) FROM ack_token WHERE used_at IS NOT NULL")).scalar()
    assert used == 0
