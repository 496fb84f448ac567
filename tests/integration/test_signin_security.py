"""Sign-in under attack: rate limits (429 with Retry-After), waits that keep no one out, TOTP, idle sessions.

Every test runs on SQLite and PostgreSQL, through the real app and its real Flask-Limiter.
"""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from hub import create_app, ratelimits
from hub.accounts import service as accounts
from hub.accounts import totp
from hub.accounts.models import RecoveryCode, User, UserSession
from hub.audit.models import AuditEntry
from hub.db import session_scope
from tests.instance import make_settings
from tests.webhelpers import PASSWORD, add_member, code_for, csrf, enrol_totp, sign_in, totp_secret_for

ATTACKER = "203.0.113.66"
OFFICE = "198.51.100.7"
ELSEWHERE = "192.0.2.44"


def _app(tmp_path, database_url, engine, clock, **overrides):
    settings = make_settings(tmp_path / "limited", database_url, **overrides)
    app = create_app(settings, engine=engine, clock=clock)
    app.config["TESTING"] = True
    return app


def _post_login(client, username, password, address, **kw):
    client.set_cookie("refhub_lang", "en")  # the assertions read the English page
    page = client.get("/login", environ_base={"REMOTE_ADDR": address})
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf(page.text)},
                       environ_base={"REMOTE_ADDR": address}, **kw)


def _alert(response) -> str:
    found = re.search(r'role="alert">([^<]+)<', response.text)
    return found.group(1) if found else ""


# --- the sign-in: waits per address and per account, and the user's own device ------------------------------


def test_an_attacker_is_held_back_while_the_user_signs_in_from_their_own_phone(app, client, db, network, clock):
    username = add_member(db, network, clock, "pp-shelter-a", "caseworker")
    phone = app.test_client()
    first = _post_login(phone, username, PASSWORD, OFFICE)
    assert first.status_code == 302 and any(c.startswith("refhub_device=") for c in first.headers.getlist("Set-Cookie"))
    phone.post("/logout", data={"csrf_token": csrf(phone.get("/settings").text)})

    answers = [_post_login(client, username, "a wrong guess", ATTACKER).status_code for _ in range(8)]
    assert answers[:5] == [401] * 5 and answers[5:] == [429] * 3, answers
    waited = _post_login(client, username, PASSWORD, ATTACKER)  # the attacker's address waits, right or wrong
    assert waited.status_code == 429 and int(waited.headers["Retry-After"]) > 0
    assert "wait a few minutes" in _alert(waited)
    # A new device elsewhere waits on the account's count ...
    stranger = app.test_client()
    assert _post_login(stranger, username, PASSWORD, ELSEWHERE).status_code == 429
    # ... but the user's phone, which signed in before, gets in at once, from the office or from anywhere.
    home = _post_login(phone, username, PASSWORD, ELSEWHERE)
    assert home.status_code == 302 and home.headers["Location"].endswith("/inbox")
    assert phone.get("/inbox").status_code == 200


def test_forged_x_forwarded_for_does_not_change_the_address_unless_a_proxy_is_trusted(tmp_path, database_url,
                                                                                      engine, clock, network, db):
    client = _app(tmp_path, database_url, engine, clock).test_client()
    for n in range(5):
        _post_login(client, f"nobody{n}.here", "a wrong guess", ATTACKER, headers={"X-Forwarded-For": f"192.0.2.{n}"})
    # Without trusted_proxies the header is ignored: the real peer address waits, whatever it claims.
    assert _post_login(client, "nobody9.here", "guess", ATTACKER,
                       headers={"X-Forwarded-For": "192.0.2.200"}).status_code == 429

    behind = _app(tmp_path / "proxied", database_url, engine, clock, security__trusted_proxies=1).test_client()
    # Behind one trusted proxy (the peer), the address is the one the proxy saw and wrote in the header.
    assert _post_login(behind, "nobody9.here", "guess", OFFICE,
                       headers={"X-Forwarded-For": ATTACKER}).status_code == 429
    assert _post_login(behind, "nobody9.here", "guess", ATTACKER,
                       headers={"X-Forwarded-For": OFFICE}).status_code == 401


