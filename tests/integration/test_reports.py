"""Coordinators' figures on a scripted history, on SQLite and PostgreSQL.

Every referral is urgent (ack within 30 min; ladder +0, +30 min, +1 h, +2 h; decide within 2 h).
The clock is moved by hand and the sweep run at chosen times, so each figure below is computed
by hand from this timeline (minutes after T0 = 2026-11-22 10:00 UTC):

    0   A, B, C, D, F, H created (pp-shelter-a, KH-12); G created (sr-shelter, KH-17)
    1   G acknowledged
    5   D declined; E created (pp-shelter-b, KH-12, previous D: the re-routing)
    10  A acknowledged; H withdrawn by the sender, never answered
    20  A accepted; B acknowledged
    30  sweep: ack step 1 of C and F
    36  sweep: ack step 1 of E (its deadline is 35)
    40  B accepted
    45  C accepted without acknowledging first (late)
    55  E acknowledged (late)
    60  sweep: ack step 2 of F; A starts care
    70  A closed, reintegrated
    120 sweep: ack step 3 of F (never answered)
    130 the report
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.audit.models import AuditEntry
from hub.escalation.service import sweep
from tests.conftest import ROOT, T0
from tests.factories import body_secrets, fictional_body

M = dt.timedelta(minutes=1)
A_, B_ = "pp-shelter-a", "pp-shelter-b"
POLICE = "pp-ahtjp"
WINDOW = "from=2026-11-22&to=2026-11-23"


def at(clock, minutes: int) -> None:
    clock.set(T0 + minutes * M)


def act(client, network, referral_id: str, verb: str, agency: str = A_, **body):
    resp = client.post(f"/api/v1/referrals/{referral_id}/{verb}", json=body, headers=network.headers(agency))
    assert resp.status_code == 200, resp.get_json()


@pytest.fixture
def history(client, network, submit, db, settings, clock):
    """The timeline of the module docstring; returns the referral ids by letter."""
    def run(minutes):
        at(clock, minutes)
        sweep(db, clock.now(), settings=settings)

    ids = {}
    at(clock, 0)
    for name in "ABCDFH":
        ids[name] = submit(POLICE, A_, urgency="urgent", body=fictional_body(f"canary-{name}"))["id"]
    ids["G"] = submit("sr-ahtjp", "sr-shelter", urgency="urgent", province="KH-17",
                      body=fictional_body("canary-G"))["id"]
    at(clock, 1)
    act(client, network, ids["G"], "acknowledge", "sr-shelter")
    at(clock, 5)
    act(client, network, ids["D"], "decline", reason="no bed")
    ids["E"] = submit(POLICE, B_, urgency="urgent", previous_id=ids["D"], body=fictional_body("canary-E"))["id"]
    at(clock, 10)
    act(client, network, ids["A"], "acknowledge")
    act(client, network, ids["H"], "withdraw", POLICE, reason="found family")
    at(clock, 20)
    act(client, network, ids["A"], "accept")
    act(client, network, ids["B"], "acknowledge")
    run(30)
    run(36)
    at(clock, 40)
    act(client, network, ids["B"], "accept")
    at(clock, 45)
    act(client, network, ids["C"], "accept")
    at(clock, 55)
    act(client, network, ids["E"], "acknowledge", B_)
    run(60)
    act(client, network, ids["A"], "start-care")
    at(clock, 70)
    act(client, network, ids["A"], "close", outcome="reintegrated")
    run(120)
    at(clock, 130)
    return ids


def summary(client, network, agency="pp-committee", query=WINDOW):
    resp = client.get(f"/api/v1/reports/summary?{query}", headers=network.headers(agency))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


STATUS_KH12 = {"sent": 1, "acknowledged": 1, "accepted": 2, "in_care": 0, "declined": 1, "closed": 1,
               "withdrawn": 1, "failed": 0}


def test_the_summary_equals_the_figures_computed_by_hand(client, network, history):
    got = summary(client, network)
    # Dates are days in [hub] timezone (Asia/Phnom_Penh, UTC+7): the window is that day's midnights, in UTC.
    assert got["from"] == "2026-11-21T17:00:00Z" and got["to"] == "2026-11-22T17:00:00Z"
    assert got["province"] == "KH-12"
    assert got["referrals"] == {"total": 7, "by_status": STATUS_KH12}
    # first answers (s): D 300, A 600, B 1200, C 2700, E 3000 -> rank ceil(.5*5)=3, ceil(.9*5)=5
    assert got["first_answer_s"] == {"count": 5, "p50": 1200, "p90": 3000}
    # decisions (s): D 300, A 1200, B 2400, C 2700 -> rank 2 and rank 4
    assert got["decision_s"] == {"count": 4, "p50": 1200, "p90": 2700}
    assert got["acceptance_rate"] == 0.75  # A, B, C accepted; D declined
    assert got["unanswered_share"] == round(2 / 7, 4)  # F waiting, H withdrawn unanswered
    assert got["late_share"] == round(3 / 7, 4)  # C and E answered late, F unanswered past its deadline
    assert got["on_time_share"] == round(3 / 7, 4)  # A, B, D
    # 300 <= 5 min; 600 <= 15 min; 1200 <= 30 min; 2700, 3000 <= 1 h
    assert [b["count"] for b in got["first_answer_histogram"]] == [1, 1, 1, 2, 0, 0, 0, 0]
    # step 0: A, B three clocks each (ack, decide, arrive), C two (ack, arrive), E two (ack, decide),
    # D, F, H one; step 1: C, E, F; steps 2 and 3: F.
    assert got["steps_fired"] == {"0": 13, "1": 3, "2": 1, "3": 1}
    assert got["outcomes"] == {"reintegrated": 1, "repatriated": 0, "transferred": 0, "left_care": 0, "other": 0}

    by_agency = {a["agency"]: a for a in got["by_agency"]}
    assert set(by_agency) == {A_, B_}
    a = by_agency[A_]
    assert a["referrals"]["total"] == 6
    assert a["first_answer_s"] == {"count": 4, "p50": 600, "p90": 2700}
    assert a["decision_s"] == {"count": 4, "p50": 1200, "p90": 2700}
    assert (a["acceptance_rate"], a["unanswered_share"], a["late_share"]) == (0.75, round(2 / 6, 4), round(2 / 6, 4))
    assert a["steps_fired"] == {"0": 11, "1": 2, "2": 1, "3": 1}
    b = by_agency[B_]
    assert b["first_answer_s"] == {"count": 1, "p50": 3000, "p90": 3000}
    assert b["decision_s"] == {"count": 0, "p50": None, "p90": None}
    assert (b["acceptance_rate"], b["unanswered_share"], b["late_share"]) == (None, 0.0, 1.0)
    assert b["steps_fired"] == {"0": 2, "1": 1, "2": 0, "3": 0}
    (province,) = got["by_province"]
    assert province["province"] == "KH-12" and province["first_answer_s"] == got["first_answer_s"]


def test_the_national_committee_sees_every_province(client, network, history):
    got = summary(client, network, "ncct")
    assert got["province"] is None and got["referrals"]["total"] == 8
    # G adds a first answer of 60 s: 60, 300, 600, 1200, 2700, 3000 -> ranks 3 and 6
    assert got["first_answer_s"] == {"count": 6, "p50": 600, "p90": 3000}
    assert got["steps_fired"]["0"] == 15  # G: ack and decide
    assert [p["province"] for p in got["by_province"]] == ["KH-12", "KH-17"]
    one = summary(client, network, "ncct", WINDOW + "&province=KH-17")
    assert one["referrals"]["total"] == 1 and [a["agency"] for a in one["by_agency"]] == ["sr-shelter"]


def test_percentiles_equal_postgresql_percentile_disc(client, network, history, engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("percentile_disc is PostgreSQL's")
    with engine.connect() as conn:
        p50, p90 = conn.execute(sa.text(
            "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY s), percentile_disc(0.9) WITHIN GROUP (ORDER BY s) "
            "FROM (SELECT floor(extract(epoch FROM r.acknowledged_at)) - floor(extract(epoch FROM r.created_at)) AS s "
            "FROM referral r JOIN agency a ON a.id = r.to_agency_id "
            "WHERE a.province = 'KH-12' AND r.acknowledged_at IS NOT NULL) t")).one()
    got = summary(client, network)["first_answer_s"]
    assert (got["p50"], got["p90"]) == (int(p50), int(p90))


def test_a_window_holds_only_referrals_created_in_it(client, network, history):
    before = summary(client, network, query="from=2026-11-21&to=2026-11-22")
    assert before["referrals"]["total"] == 0 and before["first_answer_s"]["p50"] is None
    assert before["acceptance_rate"] is None and before["steps_fired"] == {"0": 0, "1": 0, "2": 0, "3": 0}
    # E was created at 10:05, the others at 10:00
    later = summary(client, network, query="from=2026-11-22T10:01:00Z&to=2026-11-22T11:00:00Z")
    assert later["referrals"]["total"] == 1 and [a["agency"] for a in later["by_agency"]] == [B_]


def test_a_date_is_a_day_in_phnom_penh_not_in_utc(client, network, submit, clock, settings, db):
    """23:30 UTC on the 21st is 06:30 on the 22nd in Phnom Penh: that day's referral, in every face."""
    assert settings.timezone == "Asia/Phnom_Penh"
    clock.set(dt.datetime(2026, 11, 21, 23, 30, tzinfo=dt.timezone.utc))
    late_evening = submit(POLICE, A_, urgency="urgent", body=fictional_body("canary-tz"))
    clock.set(T0)
    on_the_22nd = summary(client, network, query="from=2026-11-22&to=2026-11-23")
    assert on_the_22nd["referrals"]["total"] == 1
    on_the_21st = summary(client, network, query="from=2026-11-21&to=2026-11-22")
    assert on_the_21st["referrals"]["total"] == 0
    # RFC 3339 times are what they say: the UTC day of the 21st holds it.
    utc_day = summary(client, network, query="from=2026-11-21T00:00:00Z&to=2026-11-22T00:00:00Z")
    assert utc_day["referrals"]["total"] == 1
    text = client.get("/api/v1/reports/summary?from=2026-11-22&to=2026-11-23&format=csv",
                      headers=network.headers("pp-committee")).get_data(as_text=True)
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["from"] == "2026-11-21T17:00:00Z" and row["referrals"] == "1"
    # The command reads dates the same way.
    done = _hub(settings, "reports", "summary", "--from", "2026-11-22", "--to", "2026-11-23")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["referrals"]["total"] == 1
    done = _hub(settings, "reports", "summary", "--from", "2026-11-21", "--to", "2026-11-22")
    assert json.loads(done.stdout)["referrals"]["total"] == 0
    assert late_evening["code"]


