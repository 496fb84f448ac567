"""Gateway construction and the console gateway (no network)."""
from __future__ import annotations

import io

import pytest

from hub.errors import ConfigError, HubError
from hub.notify.gateways import (
    ApiBaseHttpClient,
    ConsoleGateway,
    GatewayError,
    SendResult,
    SmsGateway,
    TwilioGateway,
    make_gateway,
)

SID = "AC" + "0" * 32


def test_console_prints_each_message_and_keeps_it():
    out = io.StringIO()
    gateway = ConsoleGateway(stream=out)
    first = gateway.send(to="+85512345678", body="R-7F3K: new referral")
    second = gateway.send(to="+85512345679", body="second")
    assert (first, second) == (SendResult("CONSOLE-1", "sent"), SendResult("CONSOLE-2", "sent"))
    assert gateway.sent == [("+85512345678", "R-7F3K: new referral", "CONSOLE-1"),
                            ("+85512345679", "second", "CONSOLE-2")]
    printed = out.getvalue()
    assert "+85512345678" in printed and "R-7F3K: new referral" in printed


def test_console_writes_to_stdout_by_default(capsys):
    ConsoleGateway().send(to="+85512345678", body="hello")
    assert "hello" in capsys.readouterr().out


def test_both_gateways_satisfy_the_protocol():
    twilio = TwilioGateway(SID, "token", from_number="+15005550006")
    assert isinstance(ConsoleGateway(), SmsGateway) and isinstance(twilio, SmsGateway)
    assert (ConsoleGateway.name, twilio.name) == ("console", "twilio")


def test_gateway_error_is_a_hub_error_with_503():
    error = GatewayError("down", retryable=True)
    assert isinstance(error, HubError)
    assert (error.status, error.code, error.retryable) == (503, "sms_gateway_error", True)


def test_make_gateway_console():
    assert isinstance(make_gateway({"gateway": "console"}), ConsoleGateway)


def test_make_gateway_unknown_is_a_config_error():
    with pytest.raises(ConfigError):
        make_gateway({"gateway": "carrier-pigeon"})


def test_twilio_needs_exactly_one_sender():
    with pytest.raises(ConfigError):
        TwilioGateway(SID, ["t"])
    with pytest.raises(ConfigError):
        TwilioGateway(SID, ["t"], from_number="+15005550006", messaging_service_sid="MG" + "0" * 32)


def test_twilio_needs_a_token():
    with pytest.raises(ConfigError):
        TwilioGateway(SID, [], from_number="+15005550006")


def test_twilio_needs_an_account_sid():
    with pytest.raises(ConfigError):
        TwilioGateway("", ["t"], from_number="+15005550006")


def test_twilio_rejects_a_relative_api_base():
    with pytest.raises(ConfigError):
        TwilioGateway(SID, ["t"], from_number="+15005550006", api_base="localhost:8080")


def test_api_base_client_rewrites_host_and_keeps_path_and_query():
    client = ApiBaseHttpClient("http://127.0.0.1:9999/prefix/")
    assert client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?PageSize=2&Page=1") == (
        "http://127.0.0.1:9999/prefix/2010-04-01/Accounts/AC1/Messages.json?PageSize=2&Page=1")