# Each limit test runs with the counts in each process's memory (the default) and in the hub's database.
STORAGES = pytest.mark.parametrize("storage", ["memory://", "database"])


@STORAGES
def test_login_rate_limit_answers_429_per_address_and_per_account(tmp_path, database_url, engine, clock, network, db,
                                                                  storage):
    username = add_member(db, network, clock, "pp-shelter-a", "caseworker")
    app = _app(tmp_path, database_url, engine, clock, security__login_rate_limit="3 per minute",
               security__rate_limit_storage=storage)
    client = app.test_client()
    codes = [_post_login(client, f"nobody{n}.here", "x" * 12, f"192.0.2.{n % 2}").status_code for n in range(8)]
    assert codes.count(429) == 2, codes  # per address: 3 + 3 answered, then 429 for each address
    per_account = [_post_login(client, username, "guess", f"198.51.100.{n}").status_code for n in range(5)]
    assert per_account[3:] == [429, 429], per_account  # a new address each time: the account's limit
    limited = _post_login(client, username, "guess", "198.51.100.99")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "Too many" in limited.text and limited.mimetype == "text/html"


# --- the API, the webhooks, one-tap pages, invitations ---------------------------------------------------------


@STORAGES
def test_api_limits_per_token_and_unauthenticated_per_address(tmp_path, database_url, engine, clock, network, storage):
    app = _app(tmp_path, database_url, engine, clock, security__api_rate_limit="4 per minute",
               security__api_unauthenticated_rate_limit="2 per minute", security__rate_limit_storage=storage)
    client = app.test_client()
    headers = network.headers("pp-ahtjp")
    answers = [client.get("/api/v1/agencies", headers=headers).status_code for _ in range(6)]
    assert answers == [200] * 4 + [429] * 2
    limited = client.get("/api/v1/agencies", headers=headers)
    assert limited.get_json()["error"]["code"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
    assert client.get("/api/v1/agencies", headers=network.headers("pp-shelter-a")).status_code == 200, \
        "another agency's token has its own count"
    bad = [client.get("/api/v1/agencies", headers={"Authorization": f"Bearer rh_guess{n}"},
                      environ_base={"REMOTE_ADDR": ATTACKER}).status_code for n in range(4)]
    assert bad == [401, 401, 429, 429], bad
    assert client.get("/api/v1/agencies", headers={"Authorization": "Bearer rh_guess9"},
                      environ_base={"REMOTE_ADDR": OFFICE}).status_code == 401


@STORAGES
def test_webhooks_one_tap_and_invitations_are_limited_per_address(tmp_path, database_url, engine, clock, network,
                                                                  storage):
    app = _app(tmp_path, database_url, engine, clock, security__webhook_rate_limit="3 per minute",
               security__onetap_rate_limit="2 per minute", security__invite_rate_limit="2 per minute",
               security__rate_limit_storage=storage)
    client = app.test_client()
    client.set_cookie("refhub_lang", "en")
    hooks = [client.post("/webhooks/twilio/sms", data={"From": "+85512345678", "Body": "ACK"}).status_code
             for _ in range(5)]
    assert hooks[3:] == [429, 429] and 429 not in hooks[:3], hooks
    last = client.post("/webhooks/twilio/sms", data={})
    assert last.get_json()["error"]["code"] == "rate_limited" and last.headers["Retry-After"]
    taps = [client.get(f"/a/not-a-token-{n}").status_code for n in range(4)]
    assert taps == [404, 404, 429, 429], taps
    assert "Too many" in client.get("/a/again").text
    invites = [client.get(f"/invite/x{n}.y").status_code for n in range(3)]
    assert invites[2] == 429 and 429 not in invites[:2], invites


def test_database_counts_start_a_new_window_and_the_ended_ones_are_deleted(engine):
    now = [1_800_000_000.0]
    store = ratelimits.DatabaseStorage(engine=engine, now=lambda: now[0])
    assert [store.incr("address:192.0.2.1", 60) for _ in range(3)] == [1, 2, 3]
    assert store.get("address:192.0.2.1") == 3 and store.get_expiry("address:192.0.2.1") == now[0] + 60
    assert store.incr("address:192.0.2.2", 600) == 1
    now[0] += 61  # the first key's window has ended: its next hit starts a new one
    assert store.get("address:192.0.2.1") == 0
    assert store.incr("address:192.0.2.1", 60) == 1 and store.get_expiry("address:192.0.2.1") == now[0] + 60
    now[0] += 61
    with engine.begin() as conn:
        assert ratelimits.prune(conn, int(now[0] * 1000)) == 1  # the ended window goes, the ten-minute one stays
        assert conn.execute(sa.select(sa.func.count()).select_from(ratelimits.RateLimitWindow)).scalar() == 1
    store.clear("address:192.0.2.2")
    assert store.get("address:192.0.2.2") == 0 and store.check()


def test_when_the_database_counts_cannot_be_reached_each_process_counts_in_memory(tmp_path, database_url, engine,
                                                                                  clock, network):
    app = _app(tmp_path, database_url, engine, clock, security__onetap_rate_limit="2 per minute",
               security__rate_limit_storage="database")
    client = app.test_client()
    assert [client.get(f"/a/not-a-token-{n}").status_code for n in range(3)] == [404, 404, 429]
    with engine.begin() as conn:  # the counts' table is out of reach (as with a broken or locked database)
        conn.execute(sa.text("ALTER TABLE rate_limit_window RENAME TO rate_limit_window_away"))
    try:
        # No 500 and no one refused for the counter's sake; the limit still holds, counted in this process.
        taps = [client.get(f"/a/not-a-token-{n}", environ_base={"REMOTE_ADDR": OFFICE}).status_code for n in range(3)]
        assert taps == [404, 404, 429], taps
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE rate_limit_window_away RENAME TO rate_limit_window"))


# --- TOTP -------------------------------------------------------------------------------------------------------

COORDINATOR_PAGES = ("/board", "/reports", "/reports.csv", "/admin", "/inbox", "/settings")


def _password_only(client, username, address=OFFICE):
    response = _post_login(client, username, PASSWORD, address)
    assert response.status_code == 302
    return response


def test_a_coordinator_without_the_code_reaches_no_page_and_no_endpoint(client, db, network, clock, submit):
    referral = submit()
    username = add_member(db, network, clock, "pp-committee", "coordinator")
    step = _password_only(client, username)
    assert "/login/totp" in step.headers["Location"]
    for path in (*COORDINATOR_PAGES, f"/r/{referral['id']}"):
        response = client.get(path)
        # Every page, the coordinators' too, sends a half-signed-in member to the TOTP step.
        assert response.status_code == 302 and "/login/totp" in response.headers["Location"], path
    for path in ("/api/v1/escalations", "/api/v1/reports/summary", f"/api/v1/referrals/{referral['id']}"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.get_json()["error"]["code"] == "second_step_required"
    took = client.post(f"/api/v1/escalations/{referral['id']}/take", json={})
    assert took.status_code == 401
    page = client.get("/login/totp")
    wrong = client.post("/login/totp", data={"code": "000000", "csrf_token": csrf(page.text)})
    assert wrong.status_code == 401 and client.get("/board").status_code == 302
    right = client.post("/login/totp", data={"code": code_for(client, username), "csrf_token": csrf(page.text)})
    assert right.status_code == 302 and right.headers["Location"].endswith("/board")
    for path in ("/board", "/reports", "/reports.csv", "/settings", f"/r/{referral['id']}"):
        assert client.get(path).status_code == 200, path
    for path in ("/admin", "/inbox"):  # not a coordinator's pages, but no longer the TOTP step either
        assert "/login" not in client.get(path).headers.get("Location", ""), path
    assert client.get("/api/v1/escalations").status_code == 200


def test_a_code_is_used_once_and_wrong_codes_end_the_half_open_session(app, client, db, network, clock):
    username = add_member(db, network, clock, "pp-committee", "coordinator")
    sign_in(client, username)
    other = app.test_client()
    _password_only(other, username)  # (in English: _post_login sets the language)
    page = other.get("/login/totp")
    reused = totp.code_now(totp_secret_for(username), clock.now())  # the step sign_in just used
    refused = other.post("/login/totp", data={"code": reused, "csrf_token": csrf(page.text)})
    assert refused.status_code == 401 and "used already" in _alert(refused)
    for _ in range(accounts.CODE_FAILURES - 2):
        other.post("/login/totp", data={"code": "123456", "csrf_token": csrf(page.text)})
    ended = other.post("/login/totp", data={"code": "123456", "csrf_token": csrf(page.text)})
    assert ended.status_code == 302 and ended.headers["Location"].startswith("/login")
    assert other.get("/login/totp").headers["Location"].startswith("/login")


def test_enrolment_is_forced_then_recovery_codes_work_once(app, client, db, network, clock):
    with session_scope(db) as s:
        user, token = accounts.add_user(s, agency_id="pp-committee", role="agency_admin", name="Fictional Admin",
                                        username="pp-committee.newadmin", lang="en", clock=clock,
                                        keyring=network.rings["pp-committee"])
        accounts.accept_invitation(s, token, PASSWORD, clock)
    step = _password_only(client, "pp-committee.newadmin")
    assert "/settings/totp" in step.headers["Location"]
    for path in ("/admin", "/inbox", "/settings", "/login/totp"):
        assert "/settings/totp" in client.get(path).headers["Location"], path
    assert client.get("/api/v1/agencies").status_code == 401
    enrol = client.get("/settings/totp")
    assert enrol.status_code == 200 and "<svg" in enrol.text and "<script" not in enrol.text
    assert "script-src 'none'" in enrol.headers["Content-Security-Policy"]
    secret = re.search(r'<code class="secret">([A-Z2-7]{32})</code>', enrol.text).group(1)
    assert 'href="/admin"' not in enrol.text, "no navigation while enrolment is the only way on"
    again = client.get("/settings/totp")
    assert secret in again.text, "reloading shows the same secret"
    with session_scope(db) as s:
        stored = s.scalars(sa.select(User).where(User.username == "pp-committee.newadmin")).one()
        assert secret not in (stored.totp_pending or "") and stored.totp_pending.startswith("v1.")
    bad = client.post("/settings/totp/confirm", data={"code": "999999", "csrf_token": csrf(enrol.text)})
    assert bad.status_code == 400
    done = client.post("/settings/totp/confirm", data={"code": totp.code_now(secret, clock.now()),
                                                       "csrf_token": csrf(enrol.text)})
    codes = re.findall(r"<li><code>([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})</code></li>", done.text)
    assert done.status_code == 200 and len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/admin").status_code == 200
    with session_scope(db) as s:
        stored = s.scalars(sa.select(User).where(User.username == "pp-committee.newadmin")).one()
        hashes = set(s.scalars(sa.select(RecoveryCode.code_hash)))
        assert secret not in stored.totp_secret and not any(c in h for c in codes for h in hashes)

    fresh = app.test_client()
    _password_only(fresh, "pp-committee.newadmin")
    page = fresh.get("/login/totp")
    used = fresh.post("/login/totp", data={"code": codes[0].lower(), "csrf_token": csrf(page.text)})
    assert used.status_code == 302 and fresh.get("/admin").status_code == 200
    third = app.test_client()
    _password_only(third, "pp-committee.newadmin")
    page = third.get("/login/totp")
    assert third.post("/login/totp", data={"code": codes[0], "csrf_token": csrf(page.text)}).status_code == 401
    assert third.post("/login/totp", data={"code": codes[1], "csrf_token": csrf(page.text)}).status_code == 302


def test_turning_totp_off_needs_a_code_and_a_required_role_must_enrol_again(client, db, network, clock):
    username = add_member(db, network, clock, "pp-committee", "coordinator")
    sign_in(client, username)
    page = client.get("/settings/totp")
    assert "TOTP is on" in page.text
    refused = client.post("/settings/totp/disable", data={"disable-code": "000000", "csrf_token": csrf(page.text)})
    assert refused.status_code == 400
    clock.advance(seconds=30)
    off = client.post("/settings/totp/disable", data={"disable-code": code_for(client, username),
                                                      "csrf_token": csrf(page.text)})
    assert off.status_code == 302
    assert "/settings/totp" in client.get("/settings").headers["Location"], "back to enrolment before anything else"
    assert "/settings/totp" in client.get("/board").headers["Location"], "the board too: a member page like any"


def test_new_recovery_codes_need_a_current_code_and_void_the_old_ones(app, client, db, network, clock):
    username = add_member(db, network, clock, "pp-committee", "coordinator")
    with session_scope(db) as s:
        user = s.scalars(sa.select(User).where(User.username == username)).one()
        old = totp.new_recovery_codes()
        s.add_all(RecoveryCode(user_id=user.id, code_hash=totp.recovery_hash(user.id, c), created_at=clock.now())
                  for c in old)
    sign_in(client, username)
    page = client.get("/settings/totp")
    assert "Recovery codes left: 10" in page.text and "Make new recovery codes" in page.text
    for refused in ({"renew-code": "000000", "csrf_token": csrf(page.text)},  # a wrong code
                    {"renew-code": old[0], "csrf_token": csrf(page.text)},  # a recovery code is not enough
                    {"renew-code": code_for(client, username)}):  # no CSRF token
        answer = client.post("/settings/totp/recovery-codes", data=refused)
        assert answer.status_code == 400 and "<li><code>" not in answer.text
    with session_scope(db) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(RecoveryCode).where(RecoveryCode.used_at.is_(None))) == 10
    clock.advance(seconds=30)
    renewed = client.post("/settings/totp/recovery-codes", data={"renew-code": code_for(client, username),
                                                                 "csrf_token": csrf(page.text)})
    codes = re.findall(r"<li><code>([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})</code></li>", renewed.text)
    assert renewed.status_code == 200 and len(set(codes)) == 10 and not set(codes) & set(old)
    assert "The old recovery codes no longer work" in renewed.text
    with session_scope(db) as s:
        actions = list(s.scalars(sa.select(AuditEntry.action).where(AuditEntry.action.like("totp.%"))))
        assert actions == ["totp.recovery_codes_renewed"]
    assert "<li><code>" not in client.get("/settings/totp").text, "the codes are shown once"
    # An old code no longer opens the second step; a new one does.
    stranger = app.test_client()
    _password_only(stranger, username)
    step = stranger.get("/login/totp")
    assert stranger.post("/login/totp", data={"code": old[1], "csrf_token": csrf(step.text)}).status_code == 401
    assert stranger.post("/login/totp", data={"code": codes[0], "csrf_token": csrf(step.text)}).status_code == 302


def test_a_caseworker_who_enrolled_is_asked_for_the_code_too(client, db, network, clock):
    username = add_member(db, network, clock, "pp-shelter-a", "caseworker")
    enrol_totp(db, username)
    assert "/login/totp" in _password_only(client, username).headers["Location"]


# --- idle sessions -----------------------------------------------------------------------------------------------


def test_a_session_idle_longer_than_session_idle_is_signed_out(client, db, network, clock):
    username = add_member(db, network, clock, "pp-shelter-a", "caseworker")
    sign_in(client, username)
    for _ in range(5):  # busy for two hours, never 30 minutes apart: still signed in
        clock.advance(minutes=24)
        assert client.get("/inbox").status_code == 200
    clock.advance(minutes=31)
    gone = client.get("/inbox")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]
    with session_scope(db) as s:
        assert s.scalar(sa.select(UserSession.idle_seconds)) == 30 * 60


def test_guessing_codes_with_a_known_password_makes_the_account_wait(app, db, network, clock):
    username = add_member(db, network, clock, "pp-committee", "coordinator")
    thief = app.test_client()
    for _ in range(accounts.THROTTLE_FREE):  # five wrong codes, over two sign-ins with the right password
        _password_only(thief, username, ATTACKER)
        page = thief.get("/login/totp")
        thief.post("/login/totp", data={"code": "111111", "csrf_token": csrf(page.text)})
    # The account now waits for devices it does not know, even with the right password ...
    assert _post_login(app.test_client(), username, PASSWORD, ELSEWHERE).status_code == 429
    with session_scope(db) as s:
        assert s.scalars(sa.select(User).where(User.username == username)).one().failed_logins == 5
