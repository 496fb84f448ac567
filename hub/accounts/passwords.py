"""Password hashes: Argon2id (RFC 9106) as PHC strings, ``$argon2id$v=19$m=...,t=...,p=...$salt$hash``.

The defaults are PROTOCOL.md's key ring parameters (t=3, m=64 MiB, p=4). Tests pass
smaller ones explicitly; the parameters travel inside each hash, so verifying
needs none.
"""
from __future__ import annotations

import os
import re

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from hub.errors import BadInput

DEFAULT_PARAMS = {"iterations": 3, "memory_kib": 65536, "lanes": 4}
MIN_LENGTH = 10
MAX_LENGTH = 1024

_PHC = re.compile(r"^\$argon2id\$v=19\$m=(\d{1,8}),t=(\d{1,3}),p=(\d{1,3})\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{22,}$")
# A stored hash whose parameters are outside these bounds is refused rather than run.
_LIMITS = {"memory_kib": (8, 4 * 1024 * 1024), "iterations": (1, 64), "lanes": (1, 64)}


def _params(params: dict | None) -> dict:
    merged = {**DEFAULT_PARAMS, **{k: v for k, v in (params or {}).items() if k in DEFAULT_PARAMS}}
    for name, (low, high) in _LIMITS.items():
        if type(merged[name]) is not int or not low <= merged[name] <= high:
            raise ValueError(f"Argon2id {name} must be a whole number from {low} to {high}")
    return merged


def hash_password(password: str, *, params: dict | None = None) -> str:
    """A PHC-encoded Argon2id hash of ``password`` with a random 16-byte salt."""
    p = _params(params)
    kdf = Argon2id(salt=os.urandom(16), length=32, iterations=p["iterations"], lanes=p["lanes"],
                   memory_cost=p["memory_kib"])
    return kdf.derive_phc_encoded(password.encode("utf-8"))


def verify_password(password: str, encoded: str | None) -> bool:
    """True if ``password`` matches; constant-time comparison. Malformed hashes never match."""
    if not isinstance(password, str) or not isinstance(encoded, str):
        return False
    m = _PHC.match(encoded)
    if not m:
        return False
    memory, iterations, lanes = (int(g) for g in m.groups())
    try:
        _params({"memory_kib": memory, "iterations": iterations, "lanes": lanes})
        Argon2id.verify_phc_encoded(password.encode("utf-8"), encoded)
    except (InvalidKey, ValueError):
        return False
    return True


def check_strength(password: str) -> None:
    """Raise BadInput for a password too short or too long to use."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise BadInput(f"the password must have at least {MIN_LENGTH} characters; a few words make a good one",
                       code="weak_password")
    if len(password) > MAX_LENGTH:
        raise BadInput(f"the password must have at most {MAX_LENGTH} characters", code="invalid_field")


# Verified against when the username is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY: dict[str, str] = {}


def dummy_verify(password: str, params: dict | None = None) -> None:
    key = repr(sorted(_params(params).items()))
    if key not in _DUMMY:
        _DUMMY[key] = hash_password("refhub dummy password", params=params)
    verify_password(password if isinstance(password, str) else "", _DUMMY[key])
