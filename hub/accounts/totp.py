"""TOTP (RFC 6238, with pyotp) and its recovery codes: secrets sealed at rest, codes used once.

A member's TOTP secret is kept sealed with AES-256-GCM under a key derived (HKDF-SHA256) from
HUB_SECRET_KEY, bound to the user's id: the database alone gives no secret that makes codes.
A code is accepted within one 30-second step either side of now, and only for a time step
later than the last one accepted (``user.totp_last_counter``), so a code seen over a shoulder
cannot be used again. After HUB_SECRET_KEY is rotated, the previous key (HUB_SECRET_KEY_PREVIOUS)
still opens the secrets until `hub totp reseal` has sealed them all under the new one (:func:`reseal`).
Recovery codes are 80 random bits each, stored as SHA-256, used once.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from typing import Sequence, Union

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ISSUER = "refhub"
STEP = 30  # seconds, RFC 6238's default and every authenticator app's
WINDOW = 1  # steps either side of now that are still accepted (a phone's clock a little off)
RECOVERY_CODES = 10
_SEALED_PREFIX = "v1."


class SealError(ValueError):
    """The sealed secret does not open with this hub's key (HUB_SECRET_KEY changed?)."""


def _key(secret_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"refhub", info=b"totp secret v1").derive(
        secret_key.encode("utf-8"))


Keys = Union[str, Sequence[str]]
"""HUB_SECRET_KEY, or (HUB_SECRET_KEY, HUB_SECRET_KEY_PREVIOUS): the first seals, each one opens."""


def _keys(keys: Keys) -> tuple[str, ...]:
    return (keys,) if isinstance(keys, str) else tuple(keys)


def seal(keys: Keys, user_id: int, secret: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_key(_keys(keys)[0])).encrypt(nonce, secret.encode("ascii"), f"user:{user_id}".encode())
    return _SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def unseal(keys: Keys, user_id: int, value: str) -> str:
    """The secret, opened with the current key or, after a rotation, the previous one."""
    return _open(keys, user_id, value)[0]


def sealed_under_current(keys: Keys, user_id: int, value: str) -> bool:
    """Whether ``value`` opens with the current key (False: only with the previous one)."""
    return _open(keys, user_id, value)[1] == 0


def _open(keys: Keys, user_id: int, value: str) -> tuple[str, int]:
    if not value.startswith(_SEALED_PREFIX):
        raise SealError("not a sealed TOTP secret")
    raw = base64.urlsafe_b64decode(value[len(_SEALED_PREFIX):].encode("ascii"))
    for index, key in enumerate(_keys(keys)):
        try:
            plain = AESGCM(_key(key)).decrypt(raw[:12], raw[12:], f"user:{user_id}".encode()).decode("ascii")
            return plain, index
        except InvalidTag:
            continue
    raise SealError("the TOTP secret does not open with HUB_SECRET_KEY (nor HUB_SECRET_KEY_PREVIOUS)")


def new_secret() -> str:
    return pyotp.random_base32(length=32)  # 160 bits, as RFC 4226 recommends


def uri(secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, interval=STEP).provisioning_uri(name=username, issuer_name=ISSUER)


def code_now(secret: str, at: dt.datetime) -> str:
    """The code an authenticator shows at ``at`` (the demo and the tests)."""
    return pyotp.TOTP(secret, interval=STEP).at(at)


def matching_step(secret: str, code: str, at: dt.datetime, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to, if it is right now and later than ``last_step``; else None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, interval=STEP)
    now_step = int(at.timestamp()) // STEP
    for step in range(now_step - WINDOW, now_step + WINDOW + 1):
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step if last_step is None or step > last_step else None
    return None


def looks_like_totp(code: str) -> bool:
    code = "".join(code.split())
    return len(code) == 6 and code.isdigit()


def new_recovery_codes() -> list[str]:
    """Ten codes like ``K7QF-M2XA-9RTB-WC4D`` (80 random bits each)."""
    out = []
    for _ in range(RECOVERY_CODES):
        text = base64.b32encode(secrets.token_bytes(10)).decode("ascii")
        out.append("-".join(text[i:i + 4] for i in range(0, 16, 4)))
    return out


def recovery_hash(user_id: int, code: str) -> str:
    canonical = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(f"{user_id}:{canonical}".encode("ascii", "ignore")).hexdigest()
