"""Wrapped key rings: a key ring encrypted under a passphrase (Argon2id) or a raw 32-byte secret.

ct = AES-256-GCM(KEK, nonce, key ring JSON, aad = b"refhub/v1 keyring\\0" + agency + b"\\0" + holder)
"""
from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from .encoding import b64u_decode, b64u_encode, is_agency_id, strict_json_loads
from .errors import MalformedKeyRing, MalformedPacket, WrongHolder, WrongPassphrase
from .keys import KeyRing

KEYRING_VERSION = "refhub/v1 keyring"
DEFAULT_KDF_PARAMS = {"iterations": 3, "memory_kib": 65536, "lanes": 4}
# Refuse documents that would make unwrapping take minutes or gigabytes.
_KDF_LIMITS = {"iterations": (1, 64), "memory_kib": (8, 4 * 1024 * 1024), "lanes": (1, 64)}


def _aad(agency: str, holder: str) -> bytes:
    return b"refhub/v1 keyring\0" + agency.encode("utf-8") + b"\0" + holder.encode("utf-8")


def _check_kdf_params(params: dict, error) -> dict:
    out = {}
    for name, (low, high) in _KDF_LIMITS.items():
        value = params.get(name)
        if type(value) is not int or not low <= value <= high:
            raise error(f"Argon2id {name} must be a whole number from {low} to {high}, not {value!r}.")
        out[name] = value
    if out["memory_kib"] < 8 * out["lanes"]:
        raise error("Argon2id memory_kib must be at least 8 times lanes.")
    return out


def _argon2id_kek(passphrase: str, salt: bytes, params: dict) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=params["iterations"],
        lanes=params["lanes"],
        memory_cost=params["memory_kib"],
    ).derive(passphrase.encode("utf-8"))


def _seal_document(ring: KeyRing, holder: str, kek: bytes, kdf: dict, nonce: bytes) -> dict:
    ct = AESGCM(kek).encrypt(nonce, ring.to_json(), _aad(ring.agency, holder))
    return {
        "v": KEYRING_VERSION,
        "agency": ring.agency,
        "holder": holder,
        "kdf": kdf,
        "nonce": b64u_encode(nonce),
        "ct": b64u_encode(ct),
    }


def wrap_keyring(
    ring: KeyRing,
    *,
    holder: str,
    passphrase: str | None = None,
    secret: bytes | None = None,
    kdf_params: dict | None = None,
    _salt: bytes | None = None,
    _nonce: bytes | None = None,
) -> dict:
    """The PROTOCOL "wrapped key ring" object for ``holder``, under a passphrase or a 32-byte secret.

    ``kdf_params`` overrides the Argon2id defaults (iterations=3, memory_kib=65536,
    lanes=4); they are written into the document, so unwrapping honours them.
    ``_salt`` and ``_nonce`` exist only for published test vectors.
    """
    if (passphrase is None) == (secret is None):
        raise TypeError("wrap_keyring needs exactly one of passphrase= or secret=")
    if not is_agency_id(holder):
        raise ValueError(f"holder {holder!r} must be short printable text")
    nonce = _nonce if _nonce is not None else os.urandom(12)
    if len(nonce) != 12:
        raise ValueError("nonce must be 12 bytes")
    if secret is not None:
        if kdf_params is not None:
            raise TypeError("kdf_params only apply to a passphrase")
        if not isinstance(secret, (bytes, bytearray)) or len(secret) != 32:
            raise ValueError("secret must be 32 random bytes")
        return _seal_document(ring, holder, bytes(secret), {"alg": "raw"}, nonce)
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("passphrase must be a non-empty string")
    params = _check_kdf_params({**DEFAULT_KDF_PARAMS, **(kdf_params or {})}, ValueError)
    salt = _salt if _salt is not None else os.urandom(16)
    if len(salt) != 16:
        raise ValueError("salt must be 16 bytes")
    kdf = {"alg": "argon2id", "salt": b64u_encode(salt), **params}
    return _seal_document(ring, holder, _argon2id_kek(passphrase, salt, params), kdf, nonce)


def _field_bytes(doc: dict, name: str, length: int | None = None) -> bytes:
    try:
        value = b64u_decode(doc[name])
    except MalformedPacket as exc:
        raise MalformedKeyRing(f"The wrapped key ring's {name!r} is not base64url: {exc.message}") from None
    if length is not None and len(value) != length:
        raise MalformedKeyRing(f"The wrapped key ring's {name!r} must be {length} bytes, not {len(value)}.")
    return value


