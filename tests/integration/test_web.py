"""The first web pages: an invited caseworker sets a password, signs in, and sees the inbox."""
from __future__ import annotations

import re

from hub.accounts import service as accounts
from hub.db import session_scope

PASSWORD = "a long test passphrase 42"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _invited_user(db, network, clock, agency="pp-shelter-a", role="caseworker"):
    with session_scope(db) as s:
        user, token = accounts.add_user(s, agency_id=agency, role=role, name="Test Caseworker (fictional)",
                                        username=f"{agency}.web", clock=clock, keyring=network.rings[agency])
        return user.username, token


def test_invitation_login_and_inbox(client, network, db, clock, submit):
    ref = submit()
    username, token = _invited_user(db, network, clock)
    page = client.get(f"/invite/{token}")
    assert page.status_code == 200
    resp = client.post(f"/invite/{token}", data={"password": PASSWORD, "confirm": PASSWORD,
                                                 "csrf_token": _csrf(page.text)})
    assert resp.status_code == 302
    # The invitation is single use.
    again = client.get(f"/invite/{token}")
    form = client.post(f"/invite/{token}", data={"password": PASSWORD, "confirm": PASSWORD,
                                                 "csrf_token": _csrf(again.text)})
    assert form.status_code == 400

    login = client.get("/login")
    resp = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": _csrf(login.text)})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/inbox")
    inbox = client.get("/inbox")
    assert inbox.status_code == 200
    assert ref["code"] in inbox.text
    assert "Test Person" not in inbox.text  # metadata only
    assert "script-src 'none'" in inbox.headers["Content-Security-Policy"]


def test_wrong_password_is_refused_without_saying_which_part(client, network, db, clock):
    username, token = _invited_user(db, network, clock)
    page = client.get(f"/invite/{token}")
    client.post(f"/invite/{token}", data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": _csrf(page.text)})
    login = client.get("/login")
    wrong = client.post("/login", data={"username": username, "password": "not it at all",
                                        "csrf_token": _csrf(login.text)})
    unknown = client.post("/login", data={"username": "nobody.here", "password": "not it at all",
                                          "csrf_token": _csrf(login.text)})
    assert wrong.status_code == unknown.status_code == 401
    assert re.search(r'role="alert">([^<]+)<', wrong.text).group(1) == \
        re.search(r'role="alert">([^<]+)<', unknown.text).group(1)
    assert client.get("/inbox").status_code == 302


def test_forms_need_the_csrf_token(client, network, db, clock):
    username, _token = _invited_user(db, network, clock)
    resp = client.post("/login", data={"username": username, "password": PASSWORD})
    assert resp.status_code == 400


def test_cookie_session_cannot_post_forms_to_the_api(client, network, db, clock, submit):
    ref = submit()
    username, token = _invited_user(db, network, clock)
    page = client.get(f"/invite/{token}")
    client.post(f"/invite/{token}", data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": _csrf(page.text)})
    login = client.get("/login")
    client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": _csrf(login.text)})
    # What a cross-site form could send: the cookie rides along, but not a JSON content type.
    resp = client.post(f"/api/v1/referrals/{ref['id']}/acknowledge", data="x=1",
                       content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400
    ok = client.post(f"/api/v1/referrals/{ref['id']}/acknowledge", json={})
    assert ok.status_code == 200 and ok.get_json()["status"] == "acknowledged"
