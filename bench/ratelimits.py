"""What a rate-limit check costs with the counts in the database, beside the same check in memory and a
plain one-row round trip on the same engine, in the same run.

    .venv/bin/python -m bench.ratelimits [--repeat 2000]

A counted request does what Flask-Limiter does for each limit on its route: one hit (the upsert) and
the window's figures for the X-RateLimit and Retry-After headers (two reads). Measured on a scratch
SQLite file and a scratch PostgreSQL database (HUB_BENCH_DATABASE_URL, default the local server);
medians of --repeat checks, over 50 keys (a busy minute's addresses).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from bench.submit import scratch_database
from hub.db import make_engine
from hub.models import create_all
from hub.ratelimits import DatabaseStorage

LIMIT = parse("1000000 per minute")


def _median_us(check, repeat: int) -> float:
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        check(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _limited(storage):
    limiter = FixedWindowRateLimiter(storage)

    def check(i: int) -> None:
        key = f"address:192.0.2.{i % 50}"
        limiter.hit(LIMIT, key)
        limiter.get_window_stats(LIMIT, key)
    return check


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            with scratch_database(backend, Path(tmp)) as url:
                engine = make_engine(url)
                create_all(engine)

                def round_trip(_i: int) -> None:
                    with engine.begin() as conn:
                        conn.execute(sa.text("SELECT 1")).scalar()
                memory = _median_us(_limited(MemoryStorage()), args.repeat)
                database = _median_us(_limited(DatabaseStorage(engine=engine)), args.repeat)
                trip = _median_us(round_trip, args.repeat)
                print(f"{backend:10}  memory {memory:7.1f} us   database {database:7.1f} us   "
                      f"one SELECT 1 transaction {trip:7.1f} us   database/round trip {database / trip:4.2f}")
                engine.dispose()


if __name__ == "__main__":
    main()
