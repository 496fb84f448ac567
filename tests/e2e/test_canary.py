"""Canary: unique strings typed into the browser go through the whole journey and are then looked for
everywhere the hub writes: every table (and the SQLite files themselves), the log, stdout and stderr,
the SMS texts (sent through the console gateway after an escalation sweep), and a coordinator's view."""
from __future__ import annotations

import datetime as dt
import logging
import secrets
from pathlib import Path

import requests
import sqlalchemy as sa

from hub.db import Base
from hub.escalation.service import sweep
from hub.notify.gateways import ConsoleGateway
from hub.clock import FixedClock
from hub.notify.service import drain
from tests.e2e.test_journeys import fill_referral, sign_in
from tests.webhelpers import add_member


class _Everything(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_canary_strings_stay_in_the_packet(phone, live, app, network, db, clock, settings, capfd):
    handler = _Everything()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        marker = "CANARY" + secrets.token_hex(6)
        add_member(db, network, clock, "pp-ahtjp", "officer", name="Officer Fictional")
        add_member(db, network, clock, "pp-shelter-a", "caseworker")
        officer, case = phone("en"), phone("km")
        sign_in(officer, "pp-ahtjp.officer")
        officer.goto("/referrals/new")
        fill_referral(officer, marker, "pp-shelter-a")
        officer.fill("#situation_notes", f"What happened {marker}")
        officer.fill("#languages", f"Lang{marker}")
        officer.select_option("#id_type", "passport")
        officer.fill("#id_number", f"N{marker}")
        officer.click("form[action='/referrals/new'] button[type=submit]:not([name=refresh])")
        officer.wait_for_load_state()
        referral_id = officer.url.rsplit("/", 1)[1]
        assert marker in officer.content()  # the officer's own archive copy opens

        # Escalation texts are written and sent while the referral waits.
        ctx = app.extensions["hub"]
        gateway = ConsoleGateway()
        for minutes in (0, 31, 61):
            at = clock.now() + dt.timedelta(minutes=minutes)
            sweep(db, at, settings=settings)
            drain(db, gateway, FixedClock(at), settings=settings)

        sign_in(case, "pp-shelter-a.caseworker")
        case.goto(f"/r/{referral_id}")
        assert marker in case.content()
        for action in ("accept", "start_care"):
            case.click(f"form[action$='/{action}'] button")
            case.wait_for_load_state()
        case.select_option("#close-outcome", "reintegrated")
        case.click("form[action$='/close'] button")
        case.wait_for_load_state()
        drain(db, gateway, FixedClock(clock.now() + dt.timedelta(hours=2)), settings=settings)
        assert gateway.sent, "the journey sent no SMS, so the check below would prove nothing"
        for _to, body, _id in gateway.sent + list(getattr(ctx.gateway, "sent", [])):
            assert marker not in body

        # A coordinator sees metadata only.
        add_member(db, network, clock, "pp-committee", "coordinator")
        coord = phone("en")
        sign_in(coord, "pp-committee.coordinator", app=app)
        coord.goto(f"/r/{referral_id}")
        assert coord.locator("h1").inner_text().startswith("R-")  # the metadata page, not a refusal
        assert marker not in coord.content()
        # ... and in the board, the reports and both CSV exports (the browser's and the API's).
        window = "from=2026-11-01&to=2026-12-31"
        seen = []
        for path in ("/board", f"/reports?{window}"):
            coord.goto(path)
            seen.append(coord.content())
        seen.append(coord.request.get(f"{live.url}/reports.csv?{window}").text())
        api_csv = requests.get(f"{live.url}/api/v1/reports/summary?{window}&format=csv",
                               headers=network.headers("pp-committee"), timeout=30)
        assert api_csv.status_code == 200
        seen.append(api_csv.text)
        assert "pp-shelter-a" in seen[-1]  # the referral is counted there
        for text in seen:
            assert marker not in text

        with db() as s:
            for table in Base.metadata.sorted_tables:
                for row in s.execute(sa.select(table)).all():
                    assert marker not in " ".join(repr(v) for v in row), table.name
        raw = b"".join(p.read_bytes() for p in Path(settings.database_url.removeprefix("sqlite:///")).parent.glob(
            "hub.sqlite3*"))
        assert raw and marker.encode() not in raw and marker.encode("utf-16-le") not in raw
        out, err = capfd.readouterr()
        assert handler.lines and marker not in "\n".join(handler.lines)
        assert marker not in out and marker not in err
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
