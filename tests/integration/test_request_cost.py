"""What one request costs the database: statements and transactions (bench/submit.py measures the time)."""
from __future__ import annotations

import pytest

from bench.counting import Counter


@pytest.fixture
def counter(engine):
    return Counter(engine)


def test_a_submission_is_one_transaction_of_at_most_eight_statements(client, network, submit, counter):
    submit()  # the directory cache is warm after the first submission, as in a running hub
    for key in (None, "k-2"):
        payload = network.submission(urgency="urgent")
        headers = network.headers("pp-ahtjp", **({"Idempotency-Key": key} if key else {}))
        counter.reset()
        resp = client.post("/api/v1/referrals", json=payload, headers=headers)
        assert resp.status_code == 201
        assert counter.transactions == 1, counter.log
        # The token check, then one INSERT per table: the referral (with its Idempotency-Key), its
        # history line, both packets, the audit entries, the text, its one-tap token, the ladder's record.
        assert counter.statements <= 8, "\n".join(counter.log)
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
