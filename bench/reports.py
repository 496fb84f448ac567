"""The coordinators' summary on PostgreSQL: cost follows the window, not the table; beside plain percentile_disc.

    .venv/bin/python -m bench.reports [--small 10000] [--large 1000000] [--rounds 30]

Uses HUB_BENCH_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) to create two
scratch databases and drops them at the end. Both hold the same 2,000 referrals received in Phnom Penh
(KH-12) in one 30-day window, with their ladder records; the rest of each table (8,000 and 998,000 rows)
is in other months and other provinces. Targets (issue 17):

- the summary for KH-12 and the 30 days over the 1,000,000-row table takes at most 2x the same over 10,000;
- the summary takes at most 2x a hand-written SQL query computing the same p50 with percentile_disc.

The figures are checked equal on both tables, and the summary's p50 equal to percentile_disc's.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from hub.clock import FixedClock
from hub.db import make_engine, make_sessionmaker, session_scope
from hub.directory import service as directory
from hub.models import create_all
from hub.reports import service as reports
from tests.instance import make_settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
W0 = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)
W1 = W0 + dt.timedelta(days=30)
NOW = W1 + dt.timedelta(days=1)
TARGET = 2000
PP = "ARRAY['pp-shelter-a','pp-shelter-b','pp-dosvy','pp-legal-aid','iom-pp']"
ELSEWHERE = "ARRAY['sr-shelter','sr-dosvy','sr-ahtjp','bm-police']"

# The 2,000 referrals of the window: ids and every value a function of i, so both tables hold the same.
# i % 10: 0 never answered (waiting), 1 declined, 2 closed (reintegrated), 3..7 accepted, 8..9 acknowledged.
INSERT_TARGET = f"""
INSERT INTO referral (id, code, from_agency_id, to_agency_id, created_by, urgency, child, needs, province, status,
    outcome, policy, ladder, step, repeat, version, created_at, acknowledged_at, decided_at, closed_at,
    ack_deadline_at, updated_at, ladder_fired)
SELECT md5('target-' || i)::uuid::text, 'T' || lpad(to_hex(i), 6, '0'), 'pp-ahtjp', ({PP})[1 + i % 5], 'bench',
    'urgent', i % 4 = 0, '["shelter"]', 'KH-12',
    CASE WHEN i % 10 = 0 THEN 'sent' WHEN i % 10 = 1 THEN 'declined' WHEN i % 10 = 2 THEN 'closed'
         WHEN i % 10 >= 8 THEN 'acknowledged' ELSE 'accepted' END,
    CASE WHEN i % 10 = 2 THEN 'reintegrated' END, 'urgent', :ladder, 0, 0, 0,
    c, CASE WHEN i % 10 <> 0 THEN c + make_interval(secs => (i * 37) % 7200) END,
    CASE WHEN i % 10 BETWEEN 1 AND 7 THEN c + make_interval(secs => (i * 37) % 7200 + (i * 53) % 3600) END,
    CASE WHEN i % 10 IN (1, 2) THEN c + interval '2 days' END,
    c + interval '30 minutes', c,
    CASE WHEN i % 10 = 0 OR (i * 37) % 7200 > 1800 THEN 3 ELSE 1 END
FROM generate_series(1, {TARGET}) AS i, LATERAL (SELECT CAST(:w0 AS timestamptz) + make_interval(secs => (i - 1) * 1296)) AS t(c)
"""

# The rest: half in other provinces at any time, half in Phnom Penh in the three years before the window.
INSERT_REST = f"""
INSERT INTO referral (id, code, from_agency_id, to_agency_id, created_by, urgency, child, needs, province, status,
    policy, ladder, step, repeat, version, created_at, acknowledged_at, ack_deadline_at, updated_at, ladder_fired)
SELECT md5('rest-' || j)::uuid::text, 'R' || lpad(to_hex(j), 7, '0'), 'pp-ahtjp',
    CASE WHEN j % 2 = 0 THEN ({ELSEWHERE})[1 + j % 4] ELSE ({PP})[1 + j % 5] END, 'bench', 'normal', false,
    '["legal"]', CASE WHEN j % 2 = 0 THEN 'KH-17' ELSE 'KH-12' END, 'acknowledged', 'normal', :ladder, 0, 0, 0,
    c, c + interval '20 minutes', c + interval '4 hours', c, 1
