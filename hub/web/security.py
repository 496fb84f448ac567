"""Rate limits (Flask-Limiter), the client's address, the known-device cookie and the 429 answer.

Wiring only: which requests count against which ``[security]`` limit, keyed by what. The rule
that slows down wrong passwords (and lets a known device through) is the accounts service's.

- ``POST /login`` and ``POST /login/totp``: ``login_rate_limit`` per client address, and per
  account (the username typed; a browser with a device cookie counts in a bucket of its own,
  so a flood against a user name does not hold back the user's own phone).
- ``/api/...``: ``api_rate_limit`` per bearer token (per session for a signed-in browser, per
  address without either), and ``api_unauthenticated_rate_limit`` per address on answers 401.
- ``/webhooks/...`` and ``/sms/...``: ``webhook_rate_limit`` per address; ``/a/<token>``:
  ``onetap_rate_limit`` per address; ``/invite/<token>``: ``invite_rate_limit`` per address.

The client address is the TCP peer unless ``trusted_proxies`` says how many proxies in front
set X-Forwarded-For (werkzeug's ProxyFix then takes the address they saw).

Where the counts live is ``rate_limit_storage``: ``memory://`` (each worker its own), a limits
URI (Redis ...), or ``database`` (hub.ratelimits: the hub's own database, one count across
workers). When a shared storage cannot be reached, each worker counts in memory until it can
again: the limits still hold (per worker) and no one is refused because a counter is down.

Every limit is a route's own (a decorator), checked once per request; there are no default or
application-wide limits, so Flask-Limiter's before-request pass, which looks for those, is not
registered. ``memory://`` is limits' in-process storage with its clean-up at most once a second.
"""
from __future__ import annotations

import hashlib
import threading
import time

from flask import Flask, render_template, request
from flask_babel import gettext as _
from flask_limiter import Limiter
from limits.storage import MemoryStorage
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from hub.api.common import SESSION_COOKIE
from hub.api.errors import envelope
from hub import ratelimits
from hub.config import SecuritySettings
from hub.faces import current

DEVICE_COOKIE = "refhub_device"
DEVICE_MAX_AGE = 180 * 86400
ENVELOPE_PATHS = ("/api/", "/webhooks/", "/audit/")


def client_address() -> str:
    return request.remote_addr or "unknown"


def device_cookie() -> str | None:
    return request.cookies.get(DEVICE_COOKIE)


def set_device_cookie(response, value: str | None):
    """Keep the known-device cookie a sign-in issued (None: the browser keeps the one it has)."""
    if value:
        response.set_cookie(DEVICE_COOKIE, value, max_age=DEVICE_MAX_AGE, path="/", httponly=True, samesite="Lax",
                            secure=current().settings.public_base_url.startswith("https://"))
    return response


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]


def _account_key() -> str:
    name = (request.form.get("username") or "").strip().lower()[:64]
    if not name:  # /login/totp: the half-open session stands for the account
        name = "session:" + _digest(request.cookies.get(SESSION_COOKIE, ""))
    device = device_cookie()
    return f"account:{name}" + (f"|device:{_digest(device)}" if device else "")


def _api_key() -> str:
    header = request.headers.get("Authorization", "")
    if header:
        return "token:" + _digest(header.partition(" ")[2].strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return "session:" + _digest(cookie.partition(".")[0])
    return "address:" + client_address()


def _too_many(exc):
    """429: the API's envelope for machines, a short page in the reader's language for people."""
    if request.path.startswith(ENVELOPE_PATHS):
        return envelope(429, "rate_limited", "too many requests; wait as long as the Retry-After header says")
    return render_template("web/error.html", title=_("Too many attempts"),
                           message=_("Too many requests came from here in a short time. Nothing was changed. "
                                     "Wait a minute, then try again.")), 429


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process storage (what ``memory://`` names), its expired counters swept at most once a
    second. The library's own starts a timer thread for the sweep on a hit whenever the last one has
    ended, 10 ms after it began: under steady traffic, a thread per request. A counter past its
    window is still dropped at its next read (MemoryStorage.get), so every limit counts the same."""

    STORAGE_SCHEME = ["refhub-memory"]
    SWEEP_EVERY = 1.0  # seconds

    def __init__(self, uri: str | None = None, **options):
        self._next_sweep = 0.0
        super().__init__(uri, **options)

    def _MemoryStorage__schedule_expiry(self) -> None:  # MemoryStorage.__schedule_expiry, on a hit
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_EVERY
        if not self.timer.is_alive():
            self.timer = threading.Timer(0.01, self._MemoryStorage__expire_events)
            self.timer.start()


def storage_uri(configured: str) -> str:
    """The limits storage for ``rate_limit_storage``: ``memory://`` is :class:`SweptMemoryStorage`."""
    scheme, rest = configured.split("://", 1)
    return f"{SweptMemoryStorage.STORAGE_SCHEME[0]}://{rest}" if scheme == "memory" else configured


def init_rate_limits(app: Flask, security: SecuritySettings, engine: Engine) -> Limiter:
    """Trust X-Forwarded-For only as far as configured, then put each limit on its routes (after the
    blueprints are registered)."""
    if security.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=security.trusted_proxies, x_proto=security.trusted_proxies)
    uri, options = security.rate_limit_storage, {}
    if uri == ratelimits.SETTING:
        uri, options = f"{ratelimits.SCHEME}://", {"engine": engine}
    limiter = Limiter(client_address, app=app, storage_uri=storage_uri(uri), storage_options=options,
                      headers_enabled=True, strategy="fixed-window",
                      in_memory_fallback_enabled=not uri.startswith("memory://"))
    # Its before-request pass checks default and application-wide limits: the hub sets none.
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    by_path = (("/webhooks/", security.webhook_rate_limit), ("/sms/", security.webhook_rate_limit),
               ("/a/", security.onetap_rate_limit), ("/invite/", security.invite_rate_limit))
    done: set[str] = set()
    for rule in app.url_map.iter_rules():
        endpoint = rule.endpoint
        if endpoint in done or endpoint.endswith("static"):
            continue
        view = app.view_functions[endpoint]
        decorators = []
        if endpoint in ("web.login", "web.login_totp"):
            decorators = [limiter.limit(security.login_rate_limit, methods=["POST"], key_func=client_address),
                          limiter.limit(security.login_rate_limit, methods=["POST"], key_func=_account_key)]
        elif rule.rule.startswith("/api/"):
            decorators = [limiter.limit(security.api_rate_limit, key_func=_api_key),
                          limiter.limit(security.api_unauthenticated_rate_limit, key_func=client_address,
                                        deduct_when=lambda response: response.status_code == 401)]
        else:
            decorators = [limiter.limit(limit, key_func=client_address)
                          for prefix, limit in by_path if rule.rule.startswith(prefix)][:1]
        for decorate in decorators:
            view = decorate(view)
        if decorators:
            app.view_functions[endpoint] = view
            done.add(endpoint)
    app.register_error_handler(429, _too_many)
    app.extensions["hub_limiter"] = limiter
    return limiter
