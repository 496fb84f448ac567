"""Exactly once across processes (PostgreSQL): parallel sweeps, and a sweep killed in the middle.

300 referrals are inserted due at every step of the urgent ack ladder at once (as if the hub had been
down for two hours), so one sweep must fire steps 0 to 3 and the overdue alert for each: 7 ladder
texts, 3 one-tap tokens and one alert (which texts nobody) per referral. Sweeps run as separate OS processes.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from hub.clock import FixedClock, rfc3339
from hub.db import make_engine, make_sessionmaker, session_scope
from hub.directory import service as directory
from hub.escalation.service import deadline, sweep
from hub.notify.models import AckToken, Alert, OutboxMessage
from hub.referrals.models import Referral
from tests.conftest import ROOT, T0
from tests.dbreset import empty_postgres
from tests.instance import make_settings

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N = 300
NOW = T0 + dt.timedelta(hours=2, minutes=1)
STEP_TEXTS = 7  # step 0: duty; 1: both shelter contacts; 2: both provincial coordinators; 3: both national
TOKENS = 3  # one-tap links: the recipient's texts of steps 0 and 1

SWEEP = """
import json, sys, time
from hub.clock import parse_rfc3339
from hub.config import load_settings
from hub.db import make_engine, make_sessionmaker
from hub.escalation.service import sweep
config, url, now, start, limit = sys.argv[1:6]
settings = load_settings(config, env={"HUB_DATABASE_URL": url, "HUB_SECRET_KEY": "t" * 48})
sessions = make_sessionmaker(make_engine(settings.database_url))
while time.time() < float(start):
    time.sleep(0.001)