def test_scope_a_provincial_coordinator_sees_only_their_province(client, network, history):
    got = summary(client, network)
    assert "sr-shelter" not in json.dumps(got) and "KH-17" not in json.dumps(got)
    other = client.get(f"/api/v1/reports/summary?{WINDOW}&province=KH-17", headers=network.headers("pp-committee"))
    assert other.status_code == 403
    text = client.get(f"/api/v1/reports/summary?{WINDOW}&format=csv", headers=network.headers("pp-committee"))
    assert text.status_code == 200 and text.mimetype == "text/csv"
    assert "sr-shelter" not in text.get_data(as_text=True)


def test_agencies_and_strangers_may_not_read_reports(client, network, history):
    assert client.get("/api/v1/reports/summary", headers=network.headers(A_)).status_code == 403
    assert client.get("/api/v1/reports/summary", headers=network.headers(POLICE)).status_code == 403
    assert client.get("/api/v1/reports/summary").status_code == 401


@pytest.mark.parametrize("query", ["from=yesterday", "to=2026-13-01", "from=2026-11-23&to=2026-11-22",
                                   "province=KH-99", "format=xml", "taskforce=navy", "from=2020-01-01&to=2026-01-01",
                                   "from=2026-11-22T10:00:00"])
def test_bad_queries_are_400_and_write_nothing(client, network, db, query):
    resp = client.get(f"/api/v1/reports/summary?{query}", headers=network.headers("ncct"))
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"]["code"] == "invalid_field"
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                        .where(AuditEntry.action.like("report.%"))) == 0