def parse_wrapped_keyring(wrapped: dict | str | bytes) -> dict:
    """Check the shape of a wrapped key ring document; returns it as a dict."""
    if isinstance(wrapped, (str, bytes, bytearray)):
        try:
            wrapped = strict_json_loads(wrapped)
        except (ValueError, RecursionError):
            raise MalformedKeyRing("The wrapped key ring is not valid UTF-8 JSON (or repeats a field).") from None
    if not isinstance(wrapped, dict):
        raise MalformedKeyRing("A wrapped key ring must be a JSON object.")
    if wrapped.get("v") != KEYRING_VERSION:
        raise MalformedKeyRing(f"The wrapped key ring has version {wrapped.get('v')!r}; this code reads {KEYRING_VERSION!r}.")
    expected = {"v", "agency", "holder", "kdf", "nonce", "ct"}
    if set(wrapped) != expected:
        raise MalformedKeyRing(f"A wrapped key ring must have exactly the fields {sorted(expected)}.")
    if not is_agency_id(wrapped["agency"]) or not is_agency_id(wrapped["holder"]):
        raise MalformedKeyRing("The wrapped key ring's agency or holder is not valid text.")
    kdf = wrapped["kdf"]
    if not isinstance(kdf, dict):
        raise MalformedKeyRing("The wrapped key ring's 'kdf' must be an object.")
    if kdf.get("alg") == "raw":
        if set(kdf) != {"alg"}:
            raise MalformedKeyRing("A raw-secret 'kdf' has only the field 'alg'.")
    elif kdf.get("alg") == "argon2id":
        if set(kdf) != {"alg", "salt", "iterations", "memory_kib", "lanes"}:
            raise MalformedKeyRing("An argon2id 'kdf' has exactly alg, salt, iterations, memory_kib and lanes.")
        _field_bytes(kdf, "salt", 16)
        _check_kdf_params(kdf, MalformedKeyRing)
    else:
        raise MalformedKeyRing(f"The wrapped key ring's kdf alg {kdf.get('alg')!r} is unknown; expected 'argon2id' or 'raw'.")
    _field_bytes(wrapped, "nonce", 12)
    _field_bytes(wrapped, "ct")
    return wrapped


def unwrap_keyring(
    wrapped: dict | str | bytes,
    *,
    holder: str,
    passphrase: str | None = None,
    secret: bytes | None = None,
    agency: str | None = None,
) -> KeyRing:
    """Open a wrapped key ring. Holder (and agency, if given) are checked before any decryption."""
    if (passphrase is None) == (secret is None):
        raise TypeError("unwrap_keyring needs exactly one of passphrase= or secret=")
    doc = parse_wrapped_keyring(wrapped)
    if doc["holder"] != holder:
        raise WrongHolder(f"This key ring copy is held by {doc['holder']!r}, not {holder!r}; use your own copy.")
    if agency is not None and doc["agency"] != agency:
        raise WrongHolder(f"This key ring belongs to agency {doc['agency']!r}, not {agency!r}.")
    kdf = doc["kdf"]
    if kdf["alg"] == "raw":
        if secret is None:
            raise WrongPassphrase("This key ring is locked with a secret, not a passphrase.")
        if not isinstance(secret, (bytes, bytearray)) or len(secret) != 32:
            raise WrongPassphrase("The secret does not unlock this key ring (it must be 32 bytes).")
        kek = bytes(secret)
    else:
        if passphrase is None:
            raise WrongPassphrase("This key ring is locked with a passphrase, not a secret.")
        kek = _argon2id_kek(passphrase, b64u_decode(kdf["salt"]), kdf)
    try:
        plain = AESGCM(kek).decrypt(b64u_decode(doc["nonce"]), b64u_decode(doc["ct"]), _aad(doc["agency"], doc["holder"]))
    except InvalidTag:
        raise WrongPassphrase() from None
    ring = KeyRing.from_json(plain)
    if ring.agency != doc["agency"]:
        raise MalformedKeyRing("The key ring inside names another agency than its wrapping.")
    return ring


def wrapped_to_json(wrapped: dict) -> str:
    """The wrapped key ring as a JSON text (for files and database columns)."""
    return json.dumps(wrapped, ensure_ascii=False)
