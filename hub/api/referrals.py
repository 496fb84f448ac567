"""Referrals over the API: submit sealed packets, list, read metadata, move through the lifecycle."""
from __future__ import annotations

import json

from flask import jsonify, request

from hub.api import api_bp
from hub.api.common import int_arg, json_body, principal, query_arg, refuse_long_strings
from hub.errors import BadInput
from hub.faces import current, db, writes
from hub.referrals import service as referrals
from hub.referrals.retention import PacketShredded


def _submit_result(referral) -> dict:
    return {"id": referral.id, "code": referral.code, "status": referral.status, "policy": referral.policy}


@api_bp.post("/referrals")
@writes(late=True)  # uniqueness is the constraints'; the reads need no write lock
def create_referral():
    who = principal()
    ctx = current()
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200 and key.isprintable()):
        raise BadInput("Idempotency-Key must be 1 to 200 printable characters", code="invalid_header")
    raw = request.get_data(cache=True)
    refuse_long_strings(raw, ctx.settings.packets_max_bytes)
    submission = referrals.parse_submission(json_body())
    referral, _created = referrals.create(
        db(), who, submission, settings=ctx.settings, now=ctx.clock.now(), notifier=ctx.notifier,
        idempotency_key=key, fingerprint=referrals.request_fingerprint(raw))
    db().commit()
    return jsonify(_submit_result(referral)), 201


@api_bp.get("/referrals")
def list_referrals():
    who = principal()
    box = query_arg("box", ("inbox", "sent"), default="inbox")
    status = query_arg("status", ("sent", "acknowledged", "accepted", "declined", "in_care", "closed",
                                  "withdrawn", "failed"))
    limit = int_arg("limit", 50, 1, 200)
    rows = referrals.list_for(db(), who, box=box, status=status, limit=limit,
                              offset=int_arg("offset", 0, 0, 1_000_000), cursor=request.args.get("cursor"))
    # A full page may have more after it: its last row's cursor lists them, at the same cost.
    return jsonify(referrals=[referrals.metadata(r) for r in rows],
                   next_cursor=referrals.cursor_after(rows[-1]) if len(rows) == limit else None)


@api_bp.get("/referrals/<referral_id>")
@writes(late=True)  # fetching the packet is an audit entry, in this request's unit of work
def get_referral(referral_id: str):
    who = principal()
    session = db()
    referral = referrals.get_for(session, who, referral_id)
    out = referrals.party_view(referral)
    pkt = referrals.packet_for(session, who, referral, now=current().clock.now())
    if pkt is not None and pkt.wire is None:
        raise PacketShredded(f"the packet of {referral.code} was shredded: it was final for longer than "
                             "retention.packets_after; its metadata and history stay in GET /api/v1/referrals")
    out["packet"] = json.loads(pkt.wire) if pkt is not None and pkt.wire is not None else None
    session.commit()
    return jsonify(out)


def _transition(referral_id: str, name: str, fields: set[str]):
    who = principal()
    body = json_body(allowed=fields)
    for f in fields:
        if f in body and body[f] is not None and not isinstance(body[f], str):
            raise BadInput(f"'{f}' must be text", code="invalid_field")
    ctx = current()
    referral = referrals.transition(db(), who, referral_id, name, now=ctx.clock.now(), reason=body.get("reason"),
                                    outcome=body.get("outcome"), note=body.get("note"), notifier=ctx.notifier)
    db().commit()
    return jsonify(referrals.party_view(referral))


@api_bp.post("/referrals/<referral_id>/acknowledge")
def acknowledge(referral_id):
    return _transition(referral_id, "acknowledge", set())


@api_bp.post("/referrals/<referral_id>/accept")
def accept(referral_id):
    return _transition(referral_id, "accept", set())


@api_bp.post("/referrals/<referral_id>/decline")
def decline(referral_id):
    return _transition(referral_id, "decline", {"reason"})


@api_bp.post("/referrals/<referral_id>/start-care")
def start_care(referral_id):
    return _transition(referral_id, "start_care", set())


@api_bp.post("/referrals/<referral_id>/close")
def close(referral_id):
    return _transition(referral_id, "close", {"outcome", "note"})


@api_bp.post("/referrals/<referral_id>/fail")
def fail(referral_id):
    return _transition(referral_id, "fail", {"reason"})


@api_bp.post("/referrals/<referral_id>/withdraw")
def withdraw(referral_id):
    return _transition(referral_id, "withdraw", {"reason"})
