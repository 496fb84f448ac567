"""TwilioGateway with the real twilio SDK against the local fake Twilio (no mocks)."""
from __future__ import annotations

import logging

import pytest
from twilio.rest import Client

from hub.notify.gateways import ApiBaseHttpClient, GatewayError, SendResult, TwilioGateway, make_gateway
from hub.notify.signatures import validate_twilio_request
from tests.fake_twilio import FakeTwilio

TO = "+85512345678"
PUBLIC = "https://hub.example.org"


def gateway_for(server: FakeTwilio, **overrides) -> TwilioGateway:
    options = {"from_number": server.phone_number, "api_base": server.base_url}
    options.update(overrides)
    tokens = options.pop("auth_tokens", server.auth_tokens)
    return TwilioGateway(server.account_sid, tokens, **options)


def test_message_arrives_with_exact_fields(fake_twilio, twilio_gateway):
    callback = f"{PUBLIC}/webhooks/twilio/status/n0nce?x=1"
    result = twilio_gateway.send(to=TO, body="R-7F3K: new referral", status_callback=callback)
    [message] = fake_twilio.messages
    assert (message.to, message.from_, message.body, message.status_callback) == (
        TO, fake_twilio.phone_number, "R-7F3K: new referral", callback)
    assert result == SendResult(provider_id=message.sid, status="queued")


def test_khmer_body_arrives_unchanged(fake_twilio, twilio_gateway):
    body = "R-7F3K បន្ទាន់ពី pp-shelter-a បញ្ជាក់ទទួល https://hub.example.org/a/x"
    twilio_gateway.send(to=TO, body=body)
    assert fake_twilio.messages[0].body == body


def test_message_without_callback_sends_none(fake_twilio, twilio_gateway):
    twilio_gateway.send(to=TO, body="hello")
    assert fake_twilio.messages[0].status_callback is None


def test_messaging_service_sends_service_sid_and_no_from(fake_twilio):
    service = "MG" + "0" * 32
    gateway = gateway_for(fake_twilio, from_number=None, messaging_service_sid=service)
    result = gateway.send(to=TO, body="hello")
    [message] = fake_twilio.messages
    assert (message.messaging_service_sid, message.from_) == (service, None)
    assert result.status == "accepted"


def test_second_auth_token_is_used_when_first_is_rejected(fake_twilio):
    gateway = gateway_for(fake_twilio, auth_tokens=["stale-token-from-before-rotation", fake_twilio.auth_tokens[0]])
    gateway.send(to=TO, body="one")
    seen = fake_twilio.request_count
    gateway.send(to=TO, body="two")
    assert len(fake_twilio.messages) == 2
    assert fake_twilio.request_count == seen + 1  # the working token is kept


def test_server_accepts_secondary_token_during_rotation():
    with FakeTwilio(auth_tokens=["primary-token", "secondary-token"]) as server:
        gateway_for(server, auth_tokens=["secondary-token"]).send(to=TO, body="hello")
        assert len(server.messages) == 1


def test_wrong_token_is_not_retryable(fake_twilio):
    gateway = gateway_for(fake_twilio, auth_tokens=["wrong"])
    with pytest.raises(GatewayError) as caught:
        gateway.send(to=TO, body="hello")
    assert (caught.value.retryable, caught.value.http_status, caught.value.provider_code) == (False, 401, 20003)


def test_server_error_is_retryable(fake_twilio, twilio_gateway):
    fake_twilio.fail_next(1, status=500)
    with pytest.raises(GatewayError) as caught:
        twilio_gateway.send(to=TO, body="hello")
    assert caught.value.retryable and caught.value.http_status == 500
    assert fake_twilio.messages == []


def test_rate_limit_is_retryable(fake_twilio, twilio_gateway):
    fake_twilio.fail_next(1, status=429)
    with pytest.raises(GatewayError) as caught:
        twilio_gateway.send(to=TO, body="hello")
    assert caught.value.retryable and caught.value.provider_code == 20429


