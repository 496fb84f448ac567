"""The SMS outbox and its drain, with the real twilio SDK against the local fake Twilio.

Every test runs on SQLite and on PostgreSQL. Time moves only through the injected clock.
"""
from __future__ import annotations

import dataclasses
import io
import threading
import time
import datetime as dt
from collections import Counter

import pytest
import sqlalchemy as sa

from hub.notify.gateways import ConsoleGateway, TwilioGateway
from hub.notify.models import Alert, OutboxMessage
from hub.notify.service import MAX_ATTEMPTS, drain, enqueue, lease
from tests.factories import run_at_once

TO = "+447700900123"  # Ofcom's drama range: nobody's phone


def queue(sessions, settings, clock, key: str, *, to: str = TO, by: str = "pp-shelter-a", lang: str = "en"):
    """Queue one "acknowledged" text (its body names ``by``) in its own committed transaction."""
    with sessions() as session, session.begin():
        return enqueue(session, dedupe_key=key, to_phone=to, lang=lang, template="acknowledged",
                       values={"code": "R-7F3K", "by": by}, now=clock.now(), settings=settings)


def rows(sessions) -> list[OutboxMessage]:
    with sessions() as session:
        return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def bodies(server) -> Counter:
    return Counter(m.body for m in server.messages)


def test_same_dedupe_key_twice_stores_one_message_and_sends_one_sms(db, settings, clock, fake_twilio,
                                                                    twilio_gateway):
    first = queue(db, settings, clock, "ref:1:ack:0:0:contact:7")
    second = queue(db, settings, clock, "ref:1:ack:0:0:contact:7", by="someone-else")

    assert first is not None and second is None
    drain(db, twilio_gateway, clock, settings=settings)
    assert [m.body for m in fake_twilio.messages] == ["refhub: R-7F3K was acknowledged by pp-shelter-a. Thank you."]


def test_same_dedupe_key_in_one_transaction_stores_one_message(db, settings, clock):
    with db() as session, session.begin():
        values = {"code": "R-7F3K", "by": "pp-shelter-a"}
        kwargs = dict(dedupe_key="k", to_phone=TO, lang="km", template="acknowledged", values=values,
                      now=clock.now(), settings=settings)
        assert enqueue(session, **kwargs) is not None
        assert enqueue(session, **kwargs) is None
    assert len(rows(db)) == 1


def test_rolled_back_transaction_enqueues_nothing(db, settings, clock, fake_twilio, twilio_gateway):
    with pytest.raises(RuntimeError):
        with db() as session, session.begin():
            enqueue(session, dedupe_key="k", to_phone=TO, lang="en", template="reply_help", values={},
                    now=clock.now(), settings=settings)
            raise RuntimeError("the change that caused the message failed")

    assert rows(db) == []
    assert not drain(db, twilio_gateway, clock, settings=settings)
    assert fake_twilio.messages == []


def test_drain_sends_every_message_once_with_its_status_callback(db, settings, clock, fake_twilio, twilio_gateway):
    for i in range(12):
        queue(db, settings, clock, f"k{i}", by=f"agency-{i}")

    report = drain(db, twilio_gateway, clock, settings=settings, concurrency=5)
    again = drain(db, twilio_gateway, clock, settings=settings)

    assert (report.sent, again.sent) == (12, 0)
    assert sorted(bodies(fake_twilio).values()) == [1] * 12
    stored = rows(db)
    assert {m.status for m in stored} == {"sent"}
    assert {m.provider_id for m in stored} == {m.sid for m in fake_twilio.messages}
    assert all(m.sent_at == clock.now() for m in stored)
    callbacks = {m.status_callback for m in fake_twilio.messages}
    assert callbacks == {f"{settings.public_base_url}/webhooks/twilio/status/{m.callback_nonce}" for m in stored}


def test_khmer_text_arrives_unchanged(db, settings, clock, fake_twilio, twilio_gateway):
    queue(db, settings, clock, "k", lang="km")
    drain(db, twilio_gateway, clock, settings=settings)
    assert fake_twilio.messages[0].body == "refhub៖ pp-shelter-a បានបញ្ជាក់ទទួល R-7F3K ហើយ។ អរគុណ។"


def test_console_gateway_gets_no_status_callback(db, settings, clock):
    console = ConsoleGateway(stream=io.StringIO())
    queue(db, settings, clock, "k")
    assert drain(db, console, clock, settings=settings).sent == 1
    [(to, body, _)] = console.sent
    assert (to, body) == (TO, "refhub: R-7F3K was acknowledged by pp-shelter-a. Thank you.")


def test_no_status_callback_when_switched_off(db, settings, clock, fake_twilio, twilio_gateway):
    settings = dataclasses.replace(settings, sms=dataclasses.replace(settings.sms, status_callbacks=False))
    queue(db, settings, clock, "k")
    drain(db, twilio_gateway, clock, settings=settings)
    assert fake_twilio.messages[0].status_callback is None


