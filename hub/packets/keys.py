"""Agency keys: Ed25519 for signing, MLKEM768-X25519 (through HPKE) for sealing.

A ``KeyRing`` is an agency's private half; a ``PublicBundle`` its public half,
published by the hub. Keys are listed in creation order, newest last, and old
keys stay so that old packets still open.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

from .encoding import (
    b64u_decode,
    b64u_encode,
    compact_json,
    is_agency_id,
    is_kid,
    is_utc_time,
    strict_json_loads,
    utc_now,
)
from .errors import (
    KeyBundleError,
    MalformedKeyRing,
    MalformedPacket,
    NoSealKey,
    UnknownKey,
)

SIGN_ALG = "Ed25519"
SEAL_ALG = "MLKEM768-X25519"

_ALG_OF_USE = {"sign": SIGN_ALG, "seal": SEAL_ALG}
_PUBLIC_LEN = {SIGN_ALG: 32, SEAL_ALG: 1184 + 32}
_PRIVATE_LEN = {SIGN_ALG: 32, SEAL_ALG: 64 + 32}
_MLKEM_SEED_LEN = 64
_MLKEM_PUBLIC_LEN = 1184


def key_id(alg: str, public: bytes) -> str:
    """kid = hex(SHA-256(b"refhub/v1 key\\0" + alg + b"\\0" + public))[:32]."""
    h = hashlib.sha256(b"refhub/v1 key\0")
    h.update(alg.encode("utf-8"))
    h.update(b"\0")
    h.update(public)
    return h.hexdigest()[:32]


# --- public half ---------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    kid: str
    use: str  # "sign" | "seal"
    alg: str
    public: bytes = field(repr=False)
    created_at: str
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @cached_property
    def verifier(self) -> ed25519.Ed25519PublicKey:
        """The loaded Ed25519 public key (sign keys only); cached."""
        if self.use != "sign":
            raise UnknownKey(f"Key {self.kid} is a {self.use} key, not a signing key.")
        return ed25519.Ed25519PublicKey.from_public_bytes(self.public)

    @cached_property
    def hpke_public(self) -> hpke.MLKEM768X25519PublicKey:
        """The loaded HPKE public key (seal keys only); cached."""
        if self.use != "seal":
            raise UnknownKey(f"Key {self.kid} is a {self.use} key, not a seal key.")
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.public[:_MLKEM_PUBLIC_LEN]),
            x25519.X25519PublicKey.from_public_bytes(self.public[_MLKEM_PUBLIC_LEN:]),
        )

    def to_dict(self) -> dict:
        return {
            "kid": self.kid,
            "use": self.use,
            "alg": self.alg,
            "public": b64u_encode(self.public),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_dict(cls, d: object) -> "PublicKey":
        where = "A key in the public bundle"
        if not isinstance(d, dict):
            raise KeyBundleError(f"{where} is not a JSON object.")
        expected = {"kid", "use", "alg", "public", "created_at", "revoked_at"}
        if set(d) != expected:
            raise KeyBundleError(
                f"{where} must have exactly the fields {sorted(expected)}; it has {sorted(map(str, d))}."
            )
        use, alg = d["use"], d["alg"]
        if use not in _ALG_OF_USE:
            raise KeyBundleError(f"{where} has use {use!r}; it must be 'sign' or 'seal'.")
        if alg != _ALG_OF_USE[use]:
            raise KeyBundleError(f"{where} is a {use} key with alg {alg!r}; it must be {_ALG_OF_USE[use]!r}.")
        try:
            public = b64u_decode(d["public"])
        except MalformedPacket as exc:
            raise KeyBundleError(f"{where} has a bad 'public' field: {exc.message}") from None
        if len(public) != _PUBLIC_LEN[alg]:
            raise KeyBundleError(f"{where} has a {alg} public key of {len(public)} bytes; it must be {_PUBLIC_LEN[alg]}.")
        if not is_kid(d["kid"]) or d["kid"] != key_id(alg, public):
            raise KeyBundleError(f"{where} has kid {d['kid']!r}, which is not the key id of its public key.")
        if not is_utc_time(d["created_at"]):
            raise KeyBundleError(f"Key {d['kid']} has created_at {d['created_at']!r}; it must look like 2026-11-22T10:00:00Z.")
        if d["revoked_at"] is not None and not is_utc_time(d["revoked_at"]):
            raise KeyBundleError(f"Key {d['kid']} has revoked_at {d['revoked_at']!r}; it must be null or like 2026-11-22T10:00:00Z.")
        key = cls(kid=d["kid"], use=use, alg=alg, public=public, created_at=d["created_at"], revoked_at=d["revoked_at"])
        if use == "seal":
            try:
                key.hpke_public  # noqa: B018 - load once to refuse keys the backend rejects
            except ValueError:
                raise KeyBundleError(f"Key {key.kid} is not a valid {alg} public key.") from None
        return key


@dataclass
class PublicBundle:
    agency: str
    keys: list[PublicKey]

    def find(self, kid: str) -> PublicKey | None:
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    def current_seal_key(self) -> PublicKey:
        """The newest unrevoked seal key: the one every new packet is sealed to."""
        best = None
        for key in self.keys:
            if key.use == "seal" and key.revoked_at is None:
                if best is None or key.created_at >= best.created_at:
                    best = key
        if best is None:
            raise NoSealKey(
                f"Agency {self.agency} has no unrevoked seal key, so nothing can be sealed to it; "
                "ask the agency to rotate its keys."
            )
        return best

    def current_sign_key(self) -> PublicKey | None:
        """The newest unrevoked signing key, or None."""
        best = None
        for key in self.keys:
            if key.use == "sign" and key.revoked_at is None:
                if best is None or key.created_at >= best.created_at:
                    best = key
        return best

    def to_dict(self) -> dict:
        return {"agency": self.agency, "keys": [k.to_dict() for k in self.keys]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: object) -> "PublicBundle":
        if not isinstance(d, dict):
            raise KeyBundleError("A public key bundle must be a JSON object with 'agency' and 'keys'.")
        if set(d) != {"agency", "keys"}:
            raise KeyBundleError(
                f"A public key bundle must have exactly the fields 'agency' and 'keys'; it has {sorted(map(str, d))}."
            )
        if not is_agency_id(d["agency"]):
            raise KeyBundleError(f"The bundle's agency id {d['agency']!r} is not a valid agency id.")
        if not isinstance(d["keys"], list):
            raise KeyBundleError("The bundle's 'keys' must be a list.")
        keys = [PublicKey.from_dict(k) for k in d["keys"]]
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise KeyBundleError(f"The bundle of {d['agency']} lists the same key twice.")
        return cls(agency=d["agency"], keys=keys)

    @classmethod
    def from_json(cls, text: str | bytes) -> "PublicBundle":
        try:
            d = strict_json_loads(text)
        except (ValueError, RecursionError, TypeError):
            raise KeyBundleError("The public key bundle is not valid UTF-8 JSON (or repeats a field).") from None
        return cls.from_dict(d)


# --- private half --------------------------------------------------------------


@dataclass
class PrivateKey:
    kid: str
    use: str
    alg: str
    private: bytes = field(repr=False)

    @cached_property
    def signer(self) -> ed25519.Ed25519PrivateKey:
        if self.use != "sign":
            raise UnknownKey(f"Key {self.kid} is a {self.use} key, not a signing key.")
        return ed25519.Ed25519PrivateKey.from_private_bytes(self.private)

    @cached_property
    def hpke_private(self) -> hpke.MLKEM768X25519PrivateKey:
        if self.use != "seal":
            raise UnknownKey(f"Key {self.kid} is a {self.use} key, not a seal key.")
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(self.private[:_MLKEM_SEED_LEN]),
            x25519.X25519PrivateKey.from_private_bytes(self.private[_MLKEM_SEED_LEN:]),
        )

    def public_bytes(self) -> bytes:
        """The raw public bytes that go with this private key."""
        if self.use == "sign":
            return self.signer.public_key().public_bytes_raw()
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(self.private[:_MLKEM_SEED_LEN])
        x = x25519.X25519PrivateKey.from_private_bytes(self.private[_MLKEM_SEED_LEN:])
        return m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()

    def to_dict(self) -> dict:
        return {"kid": self.kid, "use": self.use, "alg": self.alg, "private": b64u_encode(self.private)}

    @classmethod
    def from_dict(cls, d: object) -> "PrivateKey":
        where = "A key in the key ring"
        if not isinstance(d, dict) or set(d) != {"kid", "use", "alg", "private"}:
            raise MalformedKeyRing(f"{where} must be an object with exactly 'kid', 'use', 'alg' and 'private'.")
        use, alg = d["use"], d["alg"]
        if use not in _ALG_OF_USE or alg != _ALG_OF_USE[use]:
            raise MalformedKeyRing(f"{where} has use {use!r} and alg {alg!r}; expected sign/Ed25519 or seal/MLKEM768-X25519.")
        try:
            private = b64u_decode(d["private"])
        except MalformedPacket as exc:
            raise MalformedKeyRing(f"{where} has a bad 'private' field: {exc.message}") from None
        if len(private) != _PRIVATE_LEN[alg]:
            raise MalformedKeyRing(f"{where} has a {alg} private key of {len(private)} bytes; it must be {_PRIVATE_LEN[alg]}.")
        key = cls(kid=d["kid"], use=use, alg=alg, private=private)
        try:
            public = key.public_bytes()
        except ValueError:
            raise MalformedKeyRing(f"{where} holds bytes that are not a valid {alg} private key.") from None
        if d["kid"] != key_id(alg, public):
            raise MalformedKeyRing(f"{where} has kid {d['kid']!r}, which does not match its key.")
        return key


@dataclass
class KeyRing:
    agency: str
    keys: list[PrivateKey]

    def find(self, kid: str) -> PrivateKey | None:
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    def signing_key(self) -> PrivateKey:
        """The newest signing key (keys are in creation order, newest last)."""
        for key in reversed(self.keys):
            if key.use == "sign":
                return key
        raise UnknownKey(f"The key ring of {self.agency} holds no signing key; rotate its keys to add one.")

    def public_bundle(self, created_at: str | None = None) -> PublicBundle:
        """A fresh public bundle for every key of this ring, all dated ``created_at`` (default now)."""
        created_at = created_at or utc_now()
        return PublicBundle(
            agency=self.agency,
            keys=[
                PublicKey(kid=k.kid, use=k.use, alg=k.alg, public=k.public_bytes(), created_at=created_at)
                for k in self.keys
            ],
        )

    def to_dict(self) -> dict:
        return {"agency": self.agency, "keys": [k.to_dict() for k in self.keys]}

    def to_json(self) -> bytes:
        """The key ring document (clear text: wrap it before it touches a disk)."""
        return compact_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: object) -> "KeyRing":
        if not isinstance(d, dict) or set(d) != {"agency", "keys"}:
            raise MalformedKeyRing("A key ring must be a JSON object with exactly 'agency' and 'keys'.")
        if not is_agency_id(d["agency"]):
            raise MalformedKeyRing(f"The key ring's agency id {d['agency']!r} is not a valid agency id.")
        if not isinstance(d["keys"], list):
            raise MalformedKeyRing("The key ring's 'keys' must be a list.")
        keys = [PrivateKey.from_dict(k) for k in d["keys"]]
        if len({k.kid for k in keys}) != len(keys):
            raise MalformedKeyRing(f"The key ring of {d['agency']} holds the same key twice.")
        return cls(agency=d["agency"], keys=keys)

    @classmethod
    def from_json(cls, data: bytes | str) -> "KeyRing":
        try:
            d = strict_json_loads(data)
        except (ValueError, RecursionError, TypeError):
            raise MalformedKeyRing("The key ring is not valid UTF-8 JSON (or repeats a field).") from None
        return cls.from_dict(d)


# --- generation, rotation, revocation -------------------------------------------


def sign_key_from_seed(seed: bytes) -> PrivateKey:
    """An Ed25519 key from its 32 raw private bytes."""
    sk = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return PrivateKey(kid=key_id(SIGN_ALG, sk.public_key().public_bytes_raw()), use="sign", alg=SIGN_ALG, private=bytes(seed))


def seal_key_from_seeds(mlkem_seed: bytes, x25519_private: bytes) -> PrivateKey:
    """An MLKEM768-X25519 key from the 64-byte ML-KEM seed and the 32 raw X25519 bytes."""
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(mlkem_seed)
    x = x25519.X25519PrivateKey.from_private_bytes(x25519_private)
    public = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    private = m.private_bytes_raw() + x.private_bytes_raw()
    return PrivateKey(kid=key_id(SEAL_ALG, public), use="seal", alg=SEAL_ALG, private=private)


def _new_key(use: str) -> PrivateKey:
    if use == "sign":
        return sign_key_from_seed(os.urandom(32))
    if use == "seal":
        return seal_key_from_seeds(os.urandom(_MLKEM_SEED_LEN), os.urandom(32))
    raise ValueError(f"use must be 'sign' or 'seal', not {use!r}")


def _public_of(key: PrivateKey, created_at: str) -> PublicKey:
    return PublicKey(kid=key.kid, use=key.use, alg=key.alg, public=key.public_bytes(), created_at=created_at)


def generate_keyring(agency: str, *, created_at: str | None = None) -> tuple[KeyRing, PublicBundle]:
    """A new agency's key ring (one sign and one seal key) and its public bundle."""
    if not is_agency_id(agency):
        raise ValueError(f"{agency!r} is not a valid agency id")
    created_at = created_at or utc_now()
    if not is_utc_time(created_at):
        raise ValueError(f"created_at {created_at!r} must look like 2026-11-22T10:00:00Z")
    keys = [_new_key("sign"), _new_key("seal")]
    return KeyRing(agency=agency, keys=keys), PublicBundle(agency=agency, keys=[_public_of(k, created_at) for k in keys])


