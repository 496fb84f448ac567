"""The web pages everyone shares: sign in and out, invitations, the language switch, the inbox, a referral, beds.

A view parses the form, makes one service call, commits and renders. Who may do what lives in
the services; a refused action gives the form back with a message in the member's language.
"""
from __future__ import annotations

import base64

import fontpkg_noto_sans_khmer
import segno
from flask import abort, current_app, flash, g, make_response, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from markupsafe import Markup

from hub import packets
from hub import access
from hub.accounts import service as accounts
from hub.api.common import SESSION_COOKIE
from hub.faces import current, db, writes
from hub.directory import service as directory
from hub.errors import HubError, NotFound, RateLimited, Unauthenticated
from hub.referrals import retention
from hub.referrals import service as referrals
from hub.vocabulary import OPEN_STATES
from hub.web import admin, forms, i18n, officer, security  # noqa: F401  (admin and officer add their pages to web_bp)
from hub.web.common import PAGE_SIZE, _set_cookie, agency_name, member, page, refused, safe_next, submit, web_bp
from hub.web.messages import say

__all__ = ["web_bp"]

# --- files the pages need -------------------------------------------------------------------


@web_bp.get("/fonts/NotoSansKhmer.ttf")
def khmer_font():
    """The Khmer web font, from the fontpkg-noto-sans-khmer package: served by the hub, never a CDN."""
    path = next((fontpkg_noto_sans_khmer.ROOT / "files").glob("NotoSansKhmer*.ttf"))
    return send_file(path, mimetype="font/ttf", max_age=7 * 86400)


# --- signing in -----------------------------------------------------------------------------------


@web_bp.get("/")
def index():
    m = member()
    if m is None:
        return redirect(url_for("web.login"))
    return redirect(home_for(m.principal))


def home_for(principal) -> str:
    if principal.is_coordinator and "coordinators.board" in current_app.view_functions:
        return url_for("coordinators.board")
    return url_for("web.inbox")


@web_bp.post("/language")
def set_language():
    """The switch on every page: remembered for a signed-in member, in a cookie for others."""
    lang = request.form.get("lang")
    target = safe_next(request.form.get("next"), url_for("web.index"))
    if lang not in i18n.LANGS:
        return redirect(target)
    m = member()
    if m is not None:
        accounts.set_language(db(), m.principal, lang, clock=current().clock)
        db().commit()
    response = redirect(target)
    response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, path="/", httponly=True, samesite="Lax",
                        secure=current().settings.public_base_url.startswith("https://"))
    return response


def _signed_in_response(target: str, signin: accounts.SignIn, *, cookie: str | None = None):
    """Where a sign-in step goes next: the page asked for, or the TOTP step, or TOTP enrolment."""
    if signin.stage == "totp":
        response = redirect(url_for("web.login_totp", next=target))
    elif signin.stage == "enrol":
        response = redirect(url_for("web.totp_settings", next=target))
    else:
        response = redirect(target)
    if cookie:
        _set_cookie(response, cookie)
    return security.set_device_cookie(response, signin.device)


def _throttled_page(template: str, exc: HubError, **context):
    response = make_response(render_template(template, error=say(exc), **context), 429)
    if exc.retry_after:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


@web_bp.route("/login", methods=["GET", "POST"])
def login():
    form = forms.LoginForm()
    error = None
    if form.validate_on_submit():
        ctx = current()
        try:
            signin = accounts.login(
                db(), form.username.data.strip(), form.password.data, clock=ctx.clock,
                lifetime=ctx.settings.security.session_lifetime, idle=ctx.settings.security.session_idle,
                totp_roles=ctx.settings.security.require_totp_roles, address=security.client_address(),
                device=security.device_cookie())
            db().commit()
            user = accounts.get_user(db(), signin.principal.user_id)
            target = safe_next(request.args.get("next"), home_for(signin.principal))
            response = _signed_in_response(target, signin, cookie=signin.cookie)
            if user is not None:
                response.set_cookie(i18n.LANG_COOKIE, user.lang, max_age=365 * 86400, path="/", httponly=True,
                                    samesite="Lax")
            return response
        except RateLimited as exc:
            db().rollback()
            return _throttled_page("web/login.html", exc, form=form)
        except HubError as exc:
            db().commit()  # a wrong password is counted towards the waits (hub.accounts.service.login)
            error = say(exc)
    status = 401 if error else (400 if form.errors else 200)
    return render_template("web/login.html", form=form, error=error), status


def _pending() -> tuple[str, str] | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return accounts.pending_stage(db(), cookie, clock=current().clock)
    except Unauthenticated:
        return None


