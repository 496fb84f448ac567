"""The hub's notion of now. Everything takes a Clock so tests and `--now` can move time."""
from __future__ import annotations

import datetime as dt
from typing import Protocol

UTC = dt.timezone.utc


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to (tests, `hub escalate --now`)."""

    def __init__(self, at: dt.datetime):
        self._at = ensure_utc(at)

    def now(self) -> dt.datetime:
        return self._at

    def set(self, at: dt.datetime) -> None:
        self._at = ensure_utc(at)

    def advance(self, **delta: float) -> dt.datetime:
        self._at = self._at + dt.timedelta(**delta)
        return self._at


def ensure_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: the hub keeps every time in UTC with a zone")
    return value.astimezone(UTC)


def rfc3339(value: dt.datetime) -> str:
    """RFC 3339 UTC with a Z, seconds precision (PROTOCOL.md encodings)."""
    return ensure_utc(value).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ensure_utc(value)
