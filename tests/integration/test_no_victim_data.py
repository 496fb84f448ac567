"""The database holds no victim data in the clear: unique strings from a body appear nowhere."""
from __future__ import annotations

import secrets

import sqlalchemy as sa

from hub.db import Base
from tests.factories import fictional_body


def test_body_strings_are_in_no_table(client, network, db, settings):
    marker = "CANARY" + secrets.token_hex(8)
    body = fictional_body(marker)
    resp = client.post("/api/v1/referrals", json=network.submission(body=body), headers=network.headers("pp-ahtjp"))
    assert resp.status_code == 201
    ref = resp.get_json()
    client.post(f"/api/v1/referrals/{ref['id']}/decline", json={"reason": "no bed free"},
                headers=network.headers("pp-shelter-a"))
    needles = [marker, "Test Person " + marker, "ឈ្មោះសាកល្បង " + marker]
    hits = []
    with db() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(sa.select(table)).all():
                text = " ".join(repr(v) for v in row)
                for needle in needles:
                    if needle in text or needle.encode() in text.encode("utf-8", "replace"):
                        hits.append((table.name, needle))
        assert s.execute(sa.select(sa.func.count()).select_from(Base.metadata.tables["referral_packet"])).scalar() == 2
    assert hits == []
    if settings.is_sqlite:
        path = settings.database_url.removeprefix("sqlite:///")
        from pathlib import Path

        raw = b"".join(p.read_bytes() for p in Path(path).parent.glob(Path(path).name + "*"))
        for needle in needles:
            assert needle.encode() not in raw
            assert needle.encode("utf-16-le") not in raw



def test_database_errors_reach_the_log_without_values(engine, caplog):
    """A failed statement is logged with its type and frames; neither the bound values nor the
    database's own echo of the row ("Failing row contains ...") reach the log."""
    import logging

    from hub.errors import log_failure

    secret = "CANARY-" + secrets.token_hex(6)
    log = logging.getLogger("hub.test")
    with caplog.at_level(logging.ERROR, logger="hub.test"):
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO agency (id) VALUES (:v)"), {"v": secret})
        except sa.exc.DBAPIError:
            log_failure(log, "insert failed")
    assert "IntegrityError" in caplog.text and "insert failed" in caplog.text
    assert secret not in caplog.text
