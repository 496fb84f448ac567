"""`hub audit verify`'s chunked pass on PostgreSQL (the database builds the leaf bytes, a chunk at a time)
gives the verdict of the entry by entry pass: the same bytes, the same tree, the same first problem.

The chunk is made small here, so that a few hundred entries cross many chunks and stored heights.
"""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from hub.audit import keys, sequencer
from hub.audit import verify as verify_module
from hub.audit.service import record
from hub.db import session_scope
from tests.conftest import T0

# Strings that JSON must escape, and some it must not: both passes must spell them the same.
ODD = ['quote " back \\ slash', "tab\tline\nfeed\rcr\x01\x1f\x7f", "ស្ថានភាព \u2028 é 😀", "</script>"]


@pytest.fixture
def pg_only(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("the chunked pass is PostgreSQL's")


def _fill(db, settings, sizes):
    seq = 0
    for n in sizes:
        with session_scope(db) as s:
            for _ in range(n):
                odd = ODD[seq % len(ODD)]
                record(s, at=T0 + dt.timedelta(seconds=seq, microseconds=seq * 7919 % 1_000_000),
                       actor=f"user:{odd}", action="test.entry", referral_id=None if seq % 3 else odd[:36],
                       packet_sha256=None if seq % 2 else "ab" * 32, detail={"i": seq, odd: [odd, None, 1.5]})
                seq += 1
        sequencer.tick(db, T0, settings=settings)


def _verify(db, settings):
    with db() as s:
        return verify_module.verify(s, verifier=keys.verifier_line(settings), now=T0 + dt.timedelta(seconds=700),
                                    interval=dt.timedelta(days=1))


@pytest.mark.parametrize("chunk_height", [3, 5, 16])
def test_the_chunked_pass_checks_a_sound_log(pg_only, db, settings, monkeypatch, chunk_height):
    monkeypatch.setattr(verify_module, "FAST_CHUNK", 1 << chunk_height)
    _fill(db, settings, [1, 100, 155, 256, 9, 300])  # checkpoints inside chunks, on their edges, across 2**8
    verdict = _verify(db, settings)
    assert verdict.ok, verdict.problem
    assert verdict.figures["pass"] == "chunks"  # the database spelled every leaf as store.leaf_bytes does
    assert (verdict.leaves, verdict.checkpoints, verdict.latest) == (821, 6, 821)


def test_plain_entries_are_spelled_once_and_odd_ones_again_exactly(pg_only, db, settings, monkeypatch):
    monkeypatch.setattr(verify_module, "FAST_CHUNK", 1 << 5)
    with session_scope(db) as s:  # 64 plain entries, then 32 with strings JSON escapes
        for i in range(96):
            actor = "user:plain ស្ថានភាព" if i < 64 else f"user:{ODD[i % len(ODD)]}"
            record(s, at=T0 + dt.timedelta(seconds=i, microseconds=i * 7919), actor=actor, action="test.entry",
                   referral_id=None, packet_sha256=None, detail={"i": i})
    sequencer.tick(db, T0, settings=settings)
    verdict = _verify(db, settings)
    assert verdict.ok, verdict.problem
    assert (verdict.figures["pass"], verdict.figures["respelled"], verdict.leaves) == ("chunks", 1, 96)


def test_an_entry_rewritten_as_its_own_escaped_spelling_is_found(pg_only, db, engine, settings, monkeypatch):
    # The leaf bytes of actor 'user:say "hi"' hold user:say \"hi\": an actor rewritten to those
    # characters must not pass for the original.
    monkeypatch.setattr(verify_module, "FAST_CHUNK", 1 << 5)
    with session_scope(db) as s:
        for i in range(40):
            record(s, at=T0 + dt.timedelta(seconds=i), actor='user:say "hi"' if i == 33 else "user:plain",
                   action="test.entry", referral_id=None, packet_sha256=None, detail={"i": i})
    sequencer.tick(db, T0, settings=settings)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_entry DISABLE TRIGGER USER"))
        conn.execute(sa.text("UPDATE audit_entry SET actor = :a WHERE leaf_index = 33"), {"a": 'user:say \\"hi\\"'})
        conn.execute(sa.text("ALTER TABLE audit_entry ENABLE TRIGGER USER"))
        seq = conn.execute(sa.text("SELECT seq FROM audit_entry WHERE leaf_index = 33")).scalar_one()
    verdict = _verify(db, settings)
    assert not verdict.ok and verdict.figures["pass"] == "entries"
    assert f"entry seq {seq} (leaf index 33) does not match its leaf hash" in verdict.problem


@pytest.mark.parametrize("tamper", ["entry", "leaf hash", "subtree"])
def test_a_doubt_in_a_chunk_is_named_by_the_entry_by_entry_pass(pg_only, db, engine, settings, monkeypatch, tamper):
    monkeypatch.setattr(verify_module, "FAST_CHUNK", 1 << 5)
    _fill(db, settings, [300, 300])
    with engine.begin() as conn:
        if tamper == "entry":
            conn.execute(sa.text("ALTER TABLE audit_entry DISABLE TRIGGER USER"))
            conn.execute(sa.text("UPDATE audit_entry SET actor = 'user:someone else' WHERE leaf_index = 417"))
            conn.execute(sa.text("ALTER TABLE audit_entry ENABLE TRIGGER USER"))
        elif tamper == "leaf hash":
            conn.execute(sa.text("UPDATE audit_node SET hash = sha256('x') WHERE height = 0 AND idx = 417"))
        else:
            conn.execute(sa.text("UPDATE audit_node SET hash = sha256('x') WHERE height = 8 AND idx = 1"))
        seq = conn.execute(sa.text("SELECT seq FROM audit_entry WHERE leaf_index = 417")).scalar_one()
    verdict = _verify(db, settings)
    assert not verdict.ok and verdict.figures["pass"] == "entries"
    if tamper == "subtree":
        assert "stored subtree over leaf indices 256 to 511" in verdict.problem
    else:
        assert f"entry seq {seq} (leaf index 417)" in verdict.problem
