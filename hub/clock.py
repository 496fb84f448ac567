"""The hub's notion of now. Everything takes a Clock so tests and `--now` can move time."""
from __future__ import annotations

import datetime as dt
import zoneinfo
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


# -- the hub's time zone (``[hub] timezone``): what people read and type ----------------------------


def zone(name: str | dt.tzinfo | None) -> dt.tzinfo:
    """The hub's time zone (``[hub] timezone``, validated by hub.config) as a tzinfo; UTC when unset."""
    if isinstance(name, dt.tzinfo):
        return name
    return zoneinfo.ZoneInfo(name or "UTC")


def days_later(when: dt.datetime, days: int, tz: str | dt.tzinfo | None) -> dt.datetime:
    """The same wall-clock time ``days`` later in ``tz`` (midnight stays midnight across a zone's shifts)."""
    local = when.astimezone(zone(tz)).replace(tzinfo=None) + dt.timedelta(days=days)
    return ensure_utc(local.replace(tzinfo=zone(tz)))


def local_day(when: dt.datetime | str, tz: str | dt.tzinfo | None) -> dt.date:
    """The calendar day of an instant (or an RFC 3339 time) in ``tz`` (what a person reads as the date)."""
    if isinstance(when, str):
        when = parse_rfc3339(when)
    return when.astimezone(zone(tz)).date()


def from_local(value: dt.datetime, tz: str | dt.tzinfo | None) -> dt.datetime:
    """A wall-clock time as read in ``tz`` (naive) as the UTC instant it names."""
    return ensure_utc(value.replace(tzinfo=zone(tz)))


def to_local(value: dt.datetime, tz: str | dt.tzinfo | None) -> dt.datetime:
    """An instant as the wall-clock time (naive) it reads in ``tz``."""
    return value.astimezone(zone(tz)).replace(tzinfo=None)
