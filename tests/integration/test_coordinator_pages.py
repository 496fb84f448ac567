"""The coordinators' pages: /board (overdue, who was texted, take), /reports (charts and tables), /reports.csv."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
import sqlalchemy as sa

from hub.accounts import service as accounts
from hub.api.common import SESSION_COOKIE
from hub.audit.models import AuditEntry
from hub.db import session_scope
from hub.escalation.service import sweep
from hub.notify.models import OutboxMessage
from hub.referrals.models import Referral
from tests.conftest import T0
from tests.factories import body_secrets, fictional_body

M = dt.timedelta(minutes=1)
PASSWORD = "a long test passphrase 42"


def sign_in(client, db, network, clock, agency: str, role: str = "coordinator") -> None:
    """A user of ``agency`` with a password, signed in: the session cookie is on the client."""
    with session_scope(db) as s:
        user, token = accounts.add_user(s, agency_id=agency, role=role, name="Fictional Coordinator", lang="en",
                                        username=f"{agency}.{role}", clock=clock, keyring=network.rings.get(agency))
    with session_scope(db) as s:
        accounts.accept_invitation(s, token, PASSWORD, clock)
    with session_scope(db) as s:
        cookie, _p, _r = accounts.login(s, f"{agency}.{role}", PASSWORD, clock=clock, lifetime=dt.timedelta(hours=12),
                                          totp_roles=())
    client.set_cookie(SESSION_COOKIE, cookie)
    client.set_cookie("refhub_lang", "en")  # the assertions read the English page


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def overdue(submit, db, settings, clock):
    """An urgent referral in Phnom Penh (one child), one in Siem Reap, swept one hour on: both escalated."""
    pp = submit("pp-ahtjp", "pp-shelter-a", urgency="urgent", child=True, body=fictional_body("canary-pp"))
    calm = submit("pp-ahtjp", "pp-shelter-b", urgency="normal", body=fictional_body("canary-calm"))
    sr = submit("sr-ahtjp", "sr-shelter", urgency="urgent", province="KH-17", body=fictional_body("canary-sr"))
    clock.set(T0 + 61 * M)
    sweep(db, clock.now(), settings=settings)
    return {"pp": pp, "sr": sr, "calm": calm}


def test_the_board_shows_what_is_overdue_with_who_was_texted(client, db, network, clock, overdue):
    sign_in(client, db, network, clock, "pp-committee")
    page = client.get("/board")
    assert page.status_code == 200
    assert page.headers["Refresh"] == "60" and "script-src 'none'" in page.headers["Content-Security-Policy"]
    assert "<script" not in page.text
    assert overdue["pp"]["code"] in page.text
    assert overdue["sr"]["code"] not in page.text and "sr-shelter" not in page.text  # another province
    assert overdue["calm"]["code"] not in page.text  # not overdue
    assert "31 min" in page.text  # past its 30-minute deadline at 10:31... at 11:01
    assert "pp-shelter-a (caseworker)" in page.text or "pp-shelter-a (" in page.text
    assert re.search(r"\d+ queued", page.text)  # the texts, counted by delivery status
    with db() as s:
        phones = set(s.scalars(sa.select(OutboxMessage.to_phone)))
    assert not any(p in page.text for p in phones)
    for secret in body_secrets(fictional_body("canary-pp"), "canary-pp"):
        assert secret not in page.text


def test_board_filters_by_urgency_child_and_province(client, db, network, clock, overdue):
    sign_in(client, db, network, clock, "ncct")
    everything = client.get("/board").text
    assert overdue["pp"]["code"] in everything and overdue["sr"]["code"] in everything
    adults = client.get("/board?child=no").text
    assert overdue["pp"]["code"] not in adults and overdue["sr"]["code"] in adults
    siem_reap = client.get("/board?province=KH-17").text
    assert overdue["pp"]["code"] not in siem_reap and overdue["sr"]["code"] in siem_reap
    children = client.get("/board?taskforce=child_affairs").text
    assert overdue["pp"]["code"] in children and overdue["sr"]["code"] not in children
    assert client.get("/board?urgency=soon").status_code == 400
    assert client.get("/board?province=KH-99").status_code == 400


def test_a_provincial_coordinator_cannot_ask_for_another_province(client, db, network, clock, overdue):
    sign_in(client, db, network, clock, "pp-committee")
    assert client.get("/board?province=KH-17").status_code == 403
    assert client.get("/reports?province=KH-17").status_code == 403
    assert client.get("/reports.csv?province=KH-17").status_code == 403


def test_take_from_the_board(client, db, network, clock, overdue):
    sign_in(client, db, network, clock, "pp-committee")
    board = client.get("/board")
    resp = client.post(f"/board/{overdue['pp']['id']}/take", data={"csrf_token": _csrf(board.text), "child": "yes"})
    assert resp.status_code == 303 and "taken=" in resp.headers["Location"] and "child=yes" in resp.headers["Location"]
    with db() as s:
        assert s.get(Referral, overdue["pp"]["id"]).owner is not None
    after = client.get(resp.headers["Location"])
    assert "You took " + overdue["pp"]["code"] in after.text
    # No CSRF token, no take; another province's referral: 404 as on the API.
    assert client.post(f"/board/{overdue['pp']['id']}/take").status_code == 400
    other = client.post(f"/board/{overdue['sr']['id']}/take", data={"csrf_token": _csrf(board.text)})
    assert other.status_code == 404


def test_agency_users_and_strangers_do_not_see_coordinator_pages(client, db, network, clock, overdue):
    assert client.get("/board").status_code == 302 and client.get("/reports").status_code == 302
    sign_in(client, db, network, clock, "pp-shelter-a", "caseworker")
    for path in ("/board", "/reports", "/reports.csv"):
        resp = client.get(path)
        assert resp.status_code == 403 and overdue["pp"]["code"] not in resp.text


def test_reports_page_has_four_charts_each_with_its_table(client, db, network, clock, overdue):
    sign_in(client, db, network, clock, "pp-committee")
    page = client.get("/reports?from=2026-11-22&to=2026-11-23")
    assert page.status_code == 200, page.text
    assert "<script" not in page.text and page.text.count("<svg") == 4
    assert "script-src 'none'" in page.headers["Content-Security-Policy"]
    for chart in ("first-answer", "on-time", "steps", "outcomes"):
        assert f'id="{chart}"' in page.text
    assert page.text.count("<table") == 2 + 4  # the summary, the agencies, one beside each chart
    assert "pp-shelter-a" in page.text and "sr-shelter" not in page.text
    for secret in body_secrets(fictional_body("canary-pp"), "canary-pp"):
        assert secret not in page.text
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                        .where(AuditEntry.action == "report.summary")) == 1


def test_reports_csv_from_the_browser(client, db, network, clock, overdue):
    sign_in(client, db, network, clock, "pp-committee")
    resp = client.get("/reports.csv?from=2026-11-22&to=2026-11-23")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert sorted(r["agency"] for r in rows) == ["pp-shelter-a", "pp-shelter-b"]
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                        .where(AuditEntry.action == "report.export")) == 1
