"""The network directory: who is in it, their public keys, their free beds."""
from __future__ import annotations

from flask import jsonify

from hub.api import api_bp
from hub.api.common import json_body, principal
from hub.directory import service as directory
from hub.errors import BadInput
from hub.faces import current, db


def _agency_json(agency) -> dict:
    return {
        "id": agency.id,
        "kind": agency.kind,
        "names": {"en": agency.name_en, "km": agency.name_km},
        "short_name": agency.short_name,
        "province": agency.province,
        "services": list(agency.services),
        "beds_total": agency.beds_total,
        "beds_available": agency.beds_available,
    }


@api_bp.get("/agencies")
def list_agencies():
    principal()
    return jsonify(agencies=[_agency_json(a) for a in directory.list_agencies(db())])


@api_bp.get("/agencies/<agency_id>/keys")
def agency_keys(agency_id: str):
    # Public keys are public: agency systems fetch them before they seal.
    bundle = directory.public_bundle(db(), agency_id)
    return jsonify(bundle.to_dict())


@api_bp.put("/agencies/<agency_id>/capacity")
def set_capacity(agency_id: str):
    who = principal()
    body = json_body(allowed={"beds_available"}, required={"beds_available"})
    beds = body["beds_available"]
    if not isinstance(beds, int) or isinstance(beds, bool):
        raise BadInput("'beds_available' must be a whole number", code="invalid_field")
    agency = directory.set_capacity(db(), who, agency_id, beds, clock=current().clock)
    db().commit()
    return jsonify(_agency_json(agency))
