"""Two people answer the same referral at the same moment, through different faces, on two worker processes.

The hub runs under gunicorn with two sync workers on PostgreSQL, as in production. For each
pair of faces (API, SMS, one-tap link, the web form) and each pair of answers, two requests are released together (a barrier)
RACES times. After each race: exactly one answer won, the loser got its face's refusal
(409 from the API, "already ..." by SMS, the taken page for a one-tap link), nobody got a
5xx, the history is a legal path of PROTOCOL.md section 3, and nobody got the same text twice.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from hub.accounts import service as accounts
from hub.clock import SystemClock
from hub.db import make_engine, make_sessionmaker, session_scope
from hub.notify.service import issue_ack_token
from hub.referrals.models import Referral
from tests.factories import add_contact, fictional_body, load_network
from tests.instance import GENEROUS_LIMITS, ROOT, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RACES = 30
AUTH_TOKEN = "race-test-auth-token-0123456789ab"
WEB_PASSWORD = "a long race-test passphrase 42"
SHELTER_PHONE = "+447700900601"  # a caseworker contact of pp-shelter-a
LEGAL = {  # PROTOCOL.md section 3
    "sent": {"acknowledged", "accepted", "declined", "withdrawn"},
    "acknowledged": {"accepted", "declined", "withdrawn"},
    "accepted": {"in_care", "failed", "withdrawn"},
    "in_care": {"closed"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, request):
    pg_url = request.getfixturevalue("pg_url")
    engine_fixture = request.getfixturevalue("_pg_engine")
    from tests.dbreset import empty_postgres

    empty_postgres(engine_fixture)
    folder = tmp_path_factory.mktemp("races")
    port = _free_port()
    public = f"http://127.0.0.1:{port}"
    # Hundreds of sign-ins, texts and taps a minute from one address: the rate limits (their own tests)
    # would answer 429 long before the races are run.
    settings = make_settings(folder, pg_url, env={"HUB_PUBLIC_BASE_URL": public}, **GENEROUS_LIMITS)
    engine = make_engine(pg_url)
    sessions = make_sessionmaker(engine)
    clock = SystemClock()
    network = load_network(sessions, settings, clock, enrolled=("pp-ahtjp", "pp-shelter-a"))
    contact = add_contact(sessions, "pp-shelter-a", SHELTER_PHONE, role="caseworker")
    with session_scope(sessions) as s:
        _user, invitation = accounts.add_user(s, agency_id="pp-shelter-a", role="caseworker", name="Race Caseworker",
                                              username="pp-shelter-a.race", lang="en", clock=clock,
                                              keyring=network.rings["pp-shelter-a"])
    with session_scope(sessions) as s:
        accounts.accept_invitation(s, invitation, WEB_PASSWORD, clock)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "TWILIO_"))}
    env.update(HUB_CONFIG=str(settings.config_path), HUB_DATABASE_URL=pg_url, HUB_SECRET_KEY="r" * 48,
               HUB_PUBLIC_BASE_URL=public, TWILIO_AUTH_TOKEN=AUTH_TOKEN)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    # The workers' log goes to a file: a pipe nobody reads fills up, and a worker blocked on its log
    # line would hold the referral's lock for ever.
    log = (folder / "gunicorn.log").open("w")
    process = subprocess.Popen([str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", str(ROOT),
                                "--timeout", "300", "wsgi:app"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{public}/healthz", timeout=10).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or the workers are still starting
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail("gunicorn did not start: " + (folder / "gunicorn.log").read_text(errors="replace")[-2000:])
        time.sleep(0.3)
    web = requests.Session()  # the caseworker signed in, as a browser would be
    page = web.get(f"{public}/login", timeout=300)
    signed_in = web.post(f"{public}/login", data={"username": "pp-shelter-a.race", "password": WEB_PASSWORD,
                                                  "csrf_token": _csrf(page.text)}, allow_redirects=False, timeout=300)
    assert signed_in.status_code in (302, 303), signed_in.text[-500:]
    yield {"url": public, "network": network, "sessions": sessions, "contact": contact, "clock": clock, "web": web}
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()
    engine.dispose()


def _csrf(html: str) -> str:
    return re.search(r'name="(?:[a-z_]+-)?csrf_token" (?:type="hidden" )?value="([^"]+)"', html).group(1)


def _new_referral(hub) -> dict:
    network = hub["network"]
    resp = requests.post(f"{hub['url']}/api/v1/referrals", json=network.submission(body=fictional_body()),
                         headers=network.headers("pp-ahtjp"), timeout=300)
    assert resp.status_code == 201, resp.text
    return resp.json()


# --- the faces -------------------------------------------------------------------------------------


def _api(verb: str, agency: str, body: dict | None = None):
    def call(hub, ref, session):
        resp = session.post(f"{hub['url']}/api/v1/referrals/{ref['id']}/{verb}", json=body or {},
                            headers=hub["network"].headers(agency), timeout=300)
        won = resp.status_code == 200
        lost = resp.status_code == 409 and resp.json()["error"]["code"] == "wrong_state"
        return resp.status_code, won, lost
    return call


def _sms(command: str):
    def call(hub, ref, session):
        url = f"{hub['url']}/webhooks/twilio/sms"
        params = {"From": SHELTER_PHONE, "To": "+447700900000", "Body": command.format(code=ref["code"]),
                  "MessageSid": "SM" + uuid.uuid4().hex}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        resp = session.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=300)
        text = resp.text
        won = resp.status_code == 200 and "Thank you." in text
        lost = resp.status_code == 200 and "was already" in text and "Nothing was changed" in text
        return resp.status_code, won, lost
    return call


def _onetap():
    def call(hub, ref, session):
        resp = session.post(f"{hub['url']}/a/{ref['token']}", timeout=300)
        won = resp.status_code == 200 and "is acknowledged. The sender is told." in resp.text
        lost = resp.status_code == 200 and "Already taken" in resp.text
        return resp.status_code, won, lost
    return call


def _web(action: str, reason: str | None = None):
    """The referral page's form, posted by the signed-in caseworker (a redirect back to the page is done)."""
    def call(hub, ref, _session):
        data = {f"{action}-csrf_token": ref["csrf"]}
        if reason:
            data[f"{action}-reason"] = reason
        resp = hub["web"].post(f"{hub['url']}/r/{ref['id']}/{action}", data=data, allow_redirects=False,
                               timeout=300)
        return resp.status_code, resp.status_code in (302, 303), resp.status_code == 409
    return call


