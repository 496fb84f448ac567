"""Who may do what: sender, recipient, a third agency, a coordinator, nobody.

A third agency gets 404 for another's referral: never its data, never a hint it exists.
"""
from __future__ import annotations

import pytest

ACTORS = ("sender", "recipient", "third", "coordinator", "anonymous")
AGENCY = {"sender": "pp-ahtjp", "recipient": "pp-shelter-a", "third": "pp-shelter-b", "coordinator": "pp-committee"}

# (method, path template, json, expected status per actor)
MATRIX = [
    ("GET", "/api/v1/referrals/{id}", None,
     {"sender": 200, "recipient": 200, "third": 404, "coordinator": 404, "anonymous": 401}),
    ("POST", "/api/v1/referrals/{id}/acknowledge", {},
     {"sender": 403, "recipient": 200, "third": 404, "coordinator": 404, "anonymous": 401}),
    ("POST", "/api/v1/referrals/{id}/accept", {},
     {"sender": 403, "recipient": 200, "third": 404, "coordinator": 404, "anonymous": 401}),
    ("POST", "/api/v1/referrals/{id}/decline", {"reason": "full"},
     {"sender": 403, "recipient": 200, "third": 404, "coordinator": 404, "anonymous": 401}),
    # Allowed for the recipient, but not from "sent": 409 shows the role check passed.
    ("POST", "/api/v1/referrals/{id}/start-care", {},
     {"sender": 403, "recipient": 409, "third": 404, "coordinator": 404, "anonymous": 401}),
    ("POST", "/api/v1/referrals/{id}/close", {"outcome": "reintegrated"},
     {"sender": 403, "recipient": 409, "third": 404, "coordinator": 404, "anonymous": 401}),
    ("POST", "/api/v1/referrals/{id}/fail", {"reason": "never arrived"},
     {"sender": 403, "recipient": 409, "third": 404, "coordinator": 404, "anonymous": 401}),
    ("GET", "/api/v1/referrals?box=sent", None,
     {"sender": 200, "recipient": 200, "third": 200, "coordinator": 200, "anonymous": 401}),
    ("GET", "/api/v1/escalations?scope=open", None,
     {"sender": 403, "recipient": 403, "third": 403, "coordinator": 200, "anonymous": 401}),
    ("POST", "/api/v1/escalations/{id}/take", {},
     {"sender": 403, "recipient": 403, "third": 403, "coordinator": 200, "anonymous": 401}),
    ("GET", "/api/v1/reports/summary", None,
     {"sender": 403, "recipient": 403, "third": 403, "coordinator": 200, "anonymous": 401}),
    ("GET", "/api/v1/reports/summary?format=csv", None,
     {"sender": 403, "recipient": 403, "third": 403, "coordinator": 200, "anonymous": 401}),
    ("GET", "/api/v1/openapi.json", None,
     {"sender": 200, "recipient": 200, "third": 200, "coordinator": 200, "anonymous": 200}),
    ("POST", "/api/v1/referrals/{id}/withdraw", {"reason": "found family"},
     {"sender": 200, "recipient": 403, "third": 404, "coordinator": 404, "anonymous": 401}),
    ("GET", "/api/v1/referrals?box=inbox", None,
     {"sender": 200, "recipient": 200, "third": 200, "coordinator": 200, "anonymous": 401}),
    ("GET", "/api/v1/agencies", None,
     {"sender": 200, "recipient": 200, "third": 200, "coordinator": 200, "anonymous": 401}),
    ("PUT", "/api/v1/agencies/pp-shelter-a/capacity", {"beds_available": 3},
     {"sender": 403, "recipient": 200, "third": 403, "coordinator": 403, "anonymous": 401}),
    ("GET", "/api/v1/agencies/pp-shelter-a/keys", None,
     {"sender": 200, "recipient": 200, "third": 200, "coordinator": 200, "anonymous": 200}),
]


def _headers(network, actor):
    return {} if actor == "anonymous" else network.headers(AGENCY[actor])


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("method,path,body,expected", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_access_matrix(client, network, submit, actor, method, path, body, expected):
    ref = submit()
    resp = client.open(path.format(id=ref["id"]), method=method, json=body, headers=_headers(network, actor))
    assert resp.status_code == expected[actor], resp.get_json()
    data = resp.get_json()
    if resp.status_code >= 400:
        assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}
    if (actor in ("third", "coordinator") and "referrals?box" in path) or (actor == "recipient" and "box=sent" in path):
        assert data["referrals"] == []


def test_packet_is_served_only_to_its_reader(client, network, submit):
    ref = submit()
    for agency in ("pp-ahtjp", "pp-shelter-a"):
        data = client.get(f"/api/v1/referrals/{ref['id']}", headers=network.headers(agency)).get_json()
        assert data["packet"] is not None
        from hub.packets import parse_packet
        import json

        header = parse_packet(json.dumps(data["packet"]).encode()).header
        assert header.to_agency == agency


def test_unknown_and_foreign_ids_look_the_same(client, network, submit):
    ref = submit()
    foreign = client.get(f"/api/v1/referrals/{ref['id']}", headers=network.headers("pp-shelter-b"))
    missing = client.get("/api/v1/referrals/00000000-0000-4000-8000-000000000000",
                         headers=network.headers("pp-shelter-b"))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.get_json() == missing.get_json()


def test_revoked_or_bad_token_is_401(client, network):
    resp = client.get("/api/v1/referrals", headers={"Authorization": "Bearer rh_not-a-real-token"})
    assert resp.status_code == 401
    resp = client.get("/api/v1/referrals", headers={"Authorization": "Basic abc"})
    assert resp.status_code == 401
