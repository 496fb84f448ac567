"""Wrapped key rings: under a passphrase (Argon2id) or a raw 32-byte secret, bound to agency and holder."""
from __future__ import annotations

import json
import os

import pytest

from hub.packets import (
    DEFAULT_KDF_PARAMS,
    MalformedKeyRing,
    WrongHolder,
    WrongPassphrase,
    b64u_decode,
    generate_keyring,
    unwrap_keyring,
    wrap_keyring,
)
from hub.packets.testing import FAST_KDF_PARAMS

NOW = "2026-11-22T10:00:00Z"


@pytest.fixture(scope="module")
def ring():
    return generate_keyring("pp-shelter-a", created_at=NOW)[0]


def test_member_unwraps_with_her_passphrase(ring):
    wrapped = wrap_keyring(ring, holder="user:17", passphrase="ពាក្យសម្ងាត់ correct horse", kdf_params=FAST_KDF_PARAMS)

    assert unwrap_keyring(wrapped, holder="user:17", passphrase="ពាក្យសម្ងាត់ correct horse") == ring


def test_wrapped_document_has_the_protocol_shape(ring):
    wrapped = wrap_keyring(ring, holder="user:17", passphrase="pw", kdf_params=FAST_KDF_PARAMS)

    assert list(wrapped) == ["v", "agency", "holder", "kdf", "nonce", "ct"]
    assert wrapped["v"] == "refhub/v1 keyring"
    assert wrapped["agency"] == "pp-shelter-a"
    assert wrapped["kdf"] == {"alg": "argon2id", "salt": wrapped["kdf"]["salt"], **FAST_KDF_PARAMS}
    assert len(b64u_decode(wrapped["kdf"]["salt"])) == 16
    assert len(b64u_decode(wrapped["nonce"])) == 12


def test_wrong_passphrase_is_refused(ring):
    wrapped = wrap_keyring(ring, holder="user:17", passphrase="right", kdf_params=FAST_KDF_PARAMS)

    with pytest.raises(WrongPassphrase):
        unwrap_keyring(wrapped, holder="user:17", passphrase="wrong")


def test_copy_wrapped_for_another_holder_is_refused_before_decrypting(ring):
    wrapped = wrap_keyring(ring, holder="user:17", passphrase="pw", kdf_params=FAST_KDF_PARAMS)

    with pytest.raises(WrongHolder) as caught:
        unwrap_keyring(wrapped, holder="user:18", passphrase="pw")
    assert "user:17" in caught.value.message


def test_copy_for_another_agency_is_refused_when_the_agency_is_given(ring):
    wrapped = wrap_keyring(ring, holder="user:17", passphrase="pw", kdf_params=FAST_KDF_PARAMS)

    with pytest.raises(WrongHolder):
        unwrap_keyring(wrapped, holder="user:17", passphrase="pw", agency="pp-ahtjp")


def test_relabelling_the_holder_in_the_document_breaks_it(ring):
    wrapped = wrap_keyring(ring, holder="user:17", passphrase="pw", kdf_params=FAST_KDF_PARAMS)
    stolen = {**wrapped, "holder": "user:18"}

    with pytest.raises(WrongPassphrase):
        unwrap_keyring(stolen, holder="user:18", passphrase="pw")


def test_session_secret_wrapping_round_trips(ring):
    secret = os.urandom(32)
    wrapped = wrap_keyring(ring, holder="session:abc", secret=secret)

    assert wrapped["kdf"] == {"alg": "raw"}
    assert unwrap_keyring(json.dumps(wrapped), holder="session:abc", secret=secret) == ring


def test_wrong_session_secret_is_refused(ring):
    wrapped = wrap_keyring(ring, holder="session:abc", secret=os.urandom(32))

    with pytest.raises(WrongPassphrase):
        unwrap_keyring(wrapped, holder="session:abc", secret=os.urandom(32))


def test_passphrase_given_for_a_secret_wrapped_copy_is_refused(ring):
    wrapped = wrap_keyring(ring, holder="session:abc", secret=os.urandom(32))

    with pytest.raises(WrongPassphrase):
        unwrap_keyring(wrapped, holder="session:abc", passphrase="pw")


def test_kdf_parameters_are_read_from_the_document(ring):
    params = {"iterations": 2, "memory_kib": 128, "lanes": 2}
    wrapped = wrap_keyring(ring, holder="user:17", passphrase="pw", kdf_params=params)

    assert {k: wrapped["kdf"][k] for k in params} == params
    assert unwrap_keyring(json.dumps(wrapped).encode(), holder="user:17", passphrase="pw") == ring


def test_default_kdf_parameters_are_the_protocol_ones(ring):
    wrapped = wrap_keyring(ring, holder="recovery", passphrase="ABCD-EFGH-IJKL-MNOP")

    assert DEFAULT_KDF_PARAMS == {"iterations": 3, "memory_kib": 65536, "lanes": 4}
    assert {k: wrapped["kdf"][k] for k in DEFAULT_KDF_PARAMS} == DEFAULT_KDF_PARAMS
    assert unwrap_keyring(wrapped, holder="recovery", passphrase="ABCD-EFGH-IJKL-MNOP") == ring


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(v="refhub/v2 keyring"),
        lambda d: d.pop("nonce"),
        lambda d: d.update(nonce="AAAA"),
        lambda d: d.update(ct="***"),
        lambda d: d["kdf"].update(alg="scrypt"),
        lambda d: d["kdf"].update(memory_kib=2**40),
        lambda d: d["kdf"].update(iterations="3"),
        lambda d: d["kdf"].update(salt="AAAA"),
        lambda d: d.update(kdf="argon2id"),
        lambda d: d.update(extra=True),
    ],
)
def test_damaged_wrapped_document_is_malformed(ring, damage):
    wrapped = json.loads(json.dumps(wrap_keyring(ring, holder="user:17", passphrase="pw", kdf_params=FAST_KDF_PARAMS)))
    damage(wrapped)

    with pytest.raises(MalformedKeyRing):
        unwrap_keyring(wrapped, holder="user:17", passphrase="pw")


@pytest.mark.parametrize("text", [b"", b"not json", b"[]", b"\xff"])
def test_wrapped_document_that_is_not_json_is_malformed(text):
    with pytest.raises(MalformedKeyRing):
        unwrap_keyring(text, holder="user:17", passphrase="pw")