def test_every_request_and_export_is_audited_with_ids_and_counts_only(client, network, history, db):
    summary(client, network)
    client.get(f"/api/v1/reports/summary?{WINDOW}&format=csv", headers=network.headers("ncct"))
    with db() as s:
        entries = list(s.scalars(sa.select(AuditEntry).where(AuditEntry.action.like("report.%"))
                                 .order_by(AuditEntry.seq)))
    assert [e.action for e in entries] == ["report.summary", "report.export"]
    assert entries[0].detail["referrals"] == 7 and entries[0].detail["province"] == "KH-12"
    assert entries[1].detail["format"] == "csv" and entries[1].detail["referrals"] == 8


def test_no_figure_holds_a_packet_a_name_or_a_canary(client, network, history):
    out = json.dumps(summary(client, network, "ncct"), ensure_ascii=False)
    out += client.get(f"/api/v1/reports/summary?{WINDOW}&format=csv",
                      headers=network.headers("ncct")).get_data(as_text=True)
    for name in "ABCDEFGH":
        for secret in body_secrets(fictional_body(f"canary-{name}"), f"canary-{name}"):
            assert secret not in out
    assert "refhub/v1" not in out and "header" not in out


def test_the_csv_has_one_row_per_agency_with_the_same_figures(client, network, history):
    text = client.get(f"/api/v1/reports/summary?{WINDOW}&format=csv",
                      headers=network.headers("pp-committee")).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["agency"] for r in rows] == [A_, B_]
    assert rows[0]["first_answer_p50_s"] == "600" and rows[0]["late_share"] == str(round(2 / 6, 4))
    assert rows[1]["decision_p50_s"] == "" and rows[1]["step_1_fired"] == "1"


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted_as_text():
    from hub.reports.service import csv_cell, to_csv

    for bad in ("=HYPERLINK(\"http://x\")", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(bad) == "'" + bad
    assert csv_cell("KH-12") == "KH-12" and csv_cell(None) == ""
    report = {"from": "2026-11-22T00:00:00Z", "to": "2026-11-23T00:00:00Z", "province": None,
              "steps_fired": {"0": 1},
              "by_agency": [{"agency": "=cmd|' /C calc'!A0", "referrals": {"total": 1, "by_status": {
                  s: 0 for s in ("sent", "acknowledged", "accepted", "in_care", "declined", "closed", "withdrawn",
                                 "failed")}},
                             "first_answer_s": {"count": 0, "p50": None, "p90": None},
                             "decision_s": {"count": 0, "p50": None, "p90": None},
                             "acceptance_rate": None, "unanswered_share": -0.5, "late_share": None,
                             "on_time_share": None,
                             "steps_fired": {"0": 1},
                             "outcomes": {o: 0 for o in ("reintegrated", "repatriated", "transferred", "left_care",
                                                         "other")}}]}
    row = list(csv.reader(io.StringIO(to_csv(report))))[1]
    assert row[3] == "'=cmd|' /C calc'!A0" and "'-0.5" in row


def test_openapi_documents_the_summary(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    op = doc["paths"]["/reports/summary"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"from", "to", "province", "format"}
    assert "text/csv" in op["responses"]["200"]["content"]


# -- the command --------------------------------------------------------------------------------------


def _hub(settings, *args):
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_SECRET_KEY": settings.secret_key}
    return subprocess.run([str(Path(sys.executable).parent / "hub"), "--config", str(settings.config_path), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_hub_reports_summary_as_a_process(history, settings, db):
    done = _hub(settings, "reports", "summary", "--from", "2026-11-22", "--to", "2026-11-23", "--province", "KH-12")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["referrals"]["total"] == 7 and got["first_answer_s"]["p50"] == 1200
    text = _hub(settings, "reports", "summary", "--from", "2026-11-22", "--to", "2026-11-23", "--csv")
    assert text.returncode == 0 and text.stdout.splitlines()[0].startswith("from,to,province,agency")
    assert len(text.stdout.splitlines()) == 1 + 3  # pp-shelter-a, pp-shelter-b, sr-shelter
    bad = _hub(settings, "reports", "summary", "--from", "someday")
    assert bad.returncode == 2 and bad.stderr.startswith("hub: ") and len(bad.stderr.strip().splitlines()) == 1
    with db() as s:
        actors = list(s.scalars(sa.select(AuditEntry.actor).where(AuditEntry.action.like("report.%"))))
    assert actors == ["cli", "cli"]
