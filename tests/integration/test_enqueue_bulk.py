"""Bulk writes to the outbox: enqueue_many, issue_ack_tokens and OutboxBatch keep enqueue's guarantees.

Every test runs on SQLite and on PostgreSQL (where many rows go in one INSERT ... SELECT FROM unnest).
"""
from __future__ import annotations


import pytest

from tests.factories import run_at_once
import sqlalchemy as sa

from hub.directory.models import Contact
from hub.notify.models import AckToken, OutboxMessage
from hub.notify.service import (OutboxBatch, enqueue, enqueue_many, find_ack_token, issue_ack_token,
                                issue_ack_tokens)

TO = "+447700900123"  # Ofcom's drama range: nobody's phone


@pytest.fixture
def contact(db, network) -> int:
    with db() as session, session.begin():
        found = Contact(agency_id="pp-shelter-a", name="Fictional Contact", phone="+447700900401", lang="en",
                        duty=True, role="caseworker", active=True)
        session.add(found)
        session.flush()
        return found.id


def row(key: str, *, by: str = "pp-shelter-a", lang: str = "en", **extra) -> dict:
    return dict(dedupe_key=key, to_phone=TO, lang=lang, template="acknowledged",
                values={"code": "R-7F3K", "by": by}, **extra)


def stored(db) -> list[OutboxMessage]:
    with db() as session:
        return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def test_duplicates_within_one_batch_store_one_row_each(db, settings, clock):
    rows = [row("a", by="first"), row("b"), row("a", by="second"), row("c", lang="km"), row("b"), row("a")]
    with db() as session, session.begin():
        assert enqueue_many(session, rows, now=clock.now(), settings=settings) == 3

    messages = stored(db)
    assert [m.dedupe_key for m in messages] == ["a", "b", "c"]  # in the order given, each once
    assert "first" in messages[0].body  # the first row of a key is the one stored
    assert {m.status for m in messages} == {"queued"} and {m.attempts for m in messages} == {0}
    assert all(m.created_at == clock.now() == m.updated_at for m in messages)
    assert len({m.callback_nonce for m in messages}) == 3
    assert messages[2].lang == "km" and messages[2].body != messages[1].body


def test_duplicates_across_batches_and_with_enqueue_store_one_row_each(db, settings, clock):
    with db() as session, session.begin():
        assert enqueue(session, now=clock.now(), settings=settings, **row("a")) is not None
        assert enqueue_many(session, [row("a"), row("b")], now=clock.now(), settings=settings) == 1
    with db() as session, session.begin():
        assert enqueue_many(session, [row("b"), row("c"), row("a")], now=clock.now(), settings=settings) == 1
        assert enqueue_many(session, [row("c")], now=clock.now(), settings=settings) == 0
        assert enqueue(session, now=clock.now(), settings=settings, **row("c")) is None
        assert enqueue_many(session, [], now=clock.now(), settings=settings) == 0

    assert sorted(m.dedupe_key for m in stored(db)) == ["a", "b", "c"]


def test_enqueue_returns_the_stored_row(db, settings, clock):
    with db() as session, session.begin():
        message = enqueue(session, now=clock.now(), settings=settings, step=2, repeat=1, **row("k"))
        assert session.get(OutboxMessage, message.id) is message
        assert message not in session.dirty
        session.flush()
    [again] = stored(db)
    for name in ("id", "dedupe_key", "to_phone", "lang", "template", "body", "status", "attempts", "step", "repeat",
                 "callback_nonce", "created_at", "updated_at", "contact_id", "referral_id", "clock"):
        assert getattr(again, name) == getattr(message, name), name


def test_a_rolled_back_transaction_stores_nothing(db, settings, clock, contact, submit):
    ref = submit()
    with db() as session:
        before = (session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)),
                  session.scalar(sa.select(sa.func.count()).select_from(AckToken)))
    raws = []
    with pytest.raises(RuntimeError):
        with db() as session, session.begin():
            assert enqueue_many(session, [row("x"), row("y")], now=clock.now(), settings=settings) == 2
            raws += issue_ack_tokens(session, [(ref["id"], "ack", contact)] * 3, now=clock.now())
            batch = OutboxBatch(session, now=clock.now(), settings=settings)
            raws.append(batch.token(referral_id=ref["id"], clock="ack", contact_id=contact))
            batch.enqueue(**row("z"))
            assert batch.flush() == 1
            raise RuntimeError("the change that caused the messages failed")

    with db() as session:
        after = (session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)),
                 session.scalar(sa.select(sa.func.count()).select_from(AckToken)))
        assert after == before
        assert all(find_ack_token(session, raw) is None for raw in raws)
    with db() as session, session.begin():  # nothing of it is left to block the same keys later
        assert enqueue_many(session, [row("x"), row("y"), row("z")], now=clock.now(), settings=settings) == 3