FROM generate_series(1, CAST(:n AS integer)) AS j,
    LATERAL (SELECT CASE WHEN j % 2 = 0
                         THEN CAST(:w0 AS timestamptz) - interval '3 years' + make_interval(secs => (CAST(j AS bigint) * 7919) % 97000000)
                         ELSE CAST(:w0 AS timestamptz) - interval '3 years' + make_interval(secs => (CAST(j AS bigint) * 7919) % 94000000)
                    END) AS t(c)
"""

# The ladder's record: step 0 of the ack clock on every referral; step 1 where the answer came late or never
# (the same facts as the bits of referral.ladder_fired above: 1 is ack step 0, 2 ack step 1).
INSERT_STEPS = """
INSERT INTO ladder_step (referral_id, clock, step, fired_at)
SELECT id, 'ack', 0, created_at FROM referral
UNION ALL
SELECT id, 'ack', 1, ack_deadline_at FROM referral
WHERE acknowledged_at IS NULL OR acknowledged_at > ack_deadline_at
"""

# The baseline: the same p50 of the summary, by hand.
SQL_P50 = """
SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY s) FROM (
    SELECT floor(extract(epoch FROM r.acknowledged_at)) - floor(extract(epoch FROM r.created_at)) AS s
    FROM referral r
    WHERE r.to_agency_id = ANY(ARRAY(SELECT id FROM agency WHERE province = 'KH-12'))
      AND r.created_at >= :w0 AND r.created_at < :w1 AND r.acknowledged_at IS NOT NULL) t
"""

# The steps fired, from the ladder's record, to check the summary's (which reads referral.ladder_fired).
SQL_STEPS = """
SELECT ls.step, count(*) FROM ladder_step ls JOIN referral r ON r.id = ls.referral_id
WHERE r.to_agency_id = ANY(ARRAY(SELECT id FROM agency WHERE province = 'KH-12'))
  AND r.created_at >= :w0 AND r.created_at < :w1 GROUP BY ls.step
