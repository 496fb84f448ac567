"""SMS texts: segment accounting and template rendering.

A text must fit in two segments (PROTOCOL.md section 5): 306 GSM-7 units, or,
as soon as one character is outside GSM-7 (any Khmer), 134 UTF-16 units.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import jinja2

from hub.errors import ConfigError, HubError

# GSM 03.38 default alphabet (the escape code 0x1B left out) and its extension table.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153  # units in one segment, and in each part of a longer text
UCS2_SINGLE, UCS2_PART = 70, 67
TWO_SEGMENTS_GSM7 = 2 * GSM7_PART  # 306
TWO_SEGMENTS_UCS2 = 2 * UCS2_PART  # 134

DEFAULT_LANG = "en"
from hub.vocabulary import LANGUAGES as LANGS  # noqa: E402

# Values the templates turn into words, per template; anything else is a caller's mistake.
URGENCIES = frozenset({"urgent", "normal"})
CHOICES: Mapping[str, Mapping[str, frozenset[str]]] = {
    "new_referral": {"urgency": URGENCIES, "action": frozenset({"acknowledge", "decide", "confirm_arrival"})},
    "escalated": {"urgency": URGENCIES},
    "reply_ok": {"action": frozenset({"acknowledge", "accept", "decline", "beds"})},
    "reply_already": {"state": frozenset({"acknowledged", "accepted", "declined", "in_care", "closed", "withdrawn",
                                          "failed"})},
}

# The values each template may use; a test holds the files to this list.
PLACEHOLDERS: Mapping[str, frozenset[str]] = {
    "new_referral": frozenset({"code", "sender", "urgency", "action", "link"}),
    "acknowledged": frozenset({"code", "by"}),
    "accepted": frozenset({"code", "by"}),
    "declined": frozenset({"code", "by"}),
    "withdrawn": frozenset({"code", "by"}),
    "taken": frozenset({"code", "by"}),
    "failed": frozenset({"code", "by"}),
    "escalated": frozenset({"code", "sender", "urgency", "step", "link"}),
    "reply_help": frozenset(),
    "reply_ok": frozenset({"code", "action"}),
    "reply_already": frozenset({"code", "state", "by"}),
    "reply_neutral": frozenset(),
    "reply_error": frozenset(),
}
TEMPLATE_NAMES = tuple(PLACEHOLDERS)


class MessageTooLong(HubError):
    """A rendered SMS would take more than two segments."""

    status = 500
    code = "sms_too_long"


def gsm7_units(text: str) -> int | None:
    """Septets ``text`` takes in GSM-7 (extension characters take 2), or None if it is not GSM-7."""
    units = 0
    for char in text:
        if char in GSM7_BASIC:
            units += 1
        elif char in GSM7_EXTENSION:
            units += 2
        else:
            return None
    return units


def ucs2_units(text: str) -> int:
    """UTF-16 code units (a character outside the BMP takes two)."""
    return len(text.encode("utf-16-le")) // 2


def _char_units(text: str, gsm: bool) -> list[int]:
    if gsm:
        return [2 if char in GSM7_EXTENSION else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def segments(text: str) -> int:
    """How many SMS segments ``text`` takes (an empty text still takes one).

    Parts of a long text are packed as phones do: an escaped GSM-7 character
    or a surrogate pair is never split across two parts.
    """
    gsm = gsm7_units(text)
    single, part = (GSM7_SINGLE, GSM7_PART) if gsm is not None else (UCS2_SINGLE, UCS2_PART)
    total = gsm if gsm is not None else ucs2_units(text)
    if total <= single:
        return 1
    count, used = 1, 0
    for units in _char_units(text, gsm is not None):
        if used + units > part:
            count, used = count + 1, 0
        used += units
    return count


def fits_two_segments(text: str) -> bool:
    """True if ``text`` goes out in at most two segments (306 GSM-7 or 134 UCS-2 units)."""
    gsm = gsm7_units(text)
    if gsm is not None:
        return gsm <= TWO_SEGMENTS_GSM7 and segments(text) <= 2
    return ucs2_units(text) <= TWO_SEGMENTS_UCS2 and segments(text) <= 2


_KHMER_DIGITS = str.maketrans("0123456789", "០១២៣៤៥៦៧៨៩")


def khmer_digits(value: object) -> str:
    """``value`` as text with Khmer digits (3 -> ៣)."""
    return str(value).translate(_KHMER_DIGITS)


def _environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # nosec B701: SMS texts are plain text, never HTML; escaping would show &amp; to the reader
        keep_trailing_newline=False,
    )
    env.filters["khmer_digits"] = khmer_digits
    return env


_environments: dict[Path, jinja2.Environment] = {}


@functools.lru_cache(maxsize=64)
def sms_environment(templates_dir: Path) -> jinja2.Environment:
    """The Jinja environment for one SMS template folder (cached; templates reload when changed).

    Memoised per folder as given, so rendering a text does not resolve the path again.
    """
    key = Path(templates_dir).resolve()
    env = _environments.get(key)
    if env is None:
        env = _environments[key] = _environment(key)
    return env


def render_sms(name: str, lang: str, templates_dir: Path, **values: object) -> str:
    """Render ``<templates_dir>/<name>.<lang>.txt`` (e.g. ``templates/sms``) with ``values``.

    An unknown language, or a template missing in the language, falls back to English. Every placeholder must be given
    (StrictUndefined). ``urgency``, ``action`` and ``reason_code`` must be one
    of :data:`CHOICES`. Raises :class:`MessageTooLong` if the text would take
    more than two segments, and ``ConfigError`` if the template is missing.
    """
    for key, allowed in CHOICES.get(name, {}).items():
        if key in values and values[key] not in allowed:
            raise ValueError(f"SMS {name!r}: {key}={values[key]!r} is not one of {sorted(allowed)}")
    env = sms_environment(Path(templates_dir))
    lang = lang if lang in LANGS else DEFAULT_LANG
    candidates = [f"{name}.{lang}.txt"] + ([f"{name}.{DEFAULT_LANG}.txt"] if lang != DEFAULT_LANG else [])
    try:
        template = env.select_template(candidates)
    except jinja2.TemplatesNotFound:
        raise ConfigError(f"SMS template {candidates[0]} is missing from {templates_dir}") from None
    text = template.render(**values).rstrip("\n")
    if not fits_two_segments(text):
        raise MessageTooLong(
            f"SMS {name!r} ({lang}) takes {segments(text)} segments; shorten the template or the values "
            f"(limit {TWO_SEGMENTS_GSM7} GSM-7 or {TWO_SEGMENTS_UCS2} UCS-2 units)"
        )
    return text
