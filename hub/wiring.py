"""The Flask app: settings, the HubContext, the blueprints, one error mapping. Wiring only."""
from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect

from hub import faces
from hub.api import api_bp
from hub.api.audit import audit_bp
from hub.api.errors import register_error_handlers
from hub.config import Settings, load_settings
from hub.context import HubContext
from hub.errors import ConfigError
from hub.health import health_bp
from hub.logs import configure_logging
from hub.metrics import metrics_bp
from hub.web.coordinators import coordinators_bp
from hub.web import i18n
from hub.web.common import CookieSessionInterface, InMemoryRequest
from hub.web.sms import notify_bp
from hub.web.views import web_bp
from hub.web.security import init_rate_limits


def build_app(settings: Settings | None = None, **collaborators: Any) -> Flask:
    settings = settings or load_settings()
    if settings.secret_key is None:
        raise ConfigError(f"demo mode has no secret key yet ({settings.instance_dir / 'secret_key'}); run "
                          "`hub init --demo` first, or set HUB_SECRET_KEY")
    configure_logging(settings)
    app = Flask("hub", template_folder=str(settings.templates_dir), static_folder=None)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=[settings.previous_secret_key] if settings.previous_secret_key else [],
        # Two packets and the routing metadata, base64url-encoded, plus room for the JSON around them.
        MAX_CONTENT_LENGTH=2 * settings.packets_max_bytes * 4 // 3 + 64 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
        JSON_SORT_KEYS=False,
        # A form's CSRF token lives as long as a session: an officer may take an hour over a rescue report.
        WTF_CSRF_TIME_LIMIT=int(settings.session_lifetime.total_seconds()),
    )
    app.request_class = InMemoryRequest  # uploads (victims' photos) never spool to a temporary file
    app.session_interface = CookieSessionInterface()  # no signer built for a request without the cookie
    app.extensions["hub"] = HubContext.build(settings, **collaborators)
    app.after_request(faces.after_request)
    app.before_request(faces.limit_body)  # each route's body limit (hub.faces): small but for packets
    app.teardown_appcontext(faces.teardown)

    csrf = CSRFProtect(app)
    # The API takes bearer tokens or, from browsers, JSON only (which a cross-site form cannot send);
    # Twilio's webhooks are signed; a one-tap link's token is its own single-use capability.
    csrf.exempt(api_bp)
    csrf.exempt(notify_bp)
    for bp in (api_bp, audit_bp, health_bp, metrics_bp, notify_bp, web_bp, coordinators_bp):
        app.register_blueprint(bp)
    register_error_handlers(app)
    _transport_and_cache_headers(app, settings)
    init_rate_limits(app, settings.security, app.extensions["hub"].engine)  # [security] rate limits, after every route is registered
    i18n.init_babel(app, settings.timezone)
    i18n.register_names(app)
    return app


# -- transport and cache headers (issue 18) --------------------------------------------------------

# Responses that carry nothing personal and may be cached: the stylesheet, the Khmer font, the
# health checks, and the audit log's public checkpoint and key (which set their own Cache-Control).
CACHEABLE_ENDPOINTS = frozenset({"web.static", "web.khmer_font", "health.healthz", "health.readyz",
                                 "audit.checkpoint", "audit.key"})
HSTS = "max-age=63072000; includeSubDomains"


def _transport_and_cache_headers(app: Flask, settings: Settings) -> None:
    """HSTS when the hub is served over https; ``Cache-Control: no-store`` on every response but the
    few public ones, so no packet, referral, page of a signed-in member or one-tap page stays in a
    browser's or a proxy's cache."""
    https = settings.public_base_url.startswith("https://")

    @app.after_request
    def _headers(response):
        if https:
            response.headers["Strict-Transport-Security"] = HSTS
        if request.endpoint not in CACHEABLE_ENDPOINTS:
            response.headers["Cache-Control"] = "no-store"
        return response
