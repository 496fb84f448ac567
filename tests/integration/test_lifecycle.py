"""The lifecycle table of PROTOCOL.md section 3, transition by transition, through the API."""
from __future__ import annotations

import pytest

from hub.referrals.service import TRANSITIONS

STATES = ("sent", "acknowledged", "accepted", "declined", "in_care", "closed", "withdrawn", "failed")
PATH = {"acknowledge": "acknowledge", "accept": "accept", "decline": "decline", "start_care": "start-care",
        "close": "close", "fail": "fail", "withdraw": "withdraw"}
ARGS = {"decline": {"reason": "no bed for a child this week"}, "fail": {"reason": "did not arrive"},
        "withdraw": {"reason": "family found"}, "close": {"outcome": "reintegrated"}}
# The shortest way to reach each state from "sent".
ROUTE = {
    "sent": [], "acknowledged": ["acknowledge"], "accepted": ["accept"], "declined": ["decline"],
    "in_care": ["accept", "start_care"], "closed": ["accept", "start_care", "close"],
    "withdrawn": ["withdraw"], "failed": ["accept", "fail"],
}


def _do(client, network, ref_id, name):
    side = TRANSITIONS[name].side
    agency = "pp-ahtjp" if side == "sender" else "pp-shelter-a"
    return client.post(f"/api/v1/referrals/{ref_id}/{PATH[name]}", json=ARGS.get(name, {}),
                       headers=network.headers(agency))


def _at(client, network, submit, state):
    ref = submit()
    for name in ROUTE[state]:
        assert _do(client, network, ref["id"], name).status_code == 200
    return ref["id"]


CASES = [(state, name) for state in STATES for name in TRANSITIONS]


@pytest.mark.parametrize("state,name", CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_transition_allowed_or_refused(client, network, submit, state, name):
    ref_id = _at(client, network, submit, state)
    t = TRANSITIONS[name]
    resp = _do(client, network, ref_id, name)
    after = client.get(f"/api/v1/referrals/{ref_id}", headers=network.headers("pp-ahtjp")).get_json()
    if state in t.sources:
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["status"] == t.target
        assert after["status"] == t.target
        assert after["history"][-1]["state"] == t.target
    else:
        assert resp.status_code == 409, resp.get_json()
        assert resp.get_json()["error"]["code"] == "wrong_state"
        assert after["status"] == state


def test_submission_answers_with_code_and_policy(submit, client, network):
    ref = submit(urgency="normal", child=True)
    assert ref["status"] == "sent"
    assert ref["policy"] == "urgent"  # a child always gets the urgent policy
    assert ref["code"].startswith("R-") and len(ref["code"]) == 6
    normal = submit(urgency="normal", child=False)
    assert normal["policy"] == "normal"


def test_decline_needs_a_reason_and_keeps_state(client, network, submit):
    ref = submit()
    resp = client.post(f"/api/v1/referrals/{ref['id']}/decline", json={}, headers=network.headers("pp-shelter-a"))
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "reason_required"
    meta = client.get(f"/api/v1/referrals/{ref['id']}", headers=network.headers("pp-shelter-a")).get_json()
    assert meta["status"] == "sent"


def test_close_needs_a_known_outcome(client, network, submit):
    ref_id = _at(client, network, submit, "in_care")
    resp = client.post(f"/api/v1/referrals/{ref_id}/close", json={"outcome": "vanished"},
                       headers=network.headers("pp-shelter-a"))
    assert resp.status_code == 400
    assert "reintegrated" in resp.get_json()["error"]["message"]


def test_reroute_after_decline_links_previous(client, network, submit):
    first = _at(client, network, submit, "declined")
    second = submit(recipient="pp-shelter-b", previous_id=first)
    meta = client.get(f"/api/v1/referrals/{second['id']}", headers=network.headers("pp-ahtjp")).get_json()
    assert meta["previous_id"] == first
    assert meta["to"] == "pp-shelter-b"


def test_reroute_of_open_referral_is_refused(client, network, submit):
    first = submit()
    resp = client.post("/api/v1/referrals", json=network.submission(recipient="pp-shelter-b", previous_id=first["id"]),
                       headers=network.headers("pp-ahtjp"))
    assert resp.status_code == 409


def test_acknowledgement_starts_the_decide_clock(client, network, submit, clock):
    ref = submit(urgency="urgent")
    clock.advance(minutes=10)
    meta = client.post(f"/api/v1/referrals/{ref['id']}/acknowledge", headers=network.headers("pp-shelter-a")).get_json()
    assert meta["clock"] == "decide"
    assert meta["acknowledged_at"] == "2026-11-22T10:10:00Z"
    assert meta["next_step_at"] is not None


def test_reference_code_is_free_again_after_close(client, network, submit, db):
    import sqlalchemy as sa

    from hub.referrals.models import Referral

    ref_id = _at(client, network, submit, "declined")
    with db() as s:
        row = s.get(Referral, ref_id)
        assert row.open_code is None and row.code.startswith("R-")
        assert s.scalar(sa.select(sa.func.count()).select_from(Referral).where(Referral.open_code.is_not(None))) == 0
