"""A local server speaking the part of Twilio's REST dialect the SDK uses for SMS.

The real ``twilio`` SDK talks to it over HTTP (through the hub's
``ApiBaseHttpClient``), so tests see exactly what would go over the wire:
form fields, Basic auth, Twilio's JSON shapes and error codes. It can fail on
demand and sends status callbacks signed with a real X-Twilio-Signature.

    with FakeTwilio() as twilio:
        gateway = TwilioGateway(twilio.account_sid, twilio.auth_tokens,
                                from_number=twilio.phone_number, api_base=twilio.base_url)
        ...
        twilio.deliver(sid, "delivered")

It is a test double: it keeps everything in memory and checks what the SDK
sends, not what a carrier would do with it.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import json
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from twilio.request_validator import RequestValidator
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MAX_BODY = 1600
_MESSAGES = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages\.json$")
_MESSAGE = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages/([^/]+)\.json$")
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà\f^{}\\[~]|€"
)

# Twilio's messages for the error codes this server can return.
ERRORS = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21212: "The 'From' number is not a valid phone number, shortcode, or alphanumeric sender ID.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid StatusCallback URL.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21701: "The Messaging Service Sid is invalid.",
}
_STATUS_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}


def _rfc2822(at: dt.datetime) -> str:
    return email.utils.format_datetime(at.astimezone(dt.timezone.utc)).replace("-0000", "+0000")


def _segments(body: str) -> int:
    if all(c in _GSM7 for c in body):
        return 1 if len(body) <= 160 else -(-len(body) // 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


@dataclass
class FakeMessage:
    """A message the server took, as the test sees it."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    status: str
    date_created: dt.datetime
    date_updated: dt.datetime
    error_code: int | None = None
    callbacks: list[str] = field(default_factory=list)  # statuses reported to status_callback

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        """The JSON Twilio returns for a Message resource."""
        segments = _segments(self.body)
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": _rfc2822(self.date_created),
            "date_sent": _rfc2822(self.date_updated) if self.status in ("sent", "delivered", "undelivered") else None,
            "date_updated": _rfc2822(self.date_updated),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(segments if self.from_ else 0),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": self.uri.replace(".json", "/Media.json"),
                "feedback": self.uri.replace(".json", "/Feedback.json"),
            },
            "to": self.to,
            "uri": self.uri,
        }


@dataclass(frozen=True)
class SignedRequest:
    """A webhook as Twilio would send it: the URL it signs, the form fields and the signature."""

    url: str
    params: dict[str, str]
    signature: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Twilio-Signature": self.signature}


Poster = Callable[[str, Mapping[str, str], Mapping[str, str]], int]


class _Server(ThreadedWSGIServer):
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client gone mid-answer (stop(), a client timeout) is expected here


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:
        pass


