"""Paging through a box with the cursor; token sightings and revocations in read-only requests."""
from __future__ import annotations

import sqlalchemy as sa

from hub.accounts import service as accounts
from hub.accounts.models import ApiToken
from hub.db import session_scope


def _page(client, network, agency, **query):
    resp = client.get("/api/v1/referrals", query_string=query, headers=network.headers(agency))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_cursor_pages_walk_the_whole_box_once_newest_first(client, network, submit, clock):
    made = []
    for i in range(7):
        made.append(submit()["id"])
        if i % 3 == 0:
            clock.advance(seconds=1)  # some referrals share their created_at, some do not
    submit(sender="pp-ahtjp", recipient="pp-shelter-b")  # another agency's inbox stays out
    everything = [r["id"] for r in _page(client, network, "pp-shelter-a", limit=200)["referrals"]]
    assert sorted(everything) == sorted(made)
    seen, cursor, pages = [], None, 0
    while True:
        page = _page(client, network, "pp-shelter-a", limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [r["id"] for r in page["referrals"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything  # same order as one big page, nothing twice, nothing missed
    assert pages == 3
    by_offset = [r["id"] for r in _page(client, network, "pp-shelter-a", limit=3, offset=3)["referrals"]]
    assert by_offset == everything[3:6]


def test_a_bad_cursor_is_a_clear_400(client, network, submit):
    submit()
    for bad in ("x", "not base64!", "MTIzNA", "A" * 200):
        resp = client.get("/api/v1/referrals", query_string={"cursor": bad}, headers=network.headers("pp-shelter-a"))
        assert resp.status_code == 400
        assert resp.get_json()["error"]["code"] == "invalid_field"


def test_a_read_only_request_records_the_tokens_use_and_sees_a_revocation_at_once(client, network, db, clock):
    def last_used():
        with db() as s:
            return s.scalar(sa.select(ApiToken.last_used_at).where(ApiToken.agency_id == "pp-shelter-a"))

    _page(client, network, "pp-shelter-a")
    first = last_used()
    assert first == clock.now()
    clock.advance(seconds=61)
    _page(client, network, "pp-shelter-a")
    assert last_used() == clock.now()
    with session_scope(db) as s:
        token_id = s.scalar(sa.select(ApiToken.id).where(ApiToken.agency_id == "pp-shelter-a"))
        accounts.revoke_token(s, token_id, clock)
    resp = client.get("/api/v1/referrals", headers=network.headers("pp-shelter-a"))
    assert resp.status_code == 401