def test_outage_window_is_retryable(fake_twilio, twilio_gateway):
    fake_twilio.fail_for(3600, status=503)
    with pytest.raises(GatewayError) as caught:
        twilio_gateway.send(to=TO, body="hello")
    assert caught.value.retryable and caught.value.http_status == 503


def test_invalid_to_is_not_retryable(fake_twilio, twilio_gateway):
    with pytest.raises(GatewayError) as caught:
        twilio_gateway.send(to="012345678", body="hello")
    assert (caught.value.retryable, caught.value.provider_code, caught.value.http_status) == (False, 21211, 400)


def test_refused_number_is_not_retryable(fake_twilio, twilio_gateway):
    fake_twilio.fail_numbers({TO}, code=21610)
    with pytest.raises(GatewayError) as caught:
        twilio_gateway.send(to=TO, body="hello")
    assert (caught.value.retryable, caught.value.provider_code) == (False, 21610)


def test_stopped_server_is_retryable(fake_twilio, twilio_gateway):
    twilio_gateway.send(to=TO, body="keeps a pooled connection open")
    fake_twilio.stop()
    with pytest.raises(GatewayError) as caught:
        twilio_gateway.send(to=TO, body="hello")
    assert caught.value.retryable and caught.value.http_status is None


def test_slow_answer_times_out_as_retryable(fake_twilio):
    gateway = gateway_for(fake_twilio, timeout=0.2)
    fake_twilio.delay_next(1, 2.0)
    with pytest.raises(GatewayError) as caught:
        gateway.send(to=TO, body="hello")
    assert caught.value.retryable


def test_sending_works_again_after_failures(fake_twilio, twilio_gateway):
    fake_twilio.fail_next(2, status=503)
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(twilio_gateway.send(to=TO, body="hello").status)
        except GatewayError as exc:
            outcomes.append(exc.retryable)
    assert outcomes == [True, True, "queued"]
    assert len(fake_twilio.messages) == 1


def test_gateway_logs_no_body_and_no_number(fake_twilio, twilio_gateway, caplog):
    caplog.set_level(logging.DEBUG)
    twilio_gateway.send(to=TO, body="secret-body-text")
    fake_twilio.fail_next(1)
    with pytest.raises(GatewayError) as caught:
        twilio_gateway.send(to=TO, body="secret-body-text")
    assert "secret-body-text" not in caplog.text and TO not in caplog.text
    assert TO not in caught.value.message
    assert fake_twilio.messages[0].sid in caplog.text


def test_status_callback_signature_validates(fake_twilio, twilio_gateway, callback_sink):
    url = f"{callback_sink.base_url}/webhooks/twilio/status/abc?attempt=1"
    sid = twilio_gateway.send(to=TO, body="hello", status_callback=url).provider_id
    assert fake_twilio.deliver(sid, "delivered") == 204
    [hook] = callback_sink.received
    assert hook.path == "/webhooks/twilio/status/abc?attempt=1"
    assert hook.form["MessageSid"] == sid and hook.form["MessageStatus"] == "delivered"
    assert validate_twilio_request(url, hook.form, hook.headers["X-Twilio-Signature"], fake_twilio.auth_tokens)


def test_forged_status_callback_does_not_validate(fake_twilio, twilio_gateway, callback_sink):
    url = f"{callback_sink.base_url}/webhooks/twilio/status/abc"
    sid = twilio_gateway.send(to=TO, body="hello", status_callback=url).provider_id
    fake_twilio.deliver(sid, "delivered")
    [hook] = callback_sink.received
    forged = dict(hook.form, MessageStatus="failed")
    assert not validate_twilio_request(url, forged, hook.headers["X-Twilio-Signature"], fake_twilio.auth_tokens)


def test_failed_delivery_carries_error_code(fake_twilio, twilio_gateway, callback_sink):
    url = f"{callback_sink.base_url}/webhooks/twilio/status/abc"
    sid = twilio_gateway.send(to=TO, body="hello", status_callback=url).provider_id
    fake_twilio.deliver(sid, "undelivered", error_code=30005)
    [hook] = callback_sink.received
    assert (hook.form["MessageStatus"], hook.form["ErrorCode"]) == ("undelivered", "30005")
    assert fake_twilio.message(sid).status == "undelivered"


