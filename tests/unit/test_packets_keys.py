"""Agency keys, key ids, public bundles and key rings."""
from __future__ import annotations

import hashlib
import json

import pytest

from hub.packets import (
    SEAL_ALG,
    SIGN_ALG,
    KeyBundleError,
    KeyRing,
    MalformedKeyRing,
    NoSealKey,
    PublicBundle,
    UnknownKey,
    b64u_decode,
    b64u_encode,
    generate_keyring,
    key_id,
    revoke_key,
    rotate_keys,
)

NOW = "2026-11-22T10:00:00Z"


@pytest.fixture(scope="module")
def police():
    return generate_keyring("pp-ahtjp", created_at=NOW)


def test_key_id_is_the_protocol_hash_of_alg_and_public_bytes():
    public = bytes(range(32))
    expected = hashlib.sha256(b"refhub/v1 key\0Ed25519\0" + public).hexdigest()[:32]
    assert key_id("Ed25519", public) == expected


def test_new_agency_has_one_sign_and_one_seal_key_of_protocol_sizes(police):
    ring, bundle = police
    assert [(k.use, k.alg) for k in ring.keys] == [("sign", SIGN_ALG), ("seal", SEAL_ALG)]
    assert [len(k.private) for k in ring.keys] == [32, 96]
    assert [len(k.public) for k in bundle.keys] == [32, 1216]
    assert [k.kid for k in ring.keys] == [k.kid for k in bundle.keys]
    assert all(k.kid == key_id(k.alg, k.public) for k in bundle.keys)
    assert all(k.created_at == NOW and k.revoked_at is None for k in bundle.keys)


def test_seal_private_key_is_the_mlkem_seed_then_x25519(police):
    from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

    ring, bundle = police
    private = ring.keys[1].private
    public = bundle.keys[1].public
    assert mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:64]).public_key().public_bytes_raw() == public[:1184]
    assert x25519.X25519PrivateKey.from_private_bytes(private[64:]).public_key().public_bytes_raw() == public[1184:]


def test_public_bundle_json_round_trips_in_protocol_shape(police):
    bundle = police[1]
    doc = json.loads(bundle.to_json())
    assert list(doc) == ["agency", "keys"]
    assert list(doc["keys"][0]) == ["kid", "use", "alg", "public", "created_at", "revoked_at"]
    assert b64u_decode(doc["keys"][0]["public"]) == bundle.keys[0].public
    assert PublicBundle.from_json(bundle.to_json()) == bundle
    assert PublicBundle.from_dict(bundle.to_dict()) == bundle


def _bundle_doc(police) -> dict:
    return json.loads(police[1].to_json())


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("agency"),
        lambda d: d.update(keys="none"),
        lambda d: d.update(extra=1),
        lambda d: d["keys"][0].update(kid="0" * 32),
        lambda d: d["keys"][0].update(use="encrypt"),
        lambda d: d["keys"][0].update(alg="Ed448"),
        lambda d: d["keys"][1].update(alg="Ed25519"),
        lambda d: d["keys"][0].update(public=b64u_encode(b"x" * 31)),
        lambda d: d["keys"][0].update(public="not base64!"),
        lambda d: d["keys"][0].update(created_at="yesterday"),
        lambda d: d["keys"][0].update(revoked_at="soon"),
        lambda d: d["keys"][0].pop("revoked_at"),
        lambda d: d["keys"].append(d["keys"][0]),
        lambda d: d["keys"].append("key"),
    ],
)
def test_damaged_public_bundle_is_refused_with_a_bundle_error(police, damage):
    doc = _bundle_doc(police)
    damage(doc)
    with pytest.raises(KeyBundleError):
        PublicBundle.from_dict(doc)


@pytest.mark.parametrize("text", [b"", b"[]", b"\xff", "{", '{"agency":"a","agency":"b","keys":[]}'])
def test_public_bundle_that_is_not_json_is_refused(text):
    with pytest.raises(KeyBundleError):
        PublicBundle.from_json(text)


def test_current_seal_key_is_the_newest_unrevoked(police):
    ring, bundle = rotate_keys(*police, use="seal", now="2026-11-23T10:00:00Z")
    newest = bundle.keys[-1]
    assert bundle.current_seal_key() == newest

    revoked = revoke_key(bundle, newest.kid, now="2026-11-24T10:00:00Z")
    assert revoked.current_seal_key() == police[1].keys[1]


def test_agency_with_every_seal_key_revoked_has_no_seal_key(police):
    bundle = revoke_key(police[1], police[1].keys[1].kid, now="2026-11-24T10:00:00Z")
    with pytest.raises(NoSealKey):
        bundle.current_seal_key()
    assert issubclass(NoSealKey, UnknownKey)


def test_rotation_keeps_old_keys_and_uses_the_new_one_for_signing(police):
    ring, bundle = rotate_keys(*police, use="sign", now="2026-11-23T10:00:00Z")
    assert ring.keys[:2] == police[0].keys and bundle.keys[:2] == police[1].keys
    assert ring.signing_key() == ring.keys[-1]
    assert bundle.find(ring.keys[-1].kid).created_at == "2026-11-23T10:00:00Z"
    assert police[0].signing_key() == police[0].keys[0]  # the old objects are untouched


def test_revocation_marks_only_that_key_and_keeps_its_first_date(police):
    kid = police[1].keys[0].kid
    once = revoke_key(police[1], kid, now="2026-11-24T10:00:00Z")
    twice = revoke_key(once, kid, now="2026-12-01T10:00:00Z")
    assert twice.find(kid).revoked_at == "2026-11-24T10:00:00Z"
    assert twice.keys[1].revoked_at is None
    assert police[1].find(kid).revoked_at is None


def test_revoking_an_unknown_key_is_an_unknown_key_error(police):
    with pytest.raises(UnknownKey):
        revoke_key(police[1], "f" * 32, now=NOW)


def test_keyring_json_round_trips_in_protocol_shape(police):
    ring = police[0]
    doc = json.loads(ring.to_json())
    assert list(doc) == ["agency", "keys"]
    assert list(doc["keys"][0]) == ["kid", "use", "alg", "private"]
    assert KeyRing.from_json(ring.to_json()) == ring


def test_keyring_public_bundle_matches_the_published_one(police):
    assert police[0].public_bundle(created_at=NOW) == police[1]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["keys"][0].update(kid="0" * 32),
        lambda d: d["keys"][0].update(private=b64u_encode(b"x" * 31)),
        lambda d: d["keys"][1].update(use="sign"),
        lambda d: d["keys"][0].pop("private"),
        lambda d: d.pop("agency"),
        lambda d: d["keys"].append(d["keys"][0]),
    ],
)
def test_damaged_keyring_is_refused(police, damage):
    doc = json.loads(police[0].to_json())
    damage(doc)
    with pytest.raises(MalformedKeyRing):
        KeyRing.from_json(json.dumps(doc))


def test_printing_keys_never_shows_private_bytes(police):
    ring = police[0]
    text = repr(ring) + str(ring) + repr(ring.keys[0])
    for key in ring.keys:
        assert b64u_encode(key.private) not in text
        assert key.private.hex() not in text
        assert repr(key.private) not in text


def test_a_key_ring_without_a_signing_key_cannot_sign(police):
    ring = KeyRing(agency="pp-ahtjp", keys=[police[0].keys[1]])
    with pytest.raises(UnknownKey):
        ring.signing_key()
