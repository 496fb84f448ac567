"""TOTP in a phone-sized Chromium: a coordinator is made to enrol (QR code and key), gets recovery codes,
then signs in with a code from the app, in English and in Khmer."""
from __future__ import annotations

import pytest

from hub.accounts import service as accounts
from hub.accounts import totp
from hub.db import session_scope
from tests.e2e.checks import check_page
from tests.webhelpers import PASSWORD


def _password_step(page, username):
    """The first step of signing in, the password, on the phone's page."""
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form[action^='/login'] button[type=submit]")
    page.wait_for_load_state()


def _new_coordinator_signs_in(page, username, lang, network, db, clock):
    """A coordinator invited and accepted just now signs in with the password on the phone's page."""
    with session_scope(db) as s:
        _user, token = accounts.add_user(s, agency_id="pp-committee", role="coordinator", lang=lang,
                                         name="Coordinator Fictional", username=username, clock=clock,
                                         keyring=network.rings["pp-committee"])
        accounts.accept_invitation(s, token, PASSWORD, clock)
    _password_step(page, username)
    return page


@pytest.mark.parametrize("lang", ["en", "km"])
def test_totp_enrolment_then_sign_in(lang, phone, live, network, db, clock, shots, app):
    username = f"pp-committee.totp{lang}"
    page = _new_coordinator_signs_in(phone(lang), username, lang, network, db, clock)
    assert "/settings/totp" in page.url, "a coordinator without TOTP is sent to enrol first"
    check_page(page)
    shots(page, f"{lang}-totp-enrol")
    assert page.locator("figure.qr svg").count() == 1  # the QR code, drawn inline
    page.goto("/board")
    assert "/settings/totp" in page.url or "/login" in page.url  # nothing else until enrolled
    page.goto("/settings/totp")
    secret = page.locator("code.secret").inner_text().strip()
    page.fill("#code", totp.code_now(secret, clock.now()))
    page.click("form[action^='/settings/totp/confirm'] button[type=submit]")
    page.wait_for_load_state()
    codes = page.locator("ul.codes code").all_inner_texts()
    assert len(codes) == 10
    check_page(page)
    shots(page, f"{lang}-totp-codes")
    page.click("main a")
    page.wait_for_load_state()
    assert page.url.endswith("/board")

    page.click("form[action='/logout'] button")
    page.wait_for_load_state()
    clock.advance(seconds=30)  # the next code: each time step signs in once
    other = phone(lang)
    _password_step(other, username)
    assert "/login/totp" in other.url
    check_page(other)
    shots(other, f"{lang}-totp-login")
    other.fill("#code", totp.code_now(secret, clock.now()))
    other.click("form[action^='/login/totp'] button[type=submit]")
    other.wait_for_load_state()
    assert other.url.endswith("/board")
    # A recovery code signs in once, from a third phone.
    third = phone(lang)
    _password_step(third, username)
    third.fill("#code", codes[0])
    third.click("form[action^='/login/totp'] button[type=submit]")
    third.wait_for_load_state()
    assert third.url.endswith("/board")


@pytest.mark.parametrize("lang", ["en", "km"])
def test_new_recovery_codes_from_the_settings_page(lang, phone, network, db, clock, shots):
    username = f"pp-committee.renew{lang}"
    page = _new_coordinator_signs_in(phone(lang), username, lang, network, db, clock)
    secret = page.locator("code.secret").inner_text().strip()
    page.fill("#code", totp.code_now(secret, clock.now()))
    page.click("form[action^='/settings/totp/confirm'] button[type=submit]")
    page.wait_for_load_state()
    first = page.locator("ul.codes code").all_inner_texts()

    page.goto("/settings/totp")
    page.fill("#renew-code", "000000")  # a wrong code: refused, nothing changes
    page.click("form[action='/settings/totp/recovery-codes'] button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("[role=alert]").count() >= 1 and page.locator("ul.codes").count() == 0
    clock.advance(seconds=30)
    page.fill("#renew-code", totp.code_now(secret, clock.now()))
    page.click("form[action='/settings/totp/recovery-codes'] button[type=submit]")
    page.wait_for_load_state()
    renewed = page.locator("ul.codes code").all_inner_texts()
    assert len(set(renewed)) == 10 and not set(renewed) & set(first)
    check_page(page)
    shots(page, f"{lang}-totp-new-codes")

    other = phone(lang)  # an old code no longer signs in; a new one does
    _password_step(other, username)
    other.fill("#code", first[0])
    other.click("form[action^='/login/totp'] button[type=submit]")
    other.wait_for_load_state()
    assert "/login/totp" in other.url
    other.fill("#code", renewed[0])
    other.click("form[action^='/login/totp'] button[type=submit]")
    other.wait_for_load_state()
    assert other.url.endswith("/board")
