"""GET /audit/checkpoint, /audit/key, /audit/proof, /audit/entries (PROTOCOL.md section 6).

Checkpoints, the verifier key and consistency proofs are public, so that agencies and outside
witnesses can hold the hub to its log without an account. Inclusion proofs and entries need a
signed-in caller and show only what the caller may read (hub.audit.service.may_read).
"""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session

from hub.accounts.models import ApiToken, User
from hub.api.common import principal
from hub.audit import keys
from hub.audit import service as audit
from hub.faces import current, db
from hub.directory.models import Agency, Contact
from hub.errors import BadInput, NotFound
from hub.referrals.models import Referral

audit_bp = Blueprint("audit", __name__, url_prefix="/audit")

_MAX = 1 << 62


def _int(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > _MAX:
        raise BadInput(f"'{name}' must be a whole number from 0", code="invalid_field")
    return int(raw)


def _text(body: str, *, cache: str) -> Response:
    return Response(body, mimetype="text/plain", headers={"Cache-Control": cache})


def _parties(session: Session, actors: set[str], referral_ids: set[str]) -> audit.Parties:
    """The agencies behind the actors and the referrals of a page of entries (two to four queries)."""
    ids: dict[str, set[int]] = {"user": set(), "token": set(), "contact": set()}
    for actor in actors:
        kind, _, ident = actor.partition(":")
        if kind in ids and ident.isdigit():
            ids[kind].add(int(ident))
    agency_of: dict[str, str | None] = {}
    for kind, model in (("user", User), ("token", ApiToken), ("contact", Contact)):
        if ids[kind]:
            for ident, agency_id in session.execute(sa.select(model.id, model.agency_id).where(model.id.in_(ids[kind]))):
                agency_of[f"{kind}:{ident}"] = agency_id
    referrals = {}
    if referral_ids:
        rows = session.execute(
            sa.select(Referral.id, Referral.from_agency_id, Referral.to_agency_id, Referral.province, Agency.province)
            .join(Agency, Agency.id == Referral.to_agency_id).where(Referral.id.in_(referral_ids)))
        referrals = {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
    return audit.Parties(actor_agency=agency_of, referrals=referrals)


def _reader() -> audit.Reader:
    p = principal()
    return audit.Reader(everything=p.role == "hub_admin", agency_id=p.agency_id, coordinator=p.is_coordinator,
                        province=p.province)


@audit_bp.get("/checkpoint")
def checkpoint():
    return _text(audit.latest_checkpoint_text(db()), cache="no-cache")


@audit_bp.get("/key")
def key():
    line = keys.verifier_line(current().settings)
    if line is None:
        raise NotFound("the hub has no checkpoint key yet; it is made with the first checkpoint")
    return _text(line + "\n", cache="public, max-age=3600")


@audit_bp.get("/proof")
def proof():
    old, index, size = _int("from"), _int("index"), _int("size")
    if size is None or (old is None) == (index is None):
        raise BadInput("ask for ?from=M&size=N (consistency) or ?index=I&size=N (inclusion)", code="invalid_field")
    if old is not None:
        return jsonify(audit.consistency(db(), old, size))
    reader = _reader()
    response = jsonify(audit.inclusion(db(), reader, index, size, _parties))
    response.headers["Cache-Control"] = "no-store"
    return response


@audit_bp.get("/entries")
def entries():
    start, end = _int("start"), _int("end")
    if start is None or end is None:
        raise BadInput("ask for ?start=I&end=J (at most 1,000 leaf indices)", code="invalid_field")
    reader = _reader()
    response = jsonify(audit.entries(db(), reader, start, end, _parties))
    response.headers["Cache-Control"] = "no-store"
    return response
