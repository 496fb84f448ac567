"""The web pages through Flask's test client, on both databases: the officer's form, the caseworker's
inbox and actions, beds, the admin page and settings; CSRF and bad input on every form."""
from __future__ import annotations

import io
import re
import secrets

import pytest
import sqlalchemy as sa

from hub.audit.models import AuditEntry
from hub.db import Base
from hub.referrals.models import Referral
from tests.webhelpers import PASSWORD, add_member, csrf, photo_bytes, sign_in


def referral_form(token: str, marker: str = "", **over) -> dict:
    data = {"csrf_token": token, "to": "pp-shelter-a", "urgency": "urgent", "name_latin": f"Sokha Test {marker}",
            "name_khmer": f"សុខា សាកល្បង {marker}", "sex": "female", "age_estimate": "16", "child": "y",
            "nationality": "KH", "province": "KH-12", "district": "", "commune": "", "place": f"Site {marker}",
            "exploitation": "forced_labour", "trafficking_status": "possible", "needs": ["shelter", "medical"],
            "risk_level": "high", "risk_notes": f"Risk {marker}", "consent_to_share": "y",
            "consent_for_services": "y", "consent_recorded_by": "Officer Fictional", "id_type": ""}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def officer(client, network, db, clock):
    add_member(db, network, clock, "pp-ahtjp", "officer", name="Officer Fictional")
    return "pp-ahtjp.officer"


def _submit(client, marker="", photo=True, **over):
    page = client.get("/referrals/new")
    assert page.status_code == 200
    data = referral_form(csrf(page.text), marker, **over)
    if photo:
        data["photos"] = [(io.BytesIO(photo_bytes()), "camera.jpg", "image/jpeg")]
    return client.post("/referrals/new", data=data, content_type="multipart/form-data")


def test_officer_sends_caseworker_opens_and_accepts(app, client, network, db, clock, officer):
    sign_in(client, officer)
    resp = _submit(client, "M1")
    assert resp.status_code == 302, resp.text
    referral_id = resp.headers["Location"].rsplit("/", 1)[1]
    with db() as s:
        ref = s.get(Referral, referral_id)
        assert (ref.to_agency_id, ref.urgency, ref.child, ref.province) == ("pp-shelter-a", "urgent", True, "KH-12")
        assert ref.needs == ["shelter", "medical"]

    case = app.test_client()
    add_member(db, network, clock, "pp-shelter-a", "caseworker")
    sign_in(case, "pp-shelter-a.caseworker")
    inbox = case.get("/inbox")
    assert inbox.status_code == 200 and ref.code in inbox.text
    assert "Sokha" not in inbox.text  # the inbox shows metadata only
    page = case.get(f"/r/{referral_id}")
    assert page.status_code == 200
    assert "Sokha Test M1" in page.text and "សុខា សាកល្បង M1" in page.text
    assert 'src="data:image/jpeg;base64,' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    # Exactly the actions allowed now: acknowledge, accept, decline.
    actions = set(re.findall(r'action="/r/[0-9a-f-]+/([a-z_]+)"', page.text))
    assert actions == {"acknowledge", "accept", "decline"}
    with db() as s:
        opened = s.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "packet.fetched", AuditEntry.referral_id == referral_id))
    assert opened == 1
    resp = case.post(f"/r/{referral_id}/accept", data={"accept-csrf_token": csrf(page.text)})
    assert resp.status_code == 302
    again = case.get(f"/r/{referral_id}")
    assert set(re.findall(r'action="/r/[0-9a-f-]+/([a-z_]+)"', again.text)) == {"start_care", "fail"}
    # The officer sees the state change.
    sent = client.get("/sent")
    assert ref.code in sent.text and "accepted" in sent.text


