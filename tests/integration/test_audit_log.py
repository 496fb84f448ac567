"""The tamper-evident audit log end to end: sequencing, checkpoints, proofs, read rules, and every
kind of tampering found by `hub audit verify` (run as a process) and by a client checking proofs."""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519

from hub.accounts import service as accounts
from hub.audit import keys, note, sequencer, store
from hub.audit.models import AuditCheckpoint, AuditEntry, AuditNode
from hub.audit.service import record
from hub.clock import SystemClock
from hub.db import session_scope
from tests import audit_checker as checker
from tests.conftest import T0

HUB = str(Path(sys.executable).parent / "hub")


def is_pg(engine) -> bool:
    return engine.dialect.name == "postgresql"


def tick(db, settings):
    return sequencer.tick(db, T0, settings=settings)


def add(db, n: int, actor: str = "hub", **kw) -> None:
    with session_scope(db) as s:
        for i in range(n):
            record(s, at=T0 + dt.timedelta(seconds=i), actor=actor, action="test.entry", detail={"i": i}, **kw)


def run_verify(settings) -> subprocess.CompletedProcess:
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_SECRET_KEY": "t" * 48}
    return subprocess.run([HUB, "--config", str(settings.config_path), "audit", "verify"], env=env,
                          capture_output=True, text=True, timeout=600)


@contextlib.contextmanager
def triggers_off(engine):
    """What an attacker with database rights does first."""
    with engine.begin() as conn:
        if is_pg(engine):
            conn.execute(sa.text("ALTER TABLE audit_entry DISABLE TRIGGER USER"))
        else:
            conn.execute(sa.text("DROP TRIGGER audit_entry_no_update"))
            conn.execute(sa.text("DROP TRIGGER audit_entry_no_delete"))
    try:
        yield
    finally:
        if is_pg(engine):
            with engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE audit_entry ENABLE TRIGGER USER"))


def seq_at(engine, index: int) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT seq FROM audit_entry WHERE leaf_index = :i"), {"i": index}).scalar_one()


# --- the leaf bytes -----------------------------------------------------------------------------

