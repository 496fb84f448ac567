"""The published vectors in tests/vectors/refhub-v1/ open with this library, byte for byte.

Where it is short, each step is recomputed from the primitives directly, the
way another implementer would, before the library is asked.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from hub.packets import (
    KeyRing,
    MemorySeenPacketIds,
    PacketError,
    PublicBundle,
    b64u_decode,
    key_id,
    open_packet,
    parse_packet,
    unwrap_keyring,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "refhub-v1"


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rings() -> dict[str, KeyRing]:
    doc = load("agencies-test-keyrings.json")
    return {a: KeyRing.from_json(v["keyring_json"].encode()) for a, v in doc["agencies"].items()}


@pytest.fixture(scope="module")
def bundles() -> dict[str, PublicBundle]:
    return {a: PublicBundle.from_dict(b) for a, b in load("agencies-public-bundles.json")["bundles"].items()}


def test_vector_files_are_marked_test_only():
    assert "TEST ONLY" in load("agencies-test-keyrings.json")["warning"]
    assert "TEST ONLY" in load("wrapped-keyring.json")["warning"]


def test_key_rings_are_the_seeds_laid_out_as_the_protocol_says():
    for agency, entry in load("agencies-test-keyrings.json")["agencies"].items():
        seeds = {k: bytes.fromhex(v) for k, v in entry["seeds_hex"].items()}
        sign, seal_ = entry["keyring"]["keys"]
        assert b64u_decode(sign["private"]) == seeds["sign_ed25519"]
        assert b64u_decode(seal_["private"]) == seeds["seal_mlkem768_seed"] + seeds["seal_x25519"]
        assert json.loads(entry["keyring_json"]) == entry["keyring"]


def test_kids_recompute_from_public_bytes(bundles):
    doc = load("agencies-public-bundles.json")
    for entry in doc["kids"]:
        public = b64u_decode(entry["public_b64u"])
        kid_input = b"refhub/v1 key\0" + entry["alg"].encode() + b"\0" + public
        assert b64u_decode(entry["kid_input_b64u"]) == kid_input
        assert hashlib.sha256(kid_input).hexdigest()[:32] == entry["kid"] == key_id(entry["alg"], public)
        assert bundles[entry["agency"]].find(entry["kid"]).public == public


def test_public_bundles_follow_from_the_key_rings(rings, bundles):
    seeds = {a: {k: bytes.fromhex(v) for k, v in e["seeds_hex"].items()}
             for a, e in load("agencies-test-keyrings.json")["agencies"].items()}
    for agency, bundle in bundles.items():
        s = seeds[agency]
        sign_public = ed25519.Ed25519PrivateKey.from_private_bytes(s["sign_ed25519"]).public_key().public_bytes_raw()
        seal_public = (
            mlkem.MLKEM768PrivateKey.from_seed_bytes(s["seal_mlkem768_seed"]).public_key().public_bytes_raw()
            + x25519.X25519PrivateKey.from_private_bytes(s["seal_x25519"]).public_key().public_bytes_raw()
        )
        assert [k.public for k in bundle.keys] == [sign_public, seal_public]
        assert rings[agency].public_bundle(created_at=bundle.keys[0].created_at) == bundle


def test_inner_signature_recomputes_byte_exactly():
    doc = load("packet-header-body.json")
    seed = bytes.fromhex(load("agencies-test-keyrings.json")["agencies"]["pp-ahtjp"]["seeds_hex"]["sign_ed25519"])
    header, body = doc["header"].encode(), doc["body"].encode()
    assert b64u_decode(doc["header_b64u"]) == header and b64u_decode(doc["body_b64u"]) == body

    message = b"refhub/v1 inner\0" + header + hashlib.sha256(body).digest()

    assert b64u_decode(doc["inner_signed_message_b64u"]) == message
    assert ed25519.Ed25519PrivateKey.from_private_bytes(seed).sign(message) == b64u_decode(doc["inner_signature_b64u"])


def test_outer_signature_recomputes_byte_exactly_over_the_published_ct():
    doc = load("sealed-packet.json")
    seed = bytes.fromhex(load("agencies-test-keyrings.json")["agencies"]["pp-ahtjp"]["seeds_hex"]["sign_ed25519"])
    wire = json.loads(doc["wire"])
    header, ct = b64u_decode(wire["header"]), b64u_decode(wire["ct"])
    assert header.decode() == load("packet-header-body.json")["header"]

    message = b"refhub/v1 outer\0" + header + hashlib.sha256(ct).digest()
    signature = ed25519.Ed25519PrivateKey.from_private_bytes(seed).sign(message)

    assert b64u_decode(doc["outer_signed_message_b64u"]) == message
    assert signature == b64u_decode(doc["outer_signature_b64u"]) == b64u_decode(wire["sig"])
    assert hashlib.sha256(doc["wire"].encode()).hexdigest() == doc["packet_sha256_hex"]


def test_sealed_packet_opens_to_the_exact_body(rings, bundles):
    doc = load("sealed-packet.json")

    opened = open_packet(doc["wire"].encode(), reader=rings["pp-shelter-a"], sender=bundles["pp-ahtjp"],
                         seen=MemorySeenPacketIds())

    assert opened.body == b64u_decode(doc["expected_body_b64u"]) == load("packet-header-body.json")["body"].encode()
    assert opened.inner_sig == b64u_decode(load("packet-header-body.json")["inner_signature_b64u"])


def test_sealed_packet_is_the_wire_form_the_library_parses(rings):
    packet = parse_packet(load("sealed-packet.json")["wire"])
    assert packet.header.referral_id == "7c0e5a52-0d3f-4b8e-9a51-3f2d6c1b9e77"
    assert packet.header.to_kid == rings["pp-shelter-a"].keys[1].kid


def test_passphrase_wrapped_key_ring_unwraps(rings):
    doc = load("wrapped-keyring.json")
    case = doc["passphrase"]
    kdf = case["wrapped"]["kdf"]
    kek = Argon2id(salt=b64u_decode(kdf["salt"]), length=32, iterations=kdf["iterations"],
                   lanes=kdf["lanes"], memory_cost=kdf["memory_kib"]).derive(case["passphrase"].encode())
    assert kek.hex() == case["expected_kek_hex"]
    aad = b"refhub/v1 keyring\0" + b"pp-shelter-a" + b"\0" + case["holder"].encode()
    assert aad == b64u_decode(case["aad_b64u"])
    plain = AESGCM(kek).decrypt(b64u_decode(case["wrapped"]["nonce"]), b64u_decode(case["wrapped"]["ct"]), aad)
    assert plain == doc["expected_keyring_json"].encode()

    ring = unwrap_keyring(case["wrapped"], holder=case["holder"], passphrase=case["passphrase"])

    assert ring == rings["pp-shelter-a"]


def test_raw_secret_wrapped_key_ring_unwraps(rings):
    doc = load("wrapped-keyring.json")
    case = doc["raw_secret"]

    ring = unwrap_keyring(case["wrapped"], holder=case["holder"], secret=bytes.fromhex(case["secret_hex"]))

    assert ring == rings["pp-shelter-a"]
    assert ring.to_json() == doc["expected_keyring_json"].encode()


@pytest.mark.parametrize("case", load("must-fail-packets.json")["cases"], ids=lambda c: c["name"])
def test_must_fail_packets_fail_with_the_published_error(rings, bundles, case):
    with pytest.raises(PacketError) as caught:
        open_packet(case["wire"], reader=rings["pp-shelter-a"], sender=bundles["pp-ahtjp"], seen=MemorySeenPacketIds())

    assert caught.value.code == case["expected_error"]
