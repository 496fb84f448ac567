"""The inbox page: its cost follows the page, not the box. /inbox with 100 and with 10,000 referrals in the
agency's box, beside a bare Flask page that reads the same 50 rows with one plain SQL query and renders them
as a table, all in the same run.

    .venv/bin/python -m bench.web [--repeat 200] [--database-url URL]

Default: two scratch SQLite databases in a temp folder (with --database-url, a PostgreSQL server: two scratch
databases are made on it and dropped). Each page is requested through Flask's test client by a signed-in
caseworker holding the agency key ring, as in production; the median of --repeat requests is reported.
Each box holds 60 open referrals (a busy shelter's live cases) and the rest closed: the page shows the open
ones first (sorted by urgency and deadline), then the closed history newest first from an index.
Targets (issue 16): inbox(10,000) <= 1.5 x inbox(100); inbox(10,000) <= 3 x the bare page.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, render_template_string

from hub import create_app
from hub.accounts import service as accounts
from hub.clock import FixedClock
from hub.config import load_settings
from hub.db import make_engine, make_sessionmaker, session_scope
from hub.models import create_all
from hub.directory import service as directory
from hub.referrals.models import Referral

ROOT = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone.utc)
FAST_KDF = {"alg": "argon2id", "iterations": 1, "memory_kib": 1024, "lanes": 1}
PASSWORD = "a long bench passphrase 1"
OPEN = 60  # open referrals in each box: a busy shelter's live cases
BARE = """<!doctype html><html><head><title>bare</title></head><body><table>
<tr><th>code</th><th>from</th><th>status</th><th>needs</th><th>due</th><th>sent</th></tr>
{% for r in rows %}<tr><td>{{ r.code }}</td><td>{{ r.from_agency_id }}</td><td>{{ r.status }}</td>
<td>{{ r.needs }}</td><td>{{ r.deadline_at }}</td><td>{{ r.created_at }}</td></tr>{% endfor %}
</table></body></html>"""


def _settings(tmp: Path, url: str):
    text = (ROOT / "config.toml").read_text()
    text = text.replace('instance_dir = "instance"', f'instance_dir = "{tmp / "instance"}"')
    text = text.replace('keys = "keys"', f'keys = "{tmp / "keys"}"')
    text = text.replace('agencies = "agencies"', f'agencies = "{ROOT / "agencies"}"')
    text = text.replace('templates = "templates"', f'templates = "{ROOT / "templates"}"')
    (tmp / "keys").mkdir(parents=True, exist_ok=True)
    cfg = tmp / "config.toml"
    cfg.write_text(text)
    return load_settings(cfg, env={"HUB_DATABASE_URL": url, "HUB_SECRET_KEY": "w" * 48})


def _fill(settings, count: int):
    """The demo directory, pp-shelter-a enrolled with a caseworker, and ``count`` referrals in its inbox."""
    engine = make_engine(settings.database_url)
    create_all(engine)
    sessions = make_sessionmaker(engine)
    clock = FixedClock(T0)
    with session_scope(sessions) as s:
        directory.sync_agencies(s, settings.agencies_dir, clock)
        ring, _code = accounts.enroll_agency(s, "pp-shelter-a", clock=clock, keys_dir=settings.keys_dir,
                                              kdf_params=FAST_KDF)
        _user, token = accounts.add_user(s, agency_id="pp-shelter-a", role="caseworker", name="Bench Caseworker",
                                         username="bench.caseworker", lang="km", clock=clock, keyring=ring)
        accounts.accept_invitation(s, token, PASSWORD, clock, kdf_params=FAST_KDF)
    ladder = settings.policies["normal"].to_json()
    rows = []
    for i in range(count):
        created = T0 - dt.timedelta(minutes=i)
        # A box holds the agency's live cases (OPEN of them, whatever its size) and its closed history.
        status = ("sent", "acknowledged", "accepted", "in_care")[i % 4] if i < OPEN else ("closed", "declined")[i % 2]
        closed = None if i < OPEN else created + dt.timedelta(days=1)
        rows.append(dict(
            id=str(uuid.UUID(int=i + 1)), code=f"R-{i:05d}"[:8], open_code=None, from_agency_id="pp-ahtjp",
            to_agency_id="pp-shelter-a", created_by="bench", urgency="urgent" if i % 7 == 0 else "normal",
            child=i % 11 == 0, needs=["shelter", "medical"], province="KH-12", status=status, policy="normal",
            ladder=ladder, clock="ack" if status == "sent" else None, clock_started_at=created, step=0, repeat=0,
            next_step_at=created + dt.timedelta(hours=4), deadline_at=created + dt.timedelta(hours=4),
            version=0, created_at=created, updated_at=closed or created, closed_at=closed))
    with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            conn.execute(sa.insert(Referral), rows[start:start + 2000])
        conn.exec_driver_sql("ANALYZE referral")  # what autovacuum (or a DBA) does after a bulk load
    return engine, clock


def _median_ms(fn, repeat: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _inbox_client(settings, engine, clock):
    app = create_app(settings, engine=engine, clock=clock)
    client = app.test_client()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    resp = client.post("/login", data={"username": "bench.caseworker", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302, resp.status_code
    return client


def _bare_client(engine):
    app = Flask("bare")

    @app.get("/bare")
    def bare():
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT code, from_agency_id, status, needs, deadline_at, created_at FROM referral "
                "WHERE to_agency_id = :a ORDER BY created_at DESC LIMIT 50"), {"a": "pp-shelter-a"}).all()
        return render_template_string(BARE, rows=rows)

    return app.test_client()


def _databases(base_url: str | None, tmp: Path):
    if base_url is None:
        return [f"sqlite:///{tmp / 'small.sqlite3'}", f"sqlite:///{tmp / 'large.sqlite3'}"], lambda: None
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    names = [f"refhub_bench_web_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with admin.connect() as conn:
        for n in names:
            conn.execute(sa.text(f'CREATE DATABASE "{n}"'))

    def drop():
        with admin.connect() as conn:
            for n in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))
        admin.dispose()

    urls = [sa.engine.make_url(base_url).set(database=n).render_as_string(hide_password=False) for n in names]
    return urls, drop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        urls, drop = _databases(args.database_url, tmp)
        try:
            clients = {}
            for count, url in zip((100, 10_000), urls):
                settings = _settings(tmp / str(count), url)
                engine, clock = _fill(settings, count)
                clients[count] = (_inbox_client(settings, engine, clock), engine)
            bare = _bare_client(clients[10_000][1])
            for count, (client, _engine) in clients.items():
                page = client.get("/inbox")
                assert page.status_code == 200 and page.text.count('<a href="/r/') == 50, "the inbox shows 50 rows"
            # Interleave the three so a busy machine slows all of them alike.
            results = {"inbox_100": [], "inbox_10000": [], "bare_50": []}
            for _round in range(5):
                results["inbox_100"].append(_median_ms(lambda: clients[100][0].get("/inbox"), args.repeat // 5))
                results["inbox_10000"].append(_median_ms(lambda: clients[10_000][0].get("/inbox"), args.repeat // 5))
                results["bare_50"].append(_median_ms(lambda: bare.get("/bare"), args.repeat // 5))
            ms = {k: statistics.median(v) for k, v in results.items()}
        finally:
            for client_engine in locals().get("clients", {}).values():
                client_engine[1].dispose()
            drop()
    box_ratio = ms["inbox_10000"] / ms["inbox_100"]
    bare_ratio = ms["inbox_10000"] / ms["bare_50"]
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"backend: {backend}; median of {args.repeat} requests each, 50 rows on every page")
    print(f"/inbox with    100 referrals: {ms['inbox_100']:7.2f} ms")
    print(f"/inbox with 10,000 referrals: {ms['inbox_10000']:7.2f} ms")
    print(f"bare Flask page, 50 rows:     {ms['bare_50']:7.2f} ms")
    print(f"10,000 / 100 = {box_ratio:.2f} (target <= 1.5) {'ok' if box_ratio <= 1.5 else 'MISSED'}")
    print(f"10,000 / bare = {bare_ratio:.2f} (target <= 3) {'ok' if bare_ratio <= 3 else 'MISSED'}")
    return 0 if box_ratio <= 1.5 and bare_ratio <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
