"""Escalations over the API, for coordinators: what is overdue or escalated, and taking ownership.

Metadata only (API.md): the same fields as a referral's metadata, plus who owns
the escalation and how many contacts its running clock has texted.
"""
from __future__ import annotations

from flask import jsonify

from hub.api import api_bp
from hub.api.common import int_arg, principal, query_arg
from hub.clock import rfc3339
from hub.escalation import service as escalation
from hub.faces import current, db
from hub.referrals import service as referrals


def escalation_view(referral, notified: int) -> dict:
    out = referrals.metadata(referral)
    out["deadline_at"] = rfc3339(referral.deadline_at) if referral.deadline_at else None
    out["owner"] = referral.owner
    out["owned_at"] = rfc3339(referral.owned_at) if referral.owned_at else None
    out["notified"] = notified
    return out


@api_bp.get("/escalations")
def list_escalations():
    who = principal()
    query_arg("scope", ("open",), default="open")
    rows = escalation.open_escalations(db(), who, current().clock.now(), limit=int_arg("limit", 100, 1, 500),
                                       offset=int_arg("offset", 0, 0, 1_000_000))
    return jsonify(escalations=[escalation_view(r, n) for r, n in rows])


@api_bp.post("/escalations/<referral_id>/take")
def take_escalation(referral_id: str):
    who = principal()
    ctx = current()
    session = db()
    referral, notified = escalation.take(session, who, referral_id, ctx.clock.now(), settings=ctx.settings)
    out = escalation_view(referral, notified)
    session.commit()
    return jsonify(out)


_ERRORS = {400: "malformed request", 401: "no or bad credentials", 403: "not allowed",
           404: "not found or not yours", 409: "wrong state", 503: "database unavailable"}


def _errors(*statuses: int) -> dict:
    return {str(s): {"description": _ERRORS[s],
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for s in statuses}


_ESCALATION = {
    "allOf": [
        {"$ref": "#/components/schemas/ReferralMetadata"},
        {"type": "object", "required": ["deadline_at", "owner", "owned_at", "notified"], "properties": {
            "deadline_at": {"type": ["string", "null"], "format": "date-time",
                            "description": "when the running clock runs out"},
            "owner": {"type": ["string", "null"], "description": "the coordinator who took it"},
            "owned_at": {"type": ["string", "null"], "format": "date-time"},
            "notified": {"type": "integer", "minimum": 0,
                         "description": "contacts texted on the running clock"},
        }},
    ],
}

# Merged by the lead into hub/api/openapi.py's "paths" (relative to the /api/v1 server URL).
OPENAPI_PATHS = {
    "/escalations": {"get": {
        "summary": "Overdue and escalated referrals in the coordinator's province (national: all), newest due "
                   "first; metadata only",
        "tags": ["escalations"],
        "parameters": [
            {"name": "scope", "in": "query", "required": False, "schema": {"enum": ["open"], "default": "open"}},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
            {"name": "offset", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0, "default": 0}},
        ],
        "responses": {
            "200": {"description": "done", "content": {"application/json": {"schema": {
                "type": "object", "required": ["escalations"],
                "properties": {"escalations": {"type": "array", "items": _ESCALATION}}}}}},
            **_errors(400, 401, 403, 503),
        },
    }},
    "/escalations/{id}/take": {"post": {
        "summary": "A coordinator takes ownership of an open referral; the other coordinators texted about it are "
                   "told",
        "tags": ["escalations"],
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "string", "format": "uuid"}}],
        "responses": {
            "200": {"description": "done", "content": {"application/json": {"schema": _ESCALATION}}},
            **_errors(401, 403, 404, 409, 503),
        },
    }},
}