@web_bp.route("/login/totp", methods=["GET", "POST"])
def login_totp():
    """The second step of a sign-in: a code from the authenticator app, or a recovery code."""
    target = safe_next(request.args.get("next"), url_for("web.index"))
    state = _pending()
    if state is None:
        return _set_cookie(redirect(url_for("web.login", next=target)), None)
    if state[0] == "enrol":
        return redirect(url_for("web.totp_settings", next=target))
    if state[0] == "done":
        return redirect(target)
    form = forms.CodeForm()
    error = None
    if form.validate_on_submit():
        ctx = current()
        try:
            signin = accounts.second_step(db(), request.cookies.get(SESSION_COOKIE), form.code.data,
                                          clock=ctx.clock, secret_key=ctx.settings.totp_keys,
                                          device=security.device_cookie())
            db().commit()
            return _signed_in_response(safe_next(request.args.get("next"), home_for(signin.principal)), signin)
        except HubError as exc:
            db().commit()  # a wrong code is counted on the half-open session
            if exc.code == "session_expired":
                flash(say(exc), "error")
                return _set_cookie(redirect(url_for("web.login", next=target)), None)
            error = say(exc)
    status = 401 if error else (400 if form.errors else 200)
    return render_template("web/login_totp.html", form=form, error=error, username=state[1]), status


def _qr_svg(uri: str) -> Markup:
    """The otpauth:// URI as an inline SVG QR code (no script, no image request)."""
    svg = segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff",
                                                title=_("QR code for your authenticator app"))
    return Markup(svg)  # nosec B704: segno's own SVG of our URI (its title escaped by segno); no user markup


def _totp_page(*, error: str | None = None, status: int = 200, form=None):
    ctx = current()
    cookie = request.cookies.get(SESSION_COOKIE)
    target = safe_next(request.args.get("next"), url_for("web.index"))
    try:
        status_now = accounts.totp_status(db(), cookie or "", clock=ctx.clock, secret_key=ctx.settings.totp_keys)
    except accounts.SecondStepPending:
        return redirect(url_for("web.login_totp", next=target))
    except Unauthenticated:
        return _set_cookie(redirect(url_for("web.login", next=request.path)), None)
    db().commit()  # the secret to enrol is kept (sealed) until confirmed
    member()  # the navigation, for a signed-in member; none while enrolment is the only way on
    return render_template("web/totp.html", totp=status_now, error=error, form=form or forms.CodeForm(),
                           disable_form=forms.CodeForm(prefix="disable"), renew_form=forms.CodeForm(prefix="renew"),
                           next=request.args.get("next"),
                           qr=_qr_svg(status_now.uri) if status_now.uri else None,
                           required=g.get("member") is None), status


@web_bp.get("/settings/totp")
@writes
def totp_settings():
    """TOTP: enrol (QR code and the secret as text, confirmed with a code), or turn it off."""
    return _totp_page()


@web_bp.post("/settings/totp/confirm")
def totp_confirm():
    ctx = current()
    form = forms.CodeForm()
    if not form.validate_on_submit():
        return _totp_page(error=_("Check the fields marked below."), status=400, form=form)
    try:
        codes, finished = accounts.confirm_totp(db(), request.cookies.get(SESSION_COOKIE) or "", form.code.data,
                                                clock=ctx.clock, secret_key=ctx.settings.totp_keys,
                                                device=security.device_cookie())
        db().commit()
    except accounts.SecondStepPending:
        db().rollback()
        return redirect(url_for("web.login_totp"))
    except Unauthenticated:
        db().rollback()
        return _set_cookie(redirect(url_for("web.login")), None)
    except HubError as exc:
        db().rollback()
        return _totp_page(error=say(exc), status=400, form=form)
    g.pop("member", None)
    member()
    target = safe_next(request.args.get("next"), url_for("web.index"))
    response = make_response(render_template("web/totp_codes.html", codes=codes, next=target))
    return security.set_device_cookie(response, finished.device if finished else None)


@web_bp.post("/settings/totp/disable")
@page
def totp_disable():
    ctx = current()
    form = forms.CodeForm(prefix="disable")
    _stage, refused_page = submit(form, lambda: accounts.disable_totp(
        db(), request.cookies.get(SESSION_COOKIE) or "", form.code.data, clock=ctx.clock,
        secret_key=ctx.settings.totp_keys, totp_roles=ctx.settings.security.require_totp_roles),
        lambda error: _totp_page(error=error, status=400))
    if refused_page:
        return refused_page
    flash(_("TOTP is off. Set it up again below."), "ok")
    return redirect(url_for("web.totp_settings"))


@web_bp.post("/settings/totp/recovery-codes")
@page
def totp_renew_codes():
    """Ten new recovery codes (a current TOTP code needed); the old ones stop working."""
    ctx = current()
    form = forms.CodeForm(prefix="renew")
    codes, refused_page = submit(form, lambda: accounts.renew_recovery_codes(
        db(), request.cookies.get(SESSION_COOKIE) or "", form.code.data, clock=ctx.clock,
        secret_key=ctx.settings.totp_keys), lambda error: _totp_page(error=error, status=400))
    if refused_page:
        return refused_page
    return render_template("web/totp_codes.html", codes=codes, renewed=True, next=url_for("web.totp_settings"))


