"""The coordinator's journey in a phone-sized Chromium, in English and in Khmer.

A coordinator of the Phnom Penh committee signs in with the demo logins (hub/demo.py). An urgent
referral waits unanswered; the board is empty until its deadline passes, which the test makes
happen the way an operator would: `hub escalate --once --now ISO` as its own process against the
live hub's database, with the hub's clock moved to the same time. The coordinator sees it on the
board with who was texted, takes it (the "take" button: a POST form with its CSRF token), sees it
taken and the other coordinators told, and finds it counted in the reports. Each page passes the
checks of tests/e2e/checks.py (phone width, tap targets, axe) and is photographed.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub import demo
from hub.db import session_scope
from hub.notify.models import OutboxMessage
from hub.referrals.models import Referral
from tests.conftest import ROOT, T0
from tests.e2e.checks import check_page
from tests.e2e.test_journeys import sign_in
from tests.factories import FAST_KDF, fictional_body
from tests.webhelpers import enrol_totp

import sqlalchemy as sa

DEMO_PASSWORD = "demo-fictional-passphrase-42"
WORDS = {  # what a person reads, in each language
    "en": {"nothing": "Nothing is overdue.", "took": "You took", "by_you": "Taken by you",
           "told": "Others told:", "no_answer": "No answer", "title": "Response times and outcomes"},
    "km": {"nothing": "គ្មានអ្វីហួសកំណត់ពេលទេ។", "took": "អ្នកបានទទួលយក", "by_you": "ទទួលបន្ទុកដោយអ្នក",
           "told": "បានប្រាប់អ្នកផ្សេង៖", "no_answer": "គ្មានចម្លើយ", "title": "រយៈពេលឆ្លើយតប និងលទ្ធផល"},
}


def hub_command(settings, *args: str) -> subprocess.CompletedProcess:
    """The installed `hub` command as its own process, on the live hub's database."""
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_SECRET_KEY": settings.secret_key}
    return subprocess.run([str(Path(sys.executable).with_name("hub")), "--config", str(settings.config_path), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.mark.parametrize("lang", ["en", "km"])
def test_coordinator_journey(lang, phone, live, network, db, clock, settings, shots, submit, app):
    words = WORDS[lang]
    with session_scope(db) as s:  # the demo logins: <agency>.<role>, one password
        demo.add_demo_users(s, demo.RingSource(s, dict(network.rings), {}), DEMO_PASSWORD, clock=clock,
                            kdf_params=FAST_KDF)
    enrol_totp(db, "pp-committee.coordinator", settings.secret_key)  # coordinators sign in with a code
    sent = submit("pp-ahtjp", "pp-shelter-a", urgency="urgent", child=True, body=fictional_body("canary-coord"))
    code = sent["code"]

    page = phone("en")
    sign_in(page, "pp-committee.coordinator", DEMO_PASSWORD, app=app)
    assert page.url.endswith("/board")  # a coordinator starts on the board
    if lang == "km":  # the switch on every page; the member's choice is kept
        page.click("form.lang button[value=km]")
        page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == lang
    assert words["nothing"] in page.content() and code not in page.content()

    # An hour passes without an answer, the board open (it reloads itself, which keeps the session
    # from going idle); the scheduler's sweep runs as it would, as its own process.
    for minutes in (20, 40, 61):
        clock.set(T0 + dt.timedelta(minutes=minutes))
        page.reload()
        assert page.url.endswith("/board"), page.url
    done = hub_command(settings, "escalate", "--once", "--now", "2026-11-22T11:01:00Z")
    assert done.returncode == 0, done.stderr

    page.goto("/board")
    card = page.locator(f"li#e-{code}")
    assert card.count() == 1
    text = card.inner_text()
    assert "31" in text  # overdue by 31 minutes past its 30-minute deadline
    check_page(page)
    shots(page, f"{lang}-board")

    card.locator("form[action$='/take'] button").click()
    page.wait_for_load_state()
    assert words["took"] in page.content() and code in page.content()
    owner = page.locator(f"li#e-{code} .owner").inner_text()
    assert words["by_you"] in owner and words["told"] in owner
    with db() as s:
        taken = s.get(Referral, sent["id"])
        told = s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.referral_id == sent["id"], OutboxMessage.template == "taken"))
    assert taken.owner is not None and told >= 1
    check_page(page)
    shots(page, f"{lang}-board-taken")

    page.goto("/reports?from=2026-11-22&to=2026-11-23")
    assert page.get_attribute("html", "lang") == lang
    assert words["title"] in page.content()
    summary = page.locator("table").first.inner_text()
    assert "1" in summary and "100" in summary  # one referral, no answer: 100 %
    assert page.locator("svg").count() == 4
    steps = page.locator("#steps table").inner_text()
    assert "3" in steps  # step 0 on the ack clock, and steps 1 and 2 fired
    check_page(page)
    shots(page, f"{lang}-reports")
    assert "canary-coord" not in page.content()
