"""SMS templates: every one renders in English and Khmer within two segments."""
from __future__ import annotations

import itertools
from pathlib import Path

import jinja2
import jinja2.meta
import pytest

from hub.errors import ConfigError
from hub.notify.sms import (
    CHOICES,
    LANGS,
    PLACEHOLDERS,
    TEMPLATE_NAMES,
    MessageTooLong,
    fits_two_segments,
    gsm7_units,
    render_sms,
    segments,
    sms_environment,
    ucs2_units,
)

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "sms"

# The longest values PROTOCOL.md allows: a code is always 6 characters, agency short
# names are up to 16, public_base_url up to 40, a one-tap token is 43 characters.
LONGEST = {
    "code": "R-7F3K",
    "sender": "pp-shelter-north",
    "by": "kh-legal-aid-org",
    "link": "https://" + "h" * 32 + "/a/" + "T" * 43,
    "step": 99,
}
assert len(LONGEST["sender"]) == len(LONGEST["by"]) == 16
assert len(LONGEST["link"]) == 40 + 3 + 43


def every_rendering():
    for name, lang in itertools.product(TEMPLATE_NAMES, LANGS):
        values = {key: LONGEST[key] for key in PLACEHOLDERS[name] if key in LONGEST}
        choices = CHOICES.get(name, {})
        for combo in itertools.product(*choices.values()):
            yield name, lang, {**values, **dict(zip(choices, combo))}


RENDERINGS = list(every_rendering())


def placeholders_in(path: Path) -> set[str]:
    env = sms_environment(path.parent)
    return jinja2.meta.find_undeclared_variables(env.parse(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name,lang", list(itertools.product(TEMPLATE_NAMES, LANGS)))
def test_template_file_exists(name, lang):
    assert (TEMPLATES / f"{name}.{lang}.txt").is_file()


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*.txt")), ids=lambda p: p.name)
def test_template_uses_only_allowed_placeholders(path):
    name = path.name.split(".")[0]
    assert name in PLACEHOLDERS, f"{path.name} is not a known SMS template"
    assert placeholders_in(path) <= PLACEHOLDERS[name]


@pytest.mark.parametrize("name,lang,values", RENDERINGS, ids=[f"{n}.{l}-{sorted(v.items())}" for n, l, v in RENDERINGS])
def test_longest_rendering_fits_two_segments(name, lang, values):
    text = render_sms(name, lang, TEMPLATES, **values)
    units = gsm7_units(text) if gsm7_units(text) is not None else ucs2_units(text)
    assert fits_two_segments(text), f"{name}.{lang}: {units} units, {segments(text)} segments"


@pytest.mark.parametrize("name,lang,values", RENDERINGS, ids=[f"{n}.{l}-{sorted(v.items())}" for n, l, v in RENDERINGS])
def test_rendering_is_one_clean_text(name, lang, values):
    text = render_sms(name, lang, TEMPLATES, **values)
    assert text and text == text.strip() and "\n" not in text and "  " not in text


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_english_templates_stay_in_gsm7(name):
    for _, lang, values in (r for r in RENDERINGS if r[0] == name and r[1] == "en"):
        assert gsm7_units(render_sms(name, lang, TEMPLATES, **values)) is not None


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_khmer_templates_are_written_in_khmer(name):
    text = (TEMPLATES / f"{name}.km.txt").read_text(encoding="utf-8")
    assert any("\u1780" <= char <= "\u17ff" for char in text)


def test_new_referral_shows_code_sender_and_link():
    text = render_sms("new_referral", "en", TEMPLATES, code="R-7F3K", sender="pp-ahtjp",
                      urgency="urgent", action="acknowledge", link="https://hub.example.org/a/tok")
    assert "R-7F3K" in text and "pp-ahtjp" in text and "URGENT" in text
    assert "https://hub.example.org/a/tok" in text


def test_urgency_is_a_word_in_khmer():
    urgent = render_sms("escalated", "km", TEMPLATES, code="R-7F3K", sender="pp-ahtjp",
                        urgency="urgent", step=2, link="https://h/a/t")
    assert "បន្ទាន់" in urgent and "urgent" not in urgent and "ជំហាន២" in urgent


def test_neutral_reply_takes_no_values_so_reveals_nothing():
    assert PLACEHOLDERS["reply_neutral"] == frozenset()
    assert render_sms("reply_neutral", "en", TEMPLATES) == render_sms("reply_neutral", "en", TEMPLATES, code="R-7F3K")


def test_unknown_language_falls_back_to_english():
    assert render_sms("reply_help", "fr", TEMPLATES) == render_sms("reply_help", "en", TEMPLATES)


def test_missing_value_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        render_sms("acknowledged", "en", TEMPLATES, code="R-7F3K")


def test_unknown_choice_is_an_error():
    with pytest.raises(ValueError):
        render_sms("escalated", "en", TEMPLATES, code="R-7F3K", sender="pp-ahtjp", urgency="on_fire", step=1,
                   link="https://h/a/t")


def test_missing_template_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        render_sms("reply_help", "en", tmp_path)


def test_missing_khmer_template_falls_back_to_english(tmp_path):
    (tmp_path / "reply_help.en.txt").write_text("Reply HELP.\n", encoding="utf-8")
    assert render_sms("reply_help", "km", tmp_path) == "Reply HELP."


def test_text_over_two_segments_is_refused(tmp_path):
    (tmp_path / "reply_help.km.txt").write_text("ក" * 135 + "\n", encoding="utf-8")
    with pytest.raises(MessageTooLong) as caught:
        render_sms("reply_help", "km", tmp_path)
    assert caught.value.code == "sms_too_long"
