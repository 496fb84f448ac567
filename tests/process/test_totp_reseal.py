"""Rotating HUB_SECRET_KEY without locking anyone out of TOTP: the previous key still opens the sealed
secrets, and `hub totp reseal` (its own process) seals them all under the new key.

Each step is what an operator does, on SQLite and on PostgreSQL: `hub init --demo` under the old
key, then the new key with HUB_SECRET_KEY_PREVIOUS, then `hub totp reseal`, then the new key alone.
"""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from hub import create_app
from hub.accounts import totp
from hub.clock import SystemClock
from hub.config import load_settings
from tests.process.test_commands import backend, fresh  # noqa: F401  (fixtures)
from tests.webhelpers import csrf

OLD = "o" * 20 + "-the-key-before-rotation"
NEW = "n" * 20 + "-the-key-after-rotation-"
COORDINATOR = "pp-committee.coordinator"  # a demo login that signs in with a TOTP code


def _signs_in_with_a_code(instance, env: dict) -> bool:
    """A fresh browser: password, then the code the demo authenticator shows now."""
    settings = load_settings(instance.config, env={**instance.env, **env})
    app = create_app(settings, clock=SystemClock())
    app.config["TESTING"] = True
    try:
        password = (instance.folder / "instance" / "demo-password.txt").read_text().strip()
        secret = (instance.folder / "instance" / "demo-totp-secret.txt").read_text().strip()
        browser = app.test_client()
        page = browser.get("/login")
        step = browser.post("/login", data={"username": COORDINATOR, "password": password, "csrf_token": csrf(page.text)})
        assert "/login/totp" in step.headers["Location"]
        with app.extensions["hub"].sessions() as s:  # each time step signs in once: forget the last one used
            s.execute(sa.text("UPDATE user_account SET totp_last_counter = NULL"))
            s.commit()
        page = browser.get("/login/totp")
        done = browser.post("/login/totp", data={"code": totp.code_now(secret, SystemClock().now()),
                                                 "csrf_token": csrf(page.text)})
        return done.status_code == 302 and "/login" not in done.headers["Location"]
    finally:
        app.extensions["hub"].engine.dispose()


def _sealed(instance) -> list[tuple[int, str]]:
    engine = sa.create_engine(instance.url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "SELECT id, totp_secret FROM user_account WHERE totp_secret IS NOT NULL ORDER BY id"))]
    finally:
        engine.dispose()


def test_a_rotated_key_then_reseal_keeps_totp_working_and_the_old_key_opens_nothing(fresh):
    fresh.run("init", "--demo", env={"HUB_SECRET_KEY": OLD})
    before = _sealed(fresh)
    assert before and _signs_in_with_a_code(fresh, {"HUB_SECRET_KEY": OLD})
    # The new key alone (the rotation without the previous key): the codes no longer verify.
    assert not _signs_in_with_a_code(fresh, {"HUB_SECRET_KEY": NEW})
    rotating = {"HUB_SECRET_KEY": NEW, "HUB_SECRET_KEY_PREVIOUS": OLD}
    assert _signs_in_with_a_code(fresh, rotating), "the previous key still opens the secrets"

    first = json.loads(fresh.run("totp", "reseal", env=rotating).stdout)
    assert first == {"resealed": len(before), "current": 0, "unreadable": 0}
    again = json.loads(fresh.run("totp", "reseal", env=rotating).stdout)
    assert again == {"resealed": 0, "current": len(before), "unreadable": 0}
    after = _sealed(fresh)
    assert [uid for uid, _ in after] == [uid for uid, _ in before] and not set(after) & set(before)
    for uid, value in after:
        with pytest.raises(totp.SealError):
            totp.unseal(OLD, uid, value)
    assert _signs_in_with_a_code(fresh, {"HUB_SECRET_KEY": NEW}), "the new key alone is enough now"
    assert fresh.scalar("SELECT count(*) FROM audit_entry WHERE action = 'totp.resealed'") == 2

    # The old key alone opens nothing now: a reseal under it says so (exit 1, one line) and changes nothing.
    line = fresh.fails("totp", "reseal", code=1, env={"HUB_SECRET_KEY": OLD})
    assert f"{len(before)} TOTP secret(s) open with neither" in line
    assert _sealed(fresh) == after


def test_a_previous_key_equal_to_the_current_one_is_refused(fresh):
    line = fresh.fails("totp", "reseal", env={"HUB_SECRET_KEY": NEW, "HUB_SECRET_KEY_PREVIOUS": NEW})
    assert "HUB_SECRET_KEY_PREVIOUS" in line
