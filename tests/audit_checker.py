"""An independent checker of the hub's audit log, written from RFC 9162 section 2.1 and C2SP
signed-note/tlog-checkpoint, for the tests: it imports nothing of hub.audit."""
from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric import ed25519


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(entry: bytes) -> bytes:
    return H(b"\x00" + entry)


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """PATH(m, D[n]) read backwards: the last element is the top sibling."""
    if size == 1:
        return leaf if not path else None
    if not path:
        return None
    k = _k(size)
    if index < k:
        left = root_from_path(index, k, leaf, path[:-1])
        return None if left is None else H(b"\x01" + left + path[-1])
    right = root_from_path(index - k, size - k, leaf, path[:-1])
    return None if right is None else H(b"\x01" + path[-1] + right)


def _sub(m: int, n: int, proof: list[bytes], b: bool, old_root: bytes):
    if m == n:
        if b:
            return (old_root, old_root) if not proof else None
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = _k(n)
    if m <= k:
        got = _sub(m, k, proof[:-1], b, old_root)
        return None if got is None else (got[0], H(b"\x01" + got[1] + proof[-1]))
    got = _sub(m - k, n - k, proof[:-1], False, old_root)
    return None if got is None else (H(b"\x01" + proof[-1] + got[0]), H(b"\x01" + proof[-1] + got[1]))


def consistent(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    if old == new:
        return not proof and old_root == new_root
    if old == 0 or old > new:
        return False
    got = _sub(old, new, proof, True, old_root)
    return got is not None and got == (old_root, new_root)


def open_checkpoint(text: str, vkey: str) -> tuple[str, int, bytes]:
    """(origin, size, root) if the note is signed by the verifier key; AssertionError otherwise."""
    name, kid_hex, key_b64 = vkey.strip().split("+", 2)
    raw_key = base64.b64decode(key_b64)
    assert raw_key[0] == 1 and len(raw_key) == 33
    assert H(name.encode() + b"\n" + raw_key)[:4].hex() == kid_hex
    body, _, sigs = text.partition("\n\n")
    body += "\n"
    origin, size, root_b64 = body.split("\n")[:3]
    assert origin == name
    for line in sigs.splitlines():
        dash, signer, sig_b64 = line.split(" ")
        sig = base64.b64decode(sig_b64)
        if dash == "\u2014" and signer == name and sig[:4].hex() == kid_hex:
            ed25519.Ed25519PublicKey.from_public_bytes(raw_key[1:]).verify(sig[4:], body.encode())
            return origin, int(size), base64.b64decode(root_b64)
    raise AssertionError("no signature by the verifier key")
