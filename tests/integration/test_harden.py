"""A hub that holds under odd input: one-tap links expire, odd JSON and oversized bodies are a 4xx with
the envelope, every response carries the right cache and transport headers, /metrics answers only its
operator, and retention shreds old packets but keeps metadata and a verifiable audit log."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
import sqlalchemy as sa

from hub.audit.models import AuditEntry
from hub.notify.models import AckToken
from hub.notify.service import issue_ack_token
from hub.referrals.models import Referral, ReferralPacket
from tests.factories import add_contact


def _counts(db):
    with db() as s:
        return tuple(s.scalar(sa.select(sa.func.count()).select_from(m)) for m in (Referral, ReferralPacket, AuditEntry))


# -- one-tap links expire ---------------------------------------------------------------------------


def test_expired_link_says_so_and_changes_nothing(client, db, clock, network, submit, settings):
    contact = add_contact(db, "pp-shelter-a", "+447700900401", duty=True)
    ref = submit()
    with db() as s, s.begin():
        raw = issue_ack_token(s, referral_id=ref["id"], clock="ack", contact_id=contact, now=clock.now())
    clock.advance(seconds=settings.sms.onetap_lifetime.total_seconds() - 60)
    assert client.get(f"/a/{raw}").status_code == 200  # still good a minute before it expires
    clock.advance(seconds=120)
    before = _counts(db)
    page = client.get(f"/a/{raw}")
    assert page.status_code == 410
    assert "This link has expired" in page.get_data(as_text=True)
    assert "តំណនេះផុតកំណត់ហើយ" in page.get_data(as_text=True)
    tap = client.post(f"/a/{raw}")
    assert tap.status_code == 410
    assert "Nothing was changed" in tap.get_data(as_text=True)
    assert _counts(db) == before
    with db() as s:
        assert s.get(Referral, ref["id"]).status == "sent"
        assert set(s.scalars(sa.select(AckToken.used_at)).all()) == {None}


# -- bad input --------------------------------------------------------------------------------------

NESTED = b"[" * 100 + b"]" * 100
VERY_NESTED = b'{"a":' * 5000 + b"1" + b"}" * 5000
ODD_BODIES = {
    "nested 100": NESTED,
    "nested 5000 objects": VERY_NESTED,
    "nested 33": b'{"reason":' + b"[" * 33 + b"]" * 33 + b"}",
    "NaN": b'{"reason": NaN}',
    "Infinity": b'{"beds_available": Infinity}',
    "-Infinity": b'{"beds_available": -Infinity}',
    "duplicate key": b'{"reason": "a", "reason": "b"}',
    "latin-1": '{"reason": "caf\u00e9"}'.encode("latin-1"),
    "utf-16": '{"reason": "x"}'.encode("utf-16"),
    "lone surrogate escape": b'{"reason": "\\ud800"}',
    "huge number": b'{"beds_available": ' + b"9" * 5000 + b"}",
    "huge exponent": b'{"beds_available": 1e999999}',
    "nul bytes": b'{"reason": "a\x00b"}',
    "only whitespace": b"   \n\t ",
    "trailing garbage": b'{"reason": "x"} {}',
    "bare string": b'"reason"',
    "bom": b'\xef\xbb\xbf{"reason": "x"}',
}
ROUTES = [("POST", "/api/v1/referrals/{id}/decline", "pp-shelter-a"),
          ("PUT", "/api/v1/agencies/pp-shelter-a/capacity", "pp-shelter-a"),
          ("POST", "/api/v1/referrals", "pp-ahtjp"),
          ("POST", "/api/v1/referrals/{id}/acknowledge", "pp-shelter-a"),
          ("POST", "/api/v1/escalations/{id}/take", "pp-committee"),
          ("GET", "/api/v1/referrals", "pp-shelter-a")]


@pytest.mark.parametrize("name", sorted(ODD_BODIES))
def test_odd_json_is_a_4xx_with_the_envelope_on_every_json_route(client, network, submit, db, name):
    ref = submit()
    before = _counts(db)
    for method, path, agency in ROUTES:
        resp = client.open(path.format(id=ref["id"]), method=method, data=ODD_BODIES[name],
                           content_type="application/json", headers=network.headers(agency))
        assert 400 <= resp.status_code < 500, (name, path, resp.status_code, resp.data[:200])
        error = resp.get_json()["error"]
        assert error["code"] and error["message"], (name, path)
    assert _counts(db) == before
    with db() as s:
        assert s.get(Referral, ref["id"]).status == "sent"


def test_nesting_up_to_32_is_read_and_33_is_refused(client, network, submit):
    from hub.api.common import MAX_JSON_DEPTH, strict_json
    from hub.errors import BadInput

    assert strict_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(BadInput) as refused:
        strict_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert refused.value.code == "too_deep"


@pytest.mark.parametrize("method,path,agency", [
    ("POST", "/api/v1/referrals/{id}/decline", "pp-shelter-a"),
    ("POST", "/api/v1/referrals/{id}/acknowledge", "pp-shelter-a"),
    ("PUT", "/api/v1/agencies/pp-shelter-a/capacity", "pp-shelter-a"),
])
def test_small_routes_refuse_a_large_body_with_413(client, network, submit, db, method, path, agency):
    ref = submit()
    before = _counts(db)
    body = json.dumps({"reason": "x" * 20_000}).encode()
    resp = client.open(path.format(id=ref["id"]), method=method, data=body, content_type="application/json",
                       headers=network.headers(agency))
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "too_large"
    assert "16 KiB" in resp.get_json()["error"]["message"]
    assert _counts(db) == before


def test_webhooks_and_forms_have_their_own_limits(client):
    assert client.post("/webhooks/twilio/sms", data={"Body": "x" * 70_000}).status_code == 413
    assert client.post("/login", data={"username": "x" * 300_000, "password": "y"}).status_code == 413
    assert client.post("/a/some-token", data={"x": "y" * 300_000}).status_code == 413


def test_a_packet_over_max_bytes_is_413_before_the_json_is_read(client, network, db, settings, app):
    assert settings.packets_max_bytes * 2 < app.config["MAX_CONTENT_LENGTH"]
    # One ciphertext a little over packets.max_bytes in a body well under the global limit, and the
    # JSON around it broken: refused as too large, so its JSON was never parsed.
    big = b'{"to": "pp-shelter-a", "packets": [{"ct": "' + b"A" * (settings.packets_max_bytes + 1) + b'"'
    resp = client.post("/api/v1/referrals", data=big, content_type="application/json",
                       headers=network.headers("pp-ahtjp"))
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "packet_too_large"
    assert _counts(db)[:2] == (0, 0)


def test_a_submission_of_many_strings_is_refused(client, network, db):
    resp = client.post("/api/v1/referrals", data=b"[" + b'"",' * 20_000 + b'""]', content_type="application/json",
                       headers=network.headers("pp-ahtjp"))
    assert resp.status_code == 400
    assert _counts(db)[:2] == (0, 0)


# -- headers ----------------------------------------------------------------------------------------

PUBLIC_ENDPOINTS = {"web.static", "web.khmer_font", "health.healthz", "health.readyz", "audit.checkpoint",
                    "audit.key"}


def _sample(rule, ref_id: str) -> str:
    values = {"referral_id": ref_id, "id": ref_id, "agency_id": "pp-shelter-a", "token": "x" * 43, "nonce": "n",
              "user_id": "1", "contact_id": "1", "change": "deactivate", "action": "acknowledge",
              "filename": "style.css"}
    return rule.build({a: values.get(a, "x") for a in rule.arguments}, append_unknown=False)[1]


def _every_route(app, ref_id):
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, _sample(rule, ref_id)


def test_every_route_but_the_public_ones_is_no_store(client, network, submit, app):
    ref = submit()
    seen = 0
    for endpoint, method, path in _every_route(app, ref["id"]):
        for headers in ({}, network.headers("pp-shelter-a")):
            resp = client.open(path, method=method, headers=headers)
            assert resp.status_code < 500, (endpoint, method, path, resp.status_code)
            if endpoint not in PUBLIC_ENDPOINTS:
                assert resp.headers.get("Cache-Control") == "no-store", (endpoint, method, resp.status_code)
            assert "Strict-Transport-Security" not in resp.headers  # served over http
            seen += 1
    assert seen > 80


def test_https_hub_sends_hsts_on_every_route(settings, engine, clock, network, submit):
    from hub import create_app

    app = create_app(dataclasses.replace(settings, public_base_url="https://hub.example.org"), engine=engine,
                     clock=clock)
    client = app.test_client()
    ref = client.post("/api/v1/referrals", json=network.submission(), headers=network.headers("pp-ahtjp"))
    assert ref.status_code == 201
    for endpoint, method, path in _every_route(app, ref.get_json()["id"]):
        resp = client.open(path, method=method, headers=network.headers("pp-shelter-a"))
        assert resp.headers.get("Strict-Transport-Security") == "max-age=63072000; includeSubDomains", endpoint


def test_a_referral_with_its_packet_is_no_store(client, network, submit):
    ref = submit()
    resp = client.get(f"/api/v1/referrals/{ref['id']}", headers=network.headers("pp-shelter-a"))
    assert resp.status_code == 200 and resp.get_json()["packet"]
    assert resp.headers["Cache-Control"] == "no-store"


# -- /metrics ---------------------------------------------------------------------------------------


def _metrics_app(settings, engine, clock, **changes):
    from hub import create_app

    app = create_app(dataclasses.replace(settings, **changes), engine=engine, clock=clock)
    return app.test_client()


def test_metrics_answer_allowed_addresses_and_the_token_only(settings, engine, clock):
    client = _metrics_app(settings, engine, clock, metrics_allow=("10.1.0.0/16",), metrics_token="m" * 32)
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 404
    with_token = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"},
                            headers={"Authorization": "Bearer " + "m" * 32})
    assert with_token.status_code == 200 and b"refhub_referrals" in with_token.data
    wrong = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"},
                       headers={"Authorization": "Bearer " + "n" * 32})
    assert wrong.status_code == 404 and b"refhub" not in wrong.data


def test_metrics_default_to_the_local_machine(settings, engine, clock):
    client = _metrics_app(settings, engine, clock)
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "198.51.100.4"}).status_code == 404


# -- retention --------------------------------------------------------------------------------------


def test_retention_shreds_old_final_packets_only(client, network, submit, db, settings, clock, engine):
    from hub.audit import keys, sequencer
    from hub.audit.verify import verify
    from hub.referrals import retention

    old_closed = submit()
    client.post(f"/api/v1/referrals/{old_closed['id']}/decline", json={"reason": "full"},
                headers=network.headers("pp-shelter-a"))
    still_open = submit()
    clock.advance(days=400)
    recent = submit()
    client.post(f"/api/v1/referrals/{recent['id']}/decline", json={"reason": "full"},
                headers=network.headers("pp-shelter-a"))
    sequencer.tick(db, clock.now(), settings=settings, block=True)
    summary = "/api/v1/reports/summary?from=2020-01-01"
    summary_before = client.get(summary, headers=network.headers("pp-committee")).get_json()

    # now is day 400: the first referral was declined on day 0, the third on day 400.
    report = retention.run(db, engine, now=clock.now() + dt.timedelta(days=300),
                           packets_after=dt.timedelta(days=730))
    assert (report.referrals, report.packets) == (0, 0)  # day 700: nothing is two years final
    report = retention.run(db, engine, now=clock.now() + dt.timedelta(days=340),
                           packets_after=dt.timedelta(days=730))
    assert (report.referrals, report.packets) == (1, 2)
    again = retention.run(db, engine, now=clock.now() + dt.timedelta(days=340), packets_after=dt.timedelta(days=730))
    assert again.packets == 0

    with db() as s:
        wires = {r: [p.wire is None for p in s.scalars(sa.select(ReferralPacket).where(
            ReferralPacket.referral_id == r))] for r in (old_closed["id"], still_open["id"], recent["id"])}
        entry = s.scalars(sa.select(AuditEntry).where(AuditEntry.action == "retention.shredded")).one()
    assert wires == {old_closed["id"]: [True, True], still_open["id"]: [False, False],
                     recent["id"]: [False, False]}
    assert entry.detail["referrals"] == 1 and entry.detail["packets"] == 2
    assert entry.detail["referral_ids"] == [old_closed["id"]]

    gone = client.get(f"/api/v1/referrals/{old_closed['id']}", headers=network.headers("pp-shelter-a"))
    assert gone.status_code == 410
    assert gone.get_json()["error"]["code"] == "packet_shredded"
    listed = client.get("/api/v1/referrals?box=inbox", headers=network.headers("pp-shelter-a")).get_json()
    assert old_closed["id"] in [r["id"] for r in listed["referrals"]]  # the metadata stays
    assert client.get(f"/api/v1/referrals/{recent['id']}", headers=network.headers("pp-shelter-a")).status_code == 200
    assert client.get(summary, headers=network.headers("pp-committee")).get_json() == summary_before

    sequencer.tick(db, clock.now(), settings=settings, block=True)
    with db() as s:
        verdict = verify(s, verifier=keys.verifier_line(settings), now=clock.now(), interval=settings.checkpoint_every)
    assert verdict.ok, verdict


def test_retention_years_setting(tmp_path, database_url):
    from tests.instance import make_settings

    assert make_settings(tmp_path, database_url).retention_packets_after == dt.timedelta(days=730)
    other = make_settings(tmp_path / "b", database_url, retention__packets_after="P400D")
    assert other.retention_packets_after == dt.timedelta(days=400)


def test_the_scheduler_runs_retention_daily(settings, engine, clock):
    from hub.context import HubContext
    from hub.scheduler import RETENTION_JOB, build_scheduler

    scheduler = build_scheduler(HubContext.build(settings, engine=engine, clock=clock), blocking=False)
    job = scheduler.get_job(RETENTION_JOB)
    assert job.trigger.interval == dt.timedelta(days=1)


def test_a_shredded_packet_on_the_web_is_410_with_a_notice(client, network, submit, db, clock, engine):
    from hub.referrals import retention
    from tests.webhelpers import add_member, sign_in

    ref = submit()
    client.post(f"/api/v1/referrals/{ref['id']}/decline", json={"reason": "full"},
                headers=network.headers("pp-shelter-a"))
    retention.run(db, engine, now=clock.now() + dt.timedelta(days=731), packets_after=dt.timedelta(days=730))
    sign_in(client, add_member(db, network, clock, "pp-shelter-a", "caseworker"))
    client.set_cookie("refhub_lang", "en")
    page = client.get(f"/r/{ref['id']}")
    assert page.status_code == 410
    assert "packet was shredded" in page.get_data(as_text=True)
    assert ref["code"] in page.get_data(as_text=True)  # the metadata stays
    assert page.headers["Cache-Control"] == "no-store"