def test_outage_loses_nothing_and_delivers_each_once_after_backoff(db, settings, clock, fake_twilio, twilio_gateway):
    for i in range(3):
        queue(db, settings, clock, f"k{i}", by=f"agency-{i}")
    fake_twilio.fail_next(3, status=503)

    first = drain(db, twilio_gateway, clock, settings=settings)
    assert (first.sent, first.retried) == (0, 3)
    assert {m.status for m in rows(db)} == {"queued"}

    # The first retry waits 30 s +-20 %: 20 s later nothing is tried.
    requests_so_far = fake_twilio.request_count
    clock.advance(seconds=20)
    assert not drain(db, twilio_gateway, clock, settings=settings)
    assert fake_twilio.request_count == requests_so_far

    fake_twilio.fail_next(3, status=429)  # still throttled at the second try
    clock.advance(seconds=20)
    assert drain(db, twilio_gateway, clock, settings=settings).retried == 3
    clock.advance(seconds=40)  # the second retry waits 60 s +-20 %
    assert not drain(db, twilio_gateway, clock, settings=settings)

    clock.advance(seconds=40)
    assert drain(db, twilio_gateway, clock, settings=settings).sent == 3
    assert sorted(bodies(fake_twilio).values()) == [1, 1, 1]
    assert {m.status for m in rows(db)} == {"sent"}
    assert [m.attempts for m in rows(db)] == [3, 3, 3]


def test_outage_for_a_while_then_recovery(db, settings, clock, fake_twilio, twilio_gateway):
    queue(db, settings, clock, "k")
    fake_twilio.fail_for(3600, status=503)
    for _ in range(4):
        assert drain(db, twilio_gateway, clock, settings=settings).retried == 1
        clock.advance(minutes=31)
    fake_twilio.recover()

    assert drain(db, twilio_gateway, clock, settings=settings).sent == 1
    assert len(fake_twilio.messages) == 1
    with db() as session:
        assert session.scalars(sa.select(Alert)).all() == []


def test_refused_number_fails_at_once_and_raises_an_alert(db, settings, clock, fake_twilio, twilio_gateway):
    bad = "+447700900999"
    fake_twilio.fail_numbers([bad], code=21614)
    queue(db, settings, clock, "bad", to=bad)
    queue(db, settings, clock, "good")

    report = drain(db, twilio_gateway, clock, settings=settings)

    assert (report.sent, report.failed, report.retried) == (1, 1, 0)
    failed, sent = rows(db)
    assert (failed.status, sent.status) == ("failed", "sent")
    assert "21614" in failed.last_error and bad not in failed.last_error
    with db() as session:
        [alert] = session.scalars(sa.select(Alert)).all()
    assert (alert.kind, alert.dedupe_key) == ("sms_failed", f"sms_failed:{failed.id}")
    clock.advance(hours=2)
    assert not drain(db, twilio_gateway, clock, settings=settings)  # a failed message stays failed


def test_last_attempt_fails_with_one_alert(db, settings, clock, fake_twilio, twilio_gateway):
    queue(db, settings, clock, "k")
    fake_twilio.fail_for(10 ** 6, status=500)

    for attempt in range(1, MAX_ATTEMPTS + 1):
        report = drain(db, twilio_gateway, clock, settings=settings)
        assert (report.failed == 1) == (attempt == MAX_ATTEMPTS)
        clock.advance(minutes=40)

    [message] = rows(db)
    assert (message.status, message.attempts) == ("failed", MAX_ATTEMPTS)
    assert fake_twilio.request_count == MAX_ATTEMPTS
    with db() as session:
        assert [a.kind for a in session.scalars(sa.select(Alert))] == ["sms_failed"]


class Killed(BaseException):
    """The process dies (SIGKILL, OOM) while a drain is under way."""


class DiesBeforeSending:
    name = "twilio"

    def send(self, **kwargs):
        raise Killed()


class DiesAfterSending:
    """The provider takes the message, then the process dies before the drain records it."""

    name = "twilio"

    def __init__(self, gateway):
        self.gateway = gateway

    def send(self, **kwargs):
        self.gateway.send(**kwargs)
        raise Killed()


def test_row_stuck_in_sending_is_reclaimed_after_the_lease(db, settings, clock, fake_twilio, twilio_gateway):
    queue(db, settings, clock, "k")
    with pytest.raises(Killed):
        drain(db, DiesBeforeSending(), clock, settings=settings)
    assert rows(db)[0].status == "sending"

    clock.advance(seconds=lease(settings).total_seconds() - 1)
    assert not drain(db, twilio_gateway, clock, settings=settings)  # still leased to the dead drain
    clock.advance(seconds=2)
    report = drain(db, twilio_gateway, clock, settings=settings)

    assert (report.reclaimed, report.sent) == (1, 1)
    assert len(fake_twilio.messages) == 1
    assert rows(db)[0].status == "sent"


