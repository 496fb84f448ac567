"""Fixtures for the local Twilio-compatible server (a pytest plugin).

Register it from tests/conftest.py with ``pytest_plugins = ["tests.conftest_twilio"]``.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.notify.gateways import TwilioGateway
from tests.fake_twilio import CallbackSink, FakeTwilio


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A running fake Twilio with a fresh account SID and auth token, stopped after the test."""
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def twilio_gateway(fake_twilio: FakeTwilio) -> TwilioGateway:
    """The real TwilioGateway (real SDK) pointed at ``fake_twilio``, sending from its number."""
    return TwilioGateway(
        fake_twilio.account_sid,
        fake_twilio.auth_tokens,
        from_number=fake_twilio.phone_number,
        api_base=fake_twilio.base_url,
    )


@pytest.fixture
def callback_sink() -> Iterator[CallbackSink]:
    """An HTTP server that records the webhooks (status callbacks) posted to it."""
    with CallbackSink() as sink:
        yield sink
