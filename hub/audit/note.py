"""C2SP tlog-checkpoint signed as a C2SP signed-note with Ed25519 (PROTOCOL.md section 6).

Pure functions; used by the hub to sign, by `hub audit verify` and by `hub client audit watch`
to check. The key id is the first 4 bytes of SHA-256(origin || "\\n" || 0x01 || public key);
the verifier key is published as ``<origin>+<hex key id>+<base64(0x01 || public key)>``.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

ED25519 = b"\x01"
DASH = "\u2014"  # the em dash that opens a signature line
_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class NoteError(ValueError):
    """A checkpoint or verifier key that does not parse or whose signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    text: str


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, length: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(f"{text[:60]!r} is not standard base64 with padding") from None
    if b64(raw) != text:
        raise NoteError(f"{text[:60]!r} is not canonical base64")
    if length is not None and len(raw) != length:
        raise NoteError(f"expected {length} bytes of base64, got {len(raw)}")
    return raw


def key_id(origin: str, public: bytes) -> bytes:
    return hashlib.sha256(origin.encode("utf-8") + b"\n" + ED25519 + public).digest()[:4]


def verifier_key(origin: str, public: bytes) -> str:
    return f"{origin}+{key_id(origin, public).hex()}+{b64(ED25519 + public)}"


def _check_origin(origin: str) -> str:
    if not origin or any(c.isspace() for c in origin) or "+" in origin or not origin.isprintable():
        raise NoteError(f"origin {origin!r} must be printable text without spaces or '+'")
    return origin


def parse_verifier_key(line: str) -> tuple[str, bytes, bytes]:
    """(origin, key id, public key) of a verifier key line; NoteError if it is not one."""
    parts = line.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key is <origin>+<hex key id>+<base64 key>")
    origin, kid_hex, key_b64 = parts
    _check_origin(origin)
    raw = unb64(key_b64, 33)
    if raw[:1] != ED25519:
        raise NoteError("the verifier key is not an Ed25519 key (type byte 0x01)")
    public = raw[1:]
    if kid_hex != key_id(origin, public).hex():
        raise NoteError("the verifier key's key id does not match its key")
    return origin, bytes.fromhex(kid_hex), public


def body(origin: str, size: int, root: bytes) -> str:
    return f"{_check_origin(origin)}\n{size}\n{b64(root)}\n"


def sign(origin: str, size: int, root: bytes, private: ed25519.Ed25519PrivateKey) -> str:
    """The signed checkpoint text: body, a blank line, one signature line."""
    text = body(origin, size, root)
    public = private.public_key().public_bytes_raw()
    signature = private.sign(text.encode("utf-8"))
    return f"{text}\n{DASH} {origin} {b64(key_id(origin, public) + signature)}\n"


def parse(text: str) -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """Split a signed checkpoint into its (unverified) checkpoint and (key name, kid||sig) pairs."""
    if not isinstance(text, str) or "\r" in text or not text.endswith("\n"):
        raise NoteError("a checkpoint is text with lines ending in a newline")
    head, sep, sigs = text.partition("\n\n")
    if not sep or not sigs:
        raise NoteError("a checkpoint needs a blank line and then a signature")
    lines = (head + "\n").split("\n")[:-1]
    if len(lines) < 3:
        raise NoteError("a checkpoint body has an origin, a tree size and a root hash")
    origin, size_text, root_text = lines[:3]
    _check_origin(origin)
    if not _SIZE.match(size_text):
        raise NoteError(f"tree size {size_text[:30]!r} is not a decimal number")
    root = unb64(root_text, 32)
    signatures = []
    for line in sigs[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteError("a signature line is '\u2014 <key name> <base64 signature>'")
        raw = unb64(parts[2])
        if len(raw) < 5:
            raise NoteError("a signature is a 4-byte key id and the signature bytes")
        signatures.append((parts[1], raw))
    return Checkpoint(origin=origin, size=int(size_text), root=root, text=text), signatures


def open_checkpoint(text: str, verifier: str) -> Checkpoint:
    """The checkpoint, if ``verifier`` (a verifier key line) signed it; NoteError otherwise."""
    origin, kid, public = parse_verifier_key(verifier)
    checkpoint, signatures = parse(text)
    if checkpoint.origin != origin:
        raise NoteError(f"the checkpoint's origin {checkpoint.origin!r} is not {origin!r}")
    signed = text.partition("\n\n")[0] + "\n"
    key = ed25519.Ed25519PublicKey.from_public_bytes(public)
    for name, raw in signatures:
        if name == origin and raw[:4] == kid:
            try:
                key.verify(raw[4:], signed.encode("utf-8"))
            except InvalidSignature:
                raise NoteError("the checkpoint's signature does not verify") from None
            return checkpoint
    raise NoteError("the checkpoint carries no signature by the hub's key")