def test_kill_after_the_provider_took_it_is_the_one_duplicate(db, settings, clock, fake_twilio, twilio_gateway):
    # Documented in hub.notify.service: Twilio has no idempotency key, so this text goes out twice.
    queue(db, settings, clock, "k")
    with pytest.raises(Killed):
        drain(db, DiesAfterSending(twilio_gateway), clock, settings=settings)
    clock.advance(seconds=lease(settings).total_seconds() + 1)
    drain(db, twilio_gateway, clock, settings=settings)

    assert len(fake_twilio.messages) == 2
    assert rows(db)[0].status == "sent"


def test_parallel_drains_send_each_message_once(db, settings, clock, fake_twilio):
    count = 120
    for i in range(count):
        queue(db, settings, clock, f"k{i}", by=f"agency-{i}")
    def work(_i):
        # One gateway per drain, as in separate `hub scheduler` processes; each sends 3 at a time.
        gateway = TwilioGateway(fake_twilio.account_sid, fake_twilio.auth_tokens,
                                from_number=fake_twilio.phone_number, api_base=fake_twilio.base_url)
        return drain(db, gateway, clock, settings=settings, concurrency=3)

    reports, errors = run_at_once(4, work)

    assert errors == []
    assert sum(r.sent for r in reports) == count
    assert len(fake_twilio.messages) == count
    assert sorted(bodies(fake_twilio).values()) == [1] * count
    assert {m.provider_id for m in rows(db)} == {m.sid for m in fake_twilio.messages}
    if db.kw["bind"].dialect.name == "postgresql":
        assert sum(1 for r in reports if r.sent) > 1  # SKIP LOCKED let the drains share the work


def test_a_drain_sends_up_to_its_concurrency_at_once(db, settings, clock, fake_twilio, twilio_gateway):
    for i in range(8):
        queue(db, settings, clock, f"k{i}", by=f"agency-{i}")
    fake_twilio.delay_every(1.0)  # a slow provider: each answer takes a second

    report = drain(db, twilio_gateway, clock, settings=settings, concurrency=4)

    assert report.sent == 8 and sorted(bodies(fake_twilio).values()) == [1] * 8
    assert fake_twilio.max_in_flight == 4  # four at once, never more
    assert all(fake_twilio.message(m.provider_id).body == m.body for m in rows(db))  # each its own answer


def test_a_drain_claims_only_what_it_is_sending(db, settings, clock, fake_twilio, twilio_gateway):
    """A killed drain can strand only the texts it had in flight, not a batch waiting behind them."""
    for i in range(10):
        queue(db, settings, clock, f"k{i}", by=f"agency-{i}")
    fake_twilio.delay_every(0.3)
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            with db() as session:
                seen.append(session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                                           .where(OutboxMessage.status == "sending")))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = drain(db, twilio_gateway, clock, settings=settings, concurrency=2)
    finally:
        done.set()
        watcher.join()
    assert report.sent == 10
    assert max(seen) == 2  # the drain was watched mid-send, holding two claims, never more


def test_a_stopped_drain_finishes_its_sends_and_claims_nothing_more(db, settings, clock, fake_twilio,
                                                                    twilio_gateway):
    for i in range(6):
        queue(db, settings, clock, f"k{i}", by=f"agency-{i}")
    fake_twilio.delay_every(0.5)
    stop = threading.Event()

    def stop_mid_send():
        while fake_twilio.in_flight < 2:
            time.sleep(0.01)
        stop.set()

    stopper = threading.Thread(target=stop_mid_send)
    stopper.start()
    report = drain(db, twilio_gateway, clock, settings=settings, concurrency=2, stop=stop)
    stopper.join()

    assert report.sent == 2 and len(fake_twilio.messages) == 2
    assert Counter((m.status, m.attempts) for m in rows(db)) == {("sent", 1): 2, ("queued", 0): 4}


def test_parallel_enqueue_of_one_key_stores_one_row(db, settings, clock):
    results, errors = run_at_once(4, lambda i: queue(db, settings, clock, "the-same-key", by=f"agency-{i}"))

    assert errors == []
    assert sum(r is not None for r in results) == 1
    assert len(rows(db)) == 1


def test_backoff_grows_and_is_capped(db, settings, clock, fake_twilio, twilio_gateway):
    queue(db, settings, clock, "k")
    fake_twilio.fail_for(10 ** 6, status=503)
    waits = []
    for _ in range(MAX_ATTEMPTS - 1):
        drain(db, twilio_gateway, clock, settings=settings)
        [message] = rows(db)
        waits.append((message.next_attempt_at - clock.now()).total_seconds())
        clock.set(message.next_attempt_at)
    assert 24 <= waits[0] <= 36
    assert 48 <= waits[1] <= 72
    assert all(w <= 30 * 60 * 1.2 for w in waits)
    assert waits[-1] >= 30 * 60 * 0.8
    assert fake_twilio.request_count == MAX_ATTEMPTS - 1


def test_sent_at_is_stored_in_utc(db, settings, clock, fake_twilio, twilio_gateway):
    queue(db, settings, clock, "k")
    later = clock.advance(minutes=3)
    drain(db, twilio_gateway, clock, settings=settings)
    [message] = rows(db)
    assert message.sent_at == later and message.sent_at.tzinfo is not None
    assert message.created_at == later - dt.timedelta(minutes=3)
