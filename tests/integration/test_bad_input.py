"""Bad input on every endpoint gets a clear 4xx and stores nothing. Never a 500."""
from __future__ import annotations

import copy
import json

import pytest
import sqlalchemy as sa

from hub import packets
from hub.audit.models import AuditEntry
from hub.referrals.models import Referral, ReferralPacket


def _counts(db):
    with db() as s:
        return tuple(s.scalar(sa.select(sa.func.count()).select_from(m)) for m in (Referral, ReferralPacket))


def _post(client, network, payload, agency="pp-ahtjp", **kw):
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.post("/api/v1/referrals", data=data, content_type="application/json",
                       headers=network.headers(agency), **kw)


def _mutations(network):
    good = network.submission()
    yield "not json", b"{not json", 400
    yield "json array", [good], 400
    yield "unknown field", {**good, "victim_name": "x"}, 400
    yield "missing field", {k: v for k, v in good.items() if k != "urgency"}, 400
    yield "wrong type child", {**good, "child": "yes"}, 400
    yield "unknown need", {**good, "needs": ["spa"]}, 400
    yield "empty needs", {**good, "needs": []}, 400
    yield "bad province", {**good, "province": "Phnom Penh"}, 400
    yield "one packet", {**good, "packets": good["packets"][:1]}, 400
    yield "packet not object", {**good, "packets": ["a", "b"]}, 400
    yield "unknown recipient", {**good, "to": "nowhere"}, 422
    yield "committee recipient", {**good, "to": "ncct"}, 422
    yield "previous not uuid", {**good, "previous_id": "abc"}, 400
    bad_b64 = copy.deepcopy(good)
    bad_b64["packets"][0]["ct"] = "!!!"
    yield "bad base64", bad_b64, 400
    wrong_v = copy.deepcopy(good)
    wrong_v["packets"][0]["v"] = "refhub/v0"
    yield "wrong version", wrong_v, 400
    tampered = copy.deepcopy(good)
    ct = packets.b64u_decode(tampered["packets"][0]["ct"])
    tampered["packets"][0]["ct"] = packets.b64u_encode(ct[:-1] + bytes([ct[-1] ^ 1]))
    yield "tampered ct", tampered, 422
    swapped = copy.deepcopy(good)
    swapped["packets"][1] = network.submission()["packets"][1]
    yield "packets of two referrals", swapped, 422
    both_same = copy.deepcopy(good)
    both_same["packets"][1] = both_same["packets"][0]
    yield "same reader twice", both_same, 422


CASES = ["not json", "json array", "unknown field", "missing field", "wrong type child", "unknown need",
         "empty needs", "bad province", "one packet", "packet not object", "unknown recipient",
         "committee recipient", "previous not uuid", "bad base64", "wrong version", "tampered ct",
         "packets of two referrals", "same reader twice"]


def test_every_case_is_listed(network):
    assert [name for name, _, _ in _mutations(network)] == CASES


@pytest.mark.parametrize("case", CASES)
def test_bad_submission_is_refused_and_stores_nothing(client, network, db, case):
    name, payload, status = next(c for c in _mutations(network) if c[0] == case)
    before = _counts(db)
    resp = _post(client, network, payload)
    assert resp.status_code == status, (name, resp.get_json())
    err = resp.get_json()["error"]
    assert err["code"] and err["message"], name
    assert _counts(db) == before, name


def test_forged_sender_is_refused(client, network, db):
    # pp-shelter-b seals a packet claiming to be pp-ahtjp: its keys do not match pp-ahtjp's bundle.
    fake = network.submission(sender="pp-shelter-b", recipient="pp-shelter-a")
    resp = _post(client, network, fake, agency="pp-ahtjp")
    assert resp.status_code == 422
    assert _counts(db) == (0, 0)


def test_replayed_packets_are_refused(client, network, db):
    good = network.submission()
    assert _post(client, network, good).status_code == 201
    again = copy.deepcopy(good)
    resp = _post(client, network, again)
    assert resp.status_code in (409, 422)
    assert _counts(db) == (1, 2)


def test_oversize_is_413_before_parsing(client, network, db, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    resp = client.post("/api/v1/referrals", data=b"x" * (limit + 1), content_type="application/json",
                       headers=network.headers("pp-ahtjp"))
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "too_large"
    assert _counts(db) == (0, 0)


def test_packet_over_max_bytes_is_413(client, network, db, settings):
    big = network.submission(body={"attachments": [{"name": "photo.jpg", "media_type": "image/jpeg",
                                                    "data": "A" * (settings.packets_max_bytes + 10)}]})
    resp = _post(client, network, big)
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "packet_too_large"
    assert _counts(db) == (0, 0)


@pytest.mark.parametrize("path,method,body", [
    ("/api/v1/referrals/{id}/decline", "POST", b"[1]"),
    ("/api/v1/referrals/{id}/decline", "POST", b'{"reason": 5}'),
    ("/api/v1/referrals/{id}/close", "POST", b'{"outcome": "x", "extra": 1}'),
    ("/api/v1/referrals/{id}/acknowledge", "POST", b"\xff\xfe"),
    ("/api/v1/referrals?box=outbox", "GET", None),
    ("/api/v1/referrals?limit=abc", "GET", None),
    ("/api/v1/agencies/pp-shelter-a/capacity", "PUT", b'{"beds_available": -1}'),
    ("/api/v1/agencies/pp-shelter-a/capacity", "PUT", b'{"beds_available": "3"}'),
    ("/api/v1/agencies/pp-shelter-a/capacity", "PUT", b'{"beds_available": 100000}'),
    ("/api/v1/referrals/not-a-uuid", "GET", None),
])
def test_bad_input_elsewhere_is_a_clear_4xx(client, network, submit, db, path, method, body):
    ref = submit()
    with db() as s:
        audit_before = s.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    resp = client.open(path.format(id=ref["id"]), method=method, data=body, content_type="application/json",
                       headers=network.headers("pp-shelter-a"))
    assert 400 <= resp.status_code < 500, resp.data
    assert resp.get_json()["error"]["message"]
    meta = client.get(f"/api/v1/referrals/{ref['id']}", headers=network.headers("pp-shelter-a")).get_json()
    assert meta["status"] == "sent"
    with db() as s:
        # Reading the referral above appends one audit entry (packet.fetched); nothing else changed.
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == audit_before + 1


def test_idempotency_key_returns_first_result(client, network, db):
    payload = network.submission()
    h = network.headers("pp-ahtjp", **{"Idempotency-Key": "retry-1"})
    first = client.post("/api/v1/referrals", json=payload, headers=h)
    second = client.post("/api/v1/referrals", json=payload, headers=h)
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json()
    assert _counts(db) == (1, 2)
    other = client.post("/api/v1/referrals", json=network.submission(), headers=h)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    assert _counts(db) == (1, 2)
