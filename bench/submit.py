"""The request path: submissions through gunicorn beside a bare endpoint; statements; inbox pages; memory.

    .venv/bin/python -m bench.submit [--backends postgresql,sqlite] [--rounds 3] [--seconds 6]
                                     [--concurrency 6] [--workers 2] [--worker-class sync]

For each backend (PostgreSQL from HUB_BENCH_DATABASE_URL, default the local server, in a
scratch database dropped at the end; SQLite in a temporary file) it:

1. starts the hub (``gunicorn -w 2 wsgi:app``) and a bare Flask + SQLAlchemy endpoint
   (bench/_bare.py: parses the same body, inserts one 4 KB row) on the same gunicorn
   settings, both on 127.0.0.1, and drives each with the same closed loop of
   ``--concurrency`` clients in alternating rounds of ``--seconds`` (bounded: a round
   stops at its time or when its pre-sealed submissions run out). Packets are sealed
   before the rounds (sealing is the client's cost); each submission carries an
   Idempotency-Key, as a careful client sends. Reports submissions/s, p50 and p99 of each
   and the ratio hub/bare;
2. counts, with SQLAlchemy's events in this process, the statements and transactions
   of one submission, one inbox page and one referral read;
3. times inbox pages (limit 50) of a 1,000- and a 10,000-referral box: the first page,
   the last page by cursor and by offset, each beside a bare SELECT of the same rows;
4. sends read requests until the hub's workers have served 10,000 requests in all and
   reports their resident memory (and the bare workers').

Targets (issue 15): ratio >= 0.4 on PostgreSQL and >= 0.3 on SQLite; <= 8 statements
and 1 transaction per submission; SQLite p99 <= 5x the bare p99; any inbox page (by
cursor) <= 1.3x the first page.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import datetime as dt
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FAST_KDF = {"alg": "argon2id", "iterations": 1, "memory_kib": 1024, "lanes": 1}
SENDER, RECIPIENT = "pp-ahtjp", "pp-shelter-a"
BOXES = {"pp-shelter-b": 1_000, "sr-shelter": 10_000}
PAGE = 50
MEMORY_AFTER = 10_000


def fictional_body(i: int) -> bytes:
    """A referral body in the shape of PROTOCOL.md section 2; every name is invented."""
    return json.dumps({
        "person": {"names": {"latin": f"Fictional Person {i}", "khmer": f"ឈ្មោះសាកល្បង {i}"}, "sex": "female",
                   "age_estimate": 17, "nationality": "KH", "languages": ["km"], "id_documents": []},
        "situation": {"exploitation": "forced_labour", "found_at": f"Fictional Site {i}",
                      "rescued_at": "2026-11-21T22:00:00Z", "trafficking_status": "possible", "decided_by": "officer"},
        "needs": ["shelter", "medical"],
        "risk": {"level": "high", "notes": "Fictional risk note " + "x" * 600},
        "consent": {"to_share": True, "for_services": True, "recorded_by": "officer",
                    "recorded_at": "2026-11-22T09:00:00Z"},
        "contact": {"officer": f"Officer Fictional {i}"}, "attachments": [],
    }, ensure_ascii=False).encode()


# -- set-up ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp: Path) -> Path:
    text = (ROOT / "config.toml").read_text()
    text = text.replace('instance_dir = "instance"', f'instance_dir = "{tmp / "instance"}"')
    text = text.replace('keys = "keys"', f'keys = "{tmp / "keys"}"')
    text = text.replace('agencies = "agencies"', f'agencies = "{ROOT / "agencies"}"')
    text = text.replace('templates = "templates"', f'templates = "{ROOT / "templates"}"')
    # One token sends thousands of submissions a minute: the limit is checked on each, never reached
    # (the limiter's cost stays in the measure, its 429s do not).
    text = re.sub(r'^api_rate_limit = "[^"]*"', 'api_rate_limit = "10000000 per minute"', text, count=1, flags=re.M)
    cfg = tmp / "config.toml"
    cfg.write_text(text)
    (tmp / "keys").mkdir(exist_ok=True)
    return cfg


@contextlib.contextmanager
def scratch_database(backend: str, tmp: Path):
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'bench.sqlite3'}"
        return
    base = sa.engine.make_url(os.environ.get("HUB_BENCH_DATABASE_URL", DEFAULT_PG))
    name = f"bench_submit_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


class Network:
    def __init__(self, rings, bundles, tokens):
        self.rings, self.bundles, self.tokens = rings, bundles, tokens

    def submission(self, i: int) -> bytes:
        referral_id = str(uuid.uuid4())
        from hub import packets

        body = fictional_body(i)
        pkts = [json.loads(packets.seal(body, sender=self.rings[SENDER], recipient=self.bundles[reader],
                                        referral_id=referral_id)) for reader in (RECIPIENT, SENDER)]
        return json.dumps({"to": RECIPIENT, "urgency": "normal", "child": False, "needs": ["shelter"],
                           "province": "KH-12", "packets": pkts}).encode()


def load(url: str, cfg: Path) -> tuple[object, Network]:
    from hub.accounts import service as accounts
    from hub.clock import SystemClock
    from hub.config import load_settings
    from hub.db import make_engine, make_sessionmaker, session_scope
    from hub.directory import service as directory
    from hub.migrations import upgrade

    settings = load_settings(cfg, env={"HUB_DATABASE_URL": url, "HUB_SECRET_KEY": "b" * 48})
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE bare_row (id VARCHAR(36) PRIMARY KEY, payload "
                             + ("BYTEA" if url.startswith("postgresql") else "BLOB") + " NOT NULL)"))
    clock = SystemClock()
    rings, bundles, tokens = {}, {}, {}
    with session_scope(make_sessionmaker(engine)) as s:
        directory.sync_agencies(s, settings.agencies_dir, clock)
        for agency in (SENDER, RECIPIENT, *BOXES):
            rings[agency], _code = accounts.enroll_agency(s, agency, clock=clock, keys_dir=settings.keys_dir,
                                                           kdf_params=FAST_KDF)
            bundles[agency] = directory.public_bundle(s, agency)
            tokens[agency] = accounts.create_token(s, agency, f"bench {agency}", clock)
    engine.dispose()
    return settings, Network(rings, bundles, tokens)


class Server:
    """gunicorn on 127.0.0.1 with the given app; stopped with its process group."""

    def __init__(self, app: str, env: dict, workers: int, worker_class: str, log: Path):
        self.port = _free_port()
        # Its log goes to a file: a pipe nobody reads fills up and stops the workers mid-round.
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(ROOT / ".venv/bin/gunicorn"), "-w", str(workers), "-k", worker_class, "-b",
                 f"127.0.0.1:{self.port}", "--chdir", str(ROOT), "--log-level", "warning", "--backlog", "256", app],
                env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{app} did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"{app} did not start within 60 s")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(p) for p in children]

    def rss_mib(self) -> list[float]:
        out = []
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]) / 1024)
        return out

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# -- load ---------------------------------------------------------------------------------------------


def request(port: int, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.perf_counter() - start
    finally:
        conn.close()


def closed_loop(port: int, path: str, bodies: list, headers_for, seconds: float, concurrency: int, *,
                method: str = "POST", ok: int = 201) -> dict:
    """``concurrency`` clients, each sending its next request when the last is answered, for ``seconds``."""
    lock = threading.Lock()
    todo = iter(range(len(bodies)))
    latencies: list[float] = []
    errors: list[int] = []
    stop_at = time.perf_counter() + seconds

    def client():
        while time.perf_counter() < stop_at:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            status, took = request(port, method, path, bodies[i], headers_for(i))
            with lock:
                (latencies if status == ok else errors).append(took if status == ok else status)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"done": len(latencies), "errors": errors, "elapsed": elapsed, "latencies": latencies}


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# -- in-process counts and inbox pages -------------------------------------------------------------


def counts(settings, url: str, network: Network) -> dict:
    from bench.counting import Counter
    from hub import create_app

    app = create_app(settings)
    ctx = app.extensions["hub"]
    counter = Counter(ctx.engine)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {network.tokens[SENDER]}", "Content-Type": "application/json"}
    out = {}
    results = []
    for i in range(21):
        body = network.submission(10_000_000 + i)
        counter.reset()
        resp = client.post("/api/v1/referrals", data=body, headers={**auth, "Idempotency-Key": f"count-{i}"})
        assert resp.status_code == 201, resp.get_data()
        if i:  # the first fills the directory cache, as the first request of a worker does
            results.append((counter.statements, counter.transactions))
        last = resp.get_json()["id"]
    out["submission"] = (statistics.mean(s for s, _ in results), statistics.mean(t for _, t in results))
    inbox = {"Authorization": f"Bearer {network.tokens[RECIPIENT]}"}
    client.get("/api/v1/referrals", headers=inbox)
    counter.reset()
    client.get("/api/v1/referrals?limit=50", headers=inbox)
    out["inbox page"] = (counter.statements, counter.transactions)
    counter.reset()
    client.get(f"/api/v1/referrals/{last}", headers=inbox)
    out["referral read"] = (counter.statements, counter.transactions)
    ctx.engine.dispose()
    return out


def fill_boxes(url: str, settings) -> None:
    """1,000 and 10,000 referrals (with one history line each) into two inboxes, by plain INSERTs."""
    from hub.db import make_engine
    from hub.referrals.models import Referral, ReferralEvent

    engine = make_engine(url)
    ladder = settings.policies["normal"].to_json()
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    n = 0
    with engine.begin() as conn:
        for agency, size in BOXES.items():
            rows, events = [], []
            for i in range(size):
                n += 1
                rid = str(uuid.uuid4())
                at = t0 + dt.timedelta(seconds=n)
                rows.append(dict(id=rid, code=f"B{n:06d}"[:8], open_code=None, from_agency_id=SENDER,
                                 to_agency_id=agency, created_by="bench", officer_user_id=None, urgency="normal",
                                 child=False, needs=["shelter"], province="KH-12", status="closed",
                                 status_reason=None, outcome="other", policy="normal", ladder=ladder, clock=None,
                                 clock_started_at=None, step=-1, repeat=0, next_step_at=None, deadline_at=None,
                                 overdue_alerted_at=None, step_failed_at=None, version=0, owner_user_id=None,
                                 owner=None, owned_at=None, previous_id=None, created_at=at, acknowledged_at=None,
                                 decided_at=None, closed_at=at, updated_at=at))
                events.append(dict(referral_id=rid, state="sent", at=at, actor_agency_id=SENDER, actor="bench"))
            conn.execute(sa.insert(Referral.__table__), rows)
            conn.execute(sa.insert(ReferralEvent.__table__), events)
    if url.startswith("postgresql"):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
    engine.dispose()


def inbox_pages(settings, network: Network, reps: int) -> list[tuple]:
    from hub import create_app
    from hub.referrals import service as referrals
    from hub.referrals.models import Referral

    app = create_app(settings)
    engine = app.extensions["hub"].engine
    client = app.test_client()
    bare_sql = sa.text("SELECT * FROM referral WHERE to_agency_id = :a ORDER BY created_at DESC, id DESC "
                       "LIMIT :n OFFSET :o")
    out = []
    for agency, size in BOXES.items():
        headers = {"Authorization": f"Bearer {network.tokens[agency]}"}
        with engine.connect() as conn:
            before_last = conn.execute(sa.select(Referral.created_at, Referral.id).where(Referral.to_agency_id == agency)
                                       .order_by(Referral.created_at.desc(), Referral.id.desc())
                                       .offset(size - PAGE - 1).limit(1)).one()
        cursor = referrals.cursor_after(Referral(created_at=before_last[0], id=before_last[1]))
        pages = {"first page": f"limit={PAGE}", f"page {size // PAGE} by cursor": f"limit={PAGE}&cursor={cursor}",
                 f"page {size // PAGE} by offset": f"limit={PAGE}&offset={size - PAGE}"}
        offsets = {"first page": 0, f"page {size // PAGE} by cursor": size - PAGE,
                   f"page {size // PAGE} by offset": size - PAGE}
        client.get(f"/api/v1/referrals?limit={PAGE}", headers=headers)  # warm
        times = {name: [] for name in pages}
        bare = {name: [] for name in pages}
        for _ in range(reps):  # interleaved, so a busy moment slows every kind alike
            for name, query in pages.items():
                start = time.perf_counter()
                resp = client.get(f"/api/v1/referrals?{query}", headers=headers)
                times[name].append(time.perf_counter() - start)
                assert resp.status_code == 200 and len(resp.get_json()["referrals"]) == PAGE
                start = time.perf_counter()
                with engine.connect() as conn:
                    assert len(conn.execute(bare_sql, {"a": agency, "n": PAGE, "o": offsets[name]}).all()) == PAGE
                bare[name].append(time.perf_counter() - start)
        first = statistics.median(times["first page"])
        for name in pages:
            hub_ms, bare_ms = statistics.median(times[name]), statistics.median(bare[name])
            out.append((size, name, hub_ms * 1000, bare_ms * 1000, hub_ms / first))
    engine.dispose()
    return out


# -- one backend ----------------------------------------------------------------------------------


def run_backend(backend: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmpdir, \
            scratch_database(backend, Path(tmpdir)) as url:
        tmp = Path(tmpdir)
        cfg = _config(tmp)
        settings, network = load(url, cfg)
        per_round_cap = args.cap
        total = args.rounds * per_round_cap
        print(f"[{backend}] sealing {total} submissions ...", file=sys.stderr, flush=True)
        bodies = [network.submission(i) for i in range(total)]
        warm = [network.submission(-1 - i) for i in range(4 * args.concurrency)]
        env = {"HUB_CONFIG": str(cfg), "HUB_DATABASE_URL": url, "HUB_SECRET_KEY": "b" * 48, "BENCH_BARE_URL": url}
        hub = Server("wsgi:app", env, args.workers, args.worker_class, tmp / "hub.log")
        bare = Server("bench._bare:app", env, args.workers, args.worker_class, tmp / "bare.log")
        served = {"hub": 0, "bare": 0}
        rounds = {"hub": [], "bare": []}
        try:
            auth = {"Authorization": f"Bearer {network.tokens[SENDER]}", "Content-Type": "application/json"}
            for name, server in (("hub", hub), ("bare", bare)):  # every worker booted, imported, connected
                path = "/api/v1/referrals" if name == "hub" else "/bare"
                res = closed_loop(server.port, path, warm, lambda i: {**auth, "Idempotency-Key": f"warm-{i}"}, 30,
                                  args.concurrency)
                served[name] += res["done"] + len(res["errors"])
            for r in range(args.rounds):
                chunk = bodies[r * per_round_cap:(r + 1) * per_round_cap]
                order = [("hub", hub), ("bare", bare)] if r % 2 == 0 else [("bare", bare), ("hub", hub)]
                for name, server in order:
                    path = "/api/v1/referrals" if name == "hub" else "/bare"
                    res = closed_loop(server.port, path, chunk, lambda i, r=r: {**auth, "Idempotency-Key": f"r{r}-{i}"},
                                      args.seconds, args.concurrency)
                    served[name] += res["done"] + len(res["errors"])
                    rounds[name].append(res)
                    print(f"[{backend}] round {r + 1} {name}: {res['done'] / res['elapsed']:.0f}/s"
                          f" errors={len(res['errors'])}", file=sys.stderr, flush=True)
            # Memory after 10,000 requests: the rest are inbox pages (reads) and bare submissions.
            inbox = {"Authorization": f"Bearer {network.tokens[RECIPIENT]}"}
            reads = [None] * max(0, MEMORY_AFTER - served["hub"])
            closed_loop(hub.port, "/api/v1/referrals?limit=20", reads, lambda i: inbox, 1200, args.concurrency,
                        method="GET", ok=200)
            extra = [bodies[i % len(bodies)] for i in range(max(0, MEMORY_AFTER - served["bare"]))]
            closed_loop(bare.port, "/bare", extra, lambda i: {"Content-Type": "application/json"}, 600, args.concurrency)
            rss = {"hub": hub.rss_mib(), "bare": bare.rss_mib()}
        finally:
            hub.stop()
            bare.stop()
        result = {"backend": backend, "rounds": rounds, "rss": rss}
        result["counts"] = counts(settings, url, network)
        fill_boxes(url, settings)
        result["pages"] = inbox_pages(settings, network, args.page_reps)
        return result


def report(results: list[dict], args) -> None:
    target = {"postgresql": 0.4, "sqlite": 0.3}
    print(f"bench.submit: gunicorn -w {args.workers} -k {args.worker_class}, {args.concurrency} closed-loop clients, "
          f"{args.rounds} alternating rounds of {args.seconds:g} s (submissions with an Idempotency-Key)\n")
    print("| backend | endpoint | submissions/s (per round) | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    summary = []
    for res in results:
        rates = {}
        p99 = {}
        for name in ("hub", "bare"):
            rs = res["rounds"][name]
            per = [r["done"] / r["elapsed"] for r in rs]
            lat = [x for r in rs for x in r["latencies"]]
            rates[name] = sum(r["done"] for r in rs) / sum(r["elapsed"] for r in rs)
            p99[name] = _pct(lat, 99) * 1000
            errs = sum(len(r["errors"]) for r in rs)
            print(f"| {res['backend']} | {name} | {rates[name]:.0f} ({', '.join(f'{x:.0f}' for x in per)}) | "
                  f"{_pct(lat, 50) * 1000:.1f} | {p99[name]:.1f} | {errs} |")
        ratio = rates["hub"] / rates["bare"]
        summary.append(f"- {res['backend']}: ratio hub/bare {ratio:.2f} (target >= {target[res['backend']]}: "
                       f"{'met' if ratio >= target[res['backend']] else 'NOT met'}); "
                       f"p99 hub/bare {p99['hub'] / p99['bare']:.1f}x"
                       + (f" (target <= 5x: {'met' if p99['hub'] <= 5 * p99['bare'] else 'NOT met'})"
                          if res["backend"] == "sqlite" else ""))
    print()
    print("\n".join(summary))
    print("\n| backend | request | statements | transactions |")
    print("|---|---|---|---|")
    for res in results:
        for name, (stmts, txs) in res["counts"].items():
            print(f"| {res['backend']} | {name} | {stmts:g} | {txs:g} |")
    print(f"\nInbox pages of {PAGE} (median of {args.page_reps}, in-process through Flask; bare = the same SELECT):\n")
    print("| backend | box | page | hub ms | bare SELECT ms | / first page |")
    print("|---|---|---|---|---|---|")
    for res in results:
        for size, name, hub_ms, bare_ms, rel in res["pages"]:
            print(f"| {res['backend']} | {size:,} | {name} | {hub_ms:.2f} | {bare_ms:.2f} | {rel:.2f} |")
    print(f"\nWorker resident memory after {MEMORY_AFTER:,} requests each (MiB):\n")
    for res in results:
        print(f"- {res['backend']}: hub {', '.join(f'{x:.0f}' for x in res['rss']['hub'])}; "
              f"bare {', '.join(f'{x:.0f}' for x in res['rss']['bare'])}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--cap", type=int, default=3000, help="pre-sealed submissions per round")
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--page-reps", type=int, default=31)
    args = parser.parse_args(argv)
    results = [run_backend(b.strip(), args) for b in args.backends.split(",") if b.strip()]
    report(results, args)


if __name__ == "__main__":
    main()
