"""The first web pages: sign in, set a password from an invitation, see the inbox and sent referrals.

Pages show routing metadata only. Opening a packet in the browser, the referral form
and the coordinator boards belong to the web issue.
"""
from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, url_for

from hub.accounts import service as accounts
from hub.api.common import SESSION_COOKIE, sighted
from hub.errors import HubError, Unauthenticated
from hub.faces import current, db
from hub.referrals import service as referrals

web_bp = Blueprint("web", __name__)


def _signed_in():
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        principal, _ring = sighted(lambda session: accounts.resume(session, cookie, clock=current().clock))
    except Unauthenticated:
        return None
    return principal


def _set_cookie(response, value: str | None):
    settings = current().settings
    secure = settings.public_base_url.startswith("https://")
    if value is None:
        response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax")
    else:
        response.set_cookie(SESSION_COOKIE, value, max_age=int(settings.session_lifetime.total_seconds()),
                            path="/", secure=secure, httponly=True, samesite="Lax")
    return response


@web_bp.after_app_request
def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if response.mimetype == "text/html":
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web_bp.get("/")
def index():
    return redirect(url_for("web.inbox" if _signed_in() else "web.login"))


@web_bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        try:
            cookie, _principal, _ring = accounts.login(
                db(), request.form.get("username", "").strip(), request.form.get("password", ""),
                clock=current().clock, lifetime=current().settings.session_lifetime)
            db().commit()
            return _set_cookie(redirect(url_for("web.inbox")), cookie)
        except HubError as exc:
            db().commit()  # failed attempts count towards the lock-out
            error = exc.message
    return render_template("web/login.html", error=error), (401 if error else 200)


@web_bp.post("/logout")
def logout():
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        accounts.logout(db(), cookie)
        db().commit()
    return _set_cookie(redirect(url_for("web.login")), None)


@web_bp.route("/invite/<token>", methods=["GET", "POST"])
def invite(token: str):
    error = None
    if request.method == "POST":
        password = request.form.get("password", "")
        if password != request.form.get("confirm", ""):
            error = "The two passwords differ; type the same password twice."
        else:
            try:
                accounts.accept_invitation(db(), token, password, current().clock)
                db().commit()
                return redirect(url_for("web.login", welcome=1))
            except HubError as exc:
                db().rollback()
                error = exc.message
    return render_template("web/invite.html", error=error), (400 if error else 200)


@web_bp.get("/inbox")
def inbox():
    who = _signed_in()
    if who is None:
        return redirect(url_for("web.login"))
    g.principal = who
    session = db()
    incoming = [referrals.metadata(r) for r in referrals.list_for(session, who, box="inbox", limit=100)]
    outgoing = [referrals.metadata(r) for r in referrals.list_for(session, who, box="sent", limit=100)]
    return render_template("web/inbox.html", principal=who, incoming=incoming, outgoing=outgoing)


@web_bp.get("/r/<referral_id>")
def referral_page(referral_id: str):
    """Where escalation texts point: the referral's metadata for its two agencies and for coordinators."""
    who = _signed_in()
    if who is None:
        return redirect(url_for("web.login"))
    referral, is_party = referrals.view_for(db(), who, referral_id)
    view = referrals.party_view(referral) if is_party else referrals.metadata(referral)
    return render_template("web/referral.html", principal=who, r=view)
