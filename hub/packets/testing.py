"""Factories for tests and published vectors: fictional referral bodies and hand-built packets.

Nothing here is used by the hub at run time. The hand-built packets let a
test reach a later check (decryption, inner signature) with a packet whose
earlier checks pass, which a real sender would never produce.
"""
from __future__ import annotations

import hashlib

from .encoding import b64u_encode, compact_json
from .keys import KeyRing, PublicKey
from .wire import (
    INFO_CONTEXT,
    INNER_CONTEXT,
    OUTER_CONTEXT,
    SUITE,
    _wire_bytes,
    build_header,
)

# Argon2id parameters small enough for fast tests; never use them for real key rings.
FAST_KDF_PARAMS = {"iterations": 1, "memory_kib": 64, "lanes": 1}


def referral_body(*, attachments: list[tuple[str, str, bytes]] = (), **overrides) -> bytes:
    """A fictional referral (PROTOCOL section 2 body), UTF-8 JSON with Latin and Khmer names."""
    body = {
        "person": {
            "fictional": True,
            "name_latin": "Test Person Sokha",
            "name_khmer": "សុខា តេស្ត",
            "sex": "female",
            "age_estimate": 17,
            "nationality": "KH",
            "languages": ["km", "en"],
            "id_documents": [],
        },
        "situation": {
            "exploitation_type": "forced_labour",
            "where_found": "Example Province (fictional)",
            "rescued_at": "2026-11-21T22:00:00Z",
            "trafficking_status": "possible",
            "decided_by": "pp-ahtjp",
        },
        "needs": ["shelter", "medical", "psychosocial", "interpreter"],
        "risk": {"level": "high", "notes": "ការពារ​ឯកជនភាព — keep location private"},
        "consent": {"share_with_recipient": True, "services": True, "recorded_by": "Officer Test", "recorded_at": "2026-11-22T09:30:00Z"},
        "contact": {"officer": "Officer Test", "agency": "pp-ahtjp"},
        "attachments": [
            {"name": name, "media_type": media_type, "bytes": b64u_encode(data)}
            for name, media_type, data in attachments
        ],
    }
    body.update(overrides)
    return compact_json(body)


def outer_signature(sender: KeyRing, header: bytes, ct: bytes) -> bytes:
    return sender.signing_key().signer.sign(OUTER_CONTEXT + header + hashlib.sha256(ct).digest())


def inner_signature(sender: KeyRing, header: bytes, body: bytes) -> bytes:
    return sender.signing_key().signer.sign(INNER_CONTEXT + header + hashlib.sha256(body).digest())


def assemble(header: bytes, ct: bytes, sig: bytes) -> bytes:
    """Wire bytes from parts exactly as given (no checks)."""
    return _wire_bytes(header, ct, sig)


def resign(sender: KeyRing, header: bytes, ct: bytes) -> bytes:
    """Wire bytes whose outer signature is valid for this header and ct, whatever they hold."""
    return assemble(header, ct, outer_signature(sender, header, ct))


def encrypt_inner(plaintext: bytes, recipient_key: PublicKey, header: bytes, *, info: bytes | None = None) -> bytes:
    """HPKE-encrypt any plaintext to a seal key, with the packet info for ``header`` unless told otherwise."""
    return SUITE.encrypt(plaintext, recipient_key.hpke_public, info=INFO_CONTEXT + header if info is None else info)


def header_for(sender: KeyRing, recipient_agency: str, recipient_kid: str, **fields) -> bytes:
    """Header bytes as seal() writes them, with any field overridden."""
    values = {
        "packet_id": "0" * 32,
        "referral_id": "00000000-0000-4000-8000-000000000000",
        "kind": "referral",
        "created_at": "2026-11-22T10:00:00Z",
        "from_agency": sender.agency,
        "from_kid": sender.signing_key().kid,
        "to_agency": recipient_agency,
        "to_kid": recipient_kid,
    }
    values.update(fields)
    return build_header(**values)

