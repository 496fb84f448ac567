"""/api/v1: JSON for agency systems (bearer tokens) and browsers (session cookie)."""
from __future__ import annotations

from flask import Blueprint

api_bp = Blueprint("api", __name__, url_prefix="/api/v1")

from hub.api import agencies, openapi, referrals  # noqa: E402,F401  (routes register on import)
from hub.api import escalations as _escalations  # noqa: E402,F401
from hub.api import reports as _reports  # noqa: E402,F401
from hub.api.common import check_body  # noqa: E402

api_bp.before_request(check_body)  # odd JSON on any route is a 400, before the view runs