FACES = {
    "api-ack": _api("acknowledge", "pp-shelter-a"),
    "sms-ack": _sms("ACK {code}"),
    "onetap-ack": _onetap(),
    "api-accept": _api("accept", "pp-shelter-a"),
    "sms-accept": _sms("ACCEPT {code}"),
    "api-decline": _api("decline", "pp-shelter-a", {"reason": "no bed tonight"}),
    "sms-decline": _sms("DECLINE {code} no bed tonight"),
    "api-withdraw": _api("withdraw", "pp-ahtjp", {"reason": "family found"}),
    "web-ack": _web("acknowledge"),
    "web-accept": _web("accept"),
    "web-decline": _web("decline", "no bed tonight"),
}

PAIRS = [
    ("api-ack", "sms-ack"), ("api-ack", "onetap-ack"), ("sms-ack", "onetap-ack"),
    ("api-accept", "sms-decline"), ("sms-accept", "api-decline"),
    ("api-accept", "api-withdraw"), ("sms-accept", "api-withdraw"),
    ("api-decline", "api-withdraw"), ("sms-decline", "api-withdraw"),
    ("web-ack", "api-ack"), ("web-ack", "sms-ack"), ("web-ack", "onetap-ack"),
    ("web-accept", "sms-decline"), ("web-decline", "api-accept"), ("web-decline", "api-withdraw"),
]


def _race(hub, first, second):
    ref = _new_referral(hub)
    with session_scope(hub["sessions"]) as s:
        ref["token"] = issue_ack_token(s, referral_id=ref["id"], clock="ack", contact_id=hub["contact"],
                                       now=hub["clock"].now())
    if first.startswith("web-") or second.startswith("web-"):
        ref["csrf"] = _csrf(hub["web"].get(f"{hub['url']}/r/{ref['id']}", timeout=300).text)
    barrier = threading.Barrier(2)
    results: dict[str, tuple] = {}

    def run(name):
        session = requests.Session()
        session.get(f"{hub['url']}/healthz", timeout=10)  # connected before the start
        barrier.wait()
        results[name] = FACES[name](hub, ref, session)

    threads = [threading.Thread(target=run, args=(n,)) for n in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ref, results


def _history(hub, referral_id) -> list[str]:
    with hub["sessions"]() as s:
        return [e.state for e in s.get(Referral, referral_id).events]


def _duplicate_texts(hub, referral_id) -> int:
    with hub["sessions"]() as s:
        return s.execute(sa.text(
            "SELECT count(*) FROM (SELECT to_phone, template FROM outbox_message WHERE referral_id = :id "
            "GROUP BY to_phone, template, clock, step, repeat HAVING count(*) > 1) d"), {"id": referral_id}).scalar()


@pytest.mark.parametrize("first,second", PAIRS, ids=[f"{a}-vs-{b}" for a, b in PAIRS])
def test_two_answers_at_once_have_one_winner(hub, first, second):
    tally = {"one winner": 0}
    for _ in range(RACES):
        ref, results = _race(hub, first, second)
        statuses = {name: r[0] for name, r in results.items()}
        assert all(code < 500 for code in statuses.values()), statuses
        winners = [name for name, (_code, won, _lost) in results.items() if won]
        losers = [name for name, (_code, _won, lost) in results.items() if lost]
        history = _history(hub, ref["id"])
        if len(winners) == 2 and "api-withdraw" in (first, second) and "accept" in first + second:
            # Withdrawing an accepted placement is itself legal (accepted -> withdrawn): both answers
            # may stand, but only in that order, each seen by the other's texts.
            assert history == ["sent", "accepted", "withdrawn"], (results, history)
        else:
            assert len(winners) == 1 and len(losers) == 1, (results, history)
            assert len(history) == 2, history
        assert history[0] == "sent"
        assert all(b in LEGAL.get(a, set()) for a, b in zip(history, history[1:])), history
        assert _duplicate_texts(hub, ref["id"]) == 0
        tally["one winner"] += 1
    assert tally["one winner"] == RACES
