"""`hub client` round trip: police seal and send, the shelter opens and accepts, over real HTTP."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hub import packets
from hub.cli.client import client as client_cli
from tests.factories import FAST_KDF, fictional_body
from tests.livehub import LiveHub

PASS = "correct horse battery staple (test only)"


@pytest.fixture
def live(app):
    with LiveHub(app) as hub:
        yield hub


def _keyring_file(tmp_path, network, agency):
    doc = packets.wrap_keyring(network.rings[agency], holder=f"system:{agency}", passphrase=PASS, kdf_params=FAST_KDF)
    path = tmp_path / f"{agency}.keyring.json"
    path.write_text(json.dumps(doc))
    return str(path)


def _run(args, *, input=None, expect=0):
    result = CliRunner().invoke(client_cli, args, env={"HUB_KEYRING_PASSPHRASE": PASS}, catch_exceptions=False)
    assert result.exit_code == expect, (result.output, getattr(result, "stderr", ""))
    return result


def _common(live, network, tmp_path, agency):
    return ["--hub", live.url, "--token", network.tokens[agency], "--keyring", _keyring_file(tmp_path, network, agency)]


def test_police_to_shelter_round_trip(live, network, tmp_path):
    body = fictional_body("round-trip")
    body["unknown_future_field"] = {"kept": True}
    body_path = tmp_path / "body.json"
    body_path.write_text(json.dumps(body, ensure_ascii=False))
    police = _common(live, network, tmp_path, "pp-ahtjp")
    shelter = _common(live, network, tmp_path, "pp-shelter-a")

    sent = json.loads(_run(["send", *police, "--to", "pp-shelter-a", "--urgency", "urgent", "--province", "KH-12",
                            "--needs", "shelter,medical", "--body", str(body_path)]).output)
    assert sent["status"] == "sent" and sent["policy"] == "urgent" and sent["code"].startswith("R-")

    inbox = json.loads(_run(["inbox", *shelter]).output)
    assert [r["id"] for r in inbox] == [sent["id"]]
    assert "person" not in json.dumps(inbox)

    out = tmp_path / "opened.json"
    _run(["open", *shelter, sent["id"], "--out", str(out)])
    assert json.loads(out.read_text()) == body  # every field, the unknown one too
    # Reading the same packet again is fine; it is the same stored packet.
    again = _run(["open", *shelter, sent["id"]])
    assert json.loads(again.output) == body

    # The police can open their own archive copy.
    archive = _run(["open", *police, sent["id"]])
    assert json.loads(archive.output) == body

    assert json.loads(_run(["ack", *shelter, sent["id"]]).output)["status"] == "acknowledged"
    assert json.loads(_run(["accept", *shelter, sent["id"]]).output)["status"] == "accepted"
    listed = json.loads(_run(["sent", *police, "--status", "accepted"]).output)
    assert [r["id"] for r in listed] == [sent["id"]]


def test_third_agency_cannot_open(live, network, tmp_path):
    body_path = tmp_path / "body.json"
    body_path.write_text(json.dumps(fictional_body()))
    police = _common(live, network, tmp_path, "pp-ahtjp")
    sent = json.loads(_run(["send", *police, "--to", "pp-shelter-a", "--urgency", "normal", "--province", "KH-12",
                            "--needs", "shelter", "--body", str(body_path)]).output)
    other = _common(live, network, tmp_path, "pp-shelter-b")
    result = _run(["open", *other, sent["id"]], expect=1)
    assert "no such referral" in result.output


def test_wrong_passphrase_is_a_clear_error(live, network, tmp_path):
    args = _common(live, network, tmp_path, "pp-shelter-a")
    result = CliRunner().invoke(client_cli, ["inbox", *args], env={"HUB_KEYRING_PASSPHRASE": "wrong"})
    # Listing needs no key ring unlock; opening does.
    assert result.exit_code == 0
    result = CliRunner().invoke(client_cli, ["open", *args, "00000000-0000-4000-8000-000000000000"],
                                env={"HUB_KEYRING_PASSPHRASE": "wrong"})
    assert result.exit_code == 2
    assert "passphrase" in result.output.lower()


def test_decline_without_reason_is_usage_error(live, network, tmp_path):
    args = _common(live, network, tmp_path, "pp-shelter-a")
    result = CliRunner().invoke(client_cli, ["decline", *args, "00000000-0000-4000-8000-000000000000"])
    assert result.exit_code == 2