"""


def _settings(tmp: Path, url: str):
    return make_settings(tmp, url)


def build(engine, settings, total: int) -> float:
    ladder = json.dumps(settings.policies["urgent"].to_json(), separators=(",", ":"), sort_keys=True)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(INSERT_TARGET), {"ladder": ladder, "w0": W0})
        conn.execute(sa.text(INSERT_REST), {"ladder": ladder, "w0": W0, "n": total - TARGET})
        conn.execute(sa.text(INSERT_STEPS))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    return time.perf_counter() - started


def run_summary(sessions, settings) -> dict:
    scope = reports.national_scope("KH-12", settings=settings)
    win = reports.window(W0, W1, NOW, tz=settings.timezone)
    with sessions() as session:
        out = reports.summary(session, scope, win, NOW, settings=settings, actor="bench")
        session.rollback()  # the audit entry of the request: not kept
    return out


def run_sql(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(SQL_P50), {"w0": W0, "w1": W1}).scalar_one())


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def plans(engine, settings) -> list[str]:
    """EXPLAIN ANALYZE of the summary's statement on this database, with its values."""
    scope = reports.national_scope("KH-12", settings=settings)
    with make_sessionmaker(engine)() as session:
        stmt, params = reports.statement_params(session, scope, reports.window(W0, W1, NOW, tz=settings.timezone),
                                                NOW, len(reports.ladder_steps(settings)))
    expanded = stmt.compile(dialect=engine.dialect).construct_expanded_state(params)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + expanded.statement, expanded.parameters)
        return ["\n".join(r[0] for r in rows)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)

    admin = os.environ.get("HUB_BENCH_DATABASE_URL", DEFAULT_URL).replace("postgresql://", "postgresql+psycopg://", 1)
    names = [f"refhub_bench_{uuid.uuid4().hex[:10]}_{size}" for size in ("small", "large")]
    admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    engines = []
    total = time.perf_counter()
    try:
        urls = []
        for name in names:
            with admin_engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            urls.append(sa.engine.make_url(admin).set(database=name).render_as_string(hide_password=False))
        with tempfile.TemporaryDirectory() as tmp:
            settings = _settings(Path(tmp), urls[0])
            prepared, builds = [], []
            for url, size in zip(urls, (args.small, args.large)):
                engine = make_engine(url)
                engines.append(engine)
                create_all(engine)
                sessions = make_sessionmaker(engine)
                with session_scope(sessions) as s:
                    directory.sync_agencies(s, settings.agencies_dir, FixedClock(W0))
                print(f"building {size:,} referrals ...", file=sys.stderr, flush=True)
                builds.append(build(engine, settings, size))
                prepared.append((engine, sessions))
            (small_engine, small), (large_engine, large) = prepared
            first = [run_summary(s, settings) for _e, s in prepared]  # warm, and the figures to compare
            assert first[0] == first[1], "the same 2,000 referrals gave different figures"
            assert first[0]["referrals"]["total"] == TARGET, first[0]["referrals"]
            p50 = run_sql(large_engine)
            assert first[1]["first_answer_s"]["p50"] == p50, (first[1]["first_answer_s"], p50)
            with large_engine.connect() as conn:  # the bits agree with the ladder's record
                fired = dict(conn.execute(sa.text(SQL_STEPS), {"w0": W0, "w1": W1}).all())
            assert first[1]["steps_fired"] == {str(k): fired.get(k, 0) for k in range(4)}, (first[1], fired)
            times = {"small": [], "large": [], "sql": [], "sql_small": []}
            for _ in range(args.rounds):  # interleaved, so a busy machine slows all alike
                times["small"].append(_timed(lambda: run_summary(small, settings)))
                times["large"].append(_timed(lambda: run_summary(large, settings)))
                times["sql"].append(_timed(lambda: run_sql(large_engine)))
                times["sql_small"].append(_timed(lambda: run_sql(small_engine)))
            plan = plans(large_engine, settings)
    finally:
        for engine in engines:
            engine.dispose()
        with admin_engine.connect() as conn:
            for name in names:
                conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin_engine.dispose()

    med = {k: statistics.median(v) for k, v in times.items()}
    ms = lambda s: f"{s * 1000:,.1f} ms"  # noqa: E731
    scale, vs_sql = med["large"] / med["small"], med["large"] / med["sql"]
    print("| measure | value | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| summary, KH-12, 30 days, {TARGET:,} referrals, in {args.large:,} rows (vs in {args.small:,}) | "
          f"{ms(med['large'])} | {ms(med['small'])} | {scale:.2f}x | <= 2x {'ok' if scale <= 2 else 'MISSED'} |")
    print(f"| same summary vs hand-written percentile_disc p50, {args.large:,} rows | {ms(med['large'])} | "
          f"{ms(med['sql'])} | {vs_sql:.2f}x | <= 2x {'ok' if vs_sql <= 2 else 'MISSED'} |")
    print(f"| (percentile_disc p50 alone, {args.large:,} vs {args.small:,} rows) | {ms(med['sql'])} | "
          f"{ms(med['sql_small'])} | {med['sql'] / med['sql_small']:.2f}x | |")
    print()
    print(f"- medians of {args.rounds} interleaved rounds; builds {builds[0]:.1f} s and {builds[1]:.1f} s")
    print(f"- figures equal on both tables; p50 {p50} s equal to percentile_disc's; "
          f"p90 {first[1]['first_answer_s']['p90']} s, acceptance {first[1]['acceptance_rate']}, "
          f"late {first[1]['late_share']}, steps {first[1]['steps_fired']}")
    for i, text in enumerate(plan, 1):
        lines = text.splitlines()
        scans = [line.strip() for line in lines if "Scan" in line]
        print(f"- statement {i} over {args.large:,} rows: " + "; ".join(scans))
    print(f"- total {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
