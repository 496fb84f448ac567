"""The escalation sweep on PostgreSQL: cost follows what is due, not what exists; the sweep beside plain SQL;
a step's text reaching the gateway within one tick.

    .venv/bin/python -m bench.escalation [--due 10000] [--open 1000000] [--latency-samples 3]

Uses HUB_BENCH_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) to create two
scratch databases (1,000 and 1,000,000 open referrals; the idle sweeps alternate between them so a busy
machine slows both alike), and drops them at the end. Targets (issue 5):

- a sweep with nothing due over 1,000,000 open referrals takes at most 2x the same sweep over 1,000;
- sweeping 10,000 due referrals takes at most 3x hand-written SQL doing the same writes (medians of three
  interleaved rounds, the sweep undone between them);
- a step's text reaches the (fake) Twilio server at most one tick + 1 s after its due moment.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from hub.clock import FixedClock, SystemClock
from hub.context import HubContext
from hub.db import make_engine, make_sessionmaker, session_scope
from hub.models import create_all
from tests.instance import make_settings
from hub.directory import service as directory
from hub.escalation.service import deadline, step_due_at, sweep
from hub.notify import service as notify

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone.utc)
FAR = T0 + dt.timedelta(days=30)


def _settings(tmp: Path, url: str):
    return make_settings(tmp, url)


def _ladder_json(settings) -> str:
    return json.dumps(settings.policies["urgent"].to_json(), ensure_ascii=False, separators=(",", ":"),
                      sort_keys=True)


INSERT_OPEN = """
INSERT INTO referral (id, code, open_code, from_agency_id, to_agency_id, created_by, urgency, child, needs,
    province, status, policy, ladder, clock, clock_started_at, deadline_at, step, repeat, next_step_at, version,
    created_at, updated_at)
