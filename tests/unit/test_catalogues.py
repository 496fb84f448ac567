"""Every string the pages show has a Khmer translation, and the committed .mo files are the .po files compiled.

A string added to a page (or to hub/web/*.py) without a Khmer translation fails here: run
`make messages`, translate the new entries in hub/translations/km/LC_MESSAGES/messages.po, and run
`make messages` again to compile.
"""
from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "hub" / "translations"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}


def _source_strings() -> set[str]:
    with open(ROOT / "babel.cfg", encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=KEYWORDS):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _catalogue(lang: str):
    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh)


def test_every_page_string_has_a_khmer_translation():
    strings = _source_strings()
    assert len(strings) > 100  # the extraction itself works
    km = _catalogue("km")
    missing = sorted(s for s in strings if not (km.get(s) and km.get(s).string and not km.get(s).fuzzy))
    assert missing == [], "no Khmer translation (run `make messages` and translate): " + "; ".join(missing[:20])


def test_translations_keep_their_placeholders():
    km = _catalogue("km")
    for message in km:
        if message.id and message.string:
            assert set(re.findall(r"%\(\w+\)s", message.id)) == set(re.findall(r"%\(\w+\)s", message.string)), \
                message.id


def test_compiled_catalogues_match_the_po_files():
    for lang in ("km", "en"):
        po = {m.id: m.string for m in _catalogue(lang) if m.id and m.string and not m.fuzzy}
        with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo", "rb") as fh:
            mo = {m.id: m.string for m in read_mo(fh) if m.id}
        assert mo == po, f"{lang}: messages.mo is stale; run `make messages`"
