"""The hub's checkpoint key: an Ed25519 key kept wrapped in keys/, unwrapped only to sign.

- ``keys/hub-audit.keyring.json``: a refhub/v1 wrapped key ring (PROTOCOL.md section 1) for
  the pseudo-agency ``hub-audit``, holder ``hub``, under a raw 32-byte secret (``"kdf": "raw"``).
- ``keys/hub-audit.vkey``: the verifier key line, public (also served at GET /audit/key).

The secret is ``HUB_AUDIT_KEY_SECRET`` (base64url, 32 bytes) from the environment, like the
hub's other secrets. In demo mode, where it is unset, one is generated into
``instance/audit_key_secret`` (mode 0600) and reused; production mode refuses to sign without it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from hub import packets
from hub.audit import note
from hub.errors import ConfigError
from hub.packets.keys import sign_key_from_seed

RING_FILE = "hub-audit.keyring.json"
VKEY_FILE = "hub-audit.vkey"
SECRET_FILE = "audit_key_secret"
RING_AGENCY = "hub-audit"
HOLDER = "hub"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _secret(settings) -> bytes:
    raw = settings.audit_key_secret
    if raw is None:
        if settings.mode == "production":
            raise ConfigError("HUB_AUDIT_KEY_SECRET is not set; production mode needs 32 random bytes, base64url,"
                              " in the environment to sign audit checkpoints")
        path = settings.instance_dir / SECRET_FILE
        if not path.exists():
            _write_private(path, packets.b64u_encode(os.urandom(32)))
            print(f"demo mode: generated the audit key secret in {path} (set HUB_AUDIT_KEY_SECRET in production)",
                  file=sys.stderr)
        raw = path.read_text().strip()
    try:
        secret = packets.b64u_decode(raw)
    except packets.PacketError:
        secret = b""
    if len(secret) != 32:
        raise ConfigError("HUB_AUDIT_KEY_SECRET must be 32 random bytes in base64url (43 characters)")
    return secret


def verifier_line(settings) -> str | None:
    """The published verifier key line, or None before the first checkpoint key exists."""
    path = settings.keys_dir / VKEY_FILE
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def signing_key(settings, *, may_create: bool) -> ed25519.Ed25519PrivateKey:
    """Unwrap the checkpoint key (or make it, the first time, if ``may_create``)."""
    ring_path = settings.keys_dir / RING_FILE
    secret = _secret(settings)
    if not ring_path.exists():
        if not may_create:
            raise ConfigError(f"{ring_path} is missing: checkpoints were signed with a key that is gone;"
                              " restore keys/ from backup (a new key would not verify the old checkpoints)")
        key = sign_key_from_seed(os.urandom(32))
        ring = packets.KeyRing(agency=RING_AGENCY, keys=[key])
        _write_private(ring_path, json.dumps(packets.wrap_keyring(ring, holder=HOLDER, secret=secret), indent=2) + "\n")
        vkey = settings.keys_dir / VKEY_FILE
        vkey.write_text(note.verifier_key(settings.audit_origin, key.public_bytes()) + "\n", encoding="utf-8")
    try:
        ring = packets.unwrap_keyring(ring_path.read_text(encoding="utf-8"), holder=HOLDER, secret=secret,
                                      agency=RING_AGENCY)
    except packets.KeyRingError as exc:
        raise ConfigError(f"cannot unwrap {ring_path}: {exc.message} (check HUB_AUDIT_KEY_SECRET)") from None
    private = ring.signing_key().signer
    line = verifier_line(settings)
    public = private.public_key().public_bytes_raw()
    if line != note.verifier_key(settings.audit_origin, public):
        raise ConfigError(f"{settings.keys_dir / VKEY_FILE} does not match the checkpoint key or audit.origin"
                          f" {settings.audit_origin!r}; the origin of a log never changes")
    return private