def test_photo_is_shrunk_and_its_metadata_dropped(app, client, network, db, clock, officer):
    from PIL import Image

    from hub import packets

    sign_in(client, officer)
    resp = _submit(client, "P")
    referral_id = resp.headers["Location"].rsplit("/", 1)[1]
    page = client.get(f"/r/{referral_id}")  # the archive copy, opened by the officer
    data = re.search(r'src="data:image/jpeg;base64,([^"]+)"', page.text).group(1)
    import base64

    img = Image.open(io.BytesIO(base64.b64decode(data)))
    assert max(img.size) == 1600 and not img.getexif()
    assert packets  # the body went through the packet library only


def test_refused_submission_keeps_what_was_typed(client, network, db, clock, officer):
    sign_in(client, officer)
    resp = _submit(client, "K", photo=False, consent_to_share=None, child=None, legal_ground="")
    assert resp.status_code == 400
    assert "Sokha Test K" in resp.text and "Risk K" in resp.text
    assert "Consent is required" in resp.text
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Referral)) == 0


def test_bad_input_is_answered_in_khmer(client, network, db, clock):
    add_member(db, network, clock, "pp-ahtjp", "officer", lang="km")
    sign_in(client, "pp-ahtjp.officer")
    resp = _submit(client, "K", photo=False, needs=[])
    assert resp.status_code == 400
    assert 'lang="km"' in resp.text
    assert "Tick at least one need." not in resp.text
    assert re.search(r'class="field-error"[^>]*>[^<]*[\u1780-\u17ff]', resp.text)


def test_not_a_photo_is_refused(client, network, db, clock, officer):
    sign_in(client, officer)
    page = client.get("/referrals/new")
    data = referral_form(csrf(page.text), "X")
    data["photos"] = [(io.BytesIO(b"%PDF-1.4 not an image"), "doc.pdf", "application/pdf")]
    resp = client.post("/referrals/new", data=data, content_type="multipart/form-data")
    assert resp.status_code == 400 and "not a photo" in resp.text


def test_decline_then_reroute_prefilled(app, client, network, db, clock, officer):
    sign_in(client, officer)
    resp = _submit(client, "R")
    first = resp.headers["Location"].rsplit("/", 1)[1]
    case = app.test_client()
    add_member(db, network, clock, "pp-shelter-a", "caseworker")
    sign_in(case, "pp-shelter-a.caseworker")
    page = case.get(f"/r/{first}")
    empty = case.post(f"/r/{first}/decline", data={"decline-csrf_token": csrf(page.text), "decline-reason": ""})
    assert empty.status_code == 400 and "Give a reason." in empty.text
    ok = case.post(f"/r/{first}/decline", data={"decline-csrf_token": csrf(page.text), "decline-reason": "no bed"})
    assert ok.status_code == 302
    view = client.get(f"/r/{first}")
    assert f"/referrals/new?previous={first}" in view.text
    form = client.get(f"/referrals/new?previous={first}")
    assert form.status_code == 200
    assert 'value="Sokha Test R"' in form.text and 'value="pp-shelter-a"' not in form.text
    token = csrf(form.text)
    data = referral_form(token, "R", to="pp-shelter-b", previous_id=first, keep_attachments="y")
    resp = client.post("/referrals/new", data=data, content_type="multipart/form-data")
    assert resp.status_code == 302, resp.text
    second = resp.headers["Location"].rsplit("/", 1)[1]
    with db() as s:
        assert s.get(Referral, second).previous_id == first
    archive = client.get(f"/r/{second}")
    assert 'src="data:image/jpeg;base64,' in archive.text  # the earlier photo came along


def test_withdraw_with_reason(client, network, db, clock, officer):
    sign_in(client, officer)
    rid = _submit(client, "W", photo=False).headers["Location"].rsplit("/", 1)[1]
    page = client.get(f"/r/{rid}")
    assert set(re.findall(r'action="/r/[0-9a-f-]+/([a-z_]+)"', page.text)) == {"withdraw"}
    resp = client.post(f"/r/{rid}/withdraw", data={"withdraw-csrf_token": csrf(page.text),
                                                   "withdraw-reason": "found family"})
    assert resp.status_code == 302
    with db() as s:
        assert s.get(Referral, rid).status == "withdrawn"


