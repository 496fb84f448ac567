"""The coordinators' pages: /board (what is overdue, who was texted, take) and /reports (figures, charts, CSV).

Metadata only, like every coordinator view. No script anywhere: the board refreshes
itself with a ``Refresh`` header and a plain reload link; the charts are SVG drawn
here with pygal (its tooltips script switched off), each with its numbers beside it
as a table for screen readers. Pages for signed-in members (``@page``, ``member()``
of hub/web/common.py), so they take the member's language like every other page.
Dates people type or read are days in ``[hub] timezone``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from xml.etree import ElementTree

import pygal
from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from markupsafe import Markup
from pygal.style import Style

from hub.clock import local_day, parse_rfc3339
from hub.faces import current, db, writes
from hub.errors import BadInput, HubError
from hub.escalation import service as escalation
from hub.vocabulary import PROVINCES
from hub.reports import service as reports
from hub.web.common import _csrf_refused, agency_name, member, page
from hub.web.messages import say

coordinators_bp = Blueprint("coordinators", __name__)
coordinators_bp.register_error_handler(CSRFError, _csrf_refused)
BOARD_REFRESH_S = 60
FILTERS = ("province", "urgency", "child", "taskforce")


def _error_page(exc: HubError):
    """The refusal in the member's language, with the status the API gives (400, 403, 404, 409)."""
    db().rollback()
    status = exc.status if exc.status < 500 else 400
    return render_template("web/coordinators/error.html", status=status, message=say(exc)), status


def _flag(name: str) -> bool | None:
    value = request.args.get(name, "")
    if value in ("", "any"):
        return None
    if value in ("yes", "1", "true"):
        return True
    if value in ("no", "0", "false"):
        return False
    raise BadInput(f"'{name}' must be yes, no or any", code="invalid_field")


def duration(seconds: int | None) -> str:
    """"2 h 5 min", "45 min", "30 s": how long, for people."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return _("%(n)d s", n=seconds)
    minutes = seconds // 60
    if minutes < 60:
        return _("%(n)d min", n=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return _("%(h)d h %(m)d min", h=hours, m=minutes) if minutes else _("%(h)d h", h=hours)
    return _("%(d)d days %(h)d h", d=hours // 24, h=hours % 24)


coordinators_bp.add_app_template_filter(duration, "duration")


@coordinators_bp.get("/board")
@page
def board():
    who = member().principal
    ctx = current()
    now = ctx.clock.now()
    try:
        urgency = request.args.get("urgency") or None
        items, scope, more = reports.board(db(), who, now, province=request.args.get("province") or None,
                                           urgency=None if urgency == "any" else urgency, child=_flag("child"),
                                           taskforce=request.args.get("taskforce") or None, settings=ctx.settings)
    except HubError as exc:
        return _error_page(exc)
    html = render_template("web/coordinators/board.html", items=items, more=more, now=now,
                           national=scope.national, own_province=scope.province, provinces=PROVINCES,
                           taskforces=ctx.settings.taskforces, args=request.args, taken=request.args.get("taken"),
                           refresh=BOARD_REFRESH_S)
    return Response(html, headers={"Refresh": str(BOARD_REFRESH_S)}, mimetype="text/html")


@coordinators_bp.post("/board/<referral_id>/take")
@page
def take(referral_id: str):
    """The board's "take" button: POST /api/v1/escalations/{id}/take semantics (the others are told)."""
    ctx = current()
    try:
        referral, _notified = escalation.take(db(), member().principal, referral_id, ctx.clock.now(),
                                              settings=ctx.settings)
        code = referral.code
        db().commit()
    except HubError as exc:
        return _error_page(exc)
    back = {k: v for k, v in request.form.items() if k in FILTERS and v}
    return redirect(url_for("coordinators.board", taken=code, **back), code=303)


def _summary(export: str | None = None):
    ctx = current()
    out = reports.summary_for(db(), member().principal, ctx.clock.now(),
                              province=request.args.get("province") or None,
                              taskforce=request.args.get("taskforce") or None,
                              start=request.args.get("from") or None, end=request.args.get("to") or None,
                              settings=ctx.settings, export=export)
    db().commit()  # the audit entry of the request
    return out


@coordinators_bp.get("/reports", endpoint="reports")
@page
@writes(late=True)  # a report is an audit entry
def reports_page():
    try:
        report, scope = _summary()
    except HubError as exc:
        return _error_page(exc)
    tz = current().settings.timezone
    return render_template("web/coordinators/reports.html", r=report, charts=charts(report),
                           national=scope.national, own_province=scope.province, provinces=PROVINCES,
                           taskforces=current().settings.taskforces, args=request.args,
                           shown_from=local_day(report["from"], tz).isoformat(),
                           shown_to=_shown_to(report, tz), csv_args={k: v for k, v in request.args.items()
                                                                    if k in ("from", "to", "province", "taskforce")})


@coordinators_bp.get("/reports.csv")
@page
@writes(late=True)  # an export is an audit entry
def reports_csv():
    try:
        report, _scope = _summary(export="csv")
    except HubError as exc:
        return _error_page(exc)
    return Response(reports.to_csv(report), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="refhub-summary.csv"',
                             "Cache-Control": "no-store"})


