"""Phone numbers are stored in E.164."""
from __future__ import annotations

import pytest

from hub.errors import Invalid
from hub.phones import InvalidPhone, normalize_phone


@pytest.mark.parametrize("text", ["+855 12 345 678", "+85512345678", "012 345 678", "012345678",
                                  "(012) 345-678", "00855 12 345 678", "001 855 12 345 678"])
def test_cambodian_mobile_numbers(text):
    assert normalize_phone(text) == "+85512345678"


def test_cambodian_nine_digit_mobile():
    assert normalize_phone("097 123 4567") == "+855971234567"


def test_other_region_by_default_region():
    assert normalize_phone("020 7946 0018", default_region="GB") == "+442079460018"


def test_uk_drama_range_is_accepted_for_demo_data():
    assert normalize_phone("+44 7700 900123") == "+447700900123"
    assert normalize_phone("+447700900999") == "+447700900999"


def test_outside_uk_drama_range_must_be_valid():
    with pytest.raises(InvalidPhone):
        normalize_phone("+447700901000")


def test_us_fictional_555_range_is_accepted():
    assert normalize_phone("+1 202 555 0142") == "+12025550142"


@pytest.mark.parametrize("text", ["", "   ", "abc", "12", "+855 1", "+855 23 123 456", "+999 123 456 789",
                                  "012 345 678 999 999"])
def test_invalid_numbers_are_refused_with_a_hint(text):
    with pytest.raises(InvalidPhone) as caught:
        normalize_phone(text)
    assert isinstance(caught.value, Invalid)
    assert caught.value.code == "invalid_phone" and caught.value.status == 422
    assert "+85512345678" in caught.value.message
