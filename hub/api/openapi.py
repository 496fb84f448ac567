"""The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json."""
from __future__ import annotations

from flask import jsonify

from hub.api import api_bp
from hub.api.escalations import OPENAPI_PATHS
from hub.api.reports import OPENAPI_PATHS as REPORTS_PATHS

ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict:
    text = {400: "malformed request", 401: "no or bad credentials", 403: "not allowed",
            404: "not found or not yours", 409: "wrong state", 413: "too large",
            422: "well-formed but invalid", 429: "rate limited", 503: "database unavailable"}
    return {str(s): {"description": text[s], "content": {"application/json": {"schema": ERROR}}}
            for s in statuses}


def _ok(schema: dict, status: str = "200", description: str = "done") -> dict:
    return {status: {"description": description, "content": {"application/json": {"schema": schema}}}}


ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
AGENCY_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
META = {"$ref": "#/components/schemas/ReferralMetadata"}


def _transition(summary: str, body: dict | None) -> dict:
    op = {"summary": summary, "tags": ["referrals"], "parameters": [ID_PARAM],
          "responses": {**_ok(META), **_errors(400, 401, 403, 404, 409, 503)}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return {"post": op}


def _reason() -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["reason"],
            "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}}}


# Every operation may answer these, whatever it does: a body over the route's limit (413) and a
# client past its [security] rate limit (429, with Retry-After).
EVERY_OPERATION = (413, 429)


def document() -> dict:
    """The document, with the answers every operation may give added to each."""
    doc = _document()
    for item in doc["paths"].values():
        for operation in item.values():
            for status, answer in _errors(*EVERY_OPERATION).items():
                operation["responses"].setdefault(status, answer)
    return doc


def _document() -> dict:
    packet = {"type": "object", "additionalProperties": False, "required": ["v", "header", "ct", "sig"],
              "properties": {"v": {"const": "refhub/v1"}, "header": {"type": "string"},
                             "ct": {"type": "string"}, "sig": {"type": "string"}},
              "description": "A sealed refhub/v1 packet (PROTOCOL.md section 2); b64u fields."}
    return {
        "openapi": "3.1.0",
        "info": {"title": "refhub API", "version": "1.0.0",
                 "description": "Referral hub for counter-trafficking agencies. The hub routes sealed packets "
                                "it cannot read; every response carries metadata only."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/agencies": {"get": {"summary": "The network directory", "tags": ["directory"],
                                  "responses": {**_ok({"type": "object", "properties": {"agencies": {
                                      "type": "array", "items": {"$ref": "#/components/schemas/Agency"}}}}),
                                      **_errors(401, 503)}}},
            "/agencies/{id}/keys": {"get": {"summary": "An agency's public key bundle", "tags": ["directory"],
                                            "security": [], "parameters": [AGENCY_PARAM],
                                            "responses": {**_ok({"$ref": "#/components/schemas/PublicBundle"}),
                                                          **_errors(404, 503)}}},
            "/agencies/{id}/capacity": {"put": {
                "summary": "Set the agency's free beds", "tags": ["directory"], "parameters": [AGENCY_PARAM],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "required": ["beds_available"],
                    "properties": {"beds_available": {"type": "integer", "minimum": 0}}}}}},
                "responses": {**_ok({"$ref": "#/components/schemas/Agency"}),
                              **_errors(400, 401, 403, 404, 422, 503)}}},
            "/referrals": {
                "post": {
                    "summary": "Submit a referral: two sealed packets and routing metadata", "tags": ["referrals"],
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                    "schema": {"type": "string", "maxLength": 200}}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "additionalProperties": False,
                        "required": ["to", "urgency", "child", "needs", "province", "packets"],
                        "properties": {
                            "to": {"type": "string"}, "urgency": {"enum": ["urgent", "normal"]},
                            "child": {"type": "boolean"},
                            "needs": {"type": "array", "minItems": 1, "items": {"enum": [
                                "shelter", "medical", "psychosocial", "legal", "repatriation", "family_tracing",
                                "interpreter"]}},
                            "province": {"type": "string", "pattern": "^KH-([1-9]|1[0-9]|2[0-5])$"},
                            "packets": {"type": "array", "minItems": 2, "maxItems": 2, "items": packet},
                            "previous_id": {"type": ["string", "null"], "format": "uuid"}}}}}},
                    "responses": {**_ok({"type": "object", "required": ["id", "code", "status", "policy"],
                                         "properties": {"id": {"type": "string"}, "code": {"type": "string"},
                                                        "status": {"const": "sent"}, "policy": {"type": "string"}}},
                                        "201", "stored and routed"),
                                  **_errors(400, 401, 403, 404, 409, 413, 422, 503)}},
                "get": {"summary": "List referrals, newest first (metadata only)", "tags": ["referrals"],
                        "parameters": [
                            {"name": "box", "in": "query", "schema": {"enum": ["inbox", "sent"]}},
                            {"name": "status", "in": "query", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                         "maximum": 200}},
                            {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0},
                             "description": "rows to skip; a deep offset costs more than a cursor"},
                            {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 100},
                             "description": "the next_cursor of the previous page: the page starts just after "
                                            "its last referral, and costs the same on any page"}],
                        "responses": {**_ok({"type": "object", "required": ["referrals", "next_cursor"],
                                             "properties": {"referrals": {"type": "array", "items": META},
                                                            "next_cursor": {"type": ["string", "null"],
                                                                            "description": "null on a page "
                                                                            "shorter than limit"}}}),
                                      **_errors(400, 401, 503)}}},
            "/referrals/{id}": {"get": {
                "summary": "Metadata, history, and the packet addressed to the caller's agency",
                "tags": ["referrals"], "parameters": [ID_PARAM],
                "responses": {**_ok(META), **_errors(401, 404, 503)}}},
            "/referrals/{id}/acknowledge": _transition("Acknowledge (recipient)", None),
            "/referrals/{id}/accept": _transition("Accept the placement (recipient)", None),
            "/referrals/{id}/decline": _transition("Decline with a reason (recipient)", _reason()),
            "/referrals/{id}/start-care": _transition("The person arrived; care starts (recipient)", None),
            "/referrals/{id}/close": _transition("Close with an outcome (recipient)", {
                "type": "object", "additionalProperties": False, "required": ["outcome"],
                "properties": {"outcome": {"enum": ["reintegrated", "repatriated", "transferred", "left_care",
                                                    "other"]},
                               "note": {"type": "string", "maxLength": 500}}}),
            "/referrals/{id}/fail": _transition("The person never arrived or left (recipient)", _reason()),
            "/referrals/{id}/withdraw": _transition("Withdraw with a reason (sender)", _reason()),
            **OPENAPI_PATHS,
            **REPORTS_PATHS,
            "/openapi.json": {"get": {"summary": "This document", "security": [], "tags": ["meta"],
                                      "responses": _ok({"type": "object"})}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "refhub_session"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Agency": {"type": "object", "properties": {
                    "id": {"type": "string"}, "kind": {"type": "string"},
                    "names": {"type": "object", "properties": {"en": {"type": "string"}, "km": {"type": "string"}}},
                    "short_name": {"type": "string"}, "province": {"type": ["string", "null"]},
                    "services": {"type": "array", "items": {"type": "string"}},
                    "beds_total": {"type": ["integer", "null"]}, "beds_available": {"type": ["integer", "null"]}}},
                "PublicBundle": {"type": "object", "required": ["agency", "keys"], "properties": {
                    "agency": {"type": "string"}, "keys": {"type": "array", "items": {
                        "type": "object", "required": ["kid", "use", "alg", "public", "created_at", "revoked_at"],
                        "properties": {"kid": {"type": "string"}, "use": {"enum": ["sign", "seal"]},
                                       "alg": {"enum": ["Ed25519", "MLKEM768-X25519"]},
                                       "public": {"type": "string"}, "created_at": {"type": "string"},
                                       "revoked_at": {"type": ["string", "null"]}}}}}},
                "ReferralMetadata": {"type": "object", "properties": {
                    "id": {"type": "string"}, "code": {"type": "string"}, "from": {"type": "string"},
                    "to": {"type": "string"}, "urgency": {"type": "string"}, "child": {"type": "boolean"},
                    "needs": {"type": "array", "items": {"type": "string"}}, "province": {"type": "string"},
                    "status": {"type": "string"}, "policy": {"type": "string"},
                    "clock": {"type": ["string", "null"]}, "step": {"type": "integer"},
                    "next_step_at": {"type": ["string", "null"]}, "created_at": {"type": "string"},
                    "acknowledged_at": {"type": ["string", "null"]}, "decided_at": {"type": ["string", "null"]},
                    "closed_at": {"type": ["string", "null"]}, "previous_id": {"type": ["string", "null"]},
                    "history": {"type": "array", "items": {"type": "object", "properties": {
                        "state": {"type": "string"}, "at": {"type": "string"},
                        "actor_agency": {"type": ["string", "null"]}}}},
                    "packet": {"oneOf": [packet, {"type": "null"}]}}},
            },
        },
    }


@api_bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
