"""The officer, caseworker and admin journeys in a phone-sized Chromium, in English and in Khmer.

Each page visited is checked (no sideways scroll at 390 x 844, 44 px tap targets, axe finds no
serious or critical violation) and photographed.
"""
from __future__ import annotations

import re
import secrets

import pytest
import requests

from hub.referrals.models import Referral
from tests.e2e.checks import check_page
from tests.webhelpers import PASSWORD, add_member, code_for, photo_bytes

WORDS = {  # a few words each page shows, to assert the language a person sees
    "en": {"inbox": "Inbox", "accepted": "accepted", "sent_flash": "Sent. The reference is"},
    "km": {"inbox": "ប្រអប់ទទួល", "accepted": "បានទទួលយក", "sent_flash": "បានផ្ញើ។ លេខយោងគឺ"},
}


def sign_in(page, username: str, password: str = PASSWORD, app=None):
    """Sign in; where the role asks for TOTP, type the code the member's authenticator shows (``app``'s clock)."""
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form[action^='/login'] button[type=submit]")
    page.wait_for_load_state()
    if "/login/totp" in page.url:
        assert app is not None, f"{username} signs in with TOTP: pass app= to sign_in"
        page.fill("#code", code_for(app, username))
        page.click("form[action^='/login/totp'] button[type=submit]")
        page.wait_for_load_state()


def visit(page, path: str, shots, name: str):
    page.goto(path)
    check_page(page)
    shots(page, name)


def fill_referral(page, marker: str, to: str, *, photo: bool = True):
    page.fill("#name_latin", f"Dara Fictional {marker}")
    page.fill("#name_khmer", f"ដារា សាកល្បង {marker}")
    page.select_option("#sex", "female")
    page.check("#child")
    page.fill("#age_estimate", "15")
    page.fill("#place", f"Fictional market {marker}")
    page.fill("#risk_notes", f"Fictional risk {marker}")
    page.check("input[name=needs][value=shelter]")
    page.check("input[name=needs][value=medical]")
    page.check("input[name=urgency][value=urgent]")
    page.check("#consent_to_share")
    page.check("#consent_for_services")
    if photo:
        page.set_input_files("#photos", files=[{"name": "camera.jpg", "mimeType": "image/jpeg",
                                               "buffer": photo_bytes(2400, 1800, (30, 120, 200))}])
    page.check(f"input[name=to][value={to}]")


