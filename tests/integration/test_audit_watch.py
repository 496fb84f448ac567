"""`hub client audit watch` over real HTTP, and `hub audit checkpoint` as a process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ed25519

from hub.audit import note, sequencer
from hub.audit.service import record
from hub.cli.client import client as client_cli
from hub.db import session_scope
from tests.conftest import T0
from tests.livehub import LiveHub

HUB = str(Path(sys.executable).parent / "hub")


@pytest.fixture
def live(app):
    with LiveHub(app) as hub:
        yield hub


def _grow(db, settings, n):
    with session_scope(db) as s:
        for i in range(n):
            record(s, at=T0, actor="hub", action="test.entry", detail={"i": i})
    return sequencer.tick(db, T0, settings=settings)


def _watch(live, state, expect, *extra):
    result = CliRunner().invoke(client_cli, ["audit", "watch", "--hub", live.url, "--state", str(state), *extra])
    assert result.exit_code == expect, result.output
    return result


def test_watch_keeps_checkpoints_and_proves_the_log_only_grew(live, db, settings, tmp_path, engine):
    state = tmp_path / "seen.json"
    _grow(db, settings, 3)
    first = json.loads(_watch(live, state, 0).output)
    assert first["size"] == 3 and first["previous"] is None and first["consistent"]
    _grow(db, settings, 300)
    second = json.loads(_watch(live, state, 0).output)
    assert (second["previous"], second["size"]) == (3, 303)
    _watch(live, state, 0)  # nothing new: still fine
    kept = json.loads(state.read_text())
    assert [c["size"] for c in kept["checkpoints"]] == [3, 303]
    assert oct(state.stat().st_mode & 0o777) == "0o600"

    # The hub rewrites history and signs the rewritten tree with its own key: not an extension.
    _grow(db, settings, 2)
    signer_line = (settings.keys_dir / "hub-audit.vkey").read_text().strip()
    from hub.audit import keys

    private = keys.signing_key(settings, may_create=False)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_checkpoint SET note = :n, root = :r WHERE size = 305"),
                     {"n": note.sign(settings.audit_origin, 305, b"\x05" * 32, private), "r": b"\x05" * 32})
    result = _watch(live, state, 1)
    assert "consistency proof from 303 to 305 does not verify" in result.output
    assert json.loads(state.read_text())["rejected"][-1]["checkpoint"].startswith(settings.audit_origin)
    assert signer_line.startswith(settings.audit_origin + "+")


def test_watch_refuses_a_checkpoint_signed_by_another_key(live, db, settings, tmp_path, engine):
    state = tmp_path / "seen.json"
    _grow(db, settings, 4)
    _watch(live, state, 0)
    _grow(db, settings, 1)
    other = ed25519.Ed25519PrivateKey.generate()
    with engine.begin() as conn:
        size = conn.execute(sa.text("SELECT max(size) FROM audit_checkpoint")).scalar_one()
        conn.execute(sa.text("UPDATE audit_checkpoint SET note = :n WHERE size = :s"),
                     {"n": note.sign(settings.audit_origin, size, b"\x01" * 32, other), "s": size})
    result = _watch(live, state, 1)
    assert "does not verify" in result.output or "no signature" in result.output


def test_checkpoint_command_as_a_process(settings, db):
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_SECRET_KEY": "t" * 48}
    with session_scope(db) as s:
        record(s, at=T0, actor="hub", action="test.entry")
    run = subprocess.run([HUB, "--config", str(settings.config_path), "audit", "checkpoint"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "sequenced 1 entries; tree size 1; signed checkpoint of size 1"
    again = subprocess.run([HUB, "--config", str(settings.config_path), "audit", "checkpoint"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.stdout.strip() == "sequenced 0 entries; tree size 1; no new checkpoint"
    # production mode without the key secret: one line, exit 2, nothing signed
    with session_scope(db) as s:
        record(s, at=T0, actor="hub", action="test.entry")
    prod = subprocess.run([HUB, "--config", str(settings.config_path), "audit", "checkpoint"],
                          env={**env, "HUB_MODE": "production", "HUB_PUBLIC_BASE_URL": "https://hub.example"},
                          capture_output=True, text=True, timeout=300)
    assert prod.returncode in (1, 2) and len(prod.stderr.strip().splitlines()) == 1, prod.stderr
    assert "HUB_AUDIT_KEY_SECRET" in prod.stderr and "Traceback" not in prod.stderr
