"""Counting GSM-7 and UCS-2 units and SMS segments."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hub.notify.sms import fits_two_segments, gsm7_units, segments, ucs2_units


def test_plain_ascii_counts_one_unit_per_character():
    assert gsm7_units("ACK R-7F3K") == 10


def test_extension_characters_count_two():
    assert gsm7_units("^{}\\[~]|€") == 18


def test_form_feed_counts_two():
    assert gsm7_units("a\fb") == 4


def test_accented_gsm_letters_count_one():
    assert gsm7_units("é£¥Ñ") == 4


def test_khmer_is_not_gsm7():
    assert gsm7_units("បន្ទាន់") is None


def test_backtick_is_not_gsm7():
    assert gsm7_units("`") is None


def test_ucs2_counts_utf16_units():
    assert ucs2_units("បន្ទាន់") == 7
    assert ucs2_units("😀") == 2


def test_gsm7_segment_boundaries():
    assert [segments("a" * n) for n in (0, 160, 161, 306, 307)] == [1, 1, 2, 2, 3]


def test_ucs2_segment_boundaries():
    assert [segments("ក" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]


def test_escaped_character_is_not_split_across_parts():
    text = "a" * 152 + "€" + "a" * 152  # 306 units, but the euro would straddle parts 1 and 2
    assert gsm7_units(text) == 306
    assert segments(text) == 3
    assert not fits_two_segments(text)


def test_two_segment_budget_gsm7():
    assert fits_two_segments("a" * 306) and not fits_two_segments("a" * 307)


def test_two_segment_budget_ucs2():
    assert fits_two_segments("ក" * 134) and not fits_two_segments("ក" * 135)


def test_one_khmer_character_switches_whole_text_to_ucs2():
    assert not fits_two_segments("a" * 134 + "ក")


@given(st.text(max_size=400))
def test_fitting_texts_stay_within_the_unit_budget(text):
    gsm = gsm7_units(text)
    if fits_two_segments(text):
        assert (gsm if gsm is not None else ucs2_units(text)) <= (306 if gsm is not None else 134)
        assert segments(text) <= 2


@given(st.text(max_size=400), st.text(max_size=50))
def test_longer_text_never_takes_fewer_segments_in_the_same_encoding(text, more):
    if (gsm7_units(text) is None) == (gsm7_units(text + more) is None):
        assert segments(text + more) >= segments(text)