SELECT gen_random_uuid()::text, 'B' || lpad(to_hex(i), 6, '0'), 'B' || lpad(to_hex(i), 6, '0'),
    'pp-ahtjp', 'pp-shelter-a', 'bench', 'urgent', false, '["shelter"]', 'KH-12', 'sent', 'urgent', :ladder,
    'ack', :started, :deadline, 0, 0, :next_at + make_interval(secs => i % 86400), 0, :started, :started
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i
"""

# The hand-written equivalent of one sweep of step 1 on the urgent ack ladder: advance the rows
# behind the same claim, one one-tap token per recipient contact, one text per contact (the body
# built by SQL), all set-based in one transaction.
SQL_SWEEP = [
    """
    CREATE TEMP TABLE due ON COMMIT DROP AS
    SELECT id, code, version FROM referral
    WHERE next_step_at <= :now AND status IN ('sent', 'acknowledged', 'accepted', 'in_care')
    ORDER BY next_step_at FOR UPDATE SKIP LOCKED
    """,
    """
    UPDATE referral r SET step = 1, repeat = 0, next_step_at = :next_at, version = r.version + 1
    FROM due WHERE r.id = due.id AND r.version = due.version
    """,
    """
    INSERT INTO ack_token (token_hash, referral_id, clock, contact_id, created_at)
    SELECT encode(sha256(gen_random_bytes(32)), 'hex'), due.id, 'ack', c.id, :now
    FROM due CROSS JOIN contact c WHERE c.agency_id = 'pp-shelter-a' AND c.active
    """,
    """
    INSERT INTO outbox_message (dedupe_key, to_phone, contact_id, lang, template, body, referral_id, clock, step,
        repeat, status, attempts, callback_nonce, created_at, updated_at)
    SELECT 'step:' || due.id || ':ack:1:0:' || c.id, c.phone, c.id, c.lang, 'escalated',
        due.code || ': URGENT referral from PP Police is overdue, escalation step 1 (refhub). Please respond: '
            || :base || '/a/' || encode(gen_random_bytes(32), 'base64'),
        due.id, 'ack', 1, 0, 'queued', 0, encode(gen_random_bytes(18), 'base64'), :now, :now
    FROM due CROSS JOIN contact c WHERE c.agency_id = 'pp-shelter-a' AND c.active
    ON CONFLICT (dedupe_key) DO NOTHING
    """,
]


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def idle_sweeps(small, large, settings, now, rounds: int = 200) -> tuple[float, float]:
    """Median seconds of a sweep that finds nothing due, over each database, the rounds interleaved
    (so a busy machine slows both alike)."""
    for sessions in (small, large):
        sweep(sessions, now, settings=settings)  # warm the pool and the plan
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(rounds):
        for i, sessions in enumerate((small, large)):
            times[i].append(_timed(lambda: sweep(sessions, now, settings=settings)))
    return statistics.median(times[0]), statistics.median(times[1])


def bench_idle(small_engine, small, large_engine, large, settings, open_total: int) -> dict:
    """Two databases, 1,000 and ``open_total`` open referrals, none due; the same sweep over each."""
    ladder = _ladder_json(settings)
    params = dict(ladder=ladder, started=T0, deadline=T0 + dt.timedelta(minutes=30), next_at=FAR)
    now = T0 + dt.timedelta(hours=1)
    with small_engine.begin() as conn:
        conn.execute(sa.text(INSERT_OPEN), dict(params, first=1, last=1000))
    started = time.perf_counter()
    with large_engine.begin() as conn:  # the 1,000,000-row build: one statement
        conn.execute(sa.text(INSERT_OPEN), dict(params, first=1, last=open_total))
    build = time.perf_counter() - started
    for engine in (small_engine, large_engine):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE referral"))
    with large_engine.begin() as conn:
        plan = "\n".join(r[0] for r in conn.execute(
            sa.text("EXPLAIN ANALYZE SELECT * FROM referral WHERE next_step_at <= :now AND status IN "
                    "('sent','acknowledged','accepted','in_care') ORDER BY next_step_at, id LIMIT 500 "
                    "FOR UPDATE SKIP LOCKED"), {"now": now}))
    small_s, large_s = idle_sweeps(small, large, settings, now)
    return {"small": small_s, "large": large_s, "build": build, "plan": plan}


def make_due(engine, settings, n: int) -> dt.datetime:
    """n urgent referrals at step 0 whose step 1 (the whole recipient agency) is due; returns when."""
    due_at = step_due_at(settings.policies["urgent"], "ack", T0, 1)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE referral SET next_step_at = :due WHERE id IN "
                             "(SELECT id FROM referral ORDER BY id LIMIT :n)"), {"due": due_at, "n": n})
        conn.execute(sa.text("ANALYZE referral"))
    return due_at


def _undo_sweep(engine, due_at: dt.datetime) -> None:
    """Put the swept referrals back at step 0 with step 1 due, and drop the step's texts and tokens."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM outbox_message WHERE step = 1"))
        conn.execute(sa.text("DELETE FROM ack_token"))
        conn.execute(sa.text("UPDATE referral SET step = 0, repeat = 0, next_step_at = :due WHERE step = 1"),
                     {"due": due_at})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE referral, outbox_message, ack_token"))


