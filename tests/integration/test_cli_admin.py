"""The `hub` command's set-up and admin commands, run with click's CliRunner on a temp instance.

Runs on a fresh SQLite file (the commands make their own schema with `hub init`).
"""
from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub import packets
from hub.accounts import service as accounts
from hub.accounts.models import ApiToken, User, WrappedKeyRing
from hub.cli import main
from hub.clock import SystemClock
from hub.db import make_engine, make_sessionmaker, session_scope
from hub.directory.models import Agency, AgencyKey, Contact
from tests.instance import write_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def instance(tmp_path):
    """A config.toml whose instance/ and keys/ live in tmp_path; returns (config path, env, tmp_path)."""
    config = write_config(tmp_path)
    env = {"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.sqlite3'}", "HUB_SECRET_KEY": "k" * 48,
           "HUB_CONFIG": None, "HUB_RECOVERY_CODE": None, "HUB_KEYRING_PASSPHRASE": None}
    return config, env, tmp_path


def hub(instance, *args, env=None, input=None):
    config, base_env, _ = instance
    return CliRunner().invoke(main, ["--config", str(config), *args], env={**base_env, **(env or {})}, input=input)


@pytest.fixture
def sessions(instance):
    engine = make_engine(instance[1]["HUB_DATABASE_URL"])
    yield make_sessionmaker(engine)
    engine.dispose()


