"""Language and time for people: Flask-Babel, the language switch, times in the hub's time zone.

The locale of a request is the signed-in member's language (``User.lang``), else the
``refhub_lang`` cookie set by the switch, else the browser's Accept-Language, else Khmer.
Times are stored in UTC and shown in ``[hub] timezone`` through Babel's formats.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from babel.dates import format_timedelta as babel_format_timedelta

from flask import Flask, g, request
from flask_babel import Babel, format_datetime, get_locale, gettext, lazy_gettext

from hub.faces import current
from hub.web import forms

LANGS = ("en", "km")
DEFAULT_LANG = "km"
LANG_COOKIE = "refhub_lang"
TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
# Each language's name in its own script, for the switch.
LANG_NAMES = {"en": "English", "km": "ខ្មែរ"}


def select_locale() -> str:
    lang = g.get("lang")
    if lang in LANGS:
        return lang
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGS:
        return cookie
    return request.accept_languages.best_match(LANGS) or DEFAULT_LANG


def init_babel(app: Flask, timezone: str) -> Babel:
    babel = Babel()
    babel.init_app(app, locale_selector=select_locale, timezone_selector=lambda: timezone,
                   default_translation_directories=str(TRANSLATIONS), default_domain="messages")
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["due"] = due
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["when_text"] = when_text
    app.jinja_env.filters["need_name"] = lambda code: NEED_NAMES.get(code, code)
    app.jinja_env.filters["label"] = label
    app.jinja_env.globals["now"] = _now
    app.jinja_env.globals.update(current_lang=current_lang_code, LANG_NAMES=LANG_NAMES)
    return babel


def _now() -> dt.datetime:
    return current().clock.now()


def when(value: dt.datetime | None, style: str = "medium") -> str:
    """A stored UTC time as people read it: in the hub's time zone and the page's language."""
    if value is None:
        return ""
    return format_datetime(value, style)


# Babel's units for "12 minutes" (babel.dates.TIMEDELTA_UNITS): a delta reads the same as the whole number
# of its largest unit, so the words are cached by (language, unit, number) and a page of 50 rows formats
# a handful of distinct values once.
_UNITS = (("year", 3600 * 24 * 365), ("month", 3600 * 24 * 30), ("week", 3600 * 24 * 7), ("day", 3600 * 24),
          ("hour", 3600), ("minute", 60), ("second", 1))


_WORDS: dict[tuple, str] = {}


def format_timedelta(delta: dt.timedelta, *, add_direction: bool = False, threshold: float = 1.0,
                     lang: str | None = None) -> str:
    """babel.dates.format_timedelta, cached by what decides its words: the unit Babel picks and the rounded
    count of it (so "23 hours 59 minutes" and "24 hours" share an entry only if Babel words them alike)."""
    seconds = delta.total_seconds()
    lang = lang or current_lang_code()
    key: tuple = (lang, seconds < 0, add_direction, threshold)
    for _unit, per in _UNITS:
        value = abs(seconds) / per
        if value >= threshold:
            key += (per, max(1, round(value)))
            break
    else:  # under a second: not worth a cache entry
        return babel_format_timedelta(delta, threshold=threshold, add_direction=add_direction, locale=lang)
    words = _WORDS.get(key)
    if words is None:
        words = babel_format_timedelta(delta, threshold=threshold, add_direction=add_direction, locale=lang)
        if len(_WORDS) < 20_000:
            _WORDS[key] = words
    return words


def when_text(value) -> str:
    """An RFC 3339 time from a packet body, shown like ``when``; anything else as it is."""
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value or "")
    return when(parsed) if parsed.tzinfo is not None else str(value)


def label(code, kind: str) -> str:
    """The words for a code of the body (sex, nationality, ...), in the page's language."""
    table = {"sex": forms.SEXES, "nationality": forms.NATIONALITIES, "exploitation": forms.EXPLOITATION,
             "id": forms.ID_DOCS, "risk": forms.RISKS, "status": forms.STATUSES}.get(kind, [])
    return str(dict(table).get(code, code if code is not None else ""))


def ago(value: dt.datetime | None, now: dt.datetime | None = None, lang: str | None = None) -> str:
    """"12 minutes ago" / "in 12 minutes" against the hub's clock."""
    if value is None:
        return ""
    delta = value - (now or _now())
    if abs(delta.total_seconds()) < 60:
        return gettext("just now")
    return format_timedelta(delta, add_direction=True, threshold=1.0, lang=lang)


def due(deadline: dt.datetime | None, now: dt.datetime | None = None, lang: str | None = None) -> str:
    """Beside a clock: "due in 12 minutes", or "2 hours late"."""
    if deadline is None:
        return ""
    delta = deadline - (now or _now())
    if delta.total_seconds() >= 0:
        return gettext("due %(time)s", time=format_timedelta(delta, add_direction=True, threshold=1.0, lang=lang))
    return gettext("%(time)s late", time=format_timedelta(-delta, threshold=1.0, lang=lang))


# Words the pages show for the protocol's codes (states, needs, outcomes, roles, kinds).
STATE_NAMES = {
    "sent": lazy_gettext("sent"), "acknowledged": lazy_gettext("acknowledged"), "accepted": lazy_gettext("accepted"),
    "declined": lazy_gettext("declined"), "in_care": lazy_gettext("in care"), "closed": lazy_gettext("closed"),
    "withdrawn": lazy_gettext("withdrawn"), "failed": lazy_gettext("failed"),
}
NEED_NAMES = {
    "shelter": lazy_gettext("shelter"), "medical": lazy_gettext("medical care"),
    "psychosocial": lazy_gettext("psychosocial support"), "legal": lazy_gettext("legal aid"),
    "repatriation": lazy_gettext("repatriation"), "family_tracing": lazy_gettext("family tracing"),
    "interpreter": lazy_gettext("interpreter"),
}
OUTCOME_NAMES = {
    "reintegrated": lazy_gettext("reintegrated"), "repatriated": lazy_gettext("repatriated"),
    "transferred": lazy_gettext("transferred"), "left_care": lazy_gettext("left care"), "other": lazy_gettext("other"),
}
ROLE_NAMES = {
    "officer": lazy_gettext("officer"), "caseworker": lazy_gettext("caseworker"),
    "agency_admin": lazy_gettext("agency admin"), "coordinator": lazy_gettext("coordinator"),
    "hub_admin": lazy_gettext("hub admin"),
}
CLOCK_NAMES = {"ack": lazy_gettext("to acknowledge"), "decide": lazy_gettext("to decide"),
               "arrive": lazy_gettext("to arrive")}
URGENCY_NAMES = {"urgent": lazy_gettext("urgent"), "normal": lazy_gettext("normal")}


def register_names(app: Flask) -> None:
    app.jinja_env.globals.update(STATE_NAMES=STATE_NAMES, NEED_NAMES=NEED_NAMES, OUTCOME_NAMES=OUTCOME_NAMES,
                                 ROLE_NAMES=ROLE_NAMES, CLOCK_NAMES=CLOCK_NAMES, URGENCY_NAMES=URGENCY_NAMES)


def current_lang_code() -> str:
    locale = get_locale()
    return str(locale.language) if locale is not None else DEFAULT_LANG