def test_beds_show_in_the_api(client, network, db, clock):
    add_member(db, network, clock, "pp-shelter-a", "caseworker")
    sign_in(client, "pp-shelter-a.caseworker")
    page = client.get("/beds")
    bad = client.post("/beds", data={"csrf_token": csrf(page.text), "beds": "-3"})
    assert bad.status_code == 400
    resp = client.post("/beds", data={"csrf_token": csrf(page.text), "beds": "3"})
    assert resp.status_code == 302
    agencies = client.get("/api/v1/agencies", headers=network.headers("pp-ahtjp")).get_json()
    rows = agencies["agencies"] if isinstance(agencies, dict) else agencies
    assert [a["beds_available"] for a in rows if a["id"] == "pp-shelter-a"] == [3]


def test_admin_invites_a_member_who_signs_in(app, client, network, db, clock):
    add_member(db, network, clock, "pp-shelter-a", "agency_admin")
    sign_in(client, "pp-shelter-a.agency_admin")
    page = client.get("/admin")
    assert page.status_code == 200
    resp = client.post("/admin/invite", data={"invite-csrf_token": csrf(page.text), "invite-name": "New Fictional",
                                              "invite-role": "caseworker", "invite-lang": "km",
                                              "invite-username": "pp-shelter-a.new"})
    assert resp.status_code == 200
    link = re.search(r'id="invitation-link" href="([^"]+)"', resp.text).group(1)
    path = link.split("127.0.0.1:5000", 1)[-1]
    newcomer = app.test_client()
    invite = newcomer.get(path)
    assert invite.status_code == 200 and 'lang="km"' in invite.text  # the invitation's language
    done = newcomer.post(path, data={"csrf_token": csrf(invite.text), "password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 302
    sign_in(newcomer, "pp-shelter-a.new")
    assert 'lang="km"' in newcomer.get("/inbox").text
    with db() as s:
        actions = [e.action for e in s.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq))]
    assert "user.added" in actions and "invitation.accepted" in actions


def test_admin_deactivates_contacts_and_recovers(client, network, db, clock):
    from hub.accounts.models import User
    from hub.directory.models import Contact

    add_member(db, network, clock, "pp-shelter-a", "agency_admin")
    add_member(db, network, clock, "pp-shelter-a", "caseworker")
    sign_in(client, "pp-shelter-a.agency_admin")
    token = csrf(client.get("/admin").text)
    with db() as s:
        worker = s.scalar(sa.select(User).where(User.username == "pp-shelter-a.caseworker"))
    resp = client.post(f"/admin/users/{worker.id}/deactivate", data={"row-csrf_token": token})
    assert resp.status_code == 302
    with db() as s:
        assert s.get(User, worker.id).active is False
    bad = client.post("/admin/contacts", data={"contact-csrf_token": token, "contact-name": "Duty Fictional",
                                               "contact-phone": "12", "contact-lang": "en",
                                               "contact-role": "caseworker"})
    assert bad.status_code == 400 and "cannot be used" in bad.text
    ok = client.post("/admin/contacts", data={"contact-csrf_token": token, "contact-name": "Duty Fictional",
                                              "contact-phone": "+44 7700 900123", "contact-lang": "en",
                                              "contact-role": "caseworker", "contact-duty": "y"})
    assert ok.status_code == 302
    with db() as s:
        duty = s.scalars(sa.select(Contact).where(Contact.agency_id == "pp-shelter-a", Contact.duty.is_(True))).all()
        assert [c.phone for c in duty] == ["+447700900123"]
    wrong = client.post("/admin/recover", data={"recover-csrf_token": token, "recover-user_id": "0",
                                                "recover-code": "nope", "recover-password": PASSWORD,
                                                "recover-confirm": PASSWORD})
    assert wrong.status_code == 400
    # A change the page does not offer is refused and changes nothing: the duty contact stays on duty.
    odd = client.post(f"/admin/contacts/{duty[0].id}/promote", data={"row-csrf_token": token})
    assert odd.status_code == 400 and "duty or remove" in odd.text
    assert client.post(f"/admin/users/{worker.id}/promote", data={"row-csrf_token": token}).status_code == 404
    with db() as s:
        assert s.get(Contact, duty[0].id).duty is True


