"""Who gets what, on every page and endpoint of the app (every rule of app.url_map, every method).

A route without an entry in MATRIX fails the first test: a new page or endpoint must say here who
may reach it. Each entry is one request and the status every actor gets, for every relation to the
referral asked about: the sender agency's officer and system, the receiving agency's caseworker,
admin and system, the agency that received it before it was re-routed, an unrelated agency's
caseworker and system, coordinators in and out of the receiving agency's province, the national
committee, and nobody. 404 wherever the existence of a referral must not leak.

Sign-in goes through tests.webhelpers.sign_in (one helper to adapt when sign-in gains steps).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hub.accounts.models import User
from hub.directory.models import Contact
from hub.escalation import service as escalation
from tests.factories import ENROLLED, load_network
from tests.instance import GENEROUS_LIMITS, make_settings
from tests.webhelpers import add_member, csrf, sign_in

SENDER, RECEIVER, PREVIOUS, UNRELATED = "pp-ahtjp", "pp-shelter-a", "pp-shelter-b", "sr-shelter"
COORD_IN, COORD_OUT, NATIONAL = "pp-committee", "sr-committee", "ncct"

# actor -> (agency, web role) for people, (agency, None) for an agency's API token, None for nobody.
ACTORS = {
    "anonymous": None,
    "officer": (SENDER, "officer"),
    "caseworker": (RECEIVER, "caseworker"),
    "admin": (RECEIVER, "agency_admin"),
    "previous": (PREVIOUS, "caseworker"),
    "unrelated": (UNRELATED, "caseworker"),
    "coord_in": (COORD_IN, "coordinator"),
    "coord_out": (COORD_OUT, "coordinator"),
    "national": (NATIONAL, "coordinator"),
    "token_sender": (SENDER, None),
    "token_receiver": (RECEIVER, None),
    "token_unrelated": (UNRELATED, None),
}
PEOPLE = [a for a, v in ACTORS.items() if v and v[1]]
TOKENS = [a for a, v in ACTORS.items() if v and not v[1]]
COORDS = ("coord_in", "coord_out", "national")


def expect(default: int, **by_actor: int) -> dict[str, int]:
    out = {a: default for a in ACTORS}
    groups = {"people": PEOPLE, "tokens": TOKENS, "coords": COORDS}
    for key, status in by_actor.items():
        for actor in groups.get(key, [key]):
            out[actor] = status
    return out


@dataclass
class Probe:
    method: str
    path: str  # {ref}: the re-routed referral; {fresh}: a referral made for this probe alone
    expected: dict[str, int]
    form: dict | None = None  # a web form (CSRF token added)
    json: dict | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


WEB_PAGE = expect(200, anonymous=302, tokens=302)  # any signed-in person; nobody (a token too) to /login
PUBLIC = expect(200)
API_ANY = expect(200, anonymous=401)

MATRIX: dict[tuple[str, str], list[Probe]] = {}

P = Probe
PROBES: list[tuple[str, str, Probe]] = [
    # rule, method, probe
    ("/", "GET", P("GET", "/", expect(302))),  # to /login or to the member's first page
    ("/fonts/NotoSansKhmer.ttf", "GET", P("GET", "/fonts/NotoSansKhmer.ttf", PUBLIC)),
    ("/static/<path:filename>", "GET", P("GET", "/static/hub.css", PUBLIC)),
    ("/healthz", "GET", P("GET", "/healthz", PUBLIC)),
    ("/readyz", "GET", P("GET", "/readyz", PUBLIC)),
    # the test settings allow every address; the metrics allow-list is the operator's
    ("/metrics", "GET", P("GET", "/metrics", PUBLIC)),
    ("/login", "GET", P("GET", "/login", PUBLIC)),
    # a wrong password, whoever asks
    ("/login", "POST", P("POST", "/login", expect(401),
      form={"username": "nobody.here", "password": "wrong password 1"})),
    # the second step of sign-in: only for a session that has passed its password and waits for a code
    ("/login/totp", "GET", P("GET", "/login/totp", expect(302))),
    ("/login/totp", "POST", P("POST", "/login/totp", expect(302), form={"code": "000000"})),
    ("/logout", "POST", P("POST", "/logout", expect(302), form={})),
    ("/language", "POST", P("POST", "/language", expect(302), form={"lang": "km"})),
    # the page says the link is not valid
    ("/invite/<token>", "GET", P("GET", "/invite/not-a-real-invitation", PUBLIC)),
    ("/invite/<token>", "POST", P("POST", "/invite/not-a-real-invitation", expect(400), form={"password": "x"})),
    ("/a/<token>", "GET", P("GET", "/a/not-a-real-link", expect(404))),
    ("/a/<token>", "POST", P("POST", "/a/not-a-real-link", expect(404), form={})),
    ("/sms/console", "GET", P("GET", "/sms/console", PUBLIC)),  # the demo's console gateway
    # no Twilio auth token configured: webhooks disabled
    ("/webhooks/twilio/sms", "POST", P("POST", "/webhooks/twilio/sms", expect(403),
      form={"From": "+447700900001", "Body": "hi"})),
    ("/webhooks/twilio/status/<nonce>", "POST", P("POST", "/webhooks/twilio/status/none", expect(403),
                                                  form={"MessageSid": "SM0", "MessageStatus": "delivered"})),
    ("/inbox", "GET", P("GET", "/inbox", WEB_PAGE)),
    ("/sent", "GET", P("GET", "/sent", WEB_PAGE)),
    ("/settings", "GET", P("GET", "/settings", WEB_PAGE)),
    # signed in: the form is checked
    ("/settings/language", "POST", P("POST", "/settings/language", expect(400, anonymous=302, tokens=302),
      form={"lang": "en"})),
    ("/settings/password", "POST", P("POST", "/settings/password", expect(400, anonymous=302, tokens=302),
      form={"current": "wrong", "new": "short"})),
    # TOTP enrolment: any signed-in person may turn it on (the matrix's members have it on already)
    ("/settings/totp", "GET", P("GET", "/settings/totp", WEB_PAGE)),
    ("/settings/totp/confirm", "POST", P("POST", "/settings/totp/confirm", expect(400, anonymous=302, tokens=302),
      form={"code": "000000"})),
    ("/settings/totp/disable", "POST", P("POST", "/settings/totp/disable", expect(400, anonymous=302, tokens=302),
      form={"code": "000000"})),
    ("/settings/totp/recovery-codes", "POST", P("POST", "/settings/totp/recovery-codes",
      expect(400, anonymous=302, tokens=302), form={"code": "000000"})),
    ("/referrals/new", "GET", P("GET", "/referrals/new", expect(403, anonymous=302, tokens=302, officer=200, admin=200))),
    ("/referrals/new", "POST", P("POST", "/referrals/new", expect(403, anonymous=302, tokens=302, officer=400, admin=400),
      form={})),
    # an agency with beds only
    ("/beds", "GET", P("GET", "/beds", expect(200, anonymous=302, tokens=302, officer=404, coords=404))),
    ("/beds", "POST", P("POST", "/beds", expect(400, anonymous=302, tokens=302, officer=404, coords=404),
      form={"beds_available": "2"})),
    ("/r/<referral_id>", "GET", P("GET", "/r/{ref}", expect(404, anonymous=302, tokens=302, officer=200, caseworker=200, admin=200, coord_in=200,
                                national=200))),  # the previous recipient and the other province: 404
    # the sender may not acknowledge (the page again, 400); anyone else outside the two parties: 404
    ("/r/<referral_id>/<action>", "POST", P("POST", "/r/{fresh}/acknowledge", expect(404, anonymous=302, tokens=302, officer=400, caseworker=302, admin=302),
      form={})),
    ("/board", "GET", P("GET", "/board", expect(403, anonymous=302, tokens=302, coords=200))),
    ("/board/<referral_id>/take", "POST", P("POST", "/board/{fresh}/take", expect(403, anonymous=302, tokens=302, coord_in=303, national=303, coord_out=404),
      form={})),
    ("/reports", "GET", P("GET", "/reports", expect(403, anonymous=302, tokens=302, coords=200))),
    ("/reports.csv", "GET", P("GET", "/reports.csv", expect(403, anonymous=302, tokens=302, coords=200))),
    ("/admin", "GET", P("GET", "/admin", expect(403, anonymous=302, tokens=302, admin=200))),
    ("/admin/invite", "POST", P("POST", "/admin/invite", expect(403, anonymous=302, tokens=302, admin=400), form={})),
    ("/admin/recover", "POST", P("POST", "/admin/recover", expect(403, anonymous=302, tokens=302, admin=400), form={})),
    ("/admin/contacts", "POST", P("POST", "/admin/contacts", expect(403, anonymous=302, tokens=302, admin=400),
      form={})),
    ("/admin/contacts/<int:contact_id>/<change>", "POST", P("POST", "/admin/contacts/{contact}/duty", expect(403, anonymous=302, tokens=302, admin=302),
      form={})),
    ("/admin/users/<int:user_id>/<change>", "POST", P("POST", "/admin/users/{user}/reinvite", expect(403, anonymous=302, tokens=302, admin=200),
      form={})),
    ("/audit/checkpoint", "GET", P("GET", "/audit/checkpoint", expect(404))),  # nothing signed yet
    ("/audit/key", "GET", P("GET", "/audit/key", expect(404))),  # no key made yet
    # beyond the (empty) tree
    ("/audit/entries", "GET", P("GET", "/audit/entries?start=0&end=1000", expect(404, anonymous=401))),
    ("/audit/proof", "GET", P("GET", "/audit/proof?index=0&size=1", expect(404, anonymous=401))),
    ("/api/v1/openapi.json", "GET", P("GET", "/api/v1/openapi.json", PUBLIC)),
    ("/api/v1/agencies", "GET", P("GET", "/api/v1/agencies", API_ANY)),
    ("/api/v1/agencies/<agency_id>/keys", "GET", P("GET", "/api/v1/agencies/pp-shelter-a/keys", PUBLIC)),
    ("/api/v1/agencies/<agency_id>/capacity", "PUT", P("PUT", "/api/v1/agencies/pp-shelter-a/capacity", expect(403, anonymous=401, caseworker=200, admin=200, token_receiver=200),
                                                       json={"beds_available": 3})),
    # each sees its own boxes (checked below)
    ("/api/v1/referrals", "GET", P("GET", "/api/v1/referrals?box=inbox", API_ANY)),
    # an empty body, checked after sign-in
    ("/api/v1/referrals", "POST", P("POST", "/api/v1/referrals", expect(400, anonymous=401), json={})),
    ("/api/v1/referrals/<referral_id>", "GET", P("GET", "/api/v1/referrals/{ref}", expect(404, anonymous=401, officer=200, caseworker=200, admin=200, token_sender=200,
                                token_receiver=200))),
    ("/api/v1/referrals/<referral_id>/acknowledge", "POST", P("POST", "/api/v1/referrals/{fresh}/acknowledge", expect(404, anonymous=401, officer=403, token_sender=403, caseworker=200, admin=200, token_receiver=200), json={})),
    ("/api/v1/referrals/<referral_id>/accept", "POST", P("POST", "/api/v1/referrals/{fresh}/accept", expect(404, anonymous=401, officer=403, token_sender=403, caseworker=200, admin=200, token_receiver=200), json={})),
    ("/api/v1/referrals/<referral_id>/decline", "POST", P("POST", "/api/v1/referrals/{fresh}/decline", expect(404, anonymous=401, officer=403, token_sender=403, caseworker=200, admin=200, token_receiver=200),
                                                           json={"reason": "no bed"})),
    # allowed, not from 'sent'
    ("/api/v1/referrals/<referral_id>/start-care", "POST", P("POST", "/api/v1/referrals/{ref}/start-care", expect(404, anonymous=401, officer=403, token_sender=403, caseworker=409, admin=409, token_receiver=409), json={})),
    # allowed, not from 'sent'
    ("/api/v1/referrals/<referral_id>/close", "POST", P("POST", "/api/v1/referrals/{ref}/close", expect(404, anonymous=401, officer=403, token_sender=403, caseworker=409, admin=409, token_receiver=409),
                                                         json={"outcome": "other"})),
    # allowed, not from 'sent'
    ("/api/v1/referrals/<referral_id>/fail", "POST", P("POST", "/api/v1/referrals/{ref}/fail", expect(404, anonymous=401, officer=403, token_sender=403, caseworker=409, admin=409, token_receiver=409),
                                                        json={"reason": "never came"})),
    ("/api/v1/referrals/<referral_id>/withdraw", "POST", P("POST", "/api/v1/referrals/{fresh}/withdraw", expect(404, anonymous=401, officer=200, token_sender=200, caseworker=403, admin=403,
                                token_receiver=403),
                                                            json={"reason": "found family"})),
    ("/api/v1/escalations", "GET", P("GET", "/api/v1/escalations", expect(403, anonymous=401, coords=200))),
    ("/api/v1/escalations/<referral_id>/take", "POST", P("POST", "/api/v1/escalations/{fresh}/take", expect(403, anonymous=401, coord_in=200, national=200, coord_out=404), json={})),
    ("/api/v1/reports/summary", "GET", P("GET", "/api/v1/reports/summary", expect(403, anonymous=401, coords=200))),
]


@dataclass
class World:
    network: object
    ref: str  # pp-ahtjp -> pp-shelter-b (declined) re-routed -> pp-shelter-a
    previous: str
    users: dict
    contact: int
    user: int
    code: str
    db: object
    settings: object


@pytest.fixture
def settings(tmp_path, database_url):
    """The project's settings with rate limits out of the way: the matrix signs each actor in once per
    route from one address; the limits have their own tests (test_signin_security.py)."""
    return make_settings(tmp_path, database_url, **GENEROUS_LIMITS)


@pytest.fixture
def network(db, settings, clock):
    """The test network, with the out-of-province committee enrolled too."""
    return load_network(db, settings, clock, enrolled=(*ENROLLED, COORD_OUT))


@pytest.fixture
def world(client, network, submit, db, clock, settings):
    first = submit(SENDER, PREVIOUS)["id"]
    resp = client.post(f"/api/v1/referrals/{first}/decline", json={"reason": "no bed"},
                       headers=network.headers(PREVIOUS))
    assert resp.status_code == 200, resp.get_json()
    ref = submit(SENDER, RECEIVER, previous_id=first)["id"]
    users = {}
    for actor, who in ACTORS.items():
        if who and who[1]:
            users[actor] = add_member(db, network, clock, who[0], who[1], username=f"{actor}.member")
    with db() as s:
        contact = s.query(Contact.id).filter(Contact.agency_id == RECEIVER).first()[0]
        user = s.query(User.id).filter(User.username == "caseworker.member").one()[0]
    code = client.get(f"/api/v1/referrals/{ref}", headers=network.headers(SENDER)).get_json()["code"]
    return World(network, ref, first, users, contact, user, code, db, settings)


def _request(app, world, submit, actor, probe):
    client = app.test_client()
    who = ACTORS[actor]
    headers = {}
    if who and who[1]:
        sign_in(client, world.users[actor])
    elif who:
        headers = world.network.headers(who[0])
    path = probe.path.format(ref=world.ref, contact=world.contact, user=world.user,
                             fresh=submit(SENDER, RECEIVER)["id"] if "{fresh}" in probe.path else "")
    kw = {}
    if probe.form is not None:
        token = csrf(client.get("/login").text) if not (who and who[1]) else _csrf_of(client)
        action = path.rstrip("/").rsplit("/", 1)[-1]
        kw["data"] = {**probe.form, "csrf_token": token, f"{action}-csrf_token": token}
    if probe.json is not None:
        kw["json"] = probe.json
    return client.open(path, method=probe.method, headers=headers, **kw)


def _csrf_of(client) -> str:
    return csrf(client.get("/settings").text)


def test_every_route_and_method_is_in_the_matrix(app):
    routes = {(rule.rule, method) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    declared = {(rule, method) for rule, method, _ in PROBES}
    assert routes - declared == set(), "routes with no entry in the access matrix"
    assert declared - routes == set(), "matrix entries for routes that do not exist"


@pytest.mark.parametrize("actor", list(ACTORS))
def test_every_route_answers_each_actor_as_declared(app, world, submit, actor):
    wrong = []
    for rule, method, probe in PROBES:
        resp = _request(app, world, submit, actor, probe)
        if resp.status_code != probe.expected[actor]:
            wrong.append(f"{method} {rule}: {resp.status_code}, expected {probe.expected[actor]}")
        if resp.status_code == 404 and probe.path.startswith("/api/") and "{" in probe.path:
            # the same answer as for a referral that does not exist: nothing leaks
            assert resp.get_json()["error"]["code"] in ("not_found",), resp.get_json()
    assert not wrong, f"{actor}:\n" + "\n".join(wrong)


def _listed(app, world, actor, path) -> bool:
    client = app.test_client()
    who = ACTORS[actor]
    headers = {}
    if who[1]:
        sign_in(client, world.users[actor])
    else:
        headers = world.network.headers(who[0])
    resp = client.get(path, headers=headers)
    assert resp.status_code == 200, (actor, path, resp.status_code)
    return world.ref in resp.get_data(as_text=True) or world.code in resp.get_data(as_text=True)


def test_coordinators_see_only_the_referrals_of_their_scope(app, world, clock):
    clock.advance(days=3)  # overdue and escalated: on every coordinator's board that may see it
    escalation.sweep(world.db, clock.now(), settings=world.settings)
    for path in ("/board", "/api/v1/escalations", f"/r/{world.ref}"):
        seen = {actor: (_listed(app, world, actor, path) if not path.startswith("/r/") else
                        _status(app, world, actor, path) == 200) for actor in COORDS}
        assert seen == {"coord_in": True, "coord_out": False, "national": True}, (path, seen)
    for actor in ("previous", "unrelated", "token_unrelated"):
        for box in ("inbox", "sent"):
            assert not _listed(app, world, actor, f"/api/v1/referrals?box={box}"), (actor, box)
        if ACTORS[actor][1]:
            assert not _listed(app, world, actor, "/inbox") and not _listed(app, world, actor, "/sent"), actor


def _status(app, world, actor, path) -> int:
    client = app.test_client()
    sign_in(client, world.users[actor])
    return client.get(path).status_code