def _count(sessions, model, *where) -> int:
    with session_scope(sessions) as s:
        return s.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hub: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_init_demo_twice(instance, sessions):
    _config, _env, tmp = instance
    first = hub(instance, "init", "--demo")
    assert first.exit_code == 0, first.output
    password = (tmp / "instance" / "demo-password.txt").read_text().strip()
    assert f"password for every demo login: {password}" in first.stdout
    assert "pp-ahtjp.officer" in first.stdout and "pp-shelter-a.caseworker" in first.stdout
    totp_secret = (tmp / "instance" / "demo-totp-secret.txt").read_text().strip()
    assert f"TOTP secret for every demo login marked (+ TOTP code): {totp_secret}" in first.stdout
    assert "pp-committee.coordinator" in first.stdout and "(+ TOTP code)" in first.stdout
    codes_file = tmp / "instance" / "demo-recovery-codes.txt"
    for private in (codes_file, tmp / "instance" / "demo-password.txt", tmp / "instance" / "demo-totp-secret.txt",
                    tmp / "instance" / "demo" / "pp-ahtjp.keyring.json"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert not re.search(r"([A-Z2-7]{4}-){6}", first.stdout), "demo codes go to the file, not the screen"
    snapshot = _state(sessions)

    second = hub(instance, "init", "--demo")
    assert second.exit_code == 0, second.output
    assert "every agency already has keys" in second.stdout and "(0 new)" in second.stdout
    assert _state(sessions) == snapshot

    # a demo login unlocks its agency's key ring, and the key ring file opens with the demo password
    with session_scope(sessions) as s:
        _cookie, principal, ring = accounts.login(s, "pp-shelter-a.caseworker", password, clock=SystemClock(),
                                                  lifetime=__import__("datetime").timedelta(hours=1),
                                                  totp_roles=())
    assert principal.role == "caseworker" and ring is not None and ring.agency == "pp-shelter-a"
    doc = json.loads((tmp / "instance" / "demo" / "pp-ahtjp.keyring.json").read_text())
    assert packets.unwrap_keyring(doc, holder="system:pp-ahtjp", passphrase=password).agency == "pp-ahtjp"
    token = (tmp / "instance" / "demo" / "pp-ahtjp.token").read_text().strip()
    with session_scope(sessions) as s:
        assert accounts.authenticate_token(s, token, SystemClock()).agency_id == "pp-ahtjp"
    assert (tmp / "keys" / "pp-ahtjp.pub.json").exists()


def _state(sessions):
    with session_scope(sessions) as s:
        return (
            sorted(s.scalars(sa.select(Agency.id))),
            sorted(s.scalars(sa.select(AgencyKey.kid))),
            sorted(s.scalars(sa.select(User.username))),
            sorted((w.agency_id, w.holder) for w in s.scalars(sa.select(WrappedKeyRing))),
            s.scalar(sa.select(sa.func.count()).select_from(ApiToken)),
            s.scalar(sa.select(sa.func.count()).select_from(Contact)),
        )


def test_init_without_demo_prints_each_recovery_code_once(instance, sessions):
    result = hub(instance, "init")
    assert result.exit_code == 0, result.output
    codes = re.findall(r"^\s+(\S+)\s+((?:[A-Z2-7]{4}-){6}[A-Z2-7]{4})$", result.stdout, re.M)
    assert len(codes) == 14
    agency, code = codes[0]
    with session_scope(sessions) as s:
        assert accounts.recover_keyring(s, agency, code).agency == agency
        assert s.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_demo_is_refused_in_production(instance):
    config, _env, _ = instance
    config.write_text(config.read_text().replace('mode = "demo"', 'mode = "production"')
                      .replace('"http://127.0.0.1:5000"', '"https://hub.example.org"'))
    line = _one_line_error(hub(instance, "init", "--demo"), 2)
    assert "production" in line


def test_agencies_sync(instance, sessions):
    assert hub(instance, "init").exit_code == 0
    result = hub(instance, "agencies", "sync")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "agencies synced: 14 agencies"
    assert _count(sessions, Agency) == 14


def test_tokens_create_prints_a_token_that_authenticates(instance, sessions):
    assert hub(instance, "init").exit_code == 0
    result = hub(instance, "tokens", "create", "--agency", "pp-shelter-b", "--name", "case system")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert re.fullmatch(r"rh_[A-Za-z0-9_-]{43}", token)
    with session_scope(sessions) as s:
        principal = accounts.authenticate_token(s, token, SystemClock())
    assert principal.agency_id == "pp-shelter-b"
    revoked = hub(instance, "tokens", "revoke", str(principal.token_id))
    assert revoked.exit_code == 0, revoked.output


def test_tokens_create_for_an_unknown_agency(instance, sessions):
    assert hub(instance, "init").exit_code == 0
    line = _one_line_error(hub(instance, "tokens", "create", "--agency", "nowhere"), 2)
    assert "nowhere" in line and "hub agencies sync" in line
    assert _count(sessions, ApiToken) == 0


def test_contacts_add_with_an_invalid_phone_stores_nothing(instance, sessions):
    assert hub(instance, "init").exit_code == 0
    before = _count(sessions, Contact)
    line = _one_line_error(hub(instance, "contacts", "add", "--agency", "pp-shelter-a", "--name", "Night Duty",
                               "--phone", "12345", "--duty"), 2)
    assert "phone" in line and "+855" in line
    assert _count(sessions, Contact) == before
    assert _count(sessions, Contact, Contact.agency_id == "pp-shelter-a", Contact.duty.is_(True)) == 1


def test_contacts_add_makes_the_new_duty_contact(instance, sessions):
    assert hub(instance, "init").exit_code == 0
    result = hub(instance, "contacts", "add", "--agency", "pp-shelter-a", "--name", "Night Duty",
                 "--phone", "+44 7700 900950", "--duty", "--lang", "en")
    assert result.exit_code == 0, result.output
    with session_scope(sessions) as s:
        duty = s.scalars(sa.select(Contact).where(Contact.agency_id == "pp-shelter-a", Contact.duty.is_(True))).all()
    assert [(c.phone, c.lang, c.role, c.source) for c in duty] == [("+447700900950", "en", "caseworker", "manual")]


def test_users_add_prints_an_invitation_that_carries_the_key_ring(instance, sessions):
    result = hub(instance, "init")
    code = dict(re.findall(r"^\s+(\S+)\s+((?:[A-Z2-7]{4}-){6}[A-Z2-7]{4})$", result.stdout, re.M))["pp-shelter-b"]
    added = hub(instance, "users", "add", "--agency", "pp-shelter-b", "--role", "caseworker", "--name", "Ouk Sreymom",
                env={"HUB_RECOVERY_CODE": code})
    assert added.exit_code == 0, added.output
    link = re.search(r"http://127\.0\.0\.1:5000/invite/(\S+)", added.stdout)
    assert link and "pp-shelter-b.ouk-sreymom" in added.stdout
    with session_scope(sessions) as s:
        user = accounts.accept_invitation(s, link.group(1), "a long enough password", SystemClock(),
                                          kdf_params={"iterations": 1, "memory_kib": 1024, "lanes": 1})
        assert s.scalar(sa.select(WrappedKeyRing).where(WrappedKeyRing.holder == f"user:{user.id}")) is not None


def test_users_add_with_a_wrong_recovery_code_adds_nobody(instance, sessions):
    result = hub(instance, "init")
    codes = dict(re.findall(r"^\s+(\S+)\s+((?:[A-Z2-7]{4}-){6}[A-Z2-7]{4})$", result.stdout, re.M))
    line = _one_line_error(hub(instance, "users", "add", "--agency", "pp-shelter-b", "--role", "caseworker",
                               "--name", "X Y", env={"HUB_RECOVERY_CODE": codes["pp-shelter-a"]}), 2)
    assert "recovery code" in line
    assert _count(sessions, User) == 0


def test_enrolling_an_enrolled_agency_is_refused(instance, sessions):
    assert hub(instance, "init").exit_code == 0  # init enrols every agency
    line = _one_line_error(hub(instance, "agencies", "enroll", "pp-ahtjp"), 1)
    assert "already enrolled" in line


def test_enroll_with_export(instance, sessions, tmp_path):
    _config, env, _ = instance
    # sync only, so the agency has no keys yet
    from hub.models import create_all

    engine = make_engine(env["HUB_DATABASE_URL"])
    create_all(engine)
    engine.dispose()
    assert hub(instance, "agencies", "sync").exit_code == 0
    out = tmp_path / "pp-dosvy.keyring.json"
    result = hub(instance, "agencies", "enroll", "pp-dosvy", "--export", str(out),
                 env={"HUB_KEYRING_PASSPHRASE": "a long export passphrase"})
    assert result.exit_code == 0, result.output
    assert re.search(r"recovery code \(shown once; store it offline\): ((?:[A-Z2-7]{4}-){6}[A-Z2-7]{4})", result.stdout)
    ring = packets.unwrap_keyring(json.loads(out.read_text()), holder="system:pp-dosvy",
                                  passphrase="a long export passphrase")
    with session_scope(sessions) as s:
        kids = set(s.scalars(sa.select(AgencyKey.kid).where(AgencyKey.agency_id == "pp-dosvy")))
    assert {k.kid for k in ring.keys} == kids
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_bad_config_is_one_line_with_exit_2(instance):
    config, _env, _ = instance
    config.write_text(config.read_text().replace('gateway = "console"', 'gateway = "pager"'))
    line = _one_line_error(hub(instance, "agencies", "sync"), 2)
    assert "sms.gateway" in line


def test_config_option_is_accepted_after_the_command_too(instance):
    config, env, _ = instance
    result = CliRunner().invoke(main, ["agencies", "sync", "--config", str(config)], env=env)
    assert result.exit_code == 1 and "run `hub init`" in result.stderr  # no schema yet: says what to do
    result = CliRunner().invoke(main, ["init", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["agencies", "sync", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
