"""A full journey through live hub processes, then a scan for every secret that grants an action.

`hub init`, `hub users add` (an invitation), `hub tokens create` (API tokens) as processes; then
`hub serve` (werkzeug's request log on its stderr) with its in-process scheduler texting through
the real twilio SDK to tests/fake_twilio, whose status callbacks come back signed; the invitation
accepted and a web session signed in; a referral submitted, texted with its one-tap link, tapped,
read over the API and on the web, declined; an SMS reply; then gunicorn with an access log asked
for the same secret URLs. Afterwards every text and bytes column of every table, every file of the
instance folder (the SQLite file itself included) and every log are searched for each raw secret:
none may be found. The files the hub wrote are its user's only; `hub retention run` shreds the
packet and `hub audit verify` still passes.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from hub import packets
from hub.accounts import service as accounts
from hub.db import make_engine, make_sessionmaker, session_scope
from hub.directory import service as directory
from tests.factories import fictional_body
from tests.instance import ROOT
from tests.process.test_commands import _free_port, _fresh, backend  # noqa: F401  (fixture)

DUTY = "+447700900107"  # pp-shelter-a's duty contact in agencies/pp-shelter-a.toml
PASSWORD = "a fictional long passphrase 77"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
HUB = str(Path(sys.executable).with_name("hub"))


GUARD = 600  # seconds: only so that a hung process ends the test, never a measure of speed


def _until(check, what: str):
    started = time.monotonic()
    while not (value := check()):
        if time.monotonic() - started > GUARD:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.2)
    return value


class Server:
    """A process serving HTTP on ``port``, its stdout and stderr in files; stopped with its group."""

    def __init__(self, args: list[str], folder: Path, name: str, env: dict, port: int, cwd: Path):
        self.out, self.err = folder / f"{name}.stdout", folder / f"{name}.stderr"
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self.out.open("w"), stderr=self.err.open("w"),
                                     start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                pytest.fail(f"{name} stopped: " + self.err.read_text(errors="replace")[-3000:])
            try:
                return requests.get(self.url + "/healthz", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        _until(up, f"{name} answers")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _scan_database(url: str, secrets: dict[str, str]) -> tuple[int, list[str]]:
    """(cells read, hits as "table.column: secret name") over every text and bytes column."""
    engine = sa.create_engine(url)
    hits, cells = [], 0
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(sa.select(table)).mappings():
                    for column, value in row.items():
                        if isinstance(value, memoryview):
                            value = bytes(value)
                        if isinstance(value, (dict, list)):
                            value = json.dumps(value)
                        if not isinstance(value, (str, bytes)):
                            continue
                        cells += 1
                        for name, secret in secrets.items():
                            needle = secret.encode() if isinstance(value, bytes) else secret
                            if needle in value:
                                hits.append(f"{table.name}.{column}: {name}")
    finally:
        engine.dispose()
    return cells, hits


def _scan_files(paths: list[Path], secrets: dict[str, str]) -> tuple[int, list[str]]:
    hits, files = [], 0
    for path in paths:
        if not path.is_file():
            continue
        files += 1
        data = path.read_bytes()
        for name, secret in secrets.items():
            if secret.encode() in data:
                hits.append(f"{path.name}: {name}")
    return files, hits


def test_no_secret_is_readable_after_a_full_journey(backend, tmp_path, fake_twilio):  # noqa: F811
    port, gport = _free_port(), _free_port()
    hub, drop = _fresh(backend, tmp_path / "hub", sms__gateway="twilio", sms__from_number=fake_twilio.phone_number,
                       escalation__tick="PT1S", hub__public_base_url=f"http://127.0.0.1:{port}",
                       security__rate_limit_storage="database")  # the scan covers the rate-limit counts too
    hub.env.update(HUB_SECRET_KEY="s" * 48, TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
                   TWILIO_AUTH_TOKEN=fake_twilio.auth_tokens[0], HUB_TWILIO_API_BASE=fake_twilio.base_url)
    fake_twilio.auto_status = ("sent", "delivered")
    servers: list[Server] = []
    try:
        # -- set-up, as an operator does it ---------------------------------------------------------
        init = hub.run("init").stdout
        codes = dict(re.findall(r"^\s+([a-z0-9-]+)\s+(\S{20,})$", init, re.M))
        assert {"pp-ahtjp", "pp-shelter-a"} <= set(codes), init
        added = hub.run("users", "add", "--agency", "pp-shelter-a", "--role", "caseworker", "--name",
                        "Fictional Caseworker", "--username", "shelter.cw", "--lang", "en",
                        env={"HUB_RECOVERY_CODE": codes["pp-shelter-a"]}).stdout
        invite = re.search(r"/invite/(\S+)", added).group(1)
        police_token = hub.run("tokens", "create", "--agency", "pp-ahtjp").stdout.strip().splitlines()[0]
        shelter_token = hub.run("tokens", "create", "--agency", "pp-shelter-a").stdout.strip().splitlines()[0]

        serve = Server([HUB, "--config", str(hub.config), "serve", "--port", str(port)], hub.folder, "serve",
                       hub.env, port, hub.folder)
        servers.append(serve)
        base = serve.url
        fake_twilio.callback_route = base

        # -- the invitation accepted, a web session ---------------------------------------------
        browser = requests.Session()
        page = browser.get(f"{base}/invite/{invite}")
        assert page.status_code == 200
        done = browser.post(f"{base}/invite/{invite}", data={"password": PASSWORD, "confirm": PASSWORD,
                                                              "csrf_token": _csrf(page.text)}, allow_redirects=False)
        assert done.status_code == 302, done.text[:500]
        login = browser.get(f"{base}/login")
        signed_in = browser.post(f"{base}/login", data={"username": "shelter.cw", "password": PASSWORD,
                                                        "csrf_token": _csrf(login.text)}, allow_redirects=False)
        assert signed_in.status_code == 302, signed_in.text[:500]
        session_cookie = browser.cookies.get("refhub_session")
        assert session_cookie

        # -- a referral over the API, sealed by the police's own system -----------------------------
        engine = make_engine(hub.url)
        try:
            with session_scope(make_sessionmaker(engine)) as s:
                ring = accounts.recover_keyring(s, "pp-ahtjp", codes["pp-ahtjp"])
                bundles = {a: directory.public_bundle(s, a) for a in ("pp-shelter-a", "pp-ahtjp")}
        finally:
            engine.dispose()
        referral_id = str(uuid.uuid4())
        raw = json.dumps(fictional_body("journey"), ensure_ascii=False).encode()
        sealed = [json.loads(packets.seal(raw, sender=ring, recipient=bundles[reader], referral_id=referral_id))
                  for reader in ("pp-shelter-a", "pp-ahtjp")]
        police = {"Authorization": f"Bearer {police_token}"}
        shelter = {"Authorization": f"Bearer {shelter_token}"}
        created = requests.post(f"{base}/api/v1/referrals", headers=police, json={
            "to": "pp-shelter-a", "urgency": "urgent", "child": False, "needs": ["shelter"], "province": "KH-12",
            "packets": sealed})
        assert created.status_code == 201, created.text
        code = created.json()["code"]

        # -- texted with its one-tap link, tapped ---------------------------------------------------
        text = _until(lambda: next((m for m in fake_twilio.messages if m.to == DUTY and code in m.body), None),
                      "the duty contact is texted")
        onetap = re.search(r"/a/([A-Za-z0-9_-]+)", text.body).group(1)
        assert requests.get(f"{base}/a/{onetap}").status_code == 200
        assert requests.post(f"{base}/a/{onetap}").status_code == 200
        assert requests.get(f"{base}/api/v1/referrals/{referral_id}", headers=police).json()["status"] == "acknowledged"

        # -- the packet over the API and on the web; an SMS reply; a decline ------------------------
        assert requests.get(f"{base}/api/v1/referrals/{referral_id}", headers=shelter).json()["packet"]
        assert browser.get(f"{base}/inbox").status_code == 200
        assert browser.get(f"{base}/r/{referral_id}").status_code == 200
        reply = fake_twilio.signed_inbound(f"{base}/webhooks/twilio/sms", DUTY, "HELP")
        assert fake_twilio.post(reply) == 200
        declined = requests.post(f"{base}/api/v1/referrals/{referral_id}/decline", headers=shelter,
                                 json={"reason": "no bed tonight"})
        assert declined.status_code == 200, declined.text
        fake_twilio.join_callbacks()
        _until(lambda: all(m.status == "delivered" for m in fake_twilio.messages)
               and hub.scalar("SELECT count(*) FROM outbox_message WHERE status IN ('queued', 'sending')") == 0,
               "every text is out")
        metrics = requests.get(f"{base}/metrics")
        assert metrics.status_code == 200  # from 127.0.0.1, allowed by default
        serve.stop()

        # -- gunicorn, its access log asked for the secret URLs --------------------------------------
        access_log = hub.folder / "gunicorn-access.log"
        gunicorn = Server([GUNICORN, "-w", "1", "-b", f"127.0.0.1:{gport}", "--access-logfile", str(access_log),
                           "wsgi:app"], hub.folder, "gunicorn", {**hub.env, "HUB_CONFIG": str(hub.config)}, gport,
                          ROOT)
        servers.append(gunicorn)
        for path in (f"/a/{onetap}", f"/invite/{invite}"):
            assert requests.get(gunicorn.url + path).status_code in (200, 404, 410)
        assert requests.get(f"{gunicorn.url}/api/v1/referrals", headers=shelter).status_code == 200
        assert requests.get(f"{gunicorn.url}/inbox", cookies={"refhub_session": session_cookie}).status_code == 200
        gunicorn.stop()
        assert f"/a/[redacted]" in access_log.read_text() and "/invite/[redacted]" in access_log.read_text()
        assert "/a/[redacted]" in serve.err.read_text()

        # -- the scan ---------------------------------------------------------------------------------
        secrets = {"invitation": invite, "one-tap token": onetap, "police API token": police_token,
                   "shelter API token": shelter_token, "web session": session_cookie,
                   "password": PASSWORD, "recovery code pp-ahtjp": codes["pp-ahtjp"],
                   "recovery code pp-shelter-a": codes["pp-shelter-a"]}
        control = hub.folder / "control.txt"  # the scan finds what is there
        control.write_text(" ".join(secrets.values()))
        assert len(_scan_files([control], secrets)[1]) == len(secrets)
        control.unlink()
        cells, db_hits = _scan_database(hub.url, secrets)
        instance_files = sorted((hub.folder / "instance").rglob("*")) + sorted((hub.folder / "keys").rglob("*"))
        database_files = [hub.folder / f"hub.sqlite3{s}" for s in ("", "-wal", "-shm")] if backend == "sqlite" else []
        logs = [serve.out, serve.err, gunicorn.out, gunicorn.err, access_log]
        files, file_hits = _scan_files(instance_files + database_files + logs, secrets)
        print("FIGURES", json.dumps({"test": "secret scan", "backend": backend, "secrets": len(secrets),
                                     "database_cells": cells, "files": files, "logs": len(logs),
                                     "hits": len(db_hits) + len(file_hits)}))
        assert db_hits == [] and file_hits == [], db_hits + file_hits

        # -- the files are the hub user's only ---------------------------------------------------------
        loose = []
        for path in [hub.folder / "instance", hub.folder / "keys", *instance_files, *database_files]:
            if path.exists():
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    loose.append(f"{path.relative_to(hub.folder)} {oct(mode)}")
        assert loose == []

        # -- retention shreds the packet, the audit log still verifies --------------------------------
        later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3 * 365)).strftime("%Y-%m-%dT%H:%M:%SZ")
        shredded = json.loads(hub.run("retention", "run", "--now", later).stdout)
        assert (shredded["referrals"], shredded["packets"]) == (1, 2)
        assert json.loads(hub.run("retention", "run", "--now", later).stdout)["packets"] == 0
        assert hub.scalar("SELECT count(*) FROM referral_packet WHERE wire IS NOT NULL") == 0
        assert hub.scalar("SELECT count(*) FROM referral WHERE id = :id", id=referral_id) == 1
        hub.run("audit", "checkpoint")
        hub.run("audit", "verify")
        if backend == "sqlite":
            data = b"".join(p.read_bytes() for p in database_files if p.exists())
            for packet in sealed:
                # The sealed bytes are gone from the file (secure_delete, WAL truncated), not only from the rows.
                assert packet["ct"][:64].encode() not in data
    finally:
        for server in servers:
            server.stop()
        drop()