class _Handler(_QuietHandler):
    def setup(self) -> None:
        super().setup()
        self.server.fake._connection_opened(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._connection_closed(self.connection)  # type: ignore[attr-defined]


class FakeTwilio:
    """A threaded HTTP server on 127.0.0.1 (a random port) that behaves like Twilio's Messages API.

    ``auth_tokens[0]`` is the account's primary token: it signs callbacks. The
    API accepts any of ``auth_tokens``. ``auto_status`` (e.g. ``("sent",
    "delivered")``) reports those statuses to each message's StatusCallback
    after it is created, in order, from one background thread;
    :meth:`join_callbacks` waits until they are all out. ``callback_route``
    sends callbacks to another host (e.g. the hub's test server) while still
    signing the URL the message named, as Twilio signs the public URL in front
    of a proxy. ``callback_poster(url, params, headers) -> HTTP status``
    replaces HTTP altogether, for instance with a Flask test client.
    """

    def __init__(
        self,
        account_sid: str | None = None,
        auth_tokens: Iterable[str] | None = None,
        *,
        phone_number: str = "+15005550006",
        auto_status: Iterable[str] = (),
        callback_route: str | None = None,
        callback_poster: Poster | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_tokens = list(auth_tokens) if auth_tokens is not None else [secrets.token_hex(16)]
        if not self.auth_tokens:
            raise ValueError("FakeTwilio needs at least one auth token")
        self.phone_number = phone_number
        self.auto_status = tuple(auto_status)
        self.callback_route = callback_route
        self.callback_poster = callback_poster
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._messages: list[FakeMessage] = []
        self._by_sid: dict[str, FakeMessage] = {}
        self._fail_next: list[tuple[int, int | None]] = []
        self._fail_until = 0.0
        self._fail_for_status = 503
        self._fail_numbers: dict[str, tuple[int, int]] = {}
        self._undeliverable: dict[str, tuple[str, int]] = {}
        self._delays: list[float] = []
        self._delay_every = 0.0
        self._hang_until = 0.0
        self._hang_delay = 0.0
        self.in_flight = 0  # API requests being answered now
        self.max_in_flight = 0  # the most answered at once since start (or clear)
        self._connections: set[socket.socket] = set()
        self._callbacks: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.callback_results: list[tuple[str, str, int | str]] = []  # (sid, status, HTTP status or error)
        self.request_count = 0
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._session = requests.Session()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "FakeTwilio":
        if self._server is not None:
            return self
        server = _Server(self._host, self._port, self._wsgi, _Handler)
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        callbacks = threading.Thread(target=self._callback_worker, daemon=True)
        self._threads = [serve, callbacks]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections, so clients see a server that is gone."""
        server, self._server = self._server, None
        if server is None:
            return
        self._callbacks.put(None)
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join()
        self._session.close()

    def __enter__(self) -> "FakeTwilio":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeTwilio is not running; call start() or use it as a context manager")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what the server saw -----------------------------------------------

    @property
    def messages(self) -> list[FakeMessage]:
        """Messages taken so far, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    def message(self, sid: str) -> FakeMessage:
        with self._lock:
            return self._by_sid[sid]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._by_sid.clear()
            self.callback_results.clear()
            self.request_count = 0
            self.max_in_flight = self.in_flight

    # -- failures on demand ------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, code: int | None = None) -> None:
        """The next ``n`` API requests fail with ``status`` (and Twilio error ``code``)."""
        with self._lock:
            self._fail_next.extend([(status, code)] * n)

    def fail_for(self, seconds: float, status: int = 503) -> None:
        """Every API request fails with ``status`` for the next ``seconds``."""
        with self._lock:
            self._fail_until = time.monotonic() + seconds
            self._fail_for_status = status

    def fail_numbers(self, numbers: Iterable[str], code: int = 21614, status: int = 400) -> None:
        """Creating a message to any of ``numbers`` is refused with Twilio error ``code``."""
        with self._lock:
            for number in numbers:
                self._fail_numbers[number] = (status, code)

    def undeliverable(self, numbers: Iterable[str], status: str = "undelivered", error_code: int = 30003) -> None:
        """``auto_status`` reports ``status`` with ``error_code`` instead of "delivered" for these numbers."""
        with self._lock:
            for number in numbers:
                self._undeliverable[number] = (status, error_code)

    def delay_next(self, n: int, seconds: float) -> None:
        """The next ``n`` API requests are answered only after ``seconds`` (to provoke client timeouts)."""
        with self._lock:
            self._delays.extend([seconds] * n)

    def delay_every(self, seconds: float) -> None:
        """Every API request from now on is answered only after ``seconds`` (a slow provider; 0 to stop)."""
        with self._lock:
            self._delay_every = seconds

    def hang_for(self, seconds: float, answer_after: float) -> None:
        """For the next ``seconds``, every API request arriving is answered only after ``answer_after``
        (longer than the client's timeout: a provider that hangs). The message is still taken then."""
        with self._lock:
            self._hang_until = time.monotonic() + seconds
            self._hang_delay = answer_after

    def recover(self) -> None:
        """Forget every pending failure and delay."""
        with self._lock:
            self._fail_next.clear()
            self._fail_until = 0.0
            self._fail_numbers.clear()
            self._undeliverable.clear()
            self._delays.clear()
            self._delay_every = 0.0
            self._hang_until = 0.0

    # -- webhooks Twilio would send ----------------------------------------

    def sign(self, url: str, params: Mapping[str, str], token: str | None = None) -> SignedRequest:
        """Sign ``params`` POSTed to ``url`` with the primary auth token, as Twilio does."""
        signature = RequestValidator(token or self.auth_tokens[0]).compute_signature(url, params)
        return SignedRequest(url=url, params=dict(params), signature=signature)

    def signed_status(self, sid: str, status: str = "delivered", error_code: int | None = None) -> SignedRequest:
        """Record ``status`` for message ``sid`` and return the status callback Twilio would send."""
        with self._lock:
            message = self._by_sid[sid]
            if not message.status_callback:
                raise ValueError(f"message {sid} was sent without a StatusCallback")
            message.status = status
            message.error_code = error_code
            message.date_updated = dt.datetime.now(dt.timezone.utc)
            message.callbacks.append(status)
            params = {
                "SmsSid": message.sid,
                "SmsStatus": status,
                "MessageStatus": status,
                "To": message.to,
                # Through a Messaging Service, the number the service picked.
                "From": message.from_ or self.phone_number,
                "MessageSid": message.sid,
                "AccountSid": message.account_sid,
                "ApiVersion": API_VERSION,
            }
            if message.messaging_service_sid:
                params["MessagingServiceSid"] = message.messaging_service_sid
            if error_code is not None:
                params["ErrorCode"] = str(error_code)
            url = message.status_callback
        return self.sign(url, params)

    def deliver(self, sid: str, status: str = "delivered", error_code: int | None = None) -> int:
        """Report ``status`` to the message's StatusCallback, signed; returns the receiver's HTTP status."""
        if status in ("failed", "undelivered") and error_code is None:
            error_code = 30003
        return self.post(self.signed_status(sid, status, error_code))

    def signed_inbound(self, url: str, from_: str, body: str, to: str | None = None) -> SignedRequest:
        """An incoming SMS webhook from ``from_`` as Twilio would POST it to ``url``."""
        sid = "SM" + secrets.token_hex(16)
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": to or self.phone_number,
            "NumSegments": str(_segments(body)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }
        return self.sign(url, params)

    def post(self, request: SignedRequest) -> int:
        """POST a signed webhook the way Twilio would (form-encoded), through ``callback_poster`` if set."""
        headers = {"X-Twilio-Signature": request.signature, "Content-Type": "application/x-www-form-urlencoded"}
        if self.callback_poster is not None:
            return self.callback_poster(request.url, request.params, headers)
        target = request.url
        if self.callback_route:
            route, parts = urlsplit(self.callback_route), urlsplit(request.url)
            target = urlunsplit((route.scheme, route.netloc, route.path.rstrip("/") + parts.path, parts.query, ""))
        response = self._session.post(target, data=request.params, headers=headers, timeout=30, allow_redirects=False)
        return response.status_code

    def join_callbacks(self) -> None:
        """Wait until every automatic status callback queued so far has been sent."""
        self._callbacks.join()

    def _callback_worker(self) -> None:
        while True:
            item = self._callbacks.get()
            try:
                if item is None:
                    return
                sid, status = item
                error_code = None
                with self._lock:
                    to = self._by_sid[sid].to
                    if status == "delivered" and to in self._undeliverable:
                        status, error_code = self._undeliverable[to]
                try:
                    result: int | str = self.deliver(sid, status, error_code)
                except Exception as exc:  # the receiver is down: Twilio would just log it
                    result = type(exc).__name__
                with self._lock:
                    self.callback_results.append((sid, status, result))
            finally:
                self._callbacks.task_done()

    # -- connection bookkeeping (for stop) ------------------------------------

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    # -- the API ---------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._answer(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, request: Request) -> Response:
        with self._lock:
            self.request_count += 1
            if self._delays:
                delay = self._delays.pop(0)
            elif time.monotonic() < self._hang_until:
                delay = self._hang_delay
            else:
                delay = self._delay_every
            failure = self._fail_next.pop(0) if self._fail_next else None
            if failure is None and time.monotonic() < self._fail_until:
                failure = (self._fail_for_status, None)
        if delay:
            time.sleep(delay)
        if failure is not None:
            status, code = failure
            return self._error(status, code or _STATUS_CODES.get(status, status * 100))

        auth = request.authorization
        if (
            auth is None
            or auth.type != "basic"
            or auth.username != self.account_sid
            or auth.password not in self.auth_tokens
        ):
            response = self._error(401, 20003, detail="Your AccountSid or AuthToken was incorrect.")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response

        if match := _MESSAGES.match(request.path):
            if match.group(1) != self.account_sid:
                return self._error(404, 20404)
            if request.method == "POST":
                return self._create(request)
            if request.method == "GET":
                return self._list(request)
            return self._error(405, 20004, message="Method not allowed")
        if match := _MESSAGE.match(request.path):
            if match.group(1) != self.account_sid or request.method != "GET":
                return self._error(404, 20404)
            with self._lock:
                message = self._by_sid.get(match.group(2))
                resource = message.resource() if message else None
            if resource is None:
                return self._error(404, 20404)
            return self._json(200, resource)
        return self._error(404, 20404)

    def _create(self, request: Request) -> Response:
        form = request.form
        to = form.get("To", "")
        from_ = form.get("From") or None
        service = form.get("MessagingServiceSid") or None
        body = form.get("Body")
        callback = form.get("StatusCallback") or None
        if not to:
            return self._error(400, 21604)
        if not E164.match(to):
            return self._error(400, 21211, message=f"The 'To' number {to} is not a valid phone number.")
        if not from_ and not service:
            return self._error(400, 21603)
        if from_ and not (E164.match(from_) or ALPHANUMERIC_SENDER.match(from_)):
            return self._error(400, 21212)
        if service and not re.fullmatch(r"MG[0-9a-f]{32}", service):
            return self._error(400, 21701)
        if not body:
            return self._error(400, 21602)
        if len(body) > MAX_BODY:
            return self._error(400, 21617)
        if callback and urlsplit(callback).scheme not in ("http", "https"):
            return self._error(400, 21609)
        with self._lock:
            refused = self._fail_numbers.get(to)
        if refused:
            return self._error(refused[0], refused[1])

        now = dt.datetime.now(dt.timezone.utc)
        message = FakeMessage(
            sid="SM" + secrets.token_hex(16),
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            messaging_service_sid=service,
            body=body,
            status_callback=callback,
            # Through a Messaging Service, Twilio answers "accepted" before it picks a sender.
            status="queued" if from_ else "accepted",
            date_created=now,
            date_updated=now,
        )
        with self._lock:
            self._messages.append(message)
            self._by_sid[message.sid] = message
            resource = message.resource()
        if callback:
            for status in self.auto_status:
                self._callbacks.put((message.sid, status))
        return self._json(201, resource)

    def _list(self, request: Request) -> Response:
        args = request.args
        try:
            page_size = max(1, min(1000, int(args.get("PageSize", "50"))))
            page = max(0, int(args.get("Page", "0")))
        except ValueError:
            return self._error(400, 20001, message="Invalid paging parameter")
        with self._lock:
            found = [m for m in reversed(self._messages)
                     if (not args.get("To") or m.to == args["To"])
                     and (not args.get("From") or m.from_ == args["From"])]
            chunk = [m.resource() for m in found[page * page_size:(page + 1) * page_size]]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"
        filters = {k: args[k] for k in ("To", "From") if args.get(k)}

        def page_uri(number: int) -> str:
            return base + "?" + urlencode({**filters, "PageSize": page_size, "Page": number})

        has_next = (page + 1) * page_size < len(found)
        return self._json(200, {
            "end": page * page_size + max(len(chunk) - 1, 0),
            "first_page_uri": page_uri(0),
            "messages": chunk,
            "next_page_uri": page_uri(page + 1) if has_next else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": page * page_size,
            "uri": page_uri(page),
        })

    @staticmethod
    def _json(status: int, payload: Mapping[str, Any]) -> Response:
        return Response(json.dumps(payload), status=status, content_type="application/json; charset=utf-8")

    def _error(self, status: int, code: int, *, message: str | None = None, detail: str | None = None) -> Response:
        payload: dict[str, Any] = {
            "code": code,
            "message": message or ERRORS.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        if detail:
            payload["detail"] = detail
        return self._json(status, payload)


@dataclass(frozen=True)
class ReceivedWebhook:
    path: str  # path and query string, as requested
    headers: dict[str, str]
    form: dict[str, str]


class CallbackSink:
    """A tiny HTTP server that records every POST it gets and answers ``status`` (204).

    Stands in for the hub when a test only needs to see what Twilio would send.
    """

    def __init__(self, status: int = 204):
        self.status = status
        self._lock = threading.Lock()
        self._received: list[ReceivedWebhook] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        path = request.full_path.rstrip("?") if not request.query_string else request.full_path
        item = ReceivedWebhook(path=path, headers=dict(request.headers), form=request.form.to_dict())
        with self._lock:
            self._received.append(item)
        return Response(status=self.status)(environ, start_response)

    @property
    def received(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._received)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("CallbackSink is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "CallbackSink":
        self._server = _Server("127.0.0.1", 0, self._wsgi, _QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "CallbackSink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
