"""The agency admin's page (members, invitations, SMS contacts and duty, recovery) and every member's settings.

Each form makes one service call in hub.accounts.service, which checks the admin's rights and
writes the audit entry.
"""
from __future__ import annotations

from functools import wraps

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from hub import access
from hub.accounts import service as accounts
from hub.faces import current, db
from hub.vocabulary import CONTACT_ROLES
from hub.web import forms, i18n
from hub.web.common import member, page, submit, web_bp


def _admin_forms(m, made: dict | None = None) -> dict:
    made = made or {}
    invite = made.get("invite") or forms.InviteForm(prefix="invite")
    invite.role.choices = [(r, i18n.ROLE_NAMES[r]) for r in accounts.member_roles(m.principal.agency_kind)]
    if request.method == "GET" or "invite" not in made:
        invite.lang.data = invite.lang.data or "km"
    contact = made.get("contact") or forms.ContactForm(prefix="contact")
    contact.role.choices = [(r, i18n.ROLE_NAMES[r]) for r in CONTACT_ROLES]
    recover = made.get("recover") or forms.RecoverForm(prefix="recover")
    return {"invite": invite, "contact": contact, "recover": recover, "action": forms.ActionForm(prefix="row")}


def _admin_page(m, *, made=None, error=None, status=200, invitation=None):
    session = db()
    members = accounts.list_members(session, m.principal)
    contacts = accounts.admin_contacts(session, m.principal)
    f = _admin_forms(m, made)
    f["recover"].user_id.choices = [(u.id, f"{u.name} ({u.username})") for u in members if u.active]
    return render_template("web/admin.html", members=members, contacts=contacts, forms=f, error=error,
                           invitation=invitation), status


def _is_admin(m) -> bool:
    return access.allowed(m.principal, "agency.admin", agency_id=m.principal.agency_id or "-")


def admin_only(view):
    """The admin page's routes: a member whose role may not administer the agency gets 403 and nothing runs."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not _is_admin(member()):
            return render_template("web/error.html", title=_("Admin"), message=_("Your role may not do this.")), 403
        return view(*args, **kwargs)
    return wrapper


def _back_to_admin(refused, message):
    """The refusal's page, or the admin page again with `message()` shown once."""
    if refused:
        return refused
    flash(message(), "ok")
    return redirect(url_for("web.admin"))


def _again(m, key=None, form=None):
    return lambda error: _admin_page(m, made={key: form} if key else None, error=error, status=400)


@web_bp.get("/admin")
@page
@admin_only
def admin():
    return _admin_page(member())


def _invitation_link(token: str) -> str:
    return f"{current().settings.public_base_url}{url_for('web.invite', token=token)}"


def _show_invitation(m, user, token):
    # The link is shown once, on this page only: it is never stored, logged or put in a cookie.
    return _admin_page(m, invitation={"name": user.name, "username": user.username, "link": _invitation_link(token),
                                      "keyring": m.ring is not None})


@web_bp.post("/admin/invite")
@page
@admin_only
def admin_invite():
    m = member()
    form = forms.InviteForm(prefix="invite")
    form.role.choices = [(r, i18n.ROLE_NAMES[r]) for r in accounts.member_roles(m.principal.agency_kind)]
    made, refused = submit(form, lambda: accounts.invite_member(
        db(), m.principal, m.ring, name=form.name.data, role=form.role.data, lang=form.lang.data,
        username=(form.username.data or "").strip() or None, phone=(form.phone.data or "").strip() or None,
        clock=current().clock), _again(m, "invite", form))
    return refused or _show_invitation(m, *made)


@web_bp.post("/admin/users/<int:user_id>/<change>")
@page
@admin_only
def admin_user(user_id: int, change: str):
    m = member()
    form = forms.ActionForm(prefix="row")
    if change == "deactivate":
        user, refused = submit(form, lambda: accounts.deactivate_member(db(), m.principal, user_id,
                                                                        clock=current().clock), _again(m))
        return _back_to_admin(refused, lambda: _("%(name)s can no longer sign in.", name=user.name))
    if change == "reinvite":
        made, refused = submit(form, lambda: accounts.reinvite_member(db(), m.principal, m.ring, user_id,
                                                                      clock=current().clock), _again(m))
        return refused or _show_invitation(m, *made)
    abort(404)


@web_bp.post("/admin/contacts")
@page
@admin_only
def admin_contact_add():
    m = member()
    form = forms.ContactForm(prefix="contact")
    form.role.choices = [(r, i18n.ROLE_NAMES[r]) for r in CONTACT_ROLES]
    _saved, refused = submit(form, lambda: accounts.admin_save_contact(
        db(), m.principal, name=form.name.data, phone=form.phone.data, lang=form.lang.data, role=form.role.data,
        duty=bool(form.duty.data), clock=current().clock), _again(m, "contact", form))
    return _back_to_admin(refused, lambda: _("The contact is saved."))


@web_bp.post("/admin/contacts/<int:contact_id>/<change>")
@page
@admin_only
def admin_contact_change(contact_id: int, change: str):
    m = member()
    _saved, refused = submit(forms.ActionForm(prefix="row"), lambda: accounts.admin_contact_change(
        db(), m.principal, contact_id, change, clock=current().clock), _again(m))
    return _back_to_admin(refused, lambda: _("The contact is saved."))


@web_bp.post("/admin/recover")
@page
@admin_only
def admin_recover():
    m = member()
    form = forms.RecoverForm(prefix="recover")
    form.user_id.choices = [(u.id, u.name) for u in accounts.list_members(db(), m.principal) if u.active]
    user, refused = submit(form, lambda: accounts.recover_member(
        db(), m.principal, form.user_id.data, form.code.data, form.password.data, clock=current().clock),
        _again(m, "recover", form))
    return _back_to_admin(refused, lambda: _("%(name)s has a new password and can sign in with it.",
                                                name=user.name))


# --- every member's settings ------------------------------------------------------------------


def _settings_page(m, *, made=None, error=None, status=200):
    made = made or {}
    password = made.get("password") or forms.ChangePasswordForm(prefix="password")
    language = made.get("language") or forms.LanguageForm(prefix="language")
    if language.lang.data is None and m.user is not None:
        language.lang.data = m.user.lang
    return render_template("web/settings.html", forms={"password": password, "language": language},
                           error=error, has_ring=m.ring is not None), status


@web_bp.get("/settings")
@page
def settings():
    return _settings_page(member())


@web_bp.post("/settings/password")
@page
def settings_password():
    m = member()
    form = forms.ChangePasswordForm(prefix="password")
    _changed, refused = submit(form, lambda: accounts.change_password(
        db(), m.principal, m.ring, form.current.data, form.password.data, clock=current().clock),
        lambda error: _settings_page(m, made={"password": form}, error=error, status=400))
    if refused:
        return refused
    flash(_("Your password is changed."), "ok")
    return redirect(url_for("web.settings"))


@web_bp.post("/settings/language")
@page
def settings_language():
    m = member()
    form = forms.LanguageForm(prefix="language")
    if not form.validate_on_submit():
        return _settings_page(m, made={"language": form}, error=_("Check the fields marked below."), status=400)
    accounts.set_language(db(), m.principal, form.lang.data, clock=current().clock)
    db().commit()
    response = redirect(url_for("web.settings"))
    response.set_cookie(i18n.LANG_COOKIE, form.lang.data, max_age=365 * 86400, path="/", httponly=True,
                        samesite="Lax")
    return response