def test_leaf_bytes_are_sorted_compact_json_with_whole_second_times(db):
    at = dt.datetime(2026, 11, 22, 10, 0, 5, 987654, tzinfo=dt.timezone.utc)
    with session_scope(db) as s:
        entry = record(s, at=at, actor="user:7", action="referral.sent", referral_id="r-1",
                       detail={"state": "sent", "ស្ថានភាព": 2, "a": [1, None]})
        other = record(s, at=at, actor="hub", action="login.failed")
    with db() as s:
        rows = s.execute(sa.select(*store.leaf_columns(s)).order_by(AuditEntry.seq)).all()
    want = {"action": "referral.sent", "actor": "user:7", "at": "2026-11-22T10:00:05Z",
            "detail": {"a": [1, None], "state": "sent", "ស្ថានភាព": 2}, "packet_sha256": None,
            "referral_id": "r-1", "seq": entry.seq}
    canonical = json.dumps(want, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert store.leaf_of_row(rows[0]) == canonical == store.leaf_bytes_of(entry)
    assert json.loads(store.leaf_of_row(rows[1])) == {
        "action": "login.failed", "actor": "hub", "at": "2026-11-22T10:00:05Z", "detail": {},
        "packet_sha256": None, "referral_id": None, "seq": other.seq}


# --- sequencing, checkpoints, the database's rules ----------------------------------------------

def test_sequencer_numbers_entries_in_seq_order_and_signs_checkpoints(db, settings):
    assert tick(db, settings).checkpoint is None  # an empty log signs nothing
    add(db, 300)
    report = tick(db, settings)
    assert (report.sequenced, report.size, report.checkpoint) == (300, 300, 300)
    assert tick(db, settings).checkpoint is None  # the tree did not grow: no new checkpoint
    add(db, 5)
    assert tick(db, settings).checkpoint == 305
    vkey = (settings.keys_dir / keys.VKEY_FILE).read_text().strip()
    with db() as s:
        rows = s.execute(sa.select(AuditEntry.seq, AuditEntry.leaf_index).order_by(AuditEntry.seq)).all()
        cps = s.scalars(sa.select(AuditCheckpoint).order_by(AuditCheckpoint.size)).all()
        leaves = [store.leaf_of_row(r) for r in s.execute(
            sa.select(*store.leaf_columns(s)).order_by(AuditEntry.leaf_index))]
    assert [li for _, li in rows] == list(range(305))
    assert [cp.size for cp in cps] == [300, 305]
    for cp in cps:
        origin, size, root = checker.open_checkpoint(cp.note, vkey)
        assert origin == settings.audit_origin == "refhub/127.0.0.1:5000"
        assert root == checker_root(leaves[:size])
    # the wrapped key file is private, and the key line is the published form
    assert oct((settings.keys_dir / keys.RING_FILE).stat().st_mode & 0o777) == "0o600"
    assert "private" not in (settings.keys_dir / keys.RING_FILE).read_text()
    assert vkey.startswith("refhub/127.0.0.1:5000+")


def checker_root(leaves: list[bytes]) -> bytes:
    def mth(items):
        if len(items) == 1:
            return checker.leaf_hash(items[0])
        k = checker._k(len(items))
        return checker.H(b"\x01" + mth(items[:k]) + mth(items[k:]))
    return mth(leaves) if leaves else checker.H(b"")


def test_the_database_lets_only_a_missing_leaf_index_be_set_once(engine, db, settings):
    add(db, 2)
    with engine.begin() as conn:  # what the sequencer does: allowed
        conn.execute(sa.text("UPDATE audit_entry SET leaf_index = 0 WHERE seq = (SELECT min(seq) FROM audit_entry)"))
    refused = [
        "UPDATE audit_entry SET leaf_index = 5 WHERE leaf_index = 0",  # an index changes
        "UPDATE audit_entry SET leaf_index = NULL WHERE leaf_index = 0",  # an index is taken away
        "UPDATE audit_entry SET leaf_index = 1, actor = 'user:1' WHERE leaf_index IS NULL",  # with another change
        "UPDATE audit_entry SET actor = 'user:1'",
        "DELETE FROM audit_entry",
    ]
    for statement in refused:
        with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
            conn.execute(sa.text(statement))
        assert "append-only" in str(caught.value.orig)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), max(leaf_index) FROM audit_entry")).one() == (2, 0)


# --- the public and signed-in faces -------------------------------------------------------------

