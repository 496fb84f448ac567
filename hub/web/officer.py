"""The officer's referral form: the body of PROTOCOL.md section 2, sealed inside the member's session.

Nothing of the body is stored in the clear, at any moment: the form is parsed in memory (uploads
included, see ``InMemoryRequest``), the photos are shrunk in memory, the body is sealed to the
recipient and to the agency's archive with the key ring the session cookie unwrapped, and only
the two packets reach the database, through the same ``referrals.create`` as the API. There is
no draft: a refused submission gives the page back with what was typed (and says to attach the
photos again), never a stored copy.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from hub import packets
from hub import access
from hub.clock import from_local, parse_rfc3339, rfc3339, to_local
from hub.faces import current, db, writes
from hub.directory import service as directory
from hub.errors import BadInput, HubError, NotFound
from hub.referrals import service as referrals
from hub.web import forms, geo, i18n, photos
from hub.web.common import member, page, web_bp
from hub.web.messages import say

BODY_OVERHEAD = 64 * 1024  # the body's text and the packet around it


def _choices(form: forms.ReferralForm, lang: str, sender) -> list:
    form.province.choices = [(geo.iso(p.code), geo.name(p, lang)) for p in geo.provinces()]
    province = form.province.data or (sender.province if sender else None) or "KH-12"
    form.province.data = province
    form.district.choices = [("", _("not known"))] + [(d.code, geo.name(d, lang)) for d in geo.districts(province)]
    district = form.district.data if form.district.data in {c for c, _ in form.district.choices} else ""
    form.commune.choices = [("", _("not known"))] + [(c.code, geo.name(c, lang))
                                                    for c in geo.communes(province, district)] if district else \
        [("", _("choose the district first"))]
    form.needs.choices = [(n, i18n.NEED_NAMES[n]) for n in referrals.NEEDS]
    needs = [n for n in (form.needs.data or []) if n in referrals.NEEDS]
    suggestions = directory.suggest_recipients(db(), sender_id=sender.id if sender else None, needs=needs,
                                               province=province)
    form.to.choices = [(s.agency.id, s.agency.id) for s in suggestions]
    return suggestions


def body_json(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _local_to_utc(value: dt.datetime | None) -> str | None:
    return None if value is None else rfc3339(from_local(value, current().settings.timezone))


def _utc_to_local(text: str | None) -> dt.datetime | None:
    try:
        value = parse_rfc3339(str(text))
    except ValueError:  # not a time, or one without a zone
        return None
    return to_local(value, current().settings.timezone).replace(second=0)


def build_body(form: forms.ReferralForm, *, officer, agency_id: str, now: dt.datetime, attachments: list[dict],
               base: dict | None = None) -> dict:
    """The referral body from the form. ``base`` (a re-route's earlier body) keeps fields this form does not know."""
    body = dict(base or {})
    person = dict(body.get("person") or {})
    person["names"] = {"latin": (form.name_latin.data or "").strip(), "khmer": (form.name_khmer.data or "").strip()}
    person["sex"] = form.sex.data
    person.pop("date_of_birth", None)
    person.pop("age_estimate", None)
    if form.date_of_birth.data:
        person["date_of_birth"] = form.date_of_birth.data.isoformat()
    elif form.age_estimate.data is not None:
        person["age_estimate"] = form.age_estimate.data
    person["nationality"] = form.nationality.data
    person["languages"] = [x.strip() for x in (form.languages.data or "").split(",") if x.strip()]
    person["id_documents"] = ([{"type": form.id_type.data, "number": (form.id_number.data or "").strip()}]
                              if form.id_type.data else [])
    situation = dict(body.get("situation") or {})
    found = geo.place(form.province.data, form.district.data or None, form.commune.data or None)
    if (form.place.data or "").strip():
        found["place"] = form.place.data.strip()
    situation.update({"exploitation": form.exploitation.data, "found_at": found,
                      "rescued_at": _local_to_utc(form.rescued_at.data),
                      "trafficking_status": form.trafficking_status.data,
                      "decided_by": officer.name if officer else None,
                      "notes": (form.situation_notes.data or "").strip()})
    consent = {"to_share": bool(form.consent_to_share.data), "for_services": bool(form.consent_for_services.data),
               "recorded_by": form.consent_recorded_by.data.strip(), "recorded_at": rfc3339(now)}
    if (form.legal_ground.data or "").strip():
        consent["legal_ground"] = form.legal_ground.data.strip()
    body.update({
        "person": person, "situation": situation, "needs": list(form.needs.data),
        "risk": {"level": form.risk_level.data, "notes": (form.risk_notes.data or "").strip()},
        "consent": consent,
        "contact": {"officer": officer.name if officer else "", "agency": agency_id,
                    **({"phone": officer.phone} if officer is not None and officer.phone else {})},
        "attachments": attachments,
    })
    return body


def prefill(form: forms.ReferralForm, body: dict) -> None:
    """Fill the form from an earlier body (a re-route after a decline)."""
    person = body.get("person") or {}
    names = person.get("names") or {}
    form.name_latin.data = names.get("latin")
    form.name_khmer.data = names.get("khmer")
    form.sex.data = person.get("sex")
    if person.get("date_of_birth"):
        try:
            form.date_of_birth.data = dt.date.fromisoformat(person["date_of_birth"])
        except (TypeError, ValueError):
            pass
    form.age_estimate.data = person.get("age_estimate") if isinstance(person.get("age_estimate"), int) else None
    form.nationality.data = person.get("nationality")
    form.languages.data = ", ".join(str(x) for x in person.get("languages") or [])
    docs = person.get("id_documents") or []
    if docs and isinstance(docs[0], dict):
        form.id_type.data, form.id_number.data = docs[0].get("type"), docs[0].get("number")
    situation = body.get("situation") or {}
    form.exploitation.data = situation.get("exploitation")
    found = situation.get("found_at") or {}
    if isinstance(found, dict):
        form.province.data = (found.get("province") or {}).get("code")
        form.district.data = (found.get("district") or {}).get("code")
        form.commune.data = (found.get("commune") or {}).get("code")
        form.place.data = found.get("place")
    form.rescued_at.data = _utc_to_local(situation.get("rescued_at"))
    form.trafficking_status.data = situation.get("trafficking_status") or "possible"
    form.situation_notes.data = situation.get("notes")
    form.needs.data = [n for n in body.get("needs") or [] if n in referrals.NEEDS]
    risk = body.get("risk") or {}
    form.risk_level.data = risk.get("level") or "medium"
    form.risk_notes.data = risk.get("notes")
    consent = body.get("consent") or {}
    form.consent_to_share.data = bool(consent.get("to_share"))
    form.consent_for_services.data = bool(consent.get("for_services"))
    form.legal_ground.data = consent.get("legal_ground")
    form.consent_recorded_by.data = consent.get("recorded_by")


def _attachments(form: forms.ReferralForm, budget: int) -> list[dict]:
    raw = [f.read() for f in (form.photos.data or []) if getattr(f, "filename", "")]
    raw = [r for r in raw if r]
    if not raw:
        return []
    try:
        small = photos.shrink_all(raw, budget)
    except photos.NotAPhoto:
        raise BadInput("not a photo", code="not_a_photo") from None
    except ValueError:
        raise BadInput("the photos do not fit", code="packet_too_large") from None
    return [{"name": f"photo-{i + 1}.jpg", "media_type": "image/jpeg", "data": packets.b64u_encode(p)}
            for i, p in enumerate(small)]


def _previous(m, previous_id: str | None):
    """The earlier (declined or failed) referral of the member's agency, and its archive body."""
    if not previous_id:
        return None, None
    ctx = current()
    referral = referrals.get_for(db(), m.principal, previous_id)
    if referral.from_agency_id != m.principal.agency_id:
        raise NotFound("no such referral")
    body = referrals.open_for_member(db(), m.principal, m.ring, referral, now=ctx.clock.now(),
                                     max_bytes=ctx.settings.packets_max_bytes)
    return referral, body


@web_bp.route("/referrals/new", methods=["GET", "POST"])
@page
@writes  # a re-route opens the archive packet: an audit entry
def new_referral():
    m = member()
    ctx = current()
    session = db()
    lang = i18n.current_lang_code()
    sender = directory.get_agency(session, m.principal.agency_id) if m.principal.agency_id else None
    if not access.allowed(m.principal, "referral.create"):
        return render_template("web/error.html", title=_("New referral"),
                               message=_("Your role may not do this.")), 403
    form = forms.ReferralForm()
    previous_id = request.values.get("previous") or form.previous_id.data or None
    try:
        previous, previous_body = _previous(m, previous_id)
    except (NotFound, packets.PacketError):
        session.rollback()
        return render_template("web/error.html", title=_("Not found"),
                               message=_("There is no such referral, or it is not your agency's.")), 404
    session.commit()  # opening the archive packet is an audit entry
    if request.method == "GET":
        form.consent_recorded_by.data = m.user.name if m.user else ""
        if previous_body:
            prefill(form, previous_body)
            form.previous_id.data = previous.id
            form.urgency.data = previous.urgency
            form.child.data = previous.child
    suggestions = _choices(form, lang, sender)
    if previous is not None:
        form.to.choices = [c for c in form.to.choices if c[0] != previous.to_agency_id]
        suggestions = [s for s in suggestions if s.agency.id != previous.to_agency_id]
    error, status = None, 200
    if request.method == "POST" and "refresh" not in request.form:
        if form.validate_on_submit():
            try:
                referral = _submit(m, form, previous, previous_body)
                session.commit()
                flash(_("Sent. The reference is %(code)s.", code=referral.code), "ok")
                return redirect(url_for("web.referral_page", referral_id=referral.id))
            except HubError as exc:
                session.rollback()
                error = (_("This file is not a photo; attach photos only.") if exc.code == "not_a_photo"
                         else say(exc))
                status = 409 if exc.status == 409 else 400
        else:
            error, status = _("Check the fields marked below."), 400
        if form.photos.data and any(getattr(f, "filename", "") for f in form.photos.data):
            error = f"{error} {_('Attach the photos again: a browser does not keep them.')}"
    return render_template("web/new_referral.html", form=form, suggestions=suggestions, error=error,
                           previous=previous, officer_name=m.user.name if m.user else ""), status


def _submit(m, form: forms.ReferralForm, previous, previous_body):
    ctx = current()
    max_bytes = ctx.settings.packets_max_bytes
    budget = max_bytes * 3 // 4 - BODY_OVERHEAD
    attachments = _attachments(form, budget)
    if previous_body and form.keep_attachments.data:
        attachments = list(previous_body.get("attachments") or []) + attachments
    now = ctx.clock.now()
    body = build_body(form, officer=m.user, agency_id=m.principal.agency_id, now=now, attachments=attachments,
                      base=previous_body)
    referral_id = str(uuid.uuid4())
    wires = referrals.seal_for_member(db(), m.principal, m.ring, to=form.to.data, body=body_json(body),
                                      referral_id=referral_id, max_bytes=max_bytes)
    sub = referrals.Submission(to=form.to.data, urgency=form.urgency.data, child=bool(form.child.data),
                               needs=tuple(form.needs.data), province=form.province.data, packets=wires,
                               previous_id=previous.id if previous is not None else None)
    referral, _created = referrals.create(db(), m.principal, sub, settings=ctx.settings, now=now,
                                          notifier=ctx.notifier)
    return referral