def rotate_keys(
    ring: KeyRing, bundle: PublicBundle, *, use: str = "seal", now: str | None = None
) -> tuple[KeyRing, PublicBundle]:
    """Add a new key of ``use`` to both halves; older keys stay, to open older packets."""
    if ring.agency != bundle.agency:
        raise ValueError(f"key ring of {ring.agency} and bundle of {bundle.agency} do not belong together")
    now = now or utc_now()
    if not is_utc_time(now):
        raise ValueError(f"now {now!r} must look like 2026-11-22T10:00:00Z")
    key = _new_key(use)
    return (
        KeyRing(agency=ring.agency, keys=[*ring.keys, key]),
        PublicBundle(agency=bundle.agency, keys=[*bundle.keys, _public_of(key, now)]),
    )


def revoke_key(bundle: PublicBundle, kid: str, *, now: str | None = None) -> PublicBundle:
    """A copy of the bundle with ``kid`` marked revoked (a key already revoked keeps its first date)."""
    now = now or utc_now()
    if not is_utc_time(now):
        raise ValueError(f"now {now!r} must look like 2026-11-22T10:00:00Z")
    if bundle.find(kid) is None:
        raise UnknownKey(f"Agency {bundle.agency} has no key {kid}; nothing was revoked.")
    keys = [
        dataclasses.replace(k, revoked_at=now) if k.kid == kid and k.revoked_at is None else k
        for k in bundle.keys
    ]
    return PublicBundle(agency=bundle.agency, keys=keys)