def test_auto_status_reports_sent_then_delivered(callback_sink):
    with FakeTwilio(auto_status=("sent", "delivered")) as server:
        url = f"{callback_sink.base_url}/webhooks/twilio/status/n1"
        sid = gateway_for(server).send(to=TO, body="hello", status_callback=url).provider_id
        server.join_callbacks()
        assert [h.form["MessageStatus"] for h in callback_sink.received] == ["sent", "delivered"]
        assert server.message(sid).callbacks == ["sent", "delivered"]


def test_auto_status_reports_undeliverable_numbers(callback_sink):
    with FakeTwilio(auto_status=("sent", "delivered")) as server:
        server.undeliverable({TO}, error_code=30003)
        url = f"{callback_sink.base_url}/cb"
        gateway_for(server).send(to=TO, body="hello", status_callback=url)
        server.join_callbacks()
        last = callback_sink.received[-1].form
        assert (last["MessageStatus"], last["ErrorCode"]) == ("undelivered", "30003")


def test_callbacks_routed_to_internal_host_are_signed_for_public_url(callback_sink):
    public_url = f"{PUBLIC}/webhooks/twilio/status/n2"
    with FakeTwilio(callback_route=callback_sink.base_url) as server:
        sid = gateway_for(server).send(to=TO, body="hello", status_callback=public_url).provider_id
        server.deliver(sid, "delivered")
        [hook] = callback_sink.received
        signature = hook.headers["X-Twilio-Signature"]
        assert hook.path == "/webhooks/twilio/status/n2"
        assert validate_twilio_request(public_url, hook.form, signature, server.auth_tokens)
        assert not validate_twilio_request(callback_sink.base_url + hook.path, hook.form, signature, server.auth_tokens)


def test_signed_inbound_sms_validates(fake_twilio):
    url = f"{PUBLIC}/webhooks/twilio/sms"
    request = fake_twilio.signed_inbound(url, from_=TO, body="ACK R-7F3K")
    assert request.params["Body"] == "ACK R-7F3K" and request.params["From"] == TO
    assert validate_twilio_request(url, request.params, request.signature, fake_twilio.auth_tokens)


def test_raw_sdk_fetches_and_lists_messages(fake_twilio, twilio_gateway):
    sids = [twilio_gateway.send(to=TO, body=f"message {i}").provider_id for i in range(5)]
    client = Client(fake_twilio.account_sid, fake_twilio.auth_tokens[0], http_client=ApiBaseHttpClient(fake_twilio.base_url))
    fetched = client.messages(sids[2]).fetch()
    listed = client.messages.list(page_size=2)
    assert (fetched.body, fetched.to, fetched.date_created is not None) == ("message 2", TO, True)
    assert [m.sid for m in listed] == list(reversed(sids))


def test_make_gateway_builds_a_working_twilio_gateway(fake_twilio):
    gateway = make_gateway({
        "gateway": "twilio",
        "account_sid": fake_twilio.account_sid,
        "auth_tokens": tuple(fake_twilio.auth_tokens),
        "from_number": fake_twilio.phone_number,
        "messaging_service_sid": None,
        "api_base": fake_twilio.base_url,
        "status_callbacks": True,
    })
    gateway.send(to=TO, body="hello")
    assert gateway.name == "twilio" and len(fake_twilio.messages) == 1


def test_the_send_timeout_setting_bounds_a_send(fake_twilio):
    import datetime as dt

    gateway = make_gateway({"gateway": "twilio", "account_sid": fake_twilio.account_sid,
                            "auth_tokens": tuple(fake_twilio.auth_tokens), "from_number": fake_twilio.phone_number,
                            "api_base": fake_twilio.base_url, "send_timeout": dt.timedelta(seconds=1)})
    fake_twilio.delay_next(1, 3.0)
    with pytest.raises(GatewayError) as caught:
        gateway.send(to=TO, body="hello")
    assert caught.value.retryable and "within 1 s" in caught.value.message

