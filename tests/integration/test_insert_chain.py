"""InsertChain (hub.db): rows of several tables written together keep every value and every refusal.

On PostgreSQL the rows travel as one JSON parameter a table in one statement, on SQLite as one
INSERT a table; either way a row reads back as it was given, through the columns' own types.
"""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from bench.counting import Counter
from hub.db import NAMING, InsertChain, JSONText, UTCDateTime

T0 = dt.datetime(2026, 11, 22, 9, 30, 15, 123456, tzinfo=dt.timezone.utc)
meta = sa.MetaData(naming_convention=NAMING)
parent = sa.Table("chain_parent", meta, sa.Column("id", sa.String(36), primary_key=True),
                  sa.Column("name", sa.String(20), nullable=False, unique=True),
                  sa.Column("at", UTCDateTime, nullable=False), sa.Column("doc", JSONText),
                  sa.Column("blob", sa.LargeBinary), sa.Column("flag", sa.Boolean, nullable=False),
                  sa.Column("count", sa.BigInteger), sa.Column("repeat", sa.Integer))
child = sa.Table("chain_child", meta, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                 sa.Column("parent_id", sa.String(36), sa.ForeignKey("chain_parent.id"), nullable=False),
                 sa.Column("note", sa.Text))


@pytest.fixture
def tables(engine):
    meta.create_all(engine)
    yield
    meta.drop_all(engine)


def row(pid: str, name: str, **extra) -> dict:
    return {"id": pid, "name": name, "at": T0, "doc": {"needs": ["shelter"], "ក": "ខ", "n": 2}, "blob": b"\x00\\x\xff",
            "flag": True, "count": 2 ** 40, "repeat": 0, **extra}


def test_rows_of_two_tables_read_back_as_given_in_one_statement_on_postgresql(engine, tables):
    counter = Counter(engine)
    chain = InsertChain()
    chain.add(parent, [row("p1", "first"), row("p2", "second", doc=None, blob=None, flag=False, count=None,
                                               at=T0.astimezone(dt.timezone(dt.timedelta(hours=7))))])
    chain.add(child, [{"parent_id": "p1", "note": "a \"quoted\" note\nwith a line"}, {"parent_id": "p2", "note": None}])
    with engine.begin() as conn:
        chain.run(conn)
    assert counter.statements == (1 if engine.dialect.name == "postgresql" else 2), counter.log
    assert len(chain) == 0  # a chain is spent once run
    with engine.connect() as conn:
        got = [dict(r._mapping) for r in conn.execute(sa.select(parent).order_by(parent.c.id))]
        notes = conn.execute(sa.select(child.c.parent_id, child.c.note).order_by(child.c.id)).all()
    assert got == [row("p1", "first"), row("p2", "second", doc=None, blob=None, flag=False, count=None)]
    assert got[1]["at"] == T0 and got[1]["at"].tzinfo == dt.timezone.utc
    assert notes == [("p1", "a \"quoted\" note\nwith a line"), ("p2", None)]


def test_a_taken_unique_value_is_refused_naming_its_constraint_unless_conflicts_are_ok(engine, tables):
    with engine.begin() as conn:
        first = InsertChain()
        first.add(parent, row("p1", "first"))
        first.run(conn)
    again = InsertChain()
    again.add(parent, row("p2", "first"))
    with pytest.raises(sa.exc.IntegrityError) as refused, engine.begin() as conn:
        again.run(conn)
    assert "name" in str(refused.value.orig)  # uq_chain_parent_name on PostgreSQL, chain_parent.name on SQLite
    skipped = InsertChain()
    skipped.add(parent, [row("p1", "other"), row("p3", "third")], conflict_ok=True)
    with engine.begin() as conn:
        skipped.run(conn)
        assert conn.execute(sa.select(parent.c.id, parent.c.name).order_by(parent.c.id)).all() == [
            ("p1", "first"), ("p3", "third")]


def test_a_naive_time_is_refused_before_anything_is_written(engine, tables):
    chain = InsertChain()
    chain.add(parent, row("p1", "first", at=T0.replace(tzinfo=None)))
    with pytest.raises((ValueError, sa.exc.StatementError)), engine.begin() as conn:
        chain.run(conn)
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(parent)) == 0