@web_bp.post("/logout")
def logout():
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        accounts.logout(db(), cookie, clock=current().clock)
        db().commit()
    return _set_cookie(redirect(url_for("web.login")), None)


@web_bp.route("/invite/<token>", methods=["GET", "POST"])
def invite(token: str):
    form = forms.PasswordSetForm()
    error = None
    if form.validate_on_submit():
        try:
            user = accounts.accept_invitation(db(), token, form.password.data, current().clock)
            db().commit()
            response = redirect(url_for("web.login", welcome=1))
            # A new member gets the language of their invitation.
            response.set_cookie(i18n.LANG_COOKIE, user.lang, max_age=365 * 86400, path="/", httponly=True,
                                samesite="Lax")
            return response
        except HubError as exc:
            db().rollback()
            error = say(exc)
    else:
        lang = accounts.invitation_lang(db(), token)
        if lang and not request.cookies.get(i18n.LANG_COOKIE):
            g.lang = lang
    return render_template("web/invite.html", form=form, error=error), (400 if error or form.errors else 200)


# --- the caseworker's pages ---------------------------------------------------------------------


def _page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        return 1


def _row_views(rows, box: str) -> list[dict]:
    """What one line of a box shows, worked out here once per page (each label translated once)."""
    now = current().clock.now()
    lang = i18n.current_lang_code()
    names: dict[str, str] = {}
    states = {k: str(v) for k, v in i18n.STATE_NAMES.items()}
    needs = {k: str(v) for k, v in i18n.NEED_NAMES.items()}
    clocks = {k: str(v) for k, v in i18n.CLOCK_NAMES.items()}
    out = []
    for r in rows:
        other = r.from_agency_id if box == "inbox" else r.to_agency_id
        if other not in names:
            names[other] = agency_name(other)
        is_open = r.status in OPEN_STATES
        out.append({
            "id": r.id, "code": r.code, "state": states.get(r.status, r.status), "open": is_open,
            "other": names[other], "urgent": r.urgency == "urgent" or r.child, "child": r.child,
            "needs": ", ".join(needs.get(n, n) for n in r.needs), "sent": i18n.ago(r.created_at, now=now, lang=lang),
            "clock": f"{clocks.get(r.clock, r.clock)}: {i18n.due(r.deadline_at, now=now, lang=lang)}"
                     if is_open and r.clock and r.deadline_at else "",
            "late": bool(is_open and r.deadline_at and r.deadline_at < now),
            "next": i18n.ago(r.next_step_at, now=now, lang=lang) if is_open and r.next_step_at else "",
        })
    return out


