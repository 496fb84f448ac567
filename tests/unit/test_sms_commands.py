"""Reading SMS replies in English and Khmer."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.notify.commands import (
    CODE_ALPHABET,
    Command,
    new_reference_code,
    normalize_code,
    parse_command,
)


@pytest.mark.parametrize("text", ["ACK R-7F3K", "ack r-7f3k", "Ack R7F3K", "  ACK   R-7F3K  ", "ACK R 7F3K",
                                  "ACK: R-7F3K", "ACK R–7F3K", "ACK 7F3K", "ACK\u200bR-7F3K"])
def test_ack_in_english(text):
    assert parse_command(text) == Command("ack", lang="en", code="R-7F3K")


def test_accept_in_english():
    assert parse_command("accept R-7F3K") == Command("accept", lang="en", code="R-7F3K")


def test_decline_keeps_the_reason():
    assert parse_command("DECLINE R-7F3K no beds for girls") == Command(
        "decline", lang="en", code="R-7F3K", reason="no beds for girls")


def test_decline_without_reason_is_refused():
    command = parse_command("DECLINE R-7F3K")
    assert (command.kind, command.problem, command.code) == ("unknown", "reason_required", "R-7F3K")


def test_beds_sets_a_number():
    assert parse_command("BEDS 3") == Command("beds", lang="en", beds=3)


@pytest.mark.parametrize("text,beds", [("beds 0", 0), ("BEDS 9999", 9999), ("BEDS3", 3), ("Beds: 12", 12)])
def test_beds_range_and_spelling(text, beds):
    assert parse_command(text).beds == beds


@pytest.mark.parametrize("text", ["BEDS", "BEDS 10000", "BEDS -1", "BEDS three", "BEDS 2.5"])
def test_bad_bed_counts_are_refused(text):
    assert (parse_command(text).kind, parse_command(text).problem) == ("unknown", "bad_beds")


def test_help_in_english():
    assert parse_command("help") == Command("help", lang="en")


def test_ack_in_khmer():
    assert parse_command("បានទទួល R-7F3K") == Command("ack", lang="km", code="R-7F3K")


def test_khmer_keyword_may_touch_the_code():
    assert parse_command("បានទទួលR-7F3K") == Command("ack", lang="km", code="R-7F3K")


def test_accept_in_khmer_with_khmer_digits_in_the_code():
    assert parse_command("យល់ព្រម r-៧f៣k") == Command("accept", lang="km", code="R-7F3K")


def test_decline_in_khmer():
    assert parse_command("បដិសេធ R-7F3K គ្មានគ្រែទំនេរ") == Command(
        "decline", lang="km", code="R-7F3K", reason="គ្មានគ្រែទំនេរ")


@pytest.mark.parametrize("text", ["គ្រែ ៣", "គ្រែ៣", "គ្រែ 3"])
def test_beds_in_khmer_with_khmer_or_latin_digits(text):
    assert parse_command(text) == Command("beds", lang="km", beds=3)


def test_help_in_khmer():
    assert parse_command("ជំនួយ") == Command("help", lang="km")


@pytest.mark.parametrize("text", ["STOP", "stop", "Cancel", "END", "QUIT", "UNSUBSCRIBE", "STOPALL", "START"])
def test_carrier_keywords_are_never_commands(text):
    assert parse_command(text) == Command("unknown", lang="en", problem="reserved_keyword")


def test_stop_with_a_code_is_still_not_a_command():
    assert parse_command("STOP R-7F3K").kind == "unknown"


@pytest.mark.parametrize("text,problem", [
    ("", "empty"),
    ("   ", "empty"),
    ("hello", "unknown_keyword"),
    ("ACK", "code_required"),
    ("ACK R-0000", "bad_code"),  # 0 is not in the alphabet
    ("ACK R-7F3KX", "bad_code"),
    ("ACCEPT please", "bad_code"),
    ("1234", "unknown_keyword"),
])
def test_malformed_texts_are_unknown(text, problem):
    command = parse_command(text)
    assert (command.kind, command.problem) == ("unknown", problem)


def test_unknown_khmer_text_is_answered_in_khmer():
    assert parse_command("សួស្តី").lang == "km"


def test_unknown_english_text_is_answered_in_english():
    assert parse_command("hello there").lang == "en"


@given(st.text(max_size=200))
def test_parsing_never_raises(text):
    command = parse_command(text)
    assert command.kind in {"ack", "accept", "decline", "beds", "help", "unknown"}
    assert command.lang in {"en", "km"}
    assert (command.kind == "unknown") == (command.problem is not None)


@given(st.text(alphabet=CODE_ALPHABET, min_size=4, max_size=4))
def test_every_code_is_read_back_from_any_spelling(chars):
    code = "R-" + chars
    for spelling in (code, code.lower(), "R" + chars, f" r - {chars.lower()} "):
        assert normalize_code(spelling) == code
        assert parse_command(f"ACK {spelling}").code == code


def test_new_codes_use_the_alphabet():
    code = new_reference_code()
    assert code[:2] == "R-" and len(code) == 6 and set(code[2:]) <= set(CODE_ALPHABET)


def test_new_codes_come_from_the_given_random_source():
    assert new_reference_code(random.Random(7)) == new_reference_code(random.Random(7))


@pytest.mark.parametrize("text", ["", "R-", "R-7F3", "R-7F3KK", "R-OOOO", "X-7F3K", "R-7F3K!"])
def test_normalize_code_refuses_non_codes(text):
    assert normalize_code(text) is None


def test_khmer_keyword_split_by_a_zero_width_space():
    assert parse_command("បាន\u200bទទួល R-7F3K") == Command("ack", lang="km", code="R-7F3K")


def test_khmer_keyword_written_as_two_words():
    assert parse_command("បាន ទទួល R-7F3K") == Command("ack", lang="km", code="R-7F3K")
