"""Random input to every API endpoint: always a clear 4xx (or success), never a 5xx, never a half-write."""
from __future__ import annotations

import json

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st

from hub.referrals.models import Referral, ReferralEvent, ReferralPacket

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["to", "urgency", "child", "needs", "province", "packets", "previous_id", "reason",
                               "outcome", "note", "beds_available", "x"])
objects = st.dictionaries(field_names, json_values, max_size=6)
bodies = st.one_of(objects.map(lambda o: json.dumps(o).encode()), json_values.map(lambda v: json.dumps(v).encode()),
                   st.binary(max_size=64))

ENDPOINTS = [
    ("POST", "/api/v1/referrals", "pp-ahtjp"),
    ("POST", "/api/v1/referrals/{id}/acknowledge", "pp-shelter-a"),
    ("POST", "/api/v1/referrals/{id}/decline", "pp-shelter-a"),
    ("POST", "/api/v1/referrals/{id}/close", "pp-shelter-a"),
    ("POST", "/api/v1/referrals/{id}/withdraw", "pp-ahtjp"),
    ("PUT", "/api/v1/agencies/pp-shelter-a/capacity", "pp-shelter-a"),
    ("POST", "/api/v1/escalations/{id}/take", "pp-committee"),
]
paths = st.sampled_from(ENDPOINTS)
queries = st.dictionaries(st.sampled_from(["box", "status", "limit", "offset", "scope"]), st.text(max_size=8),
                          max_size=3)


def _state(db):
    with db() as s:
        return (tuple(s.execute(sa.select(Referral.id, Referral.status, Referral.version)).all()),
                s.scalar(sa.select(sa.func.count()).select_from(ReferralPacket)),
                s.scalar(sa.select(sa.func.count()).select_from(ReferralEvent)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=paths, body=bodies)
def test_random_bodies_never_give_5xx(client, network, submit, db, endpoint, body):
    method, path, agency = endpoint
    ref = _ref(submit, db)
    before = _state(db)
    resp = client.open(path.format(id=ref), method=method, data=body, content_type="application/json",
                       headers=network.headers(agency))
    assert resp.status_code < 500, resp.get_data(as_text=True)
    if resp.status_code >= 400:
        assert resp.get_json()["error"]["message"]
        assert _state(db) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries, which=st.sampled_from(["/api/v1/referrals", "/api/v1/escalations", "/api/v1/agencies"]))
def test_random_queries_never_give_5xx(client, network, query, which):
    resp = client.get(which, query_string=query, headers=network.headers("pp-committee"))
    assert resp.status_code < 500


def _ref(submit, db):
    # One open referral shared by the examples of a test (the fixtures are per test, not per example).
    with db() as s:
        existing = s.scalar(sa.select(Referral.id).where(Referral.status == "sent").limit(1))
    return existing or submit()["id"]