def test_bulk_tokens_are_stored_hashed_and_usable(db, settings, clock, contact, submit):
    ref = submit()
    with db() as session, session.begin():
        raws = issue_ack_tokens(session, [(ref["id"], "ack", contact), (ref["id"], "decide", contact)],
                                now=clock.now())
        raws.append(issue_ack_token(session, referral_id=ref["id"], clock="ack", contact_id=contact,
                                    now=clock.now()))
        assert issue_ack_tokens(session, [], now=clock.now()) == []
    assert len(set(raws)) == 3
    with db() as session:
        tokens = [find_ack_token(session, raw) for raw in raws]
        assert [t.clock for t in tokens] == ["ack", "decide", "ack"]
        assert all(t.referral_id == ref["id"] and t.contact_id == contact and t.created_at == clock.now()
                   for t in tokens)
        stored_hashes = set(session.scalars(sa.select(AckToken.token_hash)))
        assert not set(raws) & stored_hashes  # only the hashes are kept


def test_outbox_batch_writes_nothing_until_flushed(db, settings, clock, contact, submit):
    ref = submit()
    with db() as session, session.begin():
        count = session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
        batch = OutboxBatch(session, now=clock.now(), settings=settings)
        raw = batch.token(referral_id=ref["id"], clock="ack", contact_id=contact)
        for key in ("p", "q", "p"):
            batch.enqueue(referral_id=ref["id"], contact_id=contact, clock="ack", step=1, repeat=0, **row(key))
        assert len(batch) == 4
        assert find_ack_token(session, raw) is None
        assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == count
        assert batch.flush() == 2
        assert len(batch) == 0 and batch.flush() == 0
        assert find_ack_token(session, raw) is not None
    keys = {m.dedupe_key: m for m in stored(db)}
    assert keys["p"].referral_id == ref["id"] and keys["p"].step == 1 and keys["q"].contact_id == contact


def test_parallel_bulk_enqueue_of_the_same_keys_stores_one_row_each(db, settings, clock):
    def work(i):
        with db() as session, session.begin():
            return enqueue_many(session, [row(f"k{n}", by=f"agency-{i}") for n in range(20)],
                                now=clock.now(), settings=settings)

    results, errors = run_at_once(4, work)

    assert errors == []
    assert sum(results) == 20
    assert sorted(m.dedupe_key for m in stored(db)) == sorted(f"k{n}" for n in range(20))


def test_a_value_too_long_for_its_column_is_refused_not_cut(db, settings, clock):
    if db.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    with pytest.raises(sa.exc.DataError):
        with db() as session, session.begin():
            enqueue_many(session, [row("ok"), dict(row("long"), to_phone="+44" + "7" * 40)], now=clock.now(),
                         settings=settings)
    assert stored(db) == []


def test_the_outbox_inserts_compile_once_per_engine(db, settings, clock, caplog):
    """INSERT ... ON CONFLICT DO NOTHING is built with the dialect's public construct and hits the
    compiled cache from its second use: SQLAlchemy's log says "cached since", never "no key"."""
    import logging

    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"):
        for i in range(3):  # one row (the single-row statement) and three rows (the bulk one), three times
            with db() as session, session.begin():
                enqueue(session, now=clock.now(), settings=settings, **row(f"one-{i}"))
                enqueue_many(session, [row(f"many-{i}-{k}") for k in range(3)], now=clock.now(), settings=settings)
    inserts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("INSERT INTO outbox_message")]
    stats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]
    assert len(inserts) >= 6
    assert not [s for s in stats if s.startswith("[no key")], stats
    assert sum(s.startswith("[cached since") for s in stats) >= 4, stats  # both inserts, uses two and three
