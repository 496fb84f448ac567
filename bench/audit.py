"""The audit log on PostgreSQL: appending with the sequencer running, `hub audit verify` at scale,
and the database round trips of an inclusion proof.

    .venv/bin/python -m bench.audit [--append 100000] [--verify 1000000] [--batch 100]

Uses HUB_BENCH_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) to create
scratch databases (migrated as in production) and drops them at the end. Targets (issue 18):

- appending N entries (record(), ``--batch`` entries a transaction) with the sequencer running
  every 0.5 s, until every entry has its leaf index, takes at most 1.5x the same appends with no
  sequencer (both in this run, the same schema and rows, each twice, alternated; best of each);
- verify over M entries, in entries per second, is at least a third of the rate of hashing the
  same leaf bytes with hashlib in a loop (each twice, alternated; best of each);
- an inclusion proof at M entries takes fewer than 20 database round trips.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from hub.audit import keys, sequencer, store
from hub.audit import service as audit
from hub.audit.models import AuditEntry
from hub.audit.service import record
from hub.audit.verify import verify
from hub.config import load_settings
from hub.db import make_engine, make_sessionmaker, session_scope
from hub.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone.utc)


@contextlib.contextmanager
def scratch_database(admin_url: str):
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"refhub_bench_audit_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        engine = make_engine(url)
        yield url, engine
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _settings(tmp: Path, url: str):
    text = (ROOT / "config.toml").read_text()
    text = text.replace('instance_dir = "instance"', f'instance_dir = "{tmp / "instance"}"')
    text = text.replace('keys = "keys"', f'keys = "{tmp / "keys"}"')
    (tmp / "keys").mkdir(parents=True, exist_ok=True)
    cfg = tmp / "config.toml"
    cfg.write_text(text)
    return load_settings(cfg, env={"HUB_DATABASE_URL": url, "HUB_SECRET_KEY": "b" * 48})


def _rows(n: int):
    """The same fictional-free rows for every run: ids, actions and counts only."""
    for i in range(n):
        yield dict(at=T0 + dt.timedelta(seconds=i), actor=f"token:{i % 7 + 1}", action="referral.acknowledged",
                   referral_id=str(uuid.UUID(int=i % 5000)), packet_sha256=None,
                   detail={"state": "acknowledged", "step": i % 4})


def _append(sessions, n: int, batch: int) -> None:
    rows = _rows(n)
    for _ in range(0, n, batch):
        with session_scope(sessions) as s:
            for _, row in zip(range(batch), rows):
                record(s, **row)


def bench_append(admin_url: str, n: int, batch: int, tmp: Path) -> dict:
    out = {}
    # Alternated and repeated: the machine is shared, so each side keeps its best run.
    for label in ("plain", "sequenced", "plain_again", "sequenced_again"):
        with scratch_database(admin_url) as (url, engine):
            settings = _settings(tmp / label, url)
            sessions = make_sessionmaker(engine)
            stop = threading.Event()

            def run_sequencer():
                while not stop.wait(0.5):
                    sequencer.tick(sessions, T0, settings=settings, block=False)

            thread = threading.Thread(target=run_sequencer) if label.startswith("sequenced") else None
            started = time.perf_counter()
            if thread:
                thread.start()
            _append(sessions, n, batch)
            if thread:
                stop.set()
                thread.join()
                report = sequencer.tick(sessions, T0, settings=settings)
                assert report.size == n, report
            out[label] = time.perf_counter() - started
    out["ratio"] = min(out["sequenced"], out["sequenced_again"]) / min(out["plain"], out["plain_again"])
    return out


def _bulk_insert(engine, n: int) -> None:
    chunk = 50_000
    rows = _rows(n)
    with engine.begin() as conn:
        for _ in range(0, n, chunk):
            conn.execute(sa.insert(AuditEntry), [r for _, r in zip(range(chunk), rows)])


def bench_verify_and_proofs(admin_url: str, n: int, tmp: Path) -> dict:
    out: dict = {}
    with scratch_database(admin_url) as (url, engine):
        settings = _settings(tmp / "verify", url)
        sessions = make_sessionmaker(engine)
        t = time.perf_counter()
        _bulk_insert(engine, n)
        out["load_s"] = time.perf_counter() - t
        t = time.perf_counter()
        report = sequencer.tick(sessions, T0, settings=settings)
        out["sequence_s"] = time.perf_counter() - t
        assert report.size == n and report.checkpoint == n, report
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))  # what autovacuum does after a bulk load

        with sessions() as s:
            leaves = [store.leaf_of_row(r) for r in s.execute(sa.select(*store.leaf_columns(s)))]
        sha = hashlib.sha256
        verify_runs, hashlib_runs = [], []
        for _ in range(2):  # alternated, each twice, best of each: the machine is shared
            with sessions() as s:
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                t = time.perf_counter()
                verdict = verify(s, verifier=keys.verifier_line(settings), now=T0,
                                 interval=settings.checkpoint_every)
                verify_runs.append(time.perf_counter() - t)
            assert verdict.ok and verdict.leaves == n, verdict.problem
            t = time.perf_counter()
            for b in leaves:
                sha(b"\x00" + b).digest()
            hashlib_runs.append(time.perf_counter() - t)
        out["verify_runs"], out["hashlib_runs"] = verify_runs, hashlib_runs
        out["verify_s"], out["hashlib_s"] = min(verify_runs), min(hashlib_runs)
        out["verify_per_s"] = n / out["verify_s"]
        out["hashlib_per_s"] = n / out["hashlib_s"]
        out["verify_vs_hashlib"] = out["verify_per_s"] / out["hashlib_per_s"]
        del leaves

        statements = []
        event.listen(engine, "before_cursor_execute", lambda *a, **k: statements.append(1))
        reader = audit.Reader(agency_id="pp-ahtjp")

        def lookup(session, actors, referral_ids):  # as the face does: two queries at most here
            session.execute(sa.text("SELECT 1"))
            session.execute(sa.text("SELECT 1"))
            return audit.Parties(actor_agency={a: "pp-ahtjp" for a in actors}, referrals={})

        trips = []
        for index in (0, n // 3, n - 1):
            statements.clear()
            with sessions() as s:
                proof = audit.inclusion(s, reader, index, n, lookup)
            trips.append(len(statements))
            assert len(proof["path"]) <= 21
        statements.clear()
        with sessions() as s:
            audit.consistency(s, n // 2 + 1, n)
        out["inclusion_round_trips"] = max(trips)
        out["consistency_round_trips"] = len(statements)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--append", type=int, default=100_000)
    parser.add_argument("--verify", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    admin_url = os.environ.get("HUB_BENCH_DATABASE_URL", DEFAULT_URL)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a = bench_append(admin_url, args.append, args.batch, tmp)
        print(f"append {args.append:,} entries ({args.batch} a transaction): plain {a['plain']:.1f} s and "
              f"{a['plain_again']:.1f} s; with the sequencer every 0.5 s, until all are sequenced, "
              f"{a['sequenced']:.1f} s and {a['sequenced_again']:.1f} s -> best {a['ratio']:.2f}x best (target <= 1.5x)",
              flush=True)
        v = bench_verify_and_proofs(admin_url, args.verify, tmp)
        runs = lambda xs: " and ".join(f"{x:.2f} s" for x in xs)  # noqa: E731
        print(f"verify {args.verify:,} entries: {runs(v['verify_runs'])}, best {v['verify_per_s']:,.0f} entries/s;"
              f" hashlib over the same leaf bytes {runs(v['hashlib_runs'])}, best {v['hashlib_per_s']:,.0f}/s"
              f" -> {v['verify_vs_hashlib']:.2f} of it (target >= 0.33)"
              f"  [load {v['load_s']:.0f} s, first sequencing {v['sequence_s']:.0f} s]")
        print(f"inclusion proof at {args.verify:,} entries: {v['inclusion_round_trips']} database round trips"
              f" (target < 20); consistency proof: {v['consistency_round_trips']}")


if __name__ == "__main__":
    main()