def bench_due(engine, sessions, settings, n: int, rounds: int = 3) -> dict:
    """The sweep of ``n`` due referrals beside hand-written SQL doing the same writes, ``rounds`` times each,
    interleaved (so a busy machine slows both alike); medians."""
    now = make_due(engine, settings, n)
    next_at = step_due_at(settings.policies["urgent"], "ack", T0, 2)
    params = {"now": now, "next_at": next_at, "base": settings.public_base_url}
    counts = {}

    def sql_sweep():
        with engine.connect() as conn:
            tx = conn.begin()
            for stmt in SQL_SWEEP:
                result = conn.execute(sa.text(stmt), params)
                counts[stmt.split()[0]] = result.rowcount
            tx.rollback()  # leave the same rows due for the sweep

    def sql_update_only():
        with engine.connect() as conn:
            tx = conn.begin()
            conn.execute(sa.text(SQL_SWEEP[0]), params)
            conn.execute(sa.text(SQL_SWEEP[1]), params)
            tx.rollback()

    sql_sweep()  # warm
    sql, update_only, swept, spent = [], [], [], []
    for i in range(rounds):
        if i:
            _undo_sweep(engine, now)
        sql.append(_timed(sql_sweep))
        update_only.append(_timed(sql_update_only))
        report = {}

        def run():
            report["r"] = sweep(sessions, now, settings=settings)

        with _time_spent_in(notify, *TEXT_WRITERS, *TOKEN_WRITERS) as inside:
            swept.append(_timed(run))
        spent.append(inside)
        r = report["r"]
        with engine.connect() as conn:
            texts = conn.execute(sa.text("SELECT count(*) FROM outbox_message WHERE step = 1")).scalar_one()
            tokens = conn.execute(sa.text("SELECT count(*) FROM ack_token")).scalar_one()
        assert r.claimed == n and texts == 2 * n and tokens == 2 * n, (r, texts, tokens)
    median = statistics.median(swept)
    inside = spent[swept.index(sorted(swept)[len(swept) // 2])]  # the writers' share of the median sweep
    return {"sweep": median, "sql": statistics.median(sql), "update_only": statistics.median(update_only),
            "sweeps": swept, "sqls": sql, "claimed": r.claimed, "texts": texts, "tokens": tokens,
            "sql_counts": counts,
            "notify": {"texts": sum(inside[n] for n in TEXT_WRITERS),
                       "tokens": sum(inside[n] for n in TOKEN_WRITERS)}}


# The outbox's writers the sweep may go through (one at a time or in bulk), timed from the outside.
TEXT_WRITERS = ("enqueue", "enqueue_many")
TOKEN_WRITERS = ("issue_ack_token", "issue_ack_tokens", "_store_tokens")


@contextlib.contextmanager
def _time_spent_in(module, *names):
    """Accumulate the seconds spent in ``module.<name>`` calls (the outbox's share of a sweep).

    A call made inside another timed call (issue_ack_token -> issue_ack_tokens) counts once, in the outer.
    """
    spent = {name: 0.0 for name in names}
    originals = {name: getattr(module, name) for name in names}
    depth = [0]

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            depth[0] += 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[name] += time.perf_counter() - started
        return wrapper

    for name, fn in originals.items():
        setattr(module, name, timed(name, fn))
    try:
        yield spent
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


def bench_latency(url: str, settings, samples: int) -> list[float]:
    """Seconds from a step's due moment to the fake Twilio server holding its text, default tick."""
    from hub.notify.gateways import TwilioGateway
    from hub.scheduler import build_scheduler
    from tests.fake_twilio import FakeTwilio

    engine = make_engine(url)
    with engine.begin() as conn:  # only the referrals of this measure, whatever today's date
        conn.execute(sa.text("TRUNCATE referral, outbox_message, ack_token, alert, audit_entry CASCADE"))
    out = []
    with FakeTwilio() as twilio:
        gateway = TwilioGateway(twilio.account_sid, twilio.auth_tokens, from_number=twilio.phone_number,
                                api_base=twilio.base_url)
        sms = dataclasses.replace(settings.sms, status_callbacks=False)
        ctx = HubContext.build(dataclasses.replace(settings, sms=sms), engine=engine, clock=SystemClock(),
                               gateway=gateway)
        scheduler = build_scheduler(ctx, blocking=False)
        scheduler.start()
        try:
            policy = settings.policies["urgent"]
            rng = random.Random(5)
            for _ in range(samples):
                # A referral whose step 1 falls due at a random phase of the tick, 1 to 2 ticks from now.
                tick = settings.tick.total_seconds()
                due = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=tick * (1 + rng.random()))
                started = due - policy.ack_within
                rid = str(uuid.uuid4())
                code = "L" + uuid.uuid4().hex[:6]
                before = len(twilio.messages)
                with engine.begin() as conn:
                    conn.execute(sa.text(INSERT_OPEN.replace("gen_random_uuid()::text", ":rid")
                                         .replace("'B' || lpad(to_hex(i), 6, '0')", ":code")),
                                 dict(rid=rid, code=code, ladder=_ladder_json(settings), started=started,
                                      deadline=deadline(policy, "ack", started), next_at=due, first=0, last=0))
                while len(twilio.messages) < before + 2:
                    time.sleep(0.01)
                out.append((dt.datetime.now(dt.timezone.utc) - due).total_seconds())
        finally:
            scheduler.shutdown(wait=True)
            engine.dispose()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--open", type=int, default=1_000_000, dest="open_total")
    parser.add_argument("--latency-samples", type=int, default=3)
    args = parser.parse_args(argv)

    admin = os.environ.get("HUB_BENCH_DATABASE_URL", DEFAULT_URL).replace("postgresql://", "postgresql+psycopg://", 1)
    names = [f"refhub_bench_{uuid.uuid4().hex[:10]}_{size}" for size in ("small", "large")]
    admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    urls = []
    for name in names:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        urls.append(sa.engine.make_url(admin).set(database=name).render_as_string(hide_password=False))
    total = time.perf_counter()
    engines = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = _settings(Path(tmp), urls[1])
            prepared = []
            for url in urls:
                engine = make_engine(url)
                engines.append(engine)
                with engine.begin() as conn:
                    conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pgcrypto"))
                create_all(engine)
                sessions = make_sessionmaker(engine)
                with session_scope(sessions) as s:
                    directory.sync_agencies(s, settings.agencies_dir, FixedClock(T0))
                prepared.append((engine, sessions))
            (small_engine, small), (large_engine, large) = prepared
            print(f"building {args.open_total:,} open referrals ...", file=sys.stderr, flush=True)
            idle = bench_idle(small_engine, small, large_engine, large, settings, args.open_total)
            print(f"sweeping {args.due:,} due referrals ...", file=sys.stderr, flush=True)
            due = bench_due(large_engine, large, settings, args.due)
            for engine in engines:
                engine.dispose()
            print(f"latency, {args.latency_samples} samples at tick {settings.tick.total_seconds():g} s ...",
                  file=sys.stderr, flush=True)
            latency = bench_latency(urls[0], settings, args.latency_samples)
    finally:
        for engine in engines:
            engine.dispose()
        with admin_engine.connect() as conn:
            for name in names:
                conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     f"WHERE datname = '{name}'"))
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin_engine.dispose()

    tick = settings.tick.total_seconds()
    ms = lambda s: f"{s * 1000:,.1f} ms"  # noqa: E731
    idle_ratio = idle["large"] / idle["small"]
    due_ratio = due["sweep"] / due["sql"]
    worst = max(latency)
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    print("| measure | value | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| sweep, nothing due, over {args.open_total:,} open (vs over 1,000) | {ms(idle['large'])} | "
          f"{ms(idle['small'])} | {idle_ratio:.2f} | <= 2 {ok(idle_ratio <= 2)} |")
    print(f"| sweep of {args.due:,} due referrals (vs hand-written SQL, same writes) | {ms(due['sweep'])} | "
          f"{ms(due['sql'])} | {due_ratio:.2f} | <= 3 {ok(due_ratio <= 3)} |")
    own = due["sweep"] - sum(due["notify"].values())
    print(f"| same sweep without the time inside the outbox's text and token writers | {ms(own)} | {ms(due['sql'])} | "
          f"{own / due['sql']:.2f} | (information) |")
    print(f"| same sweep vs the bare SQL UPDATE of the rows | {ms(due['sweep'])} | {ms(due['update_only'])} | "
          f"{due['sweep'] / due['update_only']:.1f} | (information) |")
    print(f"| due moment -> fake Twilio has the text, worst of {len(latency)} | {worst:.2f} s | "
          f"tick {tick:g} s + 1 s | {worst / (tick + 1):.2f} | <= 1 {ok(worst <= tick + 1)} |")
    print()
    print(f"- build of {args.open_total:,} rows, one INSERT ... SELECT generate_series: {idle['build']:.1f} s; "
          f"latency samples: {', '.join(f'{x:.2f} s' for x in latency)}")
    print(f"- medians of {len(due['sweeps'])} interleaved rounds: sweep "
          f"{', '.join(ms(x) for x in due['sweeps'])}; SQL {', '.join(ms(x) for x in due['sqls'])}")
    print(f"- the sweep claimed {due['claimed']:,} referrals and wrote {due['texts']:,} texts (rendered from the "
          f"templates) and {due['tokens']:,} one-tap tokens, in batches of 500 with the version fence; the SQL "
          f"does the same writes set-based in one transaction (rolled back, then the sweep runs on the same rows): "
          f"{due['sql_counts']}")
    print(f"- of the sweep, {due['notify']['texts']:.2f} s were spent inside notify.{'/'.join(TEXT_WRITERS)} "
          f"(rendering included; {due['notify']['texts'] / max(due['texts'], 1) * 1000:.3f} ms a text) and "
          f"{due['notify']['tokens']:.2f} s inside notify.{'/'.join(TOKEN_WRITERS)} "
          f"({due['notify']['tokens'] / max(due['tokens'], 1) * 1000:.3f} ms a token)")
    print(f"- the claim over the {args.open_total:,} rows, EXPLAIN ANALYZE: "
          + " / ".join(line.strip() for line in idle["plan"].splitlines()))
    print(f"- total {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
