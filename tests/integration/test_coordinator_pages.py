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


def sign_in(client, db, network, clock, agency: str, role: str = "coordinator", lang: str = "en") -> None:
    """A user of ``agency`` with a password, signed in: the session cookie is on the client."""
    with session_scope(db) as s:
        user, token = accounts.add_user(s, agency_id=agency, role=role, name="Fictional Coordinator", lang=lang,
                                        username=f"{agency}.{role}", clock=clock, keyring=network.rings.get(agency))
    with session_scope(db) as s:
        accounts.accept_invitation(s, token, PASSWORD, clock)
    with session_scope(db) as s:
        cookie, _p, _r = accounts.login(s, f"{agency}.{role}", PASSWORD, clock=clock, lifetime=dt.timedelta(hours=12),
                                          totp_roles=())
    client.set_cookie(SESSION_COOKIE, cookie)
    client.set_cookie("refhub_lang", "en")  # the browser's choice; the member's own language wins


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
    assert overdue["sr"]["code"] not in page.text and "Siem Reap" not in page.text  # another province
    assert overdue["calm"]["code"] not in page.text  # not overdue
    assert "31 min" in page.text  # past its 30-minute deadline at 10:31... at 11:01
    assert "step 0: Hope Shelter A (Phnom Penh) (caseworker) · 1 queued" in page.text  # who, counted by delivery
    assert re.search(r"Escalations at Nov 22, 2026, 6:01:00\sPM", page.text)  # 11:01 UTC, in Phnom Penh
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
    assert re.search(r"Taken by you, Nov 22, 2026, 6:01:00\sPM", after.text)
    assert re.search(r"Others told: \d+ queued", after.text)  # the committee's other contacts are texted
    with db() as s:
        told = s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.referral_id == overdue["pp"]["id"], OutboxMessage.template == "taken"))
    assert told >= 1
    # No CSRF token, no take; another province's referral: 404 as on the API.
    assert client.post(f"/board/{overdue['pp']['id']}/take").status_code == 400
    other = client.post(f"/board/{overdue['sr']['id']}/take", data={"csrf_token": _csrf(board.text)})
    assert other.status_code == 404


def test_agency_users_and_strangers_do_not_see_coordinator_pages(client, db, network, clock, overdue):
    for path in ("/board", "/reports", "/reports.csv"):  # to sign-in first, and back, as every page
        resp = client.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/login?next={path}")
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
    assert "Hope Shelter A (Phnom Penh)" in page.text and "Siem Reap" not in page.text
    assert "Referrals created from 2026-11-22 to 2026-11-22, received in Phnom Penh." in page.text
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


def test_a_khmer_speaking_coordinator_reads_the_pages_in_khmer(client, db, network, clock, overdue):
    """The member's own language wins over the browser's cookie, as on every page."""
    sign_in(client, db, network, clock, "pp-committee", lang="km")
    board = client.get("/board")
    assert board.status_code == 200 and '<html lang="km">' in board.text
    assert "ផ្ទាំងការលើកឡើង" in board.text and "Escalation board" not in board.text  # its title
    assert overdue["pp"]["code"] in board.text
    page = client.get("/reports?from=2026-11-22&to=2026-11-23")
    assert page.status_code == 200 and '<html lang="km">' in page.text
    assert "រយៈពេលរហូតដល់ចម្លើយដំបូង" in page.text  # "Time to first answer"
    assert "Response times and outcomes" not in page.text
    refused = client.get("/reports?from=someday")
    assert refused.status_code == 400 and '<html lang="km">' in refused.text


def test_the_board_filters_before_its_limit(db, network, clock, settings, submit, monkeypatch):
    """More overdue referrals than the board shows: a filtered one beyond the first rows is still found."""
    from hub.access import Principal
    from hub.reports import service as reports

    pp = [submit("pp-ahtjp", "pp-shelter-a", urgency="urgent")["code"] for _ in range(3)]
    clock.set(T0 + 10 * M)  # the least overdue, in another province, a child
    sr = submit("sr-ahtjp", "sr-shelter", urgency="urgent", child=True, province="KH-17")["code"]
    clock.set(T0 + 61 * M)
    sweep(db, clock.now(), settings=settings)
    national = Principal(kind="user", agency_id="ncct", role="coordinator", user_id=None, agency_kind="committee",
                         display="user:ncct-test")
    with db() as s:
        first, _scope, more = reports.board(s, national, clock.now(), limit=2, settings=settings)
        codes = [e["code"] for e in first]
        assert len(codes) == 2 and set(codes) < set(pp) and more  # most overdue first; more than the limit
        assert sr not in [e["code"] for e in first]
        for query in ({"province": "KH-17"}, {"child": True}):
            found, _scope, more = reports.board(s, national, clock.now(), limit=2, settings=settings, **query)
            assert [e["code"] for e in found] == [sr] and not more
        adults, _scope, more = reports.board(s, national, clock.now(), limit=2, child=False, province="KH-12",
                                             settings=settings)
        assert len(adults) == 2 and {e["code"] for e in adults} < set(pp) and more


def test_no_coordinator_page_holds_a_packet_a_name_or_a_canary(client, db, network, clock, overdue):
    sign_in(client, db, network, clock, "ncct")
    text = "".join(client.get(path).get_data(as_text=True) for path in (
        "/board", "/reports?from=2026-11-22&to=2026-11-23", "/reports.csv?from=2026-11-22&to=2026-11-23"))
    assert overdue["pp"]["code"] in text
    for marker in ("canary-pp", "canary-sr", "canary-calm"):
        for secret in body_secrets(fictional_body(marker), marker):
            assert secret not in text
    assert "refhub/v1" not in text
    with db() as s:
        phones = set(s.scalars(sa.select(OutboxMessage.to_phone)))
    assert phones and not any(p in text for p in phones)


def test_pages_still_open_when_the_session_is_seen_again_minutes_later(client, db, network, clock, overdue):
    """The session's last-seen time is written on a later GET (a sighting), which a read-only page survives."""
    sign_in(client, db, network, clock, "pp-committee")
    assert client.get("/board").status_code == 200
    clock.advance(minutes=5)
    assert client.get("/board").status_code == 200
    clock.advance(minutes=5)
    assert client.get("/reports").status_code == 200
