"""Test data: the demo network in a database, enrolled agencies, tokens, sealed referrals.

Every body here is fictional; names are invented and marked as such.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

import pytest

from hub import packets
from hub.accounts import service as accounts
from hub.db import session_scope
from hub.directory import service as directory

FAST_KDF = {"alg": "argon2id", "iterations": 1, "memory_kib": 1024, "lanes": 1}


def fictional_body(marker: str = "") -> dict:
    """A referral body in the shape of PROTOCOL.md section 2; ``marker`` makes its strings unique."""
    return {
        "person": {
            "names": {"latin": f"Test Person {marker}", "khmer": f"ឈ្មោះសាកល្បង {marker}"},
            "sex": "female", "age_estimate": 17, "nationality": "KH", "languages": ["km"],
            "id_documents": [],
        },
        "situation": {"exploitation": "forced_labour", "found_at": f"Test Site {marker}",
                      "rescued_at": "2026-11-21T22:00:00Z", "trafficking_status": "possible",
                      "decided_by": "officer"},
        "needs": ["shelter", "medical"],
        "risk": {"level": "high", "notes": f"Fictional risk note {marker}"},
        "consent": {"to_share": True, "for_services": True, "recorded_by": "officer",
                    "recorded_at": "2026-11-22T09:00:00Z"},
        "contact": {"officer": f"Officer Test {marker}"},
        "attachments": [],
    }


@dataclass
class Network:
    """The demo network loaded into a test database, with some agencies enrolled."""

    rings: dict[str, packets.KeyRing] = field(default_factory=dict)
    bundles: dict[str, packets.PublicBundle] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, agency: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[agency]}", **extra}

    def seal_pair(self, sender: str, recipient: str, body: dict | bytes, referral_id: str | None = None) -> list[dict]:
        referral_id = referral_id or str(uuid.uuid4())
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        out = []
        for reader in (recipient, sender):
            wire = packets.seal(raw, sender=self.rings[sender], recipient=self.bundles[reader],
                                referral_id=referral_id)
            out.append(json.loads(wire))
        return out

    def submission(self, sender: str = "pp-ahtjp", recipient: str = "pp-shelter-a", *, body=None,
                   urgency: str = "normal", child: bool = False, needs=("shelter",), province: str = "KH-12",
                   previous_id: str | None = None, referral_id: str | None = None) -> dict:
        data = {"to": recipient, "urgency": urgency, "child": child, "needs": list(needs), "province": province,
                "packets": self.seal_pair(sender, recipient, body or fictional_body(), referral_id)}
        if previous_id:
            data["previous_id"] = previous_id
        return data


ENROLLED = ("pp-ahtjp", "sr-ahtjp", "pp-shelter-a", "pp-shelter-b", "sr-shelter", "pp-committee", "ncct")


def load_network(sessions, settings, clock, enrolled=ENROLLED) -> Network:
    net = Network()
    with session_scope(sessions) as s:
        directory.sync_agencies(s, settings.agencies_dir, clock)
        for agency in enrolled:
            ring, _code = accounts.enroll_agency(s, agency, clock=clock, keys_dir=settings.keys_dir,
                                                  kdf_params=FAST_KDF)
            net.rings[agency] = ring
            net.bundles[agency] = directory.public_bundle(s, agency)
            net.tokens[agency] = accounts.create_token(s, agency, f"test system {agency}", clock)
    return net


@pytest.fixture
def network(db, settings, clock) -> Network:
    return load_network(db, settings, clock)


@pytest.fixture
def submit(client, network):
    """Submit a referral through the API; returns the response JSON (asserting 201)."""

    def _submit(sender="pp-ahtjp", recipient="pp-shelter-a", **kw):
        resp = client.post("/api/v1/referrals", json=network.submission(sender, recipient, **kw),
                           headers=network.headers(sender))
        assert resp.status_code == 201, resp.get_json()
        return resp.get_json()

    return _submit


def add_contact(db, agency: str, phone: str, *, lang: str = "en", role: str = "caseworker",
                duty: bool = False) -> int:
    """An SMS contact of ``agency`` (fictional name, reserved-range number); returns its id."""
    from hub.directory.models import Contact

    with db() as session, session.begin():
        contact = Contact(agency_id=agency, name="Fictional Contact", phone=phone, lang=lang, duty=duty, role=role,
                          active=True)
        session.add(contact)
        session.flush()
        return contact.id


def run_at_once(count: int, work) -> tuple[list, list]:
    """Call ``work(i)`` in ``count`` threads released together; returns (results, errors)."""
    import threading

    start, results, errors = threading.Barrier(count), [], []

    def worker(i):
        try:
            start.wait()
            results.append(work(i))
        except Exception as exc:  # collected for the test to assert on
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


# Words of a body that are routing metadata by design (needs) or a role, not personal data.
NOT_SECRET = {"shelter", "medical", "officer"}


def body_secrets(body, marker: str) -> set[str]:
    """Every string (and number) of a referral body that must never leave the packet, plus ``marker``."""
    def walk(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield json.dumps(value)

    return {s for s in walk(body) if len(s) >= 4} - NOT_SECRET | {marker}
