"""What every web page shares: the blueprint, the signed-in member, headers, navigation, refusals."""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import Blueprint, Request, current_app, g, redirect, render_template, request, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from hub import packets
from hub import access
from hub.accounts import service as accounts
from hub.api.common import SESSION_COOKIE, sighted
from hub.faces import current, db
from hub.directory import service as directory
from hub.errors import HubError, Unauthenticated
from hub.web import geo, i18n
from hub.web.messages import say

class InMemoryRequest(Request):
    """Uploads stay in memory (bounded by MAX_CONTENT_LENGTH): a victim's photo never lands in a temp file."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, its signer built only for a request that has the cookie or
    leaves with a session. A request without the cookie (an API call with a bearer token, a
    webhook) opens the same empty session the default does and, if it never touched it, has
    nothing to save: the default's cookie settings and serializer are skipped, not changed.
    Web pages and their CSRF tokens keep the default's session as it was."""

    def open_session(self, app, request):
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()  # what the default opens when the cookie is missing
        return super().open_session(app, request)

    def save_session(self, app, session, response):
        if not session and not session.modified and not session.accessed:
            return  # the default sets, deletes and varies nothing for such a session either
        super().save_session(app, session, response)


web_bp = Blueprint("web", __name__, static_folder="static", static_url_path="/static")
PAGE_SIZE = 50


@dataclass
class Member:
    principal: access.Principal
    ring: packets.KeyRing | None
    user: Any


def member() -> Member | None:
    """The signed-in member of this request (cached), whose language the page takes."""
    if "member" in g:
        return g.member
    g.member = None
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        try:
            principal, ring = sighted(lambda session: accounts.resume(session, cookie, clock=current().clock))
            user = accounts.get_user(db(), principal.user_id)
            db().commit()
            g.member = Member(principal, ring, user)
            g.lang = user.lang if user is not None else None
        except accounts.SecondStepPending as exc:
            db().rollback()
            g.second_step = exc.stage  # the password was right; the TOTP step (or enrolment) is not done
        except Unauthenticated:
            db().rollback()
    return g.member


def page(view):
    """A page for signed-in members; others go to /login first, a half-finished sign-in to its TOTP step."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if member() is None:
            stage = g.get("second_step")
            if stage == "totp":
                return redirect(url_for("web.login_totp", next=request.path))
            if stage == "enrol":
                return redirect(url_for("web.totp_settings", next=request.path))
            return redirect(url_for("web.login", next=request.path))
        return view(*args, **kwargs)
    return wrapper


def safe_next(value: str | None, default: str) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def _set_cookie(response, value: str | None):
    settings = current().settings
    secure = settings.public_base_url.startswith("https://")
    if value is None:
        response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax")
    else:
        response.set_cookie(SESSION_COOKIE, value, max_age=int(settings.session_lifetime.total_seconds()),
                            path="/", secure=secure, httponly=True, samesite="Lax")
    return response


def agency_names() -> dict[str, Any]:
    if "agency_names" not in g:
        g.agency_names = {a.id: a for a in directory.list_agencies(db())}
    return g.agency_names


def agency_name(agency_id: str | None) -> str:
    agency = agency_names().get(agency_id or "")
    if agency is None:
        return agency_id or ""
    return agency.name_km if i18n.current_lang_code() == "km" else agency.name_en


def nav_links(principal: access.Principal) -> list[tuple[str, str]]:
    links = []
    if access.allowed(principal, "referral.create"):
        links.append(("web.new_referral", _("New referral")))
    if principal.role != "coordinator":
        links += [("web.inbox", _("Inbox")), ("web.sent", _("Sent"))]
    if access.allowed(principal, "capacity.set", agency_id=principal.agency_id) and \
            getattr(agency_names().get(principal.agency_id or ""), "beds_total", None) is not None:
        links.append(("web.beds", _("Beds")))
    for endpoint, label in (("coordinators.board", _("Board")), ("coordinators.reports", _("Reports"))):
        if principal.is_coordinator and endpoint in current_app.view_functions:
            links.append((endpoint, label))
    if access.allowed(principal, "agency.admin", agency_id=principal.agency_id or "-"):
        links.append(("web.admin", _("Admin")))
    links.append(("web.settings", _("Settings")))
    return links


def principal_label(principal: access.Principal) -> str:
    role = i18n.ROLE_NAMES.get(principal.role, principal.role)
    return f"{agency_name(principal.agency_id)} · {role}" if principal.agency_id else str(role)


@web_bp.app_context_processor
def _page_context():
    m = g.get("member")
    return {"principal": m.principal if m else None, "nav_links": nav_links, "principal_label": principal_label,
            "agency_name": agency_name, "province_name": lambda code: _province_name(code)}


def _province_name(code):
    return geo.province_name(code, i18n.current_lang_code())


@web_bp.after_app_request
def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if response.mimetype == "text/html":
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web_bp.errorhandler(CSRFError)
def _csrf_refused(exc):
    member()
    return render_template("web/error.html", title=_("This form has expired"),
                           message=_("The form was not accepted because its security token is missing or old. "
                                     "Nothing was changed. Go back, reload the page and send it again.")), 400


@web_bp.errorhandler(413)
def _too_large(exc):
    member()
    return render_template("web/error.html", title=_("Too large"),
                           message=_("What you sent is larger than the hub accepts. Nothing was stored. "
                                     "Go back and attach fewer or smaller photos.")), 413


def refused(exc: HubError, template: str, status: int | None = None, **context):
    """The form again, with what the hub refused in the member's language; nothing was changed."""
    db().rollback()
    return render_template(template, error=say(exc), **context), status or (exc.status if exc.status < 500 else 400)


def submit(form, call, again):
    """Validate `form`, make its one service call and commit.

    Returns (result, None), or (None, response) where the response is `again(error)` after a rollback: the
    page shown once more with the fields marked or the hub's refusal, and nothing changed.
    """
    if not form.validate_on_submit():
        return None, again(_("Check the fields marked below."))
    try:
        result = call()
        db().commit()
    except HubError as exc:
        db().rollback()
        return None, again(say(exc))
    return result, None
