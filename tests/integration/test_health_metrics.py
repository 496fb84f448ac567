"""Probes and metrics that operators watch."""
from __future__ import annotations

import re


def _value(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", text, re.M)
    assert m, f"{name}{labels} missing from /metrics"
    return float(m.group(1))


def test_health_and_ready(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_ready_is_503_when_the_database_is_gone(settings, clock, tmp_path):
    from hub import create_app
    from hub.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'no.sqlite3'}")
    app = create_app(settings, engine=engine, clock=clock)
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["error"]["code"] == "database_unavailable"


def test_metrics_count_referrals_and_texts(client, network, submit, clock):
    submit(urgency="urgent")
    second = submit()
    client.post(f"/api/v1/referrals/{second['id']}/decline", json={"reason": "full"},
                headers=network.headers("pp-shelter-a"))
    text = client.get("/metrics").text
    assert _value(text, "refhub_referrals", '{state="sent"}') == 1
    assert _value(text, "refhub_referrals", '{state="declined"}') == 1
    # The urgent referral's first step texted the shelter's duty contact; nothing is drained yet.
    assert _value(text, "refhub_sms", '{status="queued"}') >= 1
    assert _value(text, "refhub_outbox_oldest_age_seconds") == 0
    clock.advance(minutes=45)
    text = client.get("/metrics").text
    assert _value(text, "refhub_referrals_overdue") == 1
    assert _value(text, "refhub_outbox_oldest_age_seconds") == 45 * 60
    assert _value(text, "refhub_escalation_texts", '{clock="ack",step="0"}') >= 1


def test_metrics_show_overdue_alerts_and_escalation_steps(client, network, submit, clock, db, settings):
    from hub.escalation.service import sweep

    submit(urgency="urgent")
    clock.advance(minutes=40)  # past ack_within (30 min) and alert_after (5 min)
    sweep(db, clock.now(), settings=settings)
    text = client.get("/metrics").text
    assert _value(text, "refhub_alerts_open", '{kind="overdue"}') == 1
    assert _value(text, "refhub_escalation_texts", '{clock="ack",step="1"}') >= 1


def test_referral_page_needs_sign_in(client, submit):
    ref = submit()
    resp = client.get(f"/r/{ref['id']}")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