def test_settings_change_password_and_language(app, client, network, db, clock):
    add_member(db, network, clock, "pp-shelter-a", "caseworker")
    sign_in(client, "pp-shelter-a.caseworker")
    page = client.get("/settings")
    new = "another long passphrase 7"
    wrong = client.post("/settings/password", data={"password-csrf_token": csrf(page.text),
                                                    "password-current": "not it at all", "password-password": new,
                                                    "password-confirm": new})
    assert wrong.status_code == 400
    ok = client.post("/settings/password", data={"password-csrf_token": csrf(page.text),
                                                 "password-current": PASSWORD, "password-password": new,
                                                 "password-confirm": new})
    assert ok.status_code == 302
    lang = client.post("/language", data={"csrf_token": csrf(page.text), "lang": "km", "next": "/settings"})
    assert lang.status_code == 302
    other = app.test_client()
    sign_in(other, "pp-shelter-a.caseworker", new)  # the key ring copy follows the new password
    assert 'lang="km"' in other.get("/inbox").text


def test_every_form_refuses_a_post_without_its_csrf_token(app, client, network, db, clock, officer, submit):
    ref = submit()
    add_member(db, network, clock, "pp-shelter-a", "agency_admin")
    admin = app.test_client()
    sign_in(admin, "pp-shelter-a.agency_admin")
    sign_in(client, officer)
    with db() as s:
        before = {t.name: s.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                  for t in Base.metadata.sorted_tables}
    posts = [(client, "/referrals/new", referral_form("", "C")), (client, "/language", {"lang": "km", "next": "/"}),
             (client, "/settings/password", {"password-current": PASSWORD, "password-password": "x" * 12,
                                             "password-confirm": "x" * 12}),
             (client, "/settings/language", {"language-lang": "km"}), (client, "/logout", {}),
             (admin, f"/r/{ref['id']}/accept", {}), (admin, f"/r/{ref['id']}/decline", {"decline-reason": "x"}),
             (admin, "/beds", {"beds": "1"}), (admin, "/admin/invite", {"invite-name": "X", "invite-role": "officer",
                                                                         "invite-lang": "en"}),
             (admin, "/admin/contacts", {"contact-name": "X", "contact-phone": "+44 7700 900124",
                                         "contact-lang": "en", "contact-role": "caseworker"}),
             (admin, "/admin/recover", {"recover-user_id": "1", "recover-code": "x"}),
             (admin, "/admin/users/1/deactivate", {}), (admin, "/admin/contacts/1/duty", {})]
    for who, path, data in posts:
        data = {k: v for k, v in data.items() if not k.endswith("csrf_token")}
        resp = who.post(path, data=data)
        assert resp.status_code == 400, path
    with db() as s:
        after = {t.name: s.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                 for t in Base.metadata.sorted_tables}
    assert after == before


def test_web_canary_never_reaches_the_database(client, network, db, clock, officer, settings):
    marker = "CANARY" + secrets.token_hex(6)
    sign_in(client, officer)
    resp = _submit(client, marker)
    assert resp.status_code == 302
    with db() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(sa.select(table)).all():
                assert marker not in " ".join(repr(v) for v in row), table.name


def test_inbox_order_and_pages(app, client, network, db, clock, submit):
    """Open before closed; urgent (or child) first; then the most overdue; pages of 50."""
    normal_old = submit(urgency="normal")
    clock.advance(minutes=5)
    urgent = submit(urgency="urgent")
    clock.advance(minutes=5)
    closed = submit(urgency="urgent")
    child = submit(urgency="normal", child=True)
    with db() as s, s.begin():
        s.get(Referral, closed["id"]).closed_at = clock.now()
        s.get(Referral, closed["id"]).status = "declined"
    add_member(db, network, clock, "pp-shelter-a", "caseworker")
    sign_in(client, "pp-shelter-a.caseworker")
    page = client.get("/inbox").text
    codes = re.findall(r"<strong>(R-[A-Z0-9]{4})</strong>", page)
    assert codes[:2] == [urgent["code"], child["code"]]  # urgent or child, the earliest deadline first
    assert codes[2:] == [normal_old["code"], closed["code"]]
    assert "Next page" not in page
    for _ in range(50):
        submit()
    first = client.get("/inbox").text
    assert len(re.findall(r'<a href="/r/', first)) == 50 and "Next page" in first
    second = client.get("/inbox?page=2").text
    assert len(re.findall(r'<a href="/r/', second)) == 4 and closed["code"] in second
    assert client.get("/inbox?page=abc").status_code == 200


