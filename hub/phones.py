"""Phone numbers, normalised to E.164 where they are entered.

Fictional numbers for demo data and tests: numbers nobody owns, so a demo that
sends by mistake reaches no one.

- UK: Ofcom's drama range +44 7700 900000 to +44 7700 900999. ``phonenumbers``
  reports these as *possible* but not *valid* (they are reserved, never
  allocated), so :func:`normalize_phone` accepts exactly this range as an
  exception, and nothing else that fails the validity check.
- US/Canada: +1 NPA 555 0100 to +1 NPA 555 0199 with a real area code (NPA),
  e.g. +1 202 555 0142, reserved by NANPA for fiction. ``phonenumbers`` accepts
  these as valid already.

Cambodian numbers (+855) are all real; the demo must not use them.
"""
from __future__ import annotations

import phonenumbers

from hub.errors import Invalid

EXAMPLE = "+85512345678"

# Ofcom's reserved drama range, mobile: +44 7700 900000 to 900999.
_UK_DRAMA_PREFIX = "+447700900"


class InvalidPhone(Invalid):
    code = "invalid_phone"


def _invalid() -> InvalidPhone:
    return InvalidPhone(
        "This is not a phone number that can receive SMS; enter it with its country code, "
        f"such as {EXAMPLE}, or as a Cambodian number such as 012 345 678"
    )


def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _acceptable(number: phonenumbers.PhoneNumber | None) -> str | None:
    if number is None:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if phonenumbers.is_valid_number(number):
        return e164
    in_drama_range = e164.startswith(_UK_DRAMA_PREFIX) and len(e164) == len(_UK_DRAMA_PREFIX) + 3
    if in_drama_range and phonenumbers.is_possible_number(number):
        return e164
    return None


def normalize_phone(text: str, default_region: str = "KH") -> str:
    """``text`` as E.164 (``+85512345678``); numbers without ``+`` are read as ``default_region``'s.

    Spaces, dashes and brackets are fine. ``00`` followed by a country code is
    read as ``+`` when the region's own dialling rules give no valid number
    (Cambodia's international prefixes are 001 and 004-009, so ``00855...``
    would otherwise be misread). Raises :class:`InvalidPhone` for anything that
    is not a valid number for its region (the UK drama range excepted, see the
    module docstring). The message does not repeat the number.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidPhone(f"A phone number is required, such as {EXAMPLE}")
    cleaned = text.strip()
    region = default_region.upper()
    e164 = _acceptable(_parse(cleaned, region))
    if e164 is None and cleaned.startswith("00"):
        e164 = _acceptable(_parse("+" + cleaned[2:], region))
    if e164 is None:
        raise _invalid()
    return e164
