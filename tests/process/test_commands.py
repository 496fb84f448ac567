"""Every `hub` command as its own process: the installed console script on a fresh instance folder.

What a user sees is asserted: the exit code, stdout, one line on stderr for an error (exit 2
for bad input, never a traceback) and the change made in the database. Each runs on SQLite
and on PostgreSQL. Nothing here shares a Python process with the hub, so a module that only
the test suite happens to import (the bug of issue 13: `hub agencies sync` without the
accounts models) cannot hide.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from hub.clock import SystemClock
from hub.config import load_settings
from hub.db import make_engine, make_sessionmaker, session_scope
from hub.notify.service import enqueue
from tests.instance import ROOT, new_postgres_database, write_config

HUB = str(Path(sys.executable).with_name("hub"))
BODY = ROOT / "docs" / "examples" / "referral-body.json"
# Variables of the developer's shell that would change what a command does.
SCRUB = ("HUB_CONFIG", "HUB_DATABASE_URL", "HUB_SECRET_KEY", "HUB_PUBLIC_BASE_URL", "HUB_RECOVERY_CODE",
         "HUB_KEYRING_PASSPHRASE", "HUB_MODE", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "HUB_TWILIO_API_BASE")


@dataclass
class Instance:
    folder: Path
    config: Path
    url: str
    env: dict = field(default_factory=dict)

    def run(self, *args: str, env: dict | None = None, input: str | None = None,
            check: int | None = 0) -> subprocess.CompletedProcess:
        result = subprocess.run([HUB, "--config", str(self.config), *args], cwd=self.folder,
                                env={**self.env, **(env or {})}, input=input, capture_output=True, text=True,
                                timeout=300)
        assert "Traceback" not in result.stderr, result.stderr
        if check is not None:
            assert result.returncode == check, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def fails(self, *args: str, code: int = 2, env: dict | None = None, input: str | None = None) -> str:
        """Run a command that must be refused: exit ``code`` and exactly one line on stderr; returns it."""
        result = self.run(*args, env=env, input=input, check=code)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hub"), result.stderr
        return lines[0]

    def scalar(self, sql: str, **params):
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(sql), params).scalar()
        finally:
            engine.dispose()


def _admin_url() -> str | None:
    url = os.environ.get("HUB_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return url
    except sa.exc.OperationalError:
        return None


def _fresh(kind: str, folder: Path, **overrides) -> tuple[Instance, callable]:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        url, drop = f"sqlite:///{folder / 'hub.sqlite3'}", (lambda: None)
    else:
        admin = _admin_url()
        if admin is None:
            if os.environ.get("HUB_TEST_DATABASE_URL"):
                pytest.fail("HUB_TEST_DATABASE_URL is set but PostgreSQL does not answer")
            pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432; set HUB_TEST_DATABASE_URL or start the server")
        url, drop = new_postgres_database(admin)
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env["HUB_DATABASE_URL"] = url
    return Instance(folder, write_config(folder, **overrides), url, env), drop


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def fresh(backend, tmp_path):
    """A fresh instance folder with nothing initialised."""
    instance, drop = _fresh(backend, tmp_path / "hub")
    yield instance
    drop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    instance: Instance
    url: str
    password: str
    codes: dict
    process: subprocess.Popen

    def system(self, agency: str) -> list[str]:
        demo = self.instance.folder / "instance" / "demo"
        token = (demo / f"{agency}.token").read_text().strip()
        return ["--hub", self.url, "--token", token, "--keyring", str(demo / f"{agency}.keyring.json")]

    def client(self, verb: str, *args: str, agency: str, check: int | None = 0):
        return self.instance.run("client", verb, *self.system(agency), *args,
                                 env={"HUB_KEYRING_PASSPHRASE": self.password}, check=check)

    def send(self, **extra) -> dict:
        args = ["--to", "pp-shelter-a", "--urgency", "urgent", "--province", "KH-12", "--needs", "shelter,medical",
                "--body", str(BODY)]
        for key, value in extra.items():
            args += [f"--{key}", value]
        return json.loads(self.client("send", *args, agency="pp-ahtjp").stdout)


def _wait_until(predicate, what: str, seconds: float = 60.0):
    """Poll until ``predicate()`` is true; a hub that never gets there fails with ``what``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, tmp_path_factory):
    """`hub init --demo`, then `hub serve` on a free port: the demo a newcomer runs, on another port."""
    port = _free_port()
    instance, drop = _fresh(request.param, tmp_path_factory.mktemp(f"served-{request.param}"),
                            escalation__tick="PT1S")
    init = instance.run("init", "--demo")
    password = (instance.folder / "instance" / "demo-password.txt").read_text().strip()
    codes = dict(line.split(None, 1) for line in
                 (instance.folder / "instance" / "demo-recovery-codes.txt").read_text().splitlines() if line.strip())
    assert "demo logins" in init.stdout
    # Its log goes to a file: a pipe nobody reads would fill and stop the server mid-request.
    log = (instance.folder / "serve.log").open("w")
    process = subprocess.Popen([HUB, "--config", str(instance.config), "serve", "--port", str(port)],
                               cwd=instance.folder, env=instance.env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{url}/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            return process.poll() is not None and pytest.fail((instance.folder / "serve.log").read_text())
    _wait_until(up, "hub serve to answer")
    yield Served(instance, url, password, codes, process)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    drop()


# --- hub init, agencies -------------------------------------------------------------------------


def test_init_on_a_fresh_instance_makes_the_schema_the_directory_and_keys(fresh):
    result = fresh.run("init")
    assert "agencies synced: 14 agencies" in result.stdout
    codes = re.findall(r"^  (\S+) +((?:[A-Z2-9]{4}-){5,}[A-Z2-9]{4})$", result.stdout, re.M)
    assert len(codes) == 14, result.stdout
    assert fresh.scalar("SELECT count(*) FROM agency_key") == 28
    assert (fresh.folder / "instance" / "secret_key").stat().st_mode & 0o077 == 0
    assert "every agency already has keys" in fresh.run("init").stdout


def test_a_copied_agency_file_is_added_by_agencies_sync(backend, tmp_path):
    """The reproduction of issue 13: copy an agency file, change its id, sync."""
    agencies = tmp_path / "agencies"
    shutil.copytree(ROOT / "agencies", agencies)
    instance, drop = _fresh(backend, tmp_path / "hub", paths__agencies=agencies)
    try:
        instance.run("init")
        text = (agencies / "pp-shelter-a.toml").read_text().replace('id = "pp-shelter-a"', 'id = "pp-shelter-z"')
        text = re.sub(r'phone = "\+447700900(\d{3})"', lambda m: f'phone = "+447700900{(int(m[1]) + 500) % 1000:03d}"',
                      text)
        (agencies / "pp-shelter-z.toml").write_text(text)
        result = instance.run("agencies", "sync")
        assert "added pp-shelter-z" in result.stdout, result.stdout
        assert instance.scalar("SELECT count(*) FROM agency WHERE id = 'pp-shelter-z'") == 1
        assert instance.scalar("SELECT count(*) FROM contact c JOIN agency a ON a.id = c.agency_id "
                               "WHERE a.id = 'pp-shelter-z'") >= 1
        enrolled = instance.run("agencies", "enroll", "pp-shelter-z")
        assert "recovery code (shown once; store it offline):" in enrolled.stdout
        assert (tmp_path / "hub" / "keys" / "pp-shelter-z.pub.json").exists()
    finally:
        drop()


def test_a_broken_agency_file_is_one_line_and_changes_nothing(backend, tmp_path):
    agencies = tmp_path / "agencies"
    shutil.copytree(ROOT / "agencies", agencies)
    instance, drop = _fresh(backend, tmp_path / "hub", paths__agencies=agencies)
    try:
        instance.run("init")
        (agencies / "zz-broken.toml").write_text('id = "zz-broken"\nkind = "spaceship"\n')
        line = instance.fails("agencies", "sync")
        assert "zz-broken" in line
        assert instance.scalar("SELECT count(*) FROM agency") == 14
    finally:
        drop()


def test_enroll_refuses_twice_and_unknown_agencies(fresh):
    fresh.run("init")
    assert "already enrolled" in fresh.fails("agencies", "enroll", "pp-ahtjp", code=1)
    assert "no-such-agency" in fresh.fails("agencies", "enroll", "no-such-agency")


def test_enroll_export_writes_a_private_key_ring(backend, tmp_path):
    agencies = tmp_path / "agencies"
    shutil.copytree(ROOT / "agencies", agencies)
    instance, drop = _fresh(backend, tmp_path / "hub", paths__agencies=agencies)
    try:
        instance.run("init")
        shutil.copy(agencies / "pp-legal-aid.toml", agencies / "pp-legal-aid-2.toml")
        text = (agencies / "pp-legal-aid-2.toml").read_text().replace('id = "pp-legal-aid"', 'id = "pp-legal-aid-2"')
        (agencies / "pp-legal-aid-2.toml").write_text(re.sub(r"\[\[contacts\]\][^\[]*", "", text))
        instance.run("agencies", "sync")
        out = tmp_path / "ring.json"
        short = instance.fails("agencies", "enroll", "pp-legal-aid-2", "--export", str(out),
                               env={"HUB_KEYRING_PASSPHRASE": "short"})
        assert "12 characters" in short and not out.exists()
        done = instance.run("agencies", "enroll", "pp-legal-aid-2", "--export", str(out),
                            env={"HUB_KEYRING_PASSPHRASE": "a long passphrase here"})
        assert f"agency-held key ring written to {out}" in done.stdout
        assert json.loads(out.read_text())["holder"] == "system:pp-legal-aid-2"
        assert out.stat().st_mode & 0o077 == 0
    finally:
        drop()


def test_commands_on_an_uninitialised_database_say_run_hub_init(fresh):
    line = fresh.fails("tokens", "create", "--agency", "pp-ahtjp", code=1)
    assert "hub init" in line


def test_a_missing_config_is_one_line_exit_2(fresh):
    result = subprocess.run([HUB, "--config", str(fresh.folder / "nope.toml"), "agencies", "sync"], env=fresh.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not found" in result.stderr


def test_a_usage_mistake_is_one_line_exit_2(fresh):
    line = fresh.fails("users", "add", "--role", "chief", "--name", "X")
    assert "'chief' is not one of" in line and "hub users add --help" in line


# --- users, contacts, tokens ---------------------------------------------------------------------


def test_users_add_prints_an_invitation_that_opens_the_key_ring(fresh):
    init = fresh.run("init")
    code = dict(re.findall(r"^  (\S+) +(\S+)$", init.stdout, re.M))["pp-shelter-a"]
    bad = fresh.fails("users", "add", "--agency", "pp-shelter-a", "--role", "caseworker", "--name", "Dara Test",
                      env={"HUB_RECOVERY_CODE": "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG"})
    assert "recovery code" in bad.lower()
    assert fresh.scalar("SELECT count(*) FROM user_account") == 0
    result = fresh.run("users", "add", "--agency", "pp-shelter-a", "--role", "caseworker", "--name", "Dara Test",
                       "--lang", "en", env={"HUB_RECOVERY_CODE": code})
    assert re.search(r"invitation link \(one use, 7 days\): http://127\.0\.0\.1:5000/invite/\S+", result.stdout)
    assert fresh.scalar("SELECT lang FROM user_account WHERE username = 'pp-shelter-a.dara-test'") == "en"


def test_contacts_add_and_a_bad_number(fresh):
    fresh.run("init")
    result = fresh.run("contacts", "add", "--agency", "pp-shelter-b", "--name", "Night desk", "--phone",
                       "+447700900777", "--duty", "--lang", "en")
    assert re.match(r"contact \d+ of pp-shelter-b: \+447700900777 \(caseworker, duty\)", result.stdout)
    assert fresh.scalar("SELECT count(*) FROM contact WHERE phone = '+447700900777' AND duty") == 1
    assert "phone" in fresh.fails("contacts", "add", "--agency", "pp-shelter-b", "--name", "X", "--phone", "12").lower()


def test_tokens_create_and_revoke(fresh):
    fresh.run("init")
    created = fresh.run("tokens", "create", "--agency", "pp-ahtjp", "--name", "case system")
    token = created.stdout.strip()
    assert token.startswith("rh_") and "shown once" in created.stderr
    digest_count = fresh.scalar("SELECT count(*) FROM api_token WHERE revoked_at IS NULL")
    assert digest_count == 1
    assert fresh.scalar("SELECT count(*) FROM api_token WHERE token_hash = :t", t=token) == 0, "stored hashed"
    token_id = fresh.scalar("SELECT id FROM api_token")
    assert f"revoked token {token_id}" in fresh.run("tokens", "revoke", str(token_id)).stdout
    assert fresh.scalar("SELECT count(*) FROM api_token WHERE revoked_at IS NULL") == 0
    assert "token" in fresh.fails("tokens", "revoke", "99999").lower()
    assert "unknown-agency" in fresh.fails("tokens", "create", "--agency", "unknown-agency")


# --- escalate, sms drain -------------------------------------------------------------------------


def test_escalate_once_and_a_bad_now(fresh):
    fresh.run("init")
    report = json.loads(fresh.run("escalate", "--once", "--now", "2026-11-22T10:30:00Z").stdout)
    assert report["now"] == "2026-11-22T10:30:00Z" and report["claimed"] == 0
    assert "2026-11-22T10:30" in fresh.fails("escalate", "--once", "--now", "2026-11-22T10:30")


def test_sms_drain_once_on_an_empty_outbox(fresh):
    fresh.run("init")
    assert "sms drain: sent 0" in fresh.run("sms", "drain", "--once").stdout
    assert "--once" in fresh.fails("sms", "drain", "--now", "2026-11-22T10:30:00Z")


# --- serve and client: the demo a newcomer walks through ------------------------------------------


def test_serve_on_another_port_puts_that_port_in_the_texts(served):
    ref = served.send()
    assert ref["status"] == "sent" and re.fullmatch(r"R-[2-9C-Y]{4}", ref["code"])

    def console_link():
        page = requests.get(f"{served.url}/sms/console", timeout=10).text
        return re.search(re.escape(served.url) + r"/a/[A-Za-z0-9_-]{20,}", page)
    link = _wait_until(console_link, "the new referral's text with a one-tap link on the served port")
    confirm = requests.get(link.group(0), timeout=10)
    assert confirm.status_code == 200 and ref["code"] in confirm.text


def test_client_walks_a_referral_through_its_life(served):
    ref = served.send()
    inbox = json.loads(served.client("inbox", agency="pp-shelter-a").stdout)
    assert ref["id"] in [r["id"] for r in inbox]
    opened = json.loads(served.client("open", ref["id"], agency="pp-shelter-a").stdout)
    assert opened == json.loads(BODY.read_text())
    for verb, args, state in (("ack", [], "acknowledged"), ("accept", [], "accepted"), ("start-care", [], "in_care"),
                              ("close", ["--outcome", "reintegrated"], "closed")):
        out = json.loads(served.client(verb, ref["id"], *args, agency="pp-shelter-a").stdout)
        assert out["status"] == state
    sent = json.loads(served.client("sent", "--status", "closed", agency="pp-ahtjp").stdout)
    assert [r["id"] for r in sent if r["id"] == ref["id"]] == [ref["id"]]


def test_client_decline_then_reroute_and_withdraw_and_fail(served):
    declined = served.send()
    out = json.loads(served.client("decline", declined["id"], "--reason", "no bed tonight", agency="pp-shelter-a")
                     .stdout)
    assert out["status"] == "declined" and out["reason"] == "no bed tonight"
    again = served.send(previous=declined["id"])
    assert again["status"] == "sent"
    withdrawn = json.loads(served.client("withdraw", again["id"], "--reason", "family found", agency="pp-ahtjp")
                           .stdout)
    assert withdrawn["status"] == "withdrawn"
    third = served.send()
    served.client("accept", third["id"], agency="pp-shelter-a")
    failed = json.loads(served.client("fail", third["id"], "--reason", "never arrived", agency="pp-shelter-a").stdout)
    assert failed["status"] == "failed"


def test_client_refusals_are_one_line(served):
    ref = served.send()
    served.client("accept", ref["id"], agency="pp-shelter-a")
    late = served.client("ack", ref["id"], agency="pp-shelter-a", check=1)
    assert late.stderr.count("\n") == 1 and "already accepted" in late.stderr
    wrong = served.client("withdraw", ref["id"], "--reason", "x", agency="pp-shelter-a", check=1)
    assert wrong.stderr.count("\n") == 1
    bad_body = served.instance.folder / "not-a-body.json"
    bad_body.write_text("[1, 2]")
    refused = served.client("send", "--to", "pp-shelter-a", "--urgency", "normal", "--province", "KH-12", "--needs",
                            "shelter", "--body", str(bad_body), agency="pp-ahtjp", check=2)
    assert "JSON object" in refused.stderr and refused.stderr.count("\n") == 1


def test_scheduler_sends_what_is_queued_and_stops_on_sigterm(fresh):
    fresh.run("init")
    settings = load_settings(fresh.config, env=fresh.env)
    engine = make_engine(fresh.url)
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            enqueue(s, dedupe_key="process-test:1", to_phone="+447700900123", lang="en", template="reply_help",
                    values={}, now=SystemClock().now(), settings=settings)
    finally:
        engine.dispose()
    log_path = fresh.folder / "scheduler.log"
    log = log_path.open("w")
    process = subprocess.Popen([HUB, "--config", str(fresh.config), "scheduler"], cwd=fresh.folder, env=fresh.env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until(lambda: fresh.scalar("SELECT status FROM outbox_message WHERE dedupe_key = 'process-test:1'")
                    == "sent", "the scheduler to send the queued text")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
    err = log_path.read_text()
    assert process.returncode == 0, err
    assert "sweep and drain every" in err and "stopped" in err


def test_a_process_that_builds_a_hub_context_has_every_table():
    """Whatever a process imported before, the context it opens sessions with knows every table."""
    code = ("from hub.context import HubContext\n"
            "from hub.db import Base\n"
            "from hub.directory.models import Contact\n"
            "(fk,) = Contact.__table__.c.user_id.foreign_keys\n"
            "print(fk.column.table.name, len(Base.metadata.tables))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k not in SCRUB})
    assert result.returncode == 0, result.stderr
    table, count = result.stdout.split()
    assert table == "user_account" and int(count) >= 10


def test_demo_coordinator_signs_in_with_the_password_and_hub_demo_code(served):
    """`make run` prints the demo TOTP secret; `hub demo-code` prints the code a coordinator types."""
    secret_file = served.instance.folder / "instance" / "demo-totp-secret.txt"
    assert secret_file.stat().st_mode & 0o077 == 0
    browser = requests.Session()
    page = browser.get(f"{served.url}/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    step = browser.post(f"{served.url}/login", data={"username": "pp-committee.coordinator",
                                                     "password": served.password, "csrf_token": token}, timeout=30)
    assert "/login/totp" in step.url
    assert browser.get(f"{served.url}/board", timeout=30).url.startswith(f"{served.url}/login")
    code = served.instance.run("demo-code").stdout.strip()
    assert re.fullmatch(r"\d{6}", code)
    board = browser.post(step.url, data={"code": code, "csrf_token": token}, timeout=30)
    assert board.status_code == 200 and board.url.endswith("/board")