print(json.dumps(sweep(sessions, parse_rfc3339(now), settings=settings, limit=int(limit)).to_json()), flush=True)
"""

# Claims one batch, fires it, flushes, says which rows it holds, then hangs until killed.
HANG = """
import json, sys, time
from hub.clock import parse_rfc3339
from hub.config import load_settings
from hub.db import make_engine, make_sessionmaker
from hub.escalation.service import sweep_batch
config, url, now, limit = sys.argv[1:5]
settings = load_settings(config, env={"HUB_DATABASE_URL": url, "HUB_SECRET_KEY": "t" * 48})
session = make_sessionmaker(make_engine(settings.database_url))()
ids = sweep_batch(session, parse_rfc3339(now), settings=settings, limit=int(limit))
session.flush()
print(json.dumps(ids), flush=True)
time.sleep(600)
"""


@pytest.fixture
def pg(tmp_path, pg_url, _pg_engine):
    """Settings and sessions on an emptied PostgreSQL test database, with the demo directory loaded."""
    empty_postgres(_pg_engine)
    settings = make_settings(tmp_path, pg_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as s:
        directory.sync_agencies(s, settings.agencies_dir, FixedClock(T0))
    yield settings, sessions
    engine.dispose()


def insert_due_referrals(sessions, settings, n: int = N) -> list[str]:
    """n urgent referrals sent at T0 whose ladder never ran (step -1): due for every step at NOW."""
    import uuid

    policy = settings.policies["urgent"]
    alphabet = "23456789CDFGHJKMNPQRTVWXY"
    rows = []
    for i in range(n):
        code = "R-" + "".join(alphabet[(i // len(alphabet) ** k) % len(alphabet)] for k in range(4))
        rows.append(dict(
            id=str(uuid.uuid4()), code=code, open_code=code, from_agency_id="pp-ahtjp", to_agency_id="pp-shelter-a",
            created_by="test", urgency="urgent", child=False, needs=["shelter"], province="KH-12", status="sent",
            policy="urgent", ladder=policy.to_json(), clock="ack", clock_started_at=T0,
            deadline_at=deadline(policy, "ack", T0), step=-1, repeat=0, next_step_at=T0, version=0,
            created_at=T0, updated_at=T0))
    with session_scope(sessions) as s:
        s.execute(sa.insert(Referral), rows)
    return [r["id"] for r in rows]


def assert_exactly_once(sessions, ids: list[str]) -> None:
    """Every referral at step 3, with each ladder text, token and alert exactly once."""
    with sessions() as s:
        dupes = s.execute(
            sa.select(OutboxMessage.referral_id, OutboxMessage.clock, OutboxMessage.step, OutboxMessage.repeat,
                      OutboxMessage.contact_id, sa.func.count())
            .group_by(OutboxMessage.referral_id, OutboxMessage.clock, OutboxMessage.step, OutboxMessage.repeat,
                      OutboxMessage.contact_id)
            .having(sa.func.count() > 1)).all()
        assert dupes == []
        per_referral = dict(s.execute(
            sa.select(OutboxMessage.referral_id, sa.func.count()).where(OutboxMessage.step.is_not(None))
            .group_by(OutboxMessage.referral_id)).all())
        assert per_referral == {rid: STEP_TEXTS for rid in ids}
        tokens = dict(s.execute(sa.select(AckToken.referral_id, sa.func.count()).group_by(AckToken.referral_id)).all())
        assert tokens == {rid: TOKENS for rid in ids}
        assert s.scalar(sa.select(sa.func.count()).select_from(Alert).where(Alert.kind == "overdue")) == len(ids)
        assert s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.step.is_(None))) == 0  # the overdue alert texts nobody
        states = s.execute(sa.select(Referral.step, Referral.repeat, sa.func.count())
                           .group_by(Referral.step, Referral.repeat)).all()
        assert states == [(3, 0, len(ids))]
        assert s.scalar(sa.select(sa.func.count()).select_from(Referral)
                        .where(Referral.next_step_at <= NOW)) == 0


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True, stdout=subprocess.PIPE, **kw)


def test_four_processes_sweeping_the_same_referrals_fire_each_step_once(pg):
    settings, sessions = pg
    ids = insert_due_referrals(sessions, settings)
    start = time.time() + 3  # all four begin together, once imported and connected
    procs = [_python(SWEEP, str(settings.config_path), settings.database_url, rfc3339(NOW), str(start), "20")
             for _ in range(4)]
    reports = []
    for proc in procs:
        out, _ = proc.communicate()
        assert proc.returncode == 0
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["claimed"] for r in reports) == N  # each referral claimed by exactly one sweep
    assert sum(r["errors"] for r in reports) == 0
    assert sum(1 for r in reports if r["claimed"]) >= 2, reports  # they really ran side by side
    assert_exactly_once(sessions, ids)


def test_a_sweep_killed_holding_its_claim_loses_nothing(pg):
    settings, sessions = pg
    ids = insert_due_referrals(sessions, settings)
    hung = _python(HANG, str(settings.config_path), settings.database_url, rfc3339(NOW), "50")
    try:
        held = json.loads(hung.stdout.readline())
        assert len(held) == 50
        # Meanwhile another sweep skips the 50 locked rows and does the rest.
        other = sweep(sessions, NOW, settings=settings, limit=100)
        assert other.claimed == N - 50
    finally:
        os.kill(hung.pid, signal.SIGKILL)
        hung.wait()
        hung.stdout.close()
    with sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Referral).where(Referral.id.in_(held),
                                                                              Referral.step == -1)) == 50
    done = 0
    for _ in range(100):  # the server notices the dead connection and releases its locks
        done += sweep(sessions, NOW, settings=settings).claimed
        if done == 50:
            break
        time.sleep(0.1)
    assert done == 50
    assert_exactly_once(sessions, ids)


def test_a_scheduler_killed_in_the_middle_of_a_sweep_loses_nothing(pg):
    settings, sessions = pg
    ids = insert_due_referrals(sessions, settings)
    proc = _python(SWEEP, str(settings.config_path), settings.database_url, rfc3339(NOW), "0", "5",
                   stderr=subprocess.DEVNULL)
    try:
        for _ in range(6000):  # kill it once some batches are committed and others are not
            with sessions() as s:
                swept = s.scalar(sa.select(sa.func.count()).select_from(Referral).where(Referral.step == 3))
            if swept >= 30 or proc.poll() is not None:
                break
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    with sessions() as s:
        partly = s.scalar(sa.select(sa.func.count()).select_from(Referral).where(Referral.step == 3))
    assert 0 < partly < N
    total = 0
    for _ in range(100):
        total += sweep(sessions, NOW, settings=settings).claimed
        if total == N - partly:
            break
        time.sleep(0.1)
    assert total == N - partly
    assert_exactly_once(sessions, ids)
