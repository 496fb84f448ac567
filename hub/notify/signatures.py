"""Checking that a webhook really comes from Twilio (X-Twilio-Signature)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from twilio.request_validator import RequestValidator


def validate_twilio_request(
    url: str,
    params: Mapping[str, str],
    signature: str | None,
    auth_tokens: Sequence[str],
) -> bool:
    """True if ``signature`` is Twilio's signature of this request under any of ``auth_tokens``.

    ``url`` must be the URL Twilio was given and requested: the hub's configured
    ``public_base_url`` plus the request path and query string (for example
    ``https://hub.example.org/webhooks/twilio/status/<nonce>``), never the URL
    the hub sees behind its proxy or load balancer (``http://10.0.0.5:8000/...``).
    Twilio signs the full public URL, so only that one verifies.

    ``params`` are the POSTed form fields; a multi-valued mapping (werkzeug's
    ``MultiDict``, ``request.form``) is fine and every value counts. Every token
    in ``auth_tokens`` is tried, so a rotated token keeps working while Twilio
    and the hub's configuration change over. A missing or empty signature is
    never valid.
    """
    if not signature:
        return False
    for token in auth_tokens:
        if token and RequestValidator(token).validate(url, params, signature):
            return True
    return False
