"""X-Twilio-Signature checks, with signatures computed by the SDK's own validator."""
from __future__ import annotations

from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from hub.notify.signatures import validate_twilio_request

URL = "https://hub.example.org/webhooks/twilio/sms"
PARAMS = {"From": "+85512345678", "To": "+15005550006", "Body": "ACK R-7F3K", "MessageSid": "SM" + "a" * 32}


def sign(token, url=URL, params=PARAMS):
    return RequestValidator(token).compute_signature(url, params)


def test_genuine_request_validates():
    assert validate_twilio_request(URL, PARAMS, sign("current"), ["current"])


def test_old_token_still_validates_during_rotation():
    assert validate_twilio_request(URL, PARAMS, sign("old"), ["new", "old"])


def test_unknown_token_does_not_validate():
    assert not validate_twilio_request(URL, PARAMS, sign("attacker"), ["new", "old"])


def test_changed_field_does_not_validate():
    assert not validate_twilio_request(URL, dict(PARAMS, Body="ACK R-2222"), sign("t"), ["t"])


def test_added_field_does_not_validate():
    assert not validate_twilio_request(URL, dict(PARAMS, Extra="1"), sign("t"), ["t"])


def test_missing_or_empty_signature_does_not_validate():
    assert not validate_twilio_request(URL, PARAMS, None, ["t"])
    assert not validate_twilio_request(URL, PARAMS, "", ["t"])


def test_no_tokens_never_validates():
    assert not validate_twilio_request(URL, PARAMS, sign("t"), [])


def test_internal_url_does_not_validate_a_public_signature():
    assert not validate_twilio_request("http://10.0.0.5:8000/webhooks/twilio/sms", PARAMS, sign("t"), ["t"])


def test_query_string_is_part_of_the_signed_url():
    url = URL + "?nonce=abc"
    assert validate_twilio_request(url, PARAMS, sign("t", url=url), ["t"])
    assert not validate_twilio_request(URL + "?nonce=xyz", PARAMS, sign("t", url=url), ["t"])


def test_explicit_default_port_validates_either_way():
    assert validate_twilio_request("https://hub.example.org:443/webhooks/twilio/sms", PARAMS, sign("t"), ["t"])


def test_multi_valued_form_validates():
    form = MultiDict([("Body", "a"), ("MediaUrl", "x"), ("MediaUrl", "y")])
    signature = RequestValidator("t").compute_signature(URL, form)
    assert validate_twilio_request(URL, form, signature, ["t"])