def _shown_to(report: dict, tz: str) -> str:
    """The window's last day in the hub's time zone, inclusive, as people say it ([from, to) ends the day
    before ``to``)."""
    return local_day(parse_rfc3339(report["to"]) - dt.timedelta(seconds=1), tz).isoformat()


# -- charts --------------------------------------------------------------------------------------


def _style():
    return pygal, Style(background="white", plot_background="white", foreground="#1a1a1a",
                        foreground_strong="#1a1a1a", foreground_subtle="#555", colors=("#123c5a", "#8a1c1c",
                                                                                          "#4a7a2c", "#b07a00",
                                                                                          "#5a3c80"),
                        font_family='"Noto Sans Khmer", "Noto Sans", sans-serif', label_font_size=13,
                        major_label_font_size=13, title_font_size=16, value_font_size=12)


def _svg(chart) -> Markup:
    """The chart as inline SVG without script: pygal always writes its config script (for tooltips,
    which need JavaScript the CSP forbids anyway), so its element tree is serialised without it."""
    tree = chart.render_tree()
    parents = {child: parent for parent in tree.iter() for child in parent}
    for node in [n for n in tree.iter() if str(n.tag).rsplit("}", 1)[-1] == "script"]:
        parents[node].remove(node)
    svg = ElementTree.tostring(tree, encoding="unicode")  # escapes every label
    if "<script" in svg:  # pragma: no cover - a pygal that writes script some other way must fail loudly
        raise RuntimeError("pygal wrote a script into a chart")
    return Markup(svg)  # nosec B704: serialised by ElementTree (every label escaped), script removed and checked above


def _config(pygal, style, title: str, counts: list[int] | None = None, **kw) -> dict:
    """Common settings; ``counts`` makes the value axis whole numbers from 0."""
    if counts is not None:
        top = max([1, *counts])
        every = max(1, -(-top // 8))
        kw.setdefault("y_labels", list(range(0, top + every, every)))
    return dict(title=title, style=style, js=[], disable_xml_declaration=True, show_legend=False,
                width=640, height=320, explicit_size=False, print_values=True, **kw)


def charts(report: dict) -> list[dict[str, Any]]:
    """The four charts of /reports, each as {"id", "title", "svg", "head", "rows"} (the table beside it)."""
    pygal, style = _style()
    out = []

    labels, counts = [], []
    lower = 0
    for bucket in report["first_answer_histogram"]:
        le = bucket["le_s"]
        if le is None:
            labels.append(_("over %(a)s", a=duration(lower)))
        elif lower == 0:
            labels.append(_("up to %(b)s", b=duration(le)))
        else:
            labels.append(_("%(a)s to %(b)s", a=duration(lower), b=duration(le)))
        counts.append(bucket["count"])
        lower = le if le is not None else lower
    unanswered = report["referrals"]["total"] - report["first_answer_s"]["count"]
    labels.append(_("no answer yet"))
    counts.append(unanswered)
    chart = pygal.Bar(**_config(pygal, style, _("Time to first answer"), counts, x_label_rotation=30))
    chart.x_labels = labels
    chart.add(_("referrals"), counts)
    out.append({"id": "first-answer", "title": _("Time to first answer"), "svg": _svg(chart),
                "head": [_("Time to first answer"), _("Referrals")], "rows": list(zip(labels, counts))})

    agencies = [agency_name(a["agency"]) for a in report["by_agency"]]
    shares = [round(100 * (a["on_time_share"] or 0)) for a in report["by_agency"]]
    chart = pygal.HorizontalBar(**_config(pygal, style, _("Answered within the deadline, by agency (%)"),
                                          range=(0, 100)))
    chart.x_labels = agencies
    chart.add(_("answered in time (%)"), shares)
    out.append({"id": "on-time", "title": _("Answered within the deadline, by agency"), "svg": _svg(chart),
                "head": [_("Receiving agency"), _("Answered in time (%)"), _("Referrals")],
                "rows": [(a, s, x["referrals"]["total"]) for a, s, x in zip(agencies, shares, report["by_agency"])]})

    steps = list(report["steps_fired"].items())
    chart = pygal.Bar(**_config(pygal, style, _("Escalations per ladder step"), [v for _k, v in steps]))
    chart.x_labels = [_("step %(n)s", n=k) for k, _v in steps]
    chart.add(_("times fired"), [v for _k, v in steps])
    out.append({"id": "steps", "title": _("Escalations per ladder step"), "svg": _svg(chart),
                "head": [_("Ladder step"), _("Referral clocks on which it fired")],
                "rows": [(_("step %(n)s", n=k), v) for k, v in steps]})

    outcomes = list(report["outcomes"].items())
    names = {"reintegrated": _("reintegrated"), "repatriated": _("repatriated"), "transferred": _("transferred"),
             "left_care": _("left care"), "other": _("other")}
    chart = pygal.Bar(**_config(pygal, style, _("Outcomes on closing"), [v for _k, v in outcomes]))
    chart.x_labels = [names.get(k, k) for k, _v in outcomes]
    chart.add(_("referrals"), [v for _k, v in outcomes])
    out.append({"id": "outcomes", "title": _("Outcomes on closing"), "svg": _svg(chart),
                "head": [_("Outcome"), _("Referrals")], "rows": [(names.get(k, k), v) for k, v in outcomes]})
    return out
