"""Reading replies sent by SMS: ``ACK R-7F3K``, ``DECLINE R-7F3K <reason>``, ``BEDS 3``, ``HELP``.

Pure parsing, no lookups: whether the code exists and belongs to the sender is
the webhook's business. Keywords are case-insensitive, in English or Khmer.
STOP, CANCEL, END, QUIT, UNSUBSCRIBE and the other carrier opt-out and opt-in
words are never commands: carriers and Twilio act on them themselves.
"""
from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Literal, Protocol

CODE_ALPHABET = "23456789CDFGHJKMNPQRTVWXY"
CODE_LENGTH = 4
CODE_PREFIX = "R-"
MAX_BEDS = 9999

Kind = Literal["ack", "accept", "decline", "beds", "help", "unknown"]

# Why a text is "unknown": lets the webhook pick the neutral answer or a usage hint.
PROBLEMS = (
    "empty",  # nothing but blanks
    "reserved_keyword",  # STOP and friends: the carrier's, not ours; do not answer
    "unknown_keyword",  # not one of our commands
    "code_required",  # ACK/ACCEPT/DECLINE without a reference code
    "bad_code",  # something where the code goes that cannot be a code
    "reason_required",  # DECLINE without a reason
    "bad_beds",  # BEDS without a whole number from 0 to 9999
)

# Twilio's default opt-out and opt-in keywords (Advanced Opt-Out), plus PROTOCOL.md's list.
RESERVED_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "START", "UNSTOP", "YES"}
)

ENGLISH_KEYWORDS: dict[str, Kind] = {
    "ACK": "ack",
    "ACKNOWLEDGE": "ack",
    "ACCEPT": "accept",
    "DECLINE": "decline",
    "BEDS": "beds",
    "BED": "beds",
    "HELP": "help",
}

# Khmer: "received" / "confirm receipt" for ACK, "agree" / "take in" for ACCEPT,
# "refuse" / "not take" for DECLINE, "bed", "help".
KHMER_KEYWORDS: dict[str, Kind] = {
    "បានទទួល": "ack",
    "ទទួលដឹង": "ack",
    "បញ្ជាក់ទទួល": "ack",
    "យល់ព្រម": "accept",
    "ទទួលយក": "accept",
    "បដិសេធ": "decline",
    "មិនទទួល": "decline",
    "គ្រែ": "beds",
    "ជំនួយ": "help",
}
# Longest first; a space may fall anywhere inside (phones put zero-width spaces between Khmer words).
_KHMER_PATTERNS = [
    (re.compile(r"\s?".join(map(re.escape, word))), word)
    for word in sorted(KHMER_KEYWORDS, key=len, reverse=True)
]

_KHMER_DIGITS = str.maketrans("០១២៣៤៥៦៧៨៩", "0123456789")
# Zero-width spaces separate words; joiners and soft hyphens are dropped.
_INVISIBLE = {0x200B: " ", 0x2060: " ", 0x200C: None, 0x200D: None, 0xFEFF: None, 0x00AD: None}
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212"
_SEPARATORS = " \t:;,.។៕៖"
_ENGLISH_KEYWORD = re.compile(r"([A-Za-z]+)(?![A-Za-z])")
_CODE = re.compile(
    rf"(?:R\s*[{_DASHES}]?\s*)?([0-9០-៩A-Z]{{{CODE_LENGTH}}})(?![0-9០-៩A-Z])", re.IGNORECASE
)
_BEDS = re.compile(r"([0-9]{1,4})")


@dataclass(frozen=True)
class Command:
    """One parsed reply. ``kind`` is "unknown" for anything not usable as is, ``problem`` says why.

    ``reason`` (DECLINE) is free text typed by a person: it may hold personal
    data, so it is stored where the decline is, and never logged.
    """

    kind: Kind
    lang: Literal["en", "km"] = "en"
    code: str | None = None
    reason: str | None = None
    beds: int | None = None
    problem: str | None = None


class _Chooser(Protocol):
    def choice(self, seq: str) -> str: ...


def new_reference_code(rng: _Chooser = secrets) -> str:  # type: ignore[assignment]
    """A fresh code such as ``R-7F3K``. Uniqueness among open referrals is the caller's to check."""
    return CODE_PREFIX + "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str | None:
    """``text`` as ``R-XXXX`` if it is a reference code, else None.

    Takes ``r-7f3k``, ``R7F3K``, ``R - 7F3K``, ``7F3K``, Khmer digits and typographic dashes.
    """
    if not isinstance(text, str):
        return None
    match = _CODE.fullmatch(_clean(text))
    return _code_from(match.group(1)) if match else None


def _code_from(chars: str) -> str | None:
    chars = chars.translate(_KHMER_DIGITS).upper()
    if all(c in CODE_ALPHABET for c in chars):
        return CODE_PREFIX + chars
    return None


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    return " ".join(text.split())


def _is_khmer(char: str) -> bool:
    return "\u1780" <= char <= "\u17ff" or "\u19e0" <= char <= "\u19ff"


def _is_khmer_letter(char: str) -> bool:
    # Consonants, vowels and signs; Khmer digits and punctuation may follow a keyword.
    return "\u1780" <= char <= "\u17d3" or char == "\u17dd"


def _keyword(text: str) -> tuple[str | None, Kind | None, Literal["en", "km"], str]:
    """(keyword, kind, lang, rest of the text)."""
    for pattern, word in _KHMER_PATTERNS:
        match = pattern.match(text)
        if match and (match.end() == len(text) or not _is_khmer_letter(text[match.end()])):
            return word, KHMER_KEYWORDS[word], "km", text[match.end():]
    match = _ENGLISH_KEYWORD.match(text)
    if match:
        word = match.group(1).upper()
        return word, ENGLISH_KEYWORDS.get(word), "en", text[match.end():]
    return None, None, ("km" if any(_is_khmer(c) for c in text) else "en"), text


def parse_command(text: str) -> Command:
    """Read one inbound SMS. Never raises: whatever cannot be used is kind "unknown"."""
    text = _clean(text or "")
    if not text:
        return Command("unknown", problem="empty")
    word, kind, lang, rest = _keyword(text)
    rest = rest.lstrip(_SEPARATORS)
    if kind is None:
        problem = "reserved_keyword" if word in RESERVED_KEYWORDS else "unknown_keyword"
        return Command("unknown", lang=lang, problem=problem)
    if kind == "help":
        return Command("help", lang=lang)
    if kind == "beds":
        match = _BEDS.fullmatch(rest.translate(_KHMER_DIGITS).rstrip(_SEPARATORS))
        if not match or int(match.group(1)) > MAX_BEDS:
            return Command("unknown", lang=lang, problem="bad_beds")
        return Command("beds", lang=lang, beds=int(match.group(1)))

    if not rest:
        return Command("unknown", lang=lang, problem="code_required")
    match = _CODE.match(rest)
    code = _code_from(match.group(1)) if match else None
    if code is None:
        return Command("unknown", lang=lang, problem="bad_code")
    if kind == "decline":
        reason = rest[match.end():].lstrip(_SEPARATORS + _DASHES).strip()
        if not reason:
            return Command("unknown", lang=lang, code=code, problem="reason_required")
        return Command("decline", lang=lang, code=code, reason=reason)
    return Command(kind, lang=lang, code=code)