def _box(box: str, template: str):
    m = member()
    number = _page_number()
    rows, more = referrals.box_page(db(), m.principal, box=box, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
    return render_template(template, rows=_row_views(rows, box), page=number, more=more, box=box)


@web_bp.get("/inbox")
@page
def inbox():
    return _box("inbox", "web/inbox.html")


@web_bp.get("/sent")
@page
def sent():
    return _box("sent", "web/sent.html")


def actions_for(principal: access.Principal, referral) -> list[str]:
    """The lifecycle actions this member may take on this referral now (PROTOCOL.md section 3)."""
    out = []
    for name, t in referrals.TRANSITIONS.items():
        if referral.status not in t.sources:
            continue
        action = "referral.withdraw" if t.side == "sender" else (
            "referral.acknowledge" if name == "acknowledge" else "referral.decide")
        if access.allowed(principal, action, referral=referral):
            out.append(name)
    return out


def _photo_sources(body: dict | None) -> list[dict]:
    out = []
    for item in (body or {}).get("attachments") or []:
        if not isinstance(item, dict) or not str(item.get("media_type", "")).startswith("image/"):
            continue
        media = str(item["media_type"])
        if media not in ("image/jpeg", "image/png", "image/webp", "image/gif"):
            continue
        try:
            raw = packets.b64u_decode(str(item.get("data", "")))
        except packets.PacketError:
            continue
        out.append({"name": str(item.get("name", "")), "src": f"data:{media};base64,"
                    + base64.b64encode(raw).decode("ascii")})
    return out


def _referral_page(referral_id: str, *, error: str | None = None, status: int = 200, forms_in=None):
    m = member()
    ctx = current()
    session = db()
    referral, is_party = referrals.view_for(session, m.principal, referral_id)
    if not is_party:  # a coordinator: metadata only
        return render_template("web/referral.html", r=referral, body=None, photos=[], actions=[], forms={},
                               previous=None, error=error, packet_error=None), status
    body, packet_error = None, None
    try:
        body = referrals.open_for_member(session, m.principal, m.ring, referral, now=ctx.clock.now(),
                                         max_bytes=ctx.settings.packets_max_bytes)
    except packets.PacketError:
        packet_error = _("This packet did not pass the hub's checks and was not opened.")
    if body is None and packet_error is None and retention.shredded(session, referral.id, m.principal.agency_id):
        packet_error = _("This referral's packet was shredded: it was closed longer ago than the hub keeps "
                         "packets. What it says is no longer stored; its history stays.")
        status = 410
    session.commit()  # the opening's audit entry
    actions = actions_for(m.principal, referral)
    made = forms_in or {}
    all_forms = {
        "acknowledge": made.get("acknowledge") or forms.ActionForm(prefix="acknowledge"),
        "accept": made.get("accept") or forms.ActionForm(prefix="accept"),
        "start_care": made.get("start_care") or forms.ActionForm(prefix="start_care"),
        "decline": made.get("decline") or forms.ReasonForm(prefix="decline"),
        "fail": made.get("fail") or forms.ReasonForm(prefix="fail"),
        "withdraw": made.get("withdraw") or forms.ReasonForm(prefix="withdraw"),
        "close": made.get("close") or forms.CloseForm(prefix="close"),
    }
    all_forms["close"].outcome.choices = [(o, i18n.OUTCOME_NAMES[o]) for o in referrals.OUTCOMES]
    response = render_template("web/referral.html", r=referral, body=body, photos=_photo_sources(body),
                               actions=actions, forms=all_forms, error=error, packet_error=packet_error,
                               can_reroute=(referral.status in ("declined", "failed")
                                            and referral.from_agency_id == m.principal.agency_id
                                            and access.allowed(m.principal, "referral.create")))
    return response, status


@web_bp.get("/r/<referral_id>")
@page
@writes  # opening the packet is an audit entry, in this request's unit of work
def referral_page(referral_id: str):
    try:
        return _referral_page(referral_id)
    except NotFound:
        db().rollback()
        return render_template("web/error.html", title=_("Not found"),
                               message=str(say(NotFound("no such referral")))), 404


ACTION_FORMS = {"acknowledge": forms.ActionForm, "accept": forms.ActionForm, "start_care": forms.ActionForm,
                "decline": forms.ReasonForm, "fail": forms.ReasonForm, "withdraw": forms.ReasonForm,
                "close": forms.CloseForm}


@web_bp.post("/r/<referral_id>/<action>")
@page
def referral_action(referral_id: str, action: str):
    if action not in ACTION_FORMS:
        abort(404)
    m = member()
    form = ACTION_FORMS[action](prefix=action)
    if action == "close":
        form.outcome.choices = [(o, i18n.OUTCOME_NAMES[o]) for o in referrals.OUTCOMES]
    if not form.validate_on_submit():
        try:
            return _referral_page(referral_id, error=_("Check the form below."), status=400,
                                  forms_in={action: form})
        except NotFound:
            abort(404)
    ctx = current()
    try:
        referrals.transition(db(), m.principal, referral_id, action, now=ctx.clock.now(),
                             reason=getattr(getattr(form, "reason", None), "data", None),
                             outcome=getattr(getattr(form, "outcome", None), "data", None),
                             note=(getattr(getattr(form, "note", None), "data", None) or None),
                             notifier=ctx.notifier)
        db().commit()
    except NotFound:
        db().rollback()
        abort(404)
    except HubError as exc:
        db().rollback()
        return _referral_page(referral_id, error=say(exc), status=409 if exc.status == 409 else 400,
                              forms_in={action: form})
    flash(_("Done: the referral is now %(state)s.", state=_state_after(action)), "ok")
    return redirect(url_for("web.referral_page", referral_id=referral_id))


def _state_after(action: str) -> str:
    return str(i18n.STATE_NAMES[referrals.TRANSITIONS[action].target])


@web_bp.route("/beds", methods=["GET", "POST"])
@page
def beds():
    m = member()
    agency = directory.get_agency(db(), m.principal.agency_id) if m.principal.agency_id else None
    if agency is None or agency.beds_total is None:
        return render_template("web/error.html", title=_("Beds"),
                               message=_("Your agency has no beds to set.")), 404
    form = forms.BedsForm()
    if request.method == "GET":
        form.beds.data = agency.beds_available
    error = None
    if form.validate_on_submit():
        try:
            directory.set_capacity(db(), m.principal, agency.id, form.beds.data, clock=current().clock)
            db().commit()
            flash(_("Saved: %(beds)s free beds.", beds=form.beds.data), "ok")
            return redirect(url_for("web.beds"))
        except HubError as exc:
            return refused(exc, "web/beds.html", form=form, agency=agency)
    return render_template("web/beds.html", form=form, agency=agency, error=error), (400 if form.errors else 200)


