"""refhub: a secure referral hub for agencies that protect victims of human trafficking."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from hub.config import Settings


def create_app(settings: "Settings | None" = None, **collaborators: Any) -> "Flask":
    """Wire the Flask app. No side effects: no migrations, no scheduler, no prompts.

    ``collaborators`` lets tests and `hub serve` inject a clock or an SMS gateway.
    """
    from flask import Flask

    from hub.config import load_settings
    from hub.context import HubContext

    settings = settings or load_settings()
    app = Flask(__name__, template_folder=str(settings.templates_dir), static_folder=None)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        # Two packets and the routing metadata, base64url-encoded, plus room for the JSON around them.
        MAX_CONTENT_LENGTH=2 * settings.packets_max_bytes * 4 // 3 + 64 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
        JSON_SORT_KEYS=False,
    )
    # A form's CSRF token lives as long as a session: an officer may take an hour over a rescue report.
    app.config["WTF_CSRF_TIME_LIMIT"] = int(settings.session_lifetime.total_seconds())
    from hub.web.common import InMemoryRequest

    app.request_class = InMemoryRequest
    ctx = HubContext.build(settings, **collaborators)
    app.extensions["hub"] = ctx
    app.teardown_appcontext(ctx.teardown)

    from flask_wtf.csrf import CSRFProtect

    from hub.api import api_bp
    from hub.api.errors import register_error_handlers
    from hub.health import health_bp
    from hub.metrics import metrics_bp
    from hub.web.sms import notify_bp
    from hub.web.views import web_bp

    csrf = CSRFProtect(app)
    # The API takes bearer tokens or, from browsers, JSON only (which a cross-site form cannot send);
    # Twilio's webhooks are signed; a one-tap link's token is its own single-use capability.
    csrf.exempt(api_bp)
    csrf.exempt(notify_bp)
    for bp in (api_bp, health_bp, metrics_bp, notify_bp, web_bp):
        app.register_blueprint(bp)
    register_error_handlers(app)
    from hub.web import i18n

    i18n.init_babel(app, settings.timezone)
    i18n.register_names(app)
    for hook in ctx.blueprint_hooks:
        hook(app)
    return app
