"""SMS gateways behind one interface: Twilio in production, the console in the demo.

A gateway hands one text to a carrier and returns the provider's id for it, or
raises :class:`GatewayError` saying whether trying again later may help. The
outbox drain owns retries, backoff and bookkeeping; gateways only send.

Logs name message ids and error codes only, never a body or a phone number.
"""
from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from hub.errors import ConfigError, HubError

log = logging.getLogger("hub.notify")

GATEWAY_NAMES = ("console", "twilio")


@dataclass(frozen=True)
class SendResult:
    """What the provider said when it took the message: its id and first status."""

    provider_id: str
    status: str


class GatewayError(HubError):
    """The gateway did not take the message.

    ``retryable`` is True when the same message may go through later (rate limit,
    provider outage, network trouble) and False when it never will as sent
    (an invalid number, a refused sender, bad credentials). ``provider_code`` is
    the provider's error code when it gave one (Twilio: 21211 and friends) and
    ``http_status`` the provider's HTTP status, None for network failures.
    """

    status = 503
    code = "sms_gateway_error"

    def __init__(
        self,
        message: str,
        retryable: bool,
        *,
        provider_code: int | None = None,
        http_status: int | None = None,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.provider_code = provider_code
        self.http_status = http_status


@runtime_checkable
class SmsGateway(Protocol):
    """Sends one SMS.

    ``send`` returns once the provider has accepted the message (not delivered
    it); ``status_callback`` is the public URL the provider should report
    delivery to. It raises :class:`GatewayError`, and nothing else for
    provider or network trouble.
    """

    name: str

    def send(self, *, to: str, body: str, status_callback: str | None = None) -> SendResult: ...


class ConsoleGateway:
    """The demo gateway: prints every message and keeps it in ``sent``.

    It shows message bodies on purpose, so the demo can show what a phone would
    receive. Never configure it where real referrals flow.
    """

    name = "console"

    def __init__(self, stream: IO[str] | None = None):
        self._stream = stream
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.sent: list[tuple[str, str, str]] = []

    def send(self, *, to: str, body: str, status_callback: str | None = None) -> SendResult:
        stream = self._stream if self._stream is not None else sys.stdout
        with self._lock:
            provider_id = f"CONSOLE-{next(self._counter)}"
            self.sent.append((to, body, provider_id))
            stream.write(
                f"----- SMS {provider_id} to {to} -----\n{body}\n----- end of SMS {provider_id} -----\n"
            )
            stream.flush()
        log.info("sms sent gateway=console provider_id=%s", provider_id)
        return SendResult(provider_id=provider_id, status="sent")


class ApiBaseHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, with every request sent to another host.

    The SDK builds absolute URLs on ``https://api.twilio.com`` (and, for pages,
    from the ``next_page_uri`` the server returns); this client swaps the scheme
    and host (and prepends any path of ``api_base``) and keeps path and query,
    so the rest of the SDK, auth, form encoding and error parsing included, runs
    unchanged against a staging host or the test suite's fake Twilio.
    """

    def __init__(self, api_base: str, *, timeout: float | None = None, pool_size: int | None = None):
        parts = urlsplit(api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"Twilio API base {api_base!r} must be an absolute http(s) URL such as http://127.0.0.1:8080"
            )
        super().__init__(pool_connections=True, timeout=timeout)
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        size = pool_size or min(32, (os.cpu_count() or 1) + 4)
        # The SDK mounts a sized pool for https only; plain http (local tests) gets the same.
        self.session.mount("http://", HTTPAdapter(pool_maxsize=size))
        self.session.mount("https://", HTTPAdapter(pool_maxsize=size))

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit((self._scheme, self._netloc, self._prefix + parts.path, parts.query, ""))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, self.rewrite(url), *args, **kwargs)


# Statuses worth another try: the request timed out, Twilio throttled us, or Twilio failed.
def _retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class TwilioGateway:
    """Sends through Twilio's Messages API with the real ``twilio`` SDK.

    ``auth_tokens`` is a list so tokens can be rotated: requests use the first
    token, and if Twilio answers 401 the next ones are tried in turn and the
    one that works is kept. ``api_base`` (e.g. ``http://127.0.0.1:8080``) sends
    every request to another host; see :class:`ApiBaseHttpClient`.

    Twilio's Messages API has no idempotency key: a timeout after Twilio took
    the message is reported as retryable, so the message may go out twice.
    For a referral alert, twice is better than never.

    ``timeout`` (seconds) bounds the wait to connect and, again, the wait for
    Twilio's answer, so one send takes at most about twice that. One gateway
    may send from many threads at once (the outbox drain's ``concurrency``).
    """

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_tokens: Sequence[str] | str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base: str | None = None,
        timeout: float = 10,
    ):
        if not account_sid or not account_sid.startswith("AC"):
            raise ConfigError("Twilio account SID must start with 'AC'; copy it from the Twilio console")
        tokens = [auth_tokens] if isinstance(auth_tokens, str) else list(auth_tokens)
        tokens = [t.strip() for t in tokens if t and t.strip()]
        if not tokens:
            raise ConfigError("Twilio needs at least one auth token (TWILIO_AUTH_TOKEN, comma-separated to rotate)")
        if bool(from_number) == bool(messaging_service_sid):
            raise ConfigError("Twilio gateway: set exactly one of from_number or messaging_service_sid")
        if timeout is None or timeout <= 0:
            raise ConfigError("Twilio gateway timeout must be a positive number of seconds")
        self.account_sid = account_sid
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.api_base = api_base
        self.timeout = timeout
        self._tokens = tokens
        # The SDK's HTTP client keeps the response it is reading on itself, so a client must not
        # serve two threads at once: each sending thread gets its own HTTP client (one keep-alive
        # connection) and one SDK client per token on it.
        self._local = threading.local()
        self._current = 0
        self._lock = threading.Lock()
        self._clients()  # a bad api_base is a start-up error, not a failed send

    def _clients(self) -> list[Client]:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            http = (ApiBaseHttpClient(self.api_base, timeout=self.timeout, pool_size=1) if self.api_base
                    else TwilioHttpClient(timeout=self.timeout))
            clients = self._local.clients = [Client(self.account_sid, token, http_client=http)
                                             for token in self._tokens]
        return clients

    def send(self, *, to: str, body: str, status_callback: str | None = None) -> SendResult:
        params: dict[str, Any] = {"to": to, "body": body}
        if self.from_number:
            params["from_"] = self.from_number
        else:
            params["messaging_service_sid"] = self.messaging_service_sid
        if status_callback:
            params["status_callback"] = status_callback

        clients = self._clients()
        start = self._current
        count = len(clients)
        for attempt in range(count):
            index = (start + attempt) % count
            try:
                message = clients[index].messages.create(**params)
            except (TwilioRestException, TwilioServiceException) as exc:
                if exc.status == 401 and attempt + 1 < count:
                    log.warning(
                        "twilio rejected auth token #%d for account %s; trying the next one", index + 1, self.account_sid
                    )
                    continue
                raise self._rest_error(exc) from None
            except requests.Timeout:
                log.warning("sms not sent gateway=twilio reason=timeout")
                raise GatewayError(
                    f"Twilio did not answer within {self.timeout:g} s; the message will be tried again", True
                ) from None
            except requests.RequestException as exc:
                log.warning("sms not sent gateway=twilio reason=network error=%s", type(exc).__name__)
                raise GatewayError(
                    f"Could not reach Twilio ({type(exc).__name__}); the message will be tried again", True
                ) from None
            except (TwilioException, ValueError) as exc:
                # A reply the SDK could not read: Twilio may or may not have the message.
                log.warning("sms not sent gateway=twilio reason=unreadable-reply error=%s", type(exc).__name__)
                raise GatewayError("Twilio sent a reply that could not be read; the message will be tried again", True) from None
            if index != start:
                with self._lock:
                    self._current = index
                log.warning("twilio auth token #%d works for account %s; using it from now on", index + 1, self.account_sid)
            log.info("sms sent gateway=twilio provider_id=%s status=%s", message.sid, message.status)
            return SendResult(provider_id=message.sid, status=message.status or "queued")
        raise AssertionError("unreachable")  # pragma: no cover

    def _rest_error(self, exc: TwilioRestException | TwilioServiceException) -> GatewayError:
        status = int(exc.status)
        code = exc.code if isinstance(exc.code, int) else None
        retryable = _retryable_status(status)
        log.warning("sms not sent gateway=twilio http_status=%s twilio_code=%s retryable=%s", status, code, retryable)
        # Twilio's own message text can quote the phone number, so it stays out of ours.
        where = f", Twilio error {code}, see https://www.twilio.com/docs/errors/{code}" if code else ""
        if status == 401:
            text = f"Twilio refused the credentials (HTTP 401{where}); check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        elif retryable:
            text = f"Twilio is unavailable or throttling (HTTP {status}{where}); the message will be tried again"
        else:
            text = f"Twilio refused the message (HTTP {status}{where}); check the phone number and the sender settings"
        return GatewayError(text, retryable, provider_code=code, http_status=status)


def make_gateway(settings_like: Mapping[str, Any]) -> SmsGateway:
    """Build the configured gateway from a plain mapping.

    Keys: ``gateway`` ("console" or "twilio"); for twilio ``account_sid``,
    ``auth_tokens``, one of ``from_number`` / ``messaging_service_sid``, and
    optionally ``api_base`` and ``send_timeout`` (a timedelta, default 10 s).
    Other keys are ignored, so ``dataclasses.asdict(settings.sms)`` can be
    passed as is.
    """
    kind = settings_like.get("gateway") or "console"
    if kind == "console":
        return ConsoleGateway()
    if kind == "twilio":
        return TwilioGateway(
            settings_like.get("account_sid") or "",
            settings_like.get("auth_tokens") or [],
            from_number=settings_like.get("from_number") or None,
            messaging_service_sid=settings_like.get("messaging_service_sid") or None,
            api_base=settings_like.get("api_base") or None,
            timeout=(settings_like.get("send_timeout") or dt.timedelta(seconds=10)).total_seconds(),
        )
    raise ConfigError(f"sms gateway {kind!r} is unknown; use one of: {', '.join(GATEWAY_NAMES)}")
