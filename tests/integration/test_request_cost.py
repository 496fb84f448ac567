"""What one request costs the database: statements and transactions (bench/submit.py measures the time)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from bench.counting import Counter


@pytest.fixture
def counter(engine):
    return Counter(engine)


def test_a_submission_is_one_transaction_of_two_statements_on_postgresql_eight_on_sqlite(client, network, submit, counter, engine):
    submit()  # the directory cache is warm after the first submission, as in a running hub
    for key in (None, "k-2"):
        payload = network.submission(urgency="urgent")
        headers = network.headers("pp-ahtjp", **({"Idempotency-Key": key} if key else {}))
        counter.reset()
        resp = client.post("/api/v1/referrals", json=payload, headers=headers)
        assert resp.status_code == 201
        assert counter.transactions == 1, counter.log
        # The token check, then the rows: the referral (with its Idempotency-Key), its history line,
        # both packets, the audit entries, the text, its one-tap token, the ladder's record. On
        # PostgreSQL they are one statement (hub.db.InsertChain), on SQLite one INSERT per table.
        expected = 2 if engine.dialect.name == "postgresql" else 8
        assert counter.statements == expected, "\n".join(counter.log)
        assert counter.kinds["SELECT"] == 1, counter.log  # no look-up that a constraint makes
        assert counter.kinds["UPDATE"] == 0, counter.log  # step 0 is in the INSERT


def test_reading_a_referral_is_one_transaction_with_its_audit_entry(client, network, submit, counter):
    ref = submit()
    counter.reset()
    resp = client.get(f"/api/v1/referrals/{ref['id']}", headers=network.headers("pp-shelter-a"))
    assert resp.status_code == 200 and resp.get_json()["packet"] is not None
    assert counter.transactions == 1, counter.log
    assert counter.kinds["INSERT"] == 1, counter.log


def test_a_list_is_one_transaction(client, network, submit, counter):
    submit()
    client.get("/api/v1/referrals", headers=network.headers("pp-shelter-a"))  # the token's sighting
    counter.reset()
    resp = client.get("/api/v1/referrals", headers=network.headers("pp-shelter-a"))
    assert len(resp.get_json()["referrals"]) == 1
    assert counter.transactions == 1, counter.log
    assert counter.kinds["INSERT"] + counter.kinds["UPDATE"] == 0, counter.log


def test_what_the_constraints_refuse_gets_the_same_answers(client, network, submit, db, monkeypatch):
    """No look-up before the INSERT: a taken reference code, referral id or Idempotency-Key is refused
    by its constraint (inside the one statement on PostgreSQL) and answered as a look-up would."""
    from hub.referrals import service as referrals
    from hub.referrals.models import Referral

    first = submit()
    draw = referrals._random_code
    codes = iter([first["code"], "R-2345"])  # the first draw is taken by the open referral above
    monkeypatch.setattr(referrals, "_random_code", lambda: next(codes, None) or draw())
    payload = network.submission()
    h = network.headers("pp-ahtjp", **{"Idempotency-Key": "cost-1"})
    resp = client.post("/api/v1/referrals", json=payload, headers=h)
    assert resp.status_code == 201 and resp.get_json()["code"] == "R-2345"
    again = client.post("/api/v1/referrals", json=payload, headers=h)  # a retry: the first result
    assert again.status_code == 201 and again.get_json() == resp.get_json()
    twin = client.post("/api/v1/referrals", json=payload, headers=network.headers("pp-ahtjp"))
    assert twin.status_code in (409, 422)  # the same referral id and packets, without the key
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Referral)) == 2