def test_every_form_answers_bad_input_in_khmer(client, network, db, clock, submit):
    """Each form, given bad input by a Khmer-speaking member, comes back (4xx, never 5xx) with a Khmer message."""
    ref = submit()
    add_member(db, network, clock, "pp-shelter-a", "agency_admin", lang="km")
    sign_in(client, "pp-shelter-a.agency_admin")
    token = csrf(client.get("/admin").text)
    posts = [
        ("/beds", {"csrf_token": token, "beds": "many"}),
        ("/beds", {"csrf_token": token, "beds": "99999"}),
        ("/admin/invite", {"invite-csrf_token": token, "invite-name": "", "invite-role": "caseworker",
                           "invite-lang": "km"}),
        ("/admin/invite", {"invite-csrf_token": token, "invite-name": "X", "invite-role": "caseworker",
                           "invite-lang": "km", "invite-username": "BAD NAME!"}),
        ("/admin/contacts", {"contact-csrf_token": token, "contact-name": "X", "contact-phone": "123",
                             "contact-lang": "km", "contact-role": "caseworker"}),
        ("/admin/recover", {"recover-csrf_token": token, "recover-user_id": "1", "recover-code": "x",
                            "recover-password": "short", "recover-confirm": "other"}),
        ("/settings/password", {"password-csrf_token": token, "password-current": "x",
                                "password-password": "short", "password-confirm": "short"}),
        (f"/r/{ref['id']}/decline", {"decline-csrf_token": token, "decline-reason": ""}),
        (f"/r/{ref['id']}/close", {"close-csrf_token": token, "close-outcome": "vanished"}),
    ]
    for path, data in posts:
        resp = client.post(path, data=data)
        assert 400 <= resp.status_code < 500, (path, resp.status_code)
        messages = re.findall(r'class="(?:field-error|error)"[^>]*>([^<]*)<', resp.text)
        assert messages and all(re.search(r"[\u1780-\u17ff]", m) for m in messages), (path, messages)


def test_pages_without_rights_or_with_unknown_ids(client, network, db, clock):
    add_member(db, network, clock, "pp-shelter-a", "caseworker")
    sign_in(client, "pp-shelter-a.caseworker")
    assert client.get("/r/00000000-0000-4000-8000-000000000000").status_code == 404
    assert client.get("/r/not-a-uuid").status_code == 404
    assert client.get("/admin").status_code == 403
    assert client.get("/referrals/new").status_code == 403
    assert client.get("/referrals/new?previous=00000000-0000-4000-8000-000000000000").status_code == 403
    assert client.post("/r/00000000-0000-4000-8000-000000000000/accept",
                       data={"accept-csrf_token": csrf(client.get("/inbox").text)}).status_code == 404
    other = add_member(db, network, clock, "pp-ahtjp", "officer")
    assert other


def test_an_upload_over_the_limit_gets_a_page_not_an_error(app, client, network, db, clock, officer):
    sign_in(client, officer)
    page = client.get("/referrals/new")
    data = referral_form(csrf(page.text), "L")
    data["photos"] = [(io.BytesIO(b"\xff" * (app.config["MAX_CONTENT_LENGTH"] + 10)), "huge.jpg", "image/jpeg")]
    resp = client.post("/referrals/new", data=data, content_type="multipart/form-data")
    assert resp.status_code == 413 and "larger than the hub accepts" in resp.text
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Referral)) == 0
