"""The rate limits' in-process storage (``memory://``): counts as limits' own, without a thread a hit."""
from __future__ import annotations

import threading
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from hub.web.security import SweptMemoryStorage, storage_uri


def test_memory_names_the_swept_storage_and_other_uris_pass_unchanged():
    assert isinstance(storage_from_string(storage_uri("memory://")), SweptMemoryStorage)
    assert storage_uri("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"


def test_a_limit_counts_and_refuses_as_before_with_no_timer_thread_per_hit(monkeypatch):
    storage = storage_from_string(storage_uri("memory://"))
    window = FixedWindowRateLimiter(storage)
    three = parse("3 per minute")
    assert [window.hit(three, "token:a") for _ in range(4)] == [True, True, True, False]
    assert window.hit(three, "token:b")  # each key its own count
    started = []
    start = threading.Timer.start
    monkeypatch.setattr(threading.Timer, "start", lambda timer: (started.append(timer), start(timer)))
    for i in range(10):  # hits further apart than the library's 10 ms timer lives
        window.hit(three, f"address:{i}")
        time.sleep(0.03)
    assert len(started) == 0  # the sweep ran with the first hit; the next is due in a second


def test_counters_past_their_window_are_swept_once_a_second():
    storage = SweptMemoryStorage()
    window = FixedWindowRateLimiter(storage)
    one = parse("1 per second")
    for i in range(50):
        window.hit(one, f"address:{i}")
    assert len(storage.storage) == 50
    time.sleep(SweptMemoryStorage.SWEEP_EVERY + 1.1)
    window.hit(one, "address:late")  # a hit after the sweep interval schedules the sweep
    time.sleep(0.1)
    assert set(storage.storage) == {one.key_for("address:late")}
