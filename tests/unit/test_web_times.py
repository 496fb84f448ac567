"""The pages' cached "in 12 minutes" words are Babel's own, in English and Khmer, for any delta."""
from __future__ import annotations

import datetime as dt

import pytest
from babel.dates import format_timedelta as babel_format_timedelta
from flask import Flask
from flask_babel import Babel
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.web import i18n


@pytest.mark.parametrize("lang", ["en", "km"])
@settings(max_examples=400, deadline=None)
@given(seconds=st.floats(min_value=-4e8, max_value=4e8, allow_nan=False), direction=st.booleans())
def test_cached_words_equal_babels(lang, seconds, direction):
    app = Flask("times")
    Babel(app, locale_selector=lambda: lang)
    delta = dt.timedelta(seconds=seconds)
    with app.test_request_context():
        assert i18n.format_timedelta(delta, add_direction=direction) == \
            babel_format_timedelta(delta, threshold=1.0, add_direction=direction, locale=lang)
