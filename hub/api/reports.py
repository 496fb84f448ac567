"""The coordinators' figures over the API: ``GET /api/v1/reports/summary`` (JSON, or CSV with ?format=csv)."""
from __future__ import annotations

from flask import Response, jsonify, request

from hub.api import api_bp
from hub.api.common import principal, query_arg
from hub.faces import current, db, writes
from hub.reports import service as reports


def summary_request(who, *, export: str | None = None) -> dict:
    """The window, province and task force of the request; one service call (it audits)."""
    ctx = current()
    out, _scope = reports.summary_for(db(), who, ctx.clock.now(), province=request.args.get("province") or None,
                                      taskforce=request.args.get("taskforce") or None,
                                      start=request.args.get("from"), end=request.args.get("to"),
                                      settings=ctx.settings, export=export)
    db().commit()  # the audit entry of the request
    return out


def csv_response(report: dict, filename: str = "refhub-summary.csv") -> Response:
    return Response(reports.to_csv(report), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})


@api_bp.get("/reports/summary")
@writes(late=True)  # a report is an audit entry, in this request's unit of work
def reports_summary():
    who = principal()
    fmt = query_arg("format", ("json", "csv"), default="json")
    report = summary_request(who, export="csv" if fmt == "csv" else None)
    return csv_response(report) if fmt == "csv" else jsonify(report)


_ERRORS = {400: "malformed request", 401: "no or bad credentials", 403: "not allowed", 503: "database unavailable"}
_PCT = {"type": "object", "required": ["count", "p50", "p90"], "properties": {
    "count": {"type": "integer", "minimum": 0},
    "p50": {"type": ["integer", "null"], "description": "seconds, nearest rank"},
    "p90": {"type": ["integer", "null"], "description": "seconds, nearest rank"}}}
_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_FIGURES = {
    "referrals": {"type": "object", "required": ["total", "by_status"], "properties": {
        "total": {"type": "integer"}, "by_status": {"type": "object", "additionalProperties": {"type": "integer"}}}},
    "first_answer_s": {**_PCT, "description": "seconds from created_at to the recipient's first transition out "
                                             "of sent (acknowledged, accepted or declined)"},
    "decision_s": {**_PCT, "description": "seconds from created_at to accepted or declined"},
    "acceptance_rate": {**_RATE, "description": "accepted (whatever came after) over accepted plus declined"},
    "unanswered_share": {**_RATE, "description": "share with no first answer (waiting, withdrawn or failed)"},
    "late_share": {**_RATE, "description": "share answered after the ack deadline, or unanswered past it"},
    "on_time_share": {**_RATE, "description": "share answered by the ack deadline"},
    "steps_fired": {"type": "object", "additionalProperties": {"type": "integer"},
                    "description": "per ladder step index: (referral, clock) pairs on which it fired"},
    "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
}
_SUMMARY = {"type": "object", "required": ["from", "to", "province", *_FIGURES, "by_agency", "by_province"],
            "properties": {
                "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
                "province": {"type": ["string", "null"]}, "taskforce": {"type": ["string", "null"]}, **_FIGURES,
                "first_answer_histogram": {"type": "array", "items": {
                    "type": "object", "required": ["le_s", "count"], "properties": {
                        "le_s": {"type": ["integer", "null"], "description": "bucket's upper bound in seconds "
                                                                             "(inclusive); null: longer"},
                        "count": {"type": "integer"}}}},
                "by_agency": {"type": "array", "items": {"type": "object", "required": ["agency"],
                                                        "properties": {"agency": {"type": "string"}, **_FIGURES}}},
                "by_province": {"type": "array", "items": {"type": "object", "required": ["province"], "properties": {
                    "province": {"type": ["string", "null"]}, **_FIGURES}}}}}

# Merged into hub/api/openapi.py's "paths" (relative to the /api/v1 server URL).
OPENAPI_PATHS = {
    "/reports/summary": {"get": {
        "summary": "Coordinators' figures for referrals created in [from, to), in the caller's scope (a provincial "
                   "coordinator: the province of the receiving agency); metadata only",
        "tags": ["reports"],
        "parameters": [
            {"name": "from", "in": "query", "required": False, "allowEmptyValue": True, "schema": {"type": "string"},
             "description": "a date (its midnight in [hub] timezone, Asia/Phnom_Penh by default) or an RFC 3339 "
                            "time; default 30 days before 'to'"},
            {"name": "to", "in": "query", "required": False, "allowEmptyValue": True, "schema": {"type": "string"},
             "description": "a date (its midnight in [hub] timezone) or an RFC 3339 time, exclusive; "
                            "default now"},
            {"name": "province", "in": "query", "required": False, "allowEmptyValue": True,
             "schema": {"type": "string", "pattern": "^(KH-([1-9]|1[0-9]|2[0-5]))?$"},
             "description": "empty: the whole scope, as when absent"},
            {"name": "taskforce", "in": "query", "required": False, "allowEmptyValue": True, "schema": {"enum": ["",
                "prevention", "rehabilitation", "law_enforcement", "justice", "international_cooperation",
                "child_affairs"]}},
            {"name": "format", "in": "query", "required": False, "schema": {"enum": ["json", "csv"],
                                                                            "default": "json"}},
        ],
        "responses": {
            "200": {"description": "done", "content": {
                "application/json": {"schema": _SUMMARY},
                "text/csv": {"schema": {"type": "string", "description": "one row per receiving agency; cells "
                                        "starting with = + - @ tab or CR are prefixed with '"}}}},
            **{str(s): {"description": d, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}} for s, d in _ERRORS.items()},
        },
    }},
}