@pytest.mark.parametrize("lang", ["en", "km"])
def test_journey(lang, phone, live, network, db, clock, shots, app):
    words = WORDS[lang]
    add_member(db, network, clock, "pp-ahtjp", "officer", lang=lang, name="Officer Fictional")
    add_member(db, network, clock, "pp-shelter-a", "caseworker", lang=lang)
    add_member(db, network, clock, "pp-shelter-a", "agency_admin", lang=lang)
    marker = "J" + secrets.token_hex(3)

    # The officer fills the form with a photo and sends it.
    officer = phone(lang)
    visit(officer, "/login", shots, f"{lang}-login")
    sign_in(officer, "pp-ahtjp.officer")
    assert officer.get_attribute("html", "lang") == lang
    visit(officer, "/referrals/new", shots, f"{lang}-new-referral")
    fill_referral(officer, marker, "pp-shelter-a")
    officer.click("form[action='/referrals/new'] button[type=submit]:not([name=refresh])")
    officer.wait_for_load_state()
    assert words["sent_flash"] in officer.content()
    referral_id = officer.url.rsplit("/", 1)[1]
    with db() as s:
        code = s.get(Referral, referral_id).code

    # The caseworker finds it at the top of the inbox, opens it, sees the name and the photo, accepts.
    case = phone(lang)
    sign_in(case, "pp-shelter-a.caseworker")
    visit(case, "/inbox", shots, f"{lang}-inbox")
    assert words["inbox"] in case.content()
    first = case.locator("ul.cards > li").first
    assert code in first.inner_text()
    first.locator("a").click()
    case.wait_for_load_state()
    check_page(case)
    shots(case, f"{lang}-referral")
    assert f"Dara Fictional {marker}" in case.content() and f"ដារា សាកល្បង {marker}" in case.content()
    img = case.locator("img.photo").first
    assert img.evaluate("i => i.complete && i.naturalWidth") == 1600
    case.click("form[action$='/accept'] button")
    case.wait_for_load_state()
    assert words["accepted"] in case.content()

    # The officer sees the change.
    visit(officer, "/sent", shots, f"{lang}-sent")
    assert code in officer.content() and words["accepted"] in officer.content()

    # A decline, then a re-route from the archive packet.
    officer.goto("/referrals/new")
    fill_referral(officer, marker + "b", "pp-shelter-a", photo=False)
    officer.click("form[action='/referrals/new'] button[type=submit]:not([name=refresh])")
    officer.wait_for_load_state()
    second = officer.url.rsplit("/", 1)[1]
    case.goto(f"/r/{second}")
    case.fill("#decline-reason", "no bed for a child tonight")
    case.click("form[action$='/decline'] button")
    case.wait_for_load_state()
    officer.goto(f"/r/{second}")
    officer.click(f"a[href='/referrals/new?previous={second}']")
    officer.wait_for_load_state()
    check_page(officer)
    shots(officer, f"{lang}-reroute")
    assert officer.input_value("#name_latin") == f"Dara Fictional {marker}b"
    assert officer.locator("input[name=to][value=pp-shelter-a]").count() == 0
    officer.check("input[name=to][value=pp-shelter-b]")
    officer.click("form[action='/referrals/new'] button[type=submit]:not([name=refresh])")
    officer.wait_for_load_state()
    third = officer.url.rsplit("/", 1)[1]
    with db() as s:
        assert s.get(Referral, third).previous_id == second
        assert s.get(Referral, third).to_agency_id == "pp-shelter-b"

    # Beds set in the browser show in the API.
    visit(case, "/beds", shots, f"{lang}-beds")
    case.fill("#beds", "2")
    case.click("main form button[type=submit]")
    case.wait_for_load_state()
    agencies = requests.get(f"{live.url}/api/v1/agencies", headers=network.headers("pp-ahtjp"), timeout=30).json()
    rows = agencies["agencies"] if isinstance(agencies, dict) else agencies
    assert [a["beds_available"] for a in rows if a["id"] == "pp-shelter-a"] == [2]

    # The admin invites a member, who sets a password and signs in.
    admin = phone(lang)
    sign_in(admin, "pp-shelter-a.agency_admin", app=app)
    visit(admin, "/admin", shots, f"{lang}-admin")
    admin.fill("#invite-name", "Newcomer Fictional")
    admin.select_option("#invite-role", "caseworker")
    admin.select_option("#invite-lang", lang)
    admin.fill("#invite-username", f"pp-shelter-a.new{lang}")
    admin.click("form[action='/admin/invite'] button")
    admin.wait_for_load_state()
    link = admin.get_attribute("#invitation-link", "href")
    path = re.sub(r"^https?://[^/]+", "", link)
    newcomer = phone("en" if lang == "km" else "km")  # the invitation's language wins over the browser's
    visit(newcomer, path, shots, f"{lang}-invite")
    assert newcomer.get_attribute("html", "lang") == lang
    newcomer.fill("#password", PASSWORD)
    newcomer.fill("#confirm", PASSWORD)
    newcomer.click("main form button[type=submit]")
    newcomer.wait_for_load_state()
    sign_in(newcomer, f"pp-shelter-a.new{lang}")
    assert newcomer.url.endswith("/inbox")
    visit(newcomer, "/settings", shots, f"{lang}-settings")


def test_language_switch_is_remembered(phone, network, db, clock):
    add_member(db, network, clock, "pp-shelter-a", "caseworker", lang="en")
    page = phone("en")
    sign_in(page, "pp-shelter-a.caseworker")
    page.click("form.lang button[value=km]")
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "km" and "ប្រអប់ទទួល" in page.content()
    other = phone("en")  # another browser: the member's choice follows them
    sign_in(other, "pp-shelter-a.caseworker")
    assert other.get_attribute("html", "lang") == "km"


def test_the_khmer_font_comes_from_the_hub(phone, live, network, db, clock):
    page = phone("km")
    fonts = []
    page.on("request", lambda r: fonts.append(r.url) if r.resource_type == "font" else None)
    page.goto("/login")
    page.wait_for_load_state("networkidle")
    assert fonts and all(u.startswith(live.url) for u in fonts)
    assert page.evaluate("() => document.fonts.check('16px \"Noto Sans Khmer\"', 'ក')")
