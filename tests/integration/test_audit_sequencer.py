"""Entries committed out of seq order by concurrent transactions end up in the tree exactly once,
in seq order, and a checkpoint never changes once signed."""
from __future__ import annotations

import random
import threading
import time

import pytest
import sqlalchemy as sa

from hub.audit import keys, sequencer
from hub.audit.models import AuditCheckpoint, AuditEntry
from hub.audit.service import record
from hub.audit.verify import verify
from hub.db import session_scope
from tests.conftest import T0


def _tree(db):
    with db() as s:
        return s.execute(sa.select(AuditEntry.seq, AuditEntry.leaf_index).order_by(AuditEntry.seq)).all()


def _checkpoints(db) -> dict[int, str]:
    with db() as s:
        return dict(s.execute(sa.select(AuditCheckpoint.size, AuditCheckpoint.note)).all())


def test_a_late_commit_below_a_sequenced_one_waits_and_keeps_its_place(db, settings, engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing commits out of seq order there")
    sequencer.tick(db, T0, settings=settings)
    with db() as late:
        _late_commit(db, settings, late)


def _late_commit(db, settings, late) -> None:
    late.begin()
    first = record(late, at=T0, actor="hub", action="test.late")
    late.flush()  # holds a seq, not committed
    with session_scope(db) as s:
        second = record(s, at=T0, actor="hub", action="test.early")
    assert second.seq > first.seq
    before = _checkpoints(db)
    report = sequencer.tick(db, T0, settings=settings, wait=0.3)
    assert report.skipped and report.sequenced == 0  # the early commit does not jump the queue
    assert _checkpoints(db) == before

    done = {}
    worker = threading.Thread(target=lambda: done.setdefault("r", sequencer.tick(db, T0, settings=settings, wait=60)))
    worker.start()
    time.sleep(0.5)
    late.commit()
    worker.join()
    assert done["r"].sequenced == 2
    rows = dict(_tree(db))
    assert rows[first.seq] + 1 == rows[second.seq]


def test_concurrent_writers_and_sequencers_give_each_entry_one_leaf_for_good(db, settings, engine):
    writers, per_writer = 6, 40
    stop = threading.Event()
    seen: dict[int, str] = {}
    errors: list[BaseException] = []

    def write(w: int) -> None:
        rnd = random.Random(w)
        try:
            for i in range(per_writer):
                with session_scope(db) as s:
                    record(s, at=T0, actor="hub", action="test.concurrent", detail={"w": w, "i": i})
                    s.flush()
                    time.sleep(rnd.random() * 0.01)  # commit later than a neighbour that took a higher seq
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    def sequence() -> None:
        try:
            while not stop.is_set():
                sequencer.tick(db, T0, settings=settings, block=False, wait=2.0)
                for size, text in _checkpoints(db).items():
                    assert seen.setdefault(size, text) == text, f"checkpoint {size} changed"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    seqs = [threading.Thread(target=sequence) for _ in range(2)]
    for t in threads + seqs:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in seqs:
        t.join()
    assert not errors, errors
    sequencer.tick(db, T0, settings=settings)
    rows = _tree(db)
    assert len(rows) == writers * per_writer
    assert [leaf for _, leaf in rows] == list(range(len(rows)))  # once each, no gaps, in seq order
    for size, text in _checkpoints(db).items():
        assert seen.setdefault(size, text) == text
    # One more entry and one more checkpoint: every earlier checkpoint stays as it was. (How many
    # checkpoints the sequencers signed while the writers ran depends on the machine's load.)
    with session_scope(db) as s:
        record(s, at=T0, actor="hub", action="test.concurrent", detail={"w": -1, "i": 0})
    sequencer.tick(db, T0, settings=settings)
    after = _checkpoints(db)
    assert len(after) >= 2 and max(after) == writers * per_writer + 1
    for size, text in seen.items():
        assert after[size] == text
    with db() as s:
        verdict = verify(s, verifier=keys.verifier_line(settings), now=T0, interval=settings.checkpoint_every)
    assert verdict.ok, verdict.problem
    assert verdict.leaves == writers * per_writer + 1