def _b(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def test_public_faces_serve_checkpoints_key_and_consistency_proofs(client, db, settings):
    assert client.get("/audit/checkpoint").status_code == 404
    add(db, 7)
    tick(db, settings)
    first = client.get("/audit/checkpoint").get_data(as_text=True)
    add(db, 300)
    tick(db, settings)
    resp = client.get("/audit/checkpoint")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    vkey = client.get("/audit/key").get_data(as_text=True)
    _, old_size, old_root = checker.open_checkpoint(first, vkey)
    _, size, root = checker.open_checkpoint(resp.get_data(as_text=True), vkey)
    assert (old_size, size) == (7, 307)
    proof = client.get(f"/audit/proof?from={old_size}&size={size}").get_json()
    assert proof["from"] == 7 and proof["size"] == 307
    assert checker.consistent(7, 307, old_root, root, [_b(h) for h in proof["path"]])
    assert not checker.consistent(7, 307, root, root, [_b(h) for h in proof["path"]])
    for m in (1, 2, 5, 6, 255, 256, 306):
        p = client.get(f"/audit/proof?from={m}&size={size}").get_json()
        assert checker.consistent(m, size, checker_root(_leaves(db)[:m]), root, [_b(h) for h in p["path"]])
    # sizes beyond the latest checkpoint are 404; bad queries 400 in the envelope; entries need sign-in
    assert client.get(f"/audit/proof?from=1&size={size + 1}").status_code == 404
    for query in ("", "?from=1", "?from=-1&size=3", "?from=x&size=3", "?from=5&size=3", "?from=1&index=1&size=3",
                  "?from=99999999999999999999&size=3"):
        resp = client.get(f"/audit/proof{query}")
        assert resp.status_code == 400 and resp.get_json()["error"]["code"], query
    assert client.get("/audit/proof?index=0&size=3").status_code == 401
    assert client.get("/audit/entries?start=0&end=3").status_code == 401


def _leaves(db) -> list[bytes]:
    with db() as s:
        return [store.leaf_of_row(r) for r in s.execute(
            sa.select(*store.leaf_columns(s)).where(AuditEntry.leaf_index.is_not(None)).order_by(AuditEntry.leaf_index))]


def test_entries_and_inclusion_proofs_follow_the_read_rules(client, db, settings, network, submit):
    ref = submit("pp-ahtjp", "pp-shelter-a")
    add(db, 3)  # the hub's own entries: a hub admin's to read
    tick(db, settings)
    vkey = client.get("/audit/key").get_data(as_text=True)
    _, size, root = checker.open_checkpoint(client.get("/audit/checkpoint").get_data(as_text=True), vkey)

    def seen(agency):
        resp = client.get(f"/audit/entries?start=0&end={size}", headers=network.headers(agency))
        assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
        return resp.get_json()["entries"]

    on_referral = {e["leaf_index"] for e in seen("pp-ahtjp") if json.loads(e["entry"])["referral_id"] == ref["id"]}
    assert on_referral and on_referral == {e["leaf_index"] for e in seen("pp-shelter-a")}
    assert {e["leaf_index"] for e in seen("pp-committee")} >= on_referral  # the province's coordinator
    assert {e["leaf_index"] for e in seen("ncct")} >= on_referral  # national
    for outsider in ("pp-shelter-b", "sr-ahtjp"):
        assert not any(json.loads(e["entry"])["referral_id"] == ref["id"] for e in seen(outsider))
    assert not any(json.loads(e["entry"])["actor"] == "hub" for e in seen("pp-ahtjp"))

    for e in seen("pp-shelter-a"):
        proof = client.get(f"/audit/proof?index={e['leaf_index']}&size={size}",
                           headers=network.headers("pp-shelter-a")).get_json()
        leaf = checker.leaf_hash(e["entry"].encode())
        assert _b(proof["leaf_hash"]) == leaf
        assert checker.root_from_path(e["leaf_index"], size, leaf, [_b(h) for h in proof["path"]]) == root
    index = next(iter(on_referral))
    assert client.get(f"/audit/proof?index={index}&size={size}",
                      headers=network.headers("pp-shelter-b")).status_code == 404
    assert client.get(f"/audit/entries?start=0&end=1001", headers=network.headers("ncct")).status_code == 400
    assert client.get(f"/audit/entries?start=0&end={size + 1}", headers=network.headers("ncct")).status_code == 404


def test_an_inclusion_proof_at_a_large_tree_matches_the_rfc_text(client, db, settings, network):
    """A tree past 2**16 leaves, so that proofs combine stored nodes of heights 0, 8 and 16."""
    token_actor = _actor(db, network, "pp-ahtjp")
    n = 65536 + 300
    now = T0
    with session_scope(db) as s:
        s.execute(sa.insert(AuditEntry), [{"at": now, "actor": token_actor if i % 997 == 0 else "hub",
                                           "action": "bulk", "detail": {"i": i}} for i in range(n)])
    tick(db, settings)
    leaves = _leaves(db)
    hashes = [checker.leaf_hash(x) for x in leaves]
    vkey = client.get("/audit/key").get_data(as_text=True)
    _, size, root = checker.open_checkpoint(client.get("/audit/checkpoint").get_data(as_text=True), vkey)
    assert size == len(leaves) > 65536 + 256
    mine = [i for i, x in enumerate(leaves) if json.loads(x)["actor"] == token_actor]
    for index in (mine[0], mine[3], max(i for i in mine if i < 65536), mine[-1]):
        proof = client.get(f"/audit/proof?index={index}&size={size}", headers=network.headers("pp-ahtjp")).get_json()
        assert checker.root_from_path(index, size, hashes[index], [_b(h) for h in proof["path"]]) == root
    for m in (1, 255, 256, 257, 65535, 65536, 65537, size - 1):
        p = client.get(f"/audit/proof?from={m}&size={size}").get_json()
        assert checker.consistent(m, size, _mth(hashes[:m]), root, [_b(h) for h in p["path"]]), m


def _mth(hashes):
    level = list(hashes)
    # RFC 9162 MTH over hashes, iteratively: fold pairs left to right, carrying an odd last node
    while len(level) > 1:
        level = [checker.H(b"\x01" + level[i] + level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


def _actor(db, network, agency) -> str:
    with db() as s:
        return accounts.authenticate_token(s, network.tokens[agency], SystemClock()).display


# --- tampering -------------------------------------------------------------------------------------

def _changed(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entry SET actor = 'user:999' WHERE leaf_index = 123"))
    return 123, f"entry seq {seq_before[123]} (leaf index 123) does not match its leaf hash"


def _deleted(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_entry WHERE leaf_index = 200"))
    return 200, "leaf index 200 is missing"


def _reordered(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entry SET leaf_index = -1 WHERE leaf_index = 110"))
        conn.execute(sa.text("UPDATE audit_entry SET leaf_index = 110 WHERE leaf_index = 111"))
        conn.execute(sa.text("UPDATE audit_entry SET leaf_index = 111 WHERE leaf_index = -1"))
    return 110, f"entry seq {seq_before[111]} (leaf index 110) does not match its leaf hash"


def _inserted(engine):
    """A made-up entry slipped in at leaf 100, the later ones moved up by one."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entry SET leaf_index = -leaf_index - 1 WHERE leaf_index >= 100"))
        conn.execute(sa.text("UPDATE audit_entry SET leaf_index = -leaf_index WHERE leaf_index < 0"))
        conn.execute(sa.text("INSERT INTO audit_entry (seq, at, actor, action, detail, leaf_index) VALUES "
                             "(:seq, :at, 'user:1', 'referral.created', '{}', 100)"),
                     {"seq": seq_before[99] * 0 + 10_000_000, "at": T0.replace(tzinfo=None)})
    return 100, "entry seq 10000000 (leaf index 100)"


def _backdated(engine):
    """An entry inserted below the sequenced ones, with no leaf index."""
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_entry (seq, at, actor, action, detail) VALUES "
                             "(:seq, :at, 'user:1', 'login', '{}')"),
                     {"seq": _free_seq(conn), "at": T0.replace(tzinfo=None)})
    return None, "(no leaf index) lies below sequenced entries"


def _free_seq(conn) -> int:
    """A seq below the sequenced ones that no entry holds (the network's set-up leaves none: make one)."""
    used = {seq for seq, in conn.execute(sa.text("SELECT seq FROM audit_entry"))}
    free = [s for s in range(1, max(used)) if s not in used]
    assert free, "the fixture leaves a gap in seq"
    return free[-1]


seq_before: dict[int, int] = {}
LOG: dict[str, int] = {}

CASES = {"changed": _changed, "deleted": _deleted, "reordered": _reordered, "inserted": _inserted,
         "backdated": _backdated}


@pytest.fixture
def signed_log(db, settings, engine, network):
    """The network's set-up entries, then 610 of an agency's system, in four checkpoints."""
    actor = _actor(db, network, "pp-ahtjp")
    tick(db, settings)
    with session_scope(db) as s:  # a seq that is never used (as a rolled-back transaction leaves on PostgreSQL)
        record(s, at=T0, actor=actor, action="test.gap")
        s.flush()
        s.rollback()
    if not is_pg(engine):
        with engine.begin() as conn:  # SQLite reuses a rolled-back rowid: skip one by hand
            conn.execute(sa.text("INSERT INTO audit_entry (seq, at, actor, action, detail) "
                                 "SELECT max(seq) + 2, :at, :actor, 'test.gap', '{}' FROM audit_entry"),
                         {"at": T0.replace(tzinfo=None), "actor": actor})
    for n in (300, 300, 10):
        add(db, n, actor=actor)
        tick(db, settings)
    with engine.connect() as conn:
        seq_before.clear()
        seq_before.update(dict(conn.execute(sa.text("SELECT leaf_index, seq FROM audit_entry")).all()))
    LOG["size"] = len(seq_before)
    ok = run_verify(settings)
    assert ok.returncode == 0, ok.stderr
    n = LOG["size"]
    assert f"{n} entries, {n} in the tree" in ok.stdout and f"checkpoints (latest size {n})" in ok.stdout
    return actor


class Client:
    """An agency that checks what it reads: each entry's inclusion in the signed tree."""

    def __init__(self, http, headers):
        self.http, self.headers = http, headers
        self.vkey = http.get("/audit/key").get_data(as_text=True)
        self.seen: dict[int, bytes] = {}

    def check(self) -> list[str]:
        text = self.http.get("/audit/checkpoint").get_data(as_text=True)
        try:
            _, size, root = checker.open_checkpoint(text, self.vkey)
        except Exception as exc:  # InvalidSignature or a malformed note
            return [f"checkpoint does not verify ({type(exc).__name__})"]
        problems, served = [], {}
        for start in range(0, size, 1000):
            page = self.http.get(f"/audit/entries?start={start}&end={min(start + 1000, size)}", headers=self.headers)
            served.update({e["leaf_index"]: e["entry"].encode() for e in page.get_json()["entries"]})
        for index, entry in served.items():
            proof = self.http.get(f"/audit/proof?index={index}&size={size}", headers=self.headers).get_json()
            if checker.root_from_path(index, size, checker.leaf_hash(entry), [_b(h) for h in proof["path"]]) != root:
                problems.append(f"entry at leaf {index} is not in the signed tree")
        problems += [f"entry at leaf {i} is gone" for i in self.seen if i not in served]
        self.seen.update(served)
        return problems


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampering_with_entries_is_found(case, signed_log, engine, settings, client, network):
    agency = Client(client, network.headers("pp-ahtjp"))
    assert agency.check() == [] and len(agency.seen) >= 610
    with triggers_off(engine):
        index, named = CASES[case](engine)
    result = run_verify(settings)
    assert result.returncode == 1, result.stdout
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("hub: audit log check failed: ")
    assert named in line, line
    if index is not None:
        assert agency.check(), f"the client did not notice {case}"


def test_rewriting_the_leaf_hashes_as_well_is_still_found(signed_log, engine, settings):
    with triggers_off(engine), engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entry SET actor = 'user:999' WHERE leaf_index = 100"))
    with session_scope(sessionmaker_for(engine)) as s:
        row = s.execute(sa.select(*store.leaf_columns(s)).where(AuditEntry.leaf_index == 100)).one()
        s.execute(sa.update(AuditNode).where(AuditNode.height == 0, AuditNode.index == 100)
                  .values(hash=checker.leaf_hash(store.leaf_of_row(row))))
    result = run_verify(settings)
    assert result.returncode == 1
    assert "leaf indices 0 to 255" in result.stderr


def sessionmaker_for(engine):
    from hub.db import make_sessionmaker

    return make_sessionmaker(engine)


def _forge(engine, settings):
    """The latest checkpoint's root changed in its note (the signature no longer covers it)."""
    with engine.begin() as conn:
        text, root = conn.execute(sa.text("SELECT note, root FROM audit_checkpoint WHERE size = :size"),
                                  {"size": LOG["size"]}).one()
        fake = base64.b64encode(b"\x07" * 32).decode()
        conn.execute(sa.text("UPDATE audit_checkpoint SET note = :n, root = :r WHERE size = :size"),
                     {"n": text.replace(base64.b64encode(bytes(root)).decode(), fake), "r": b"\x07" * 32,
                      "size": LOG["size"]})
    return f"checkpoint of size {LOG['size']}: the checkpoint's signature does not verify"


def _replace(engine, settings):
    """A checkpoint signed afresh by another key under the hub's name."""
    other = ed25519.Ed25519PrivateKey.generate()
    text = note.sign(settings.audit_origin, LOG["size"], b"\x07" * 32, other)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_checkpoint SET note = :n, root = :r WHERE size = :size"),
                     {"n": text, "r": b"\x07" * 32, "size": LOG["size"]})
    return f"checkpoint of size {LOG['size']}: the checkpoint carries no signature by the hub's key"


@pytest.mark.parametrize("forge", [_forge, _replace], ids=["forged", "replaced"])
def test_forged_or_replaced_checkpoints_are_found(forge, signed_log, engine, settings, client, network, tmp_path):
    agency = Client(client, network.headers("pp-ahtjp"))
    assert agency.check() == []
    named = forge(engine, settings)
    result = run_verify(settings)
    assert result.returncode == 1 and named in result.stderr, result.stderr
    assert agency.check() and "does not verify" in agency.check()[0]
