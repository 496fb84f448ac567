"""Write the published refhub/v1 test vectors in tests/vectors/refhub-v1/.

    .venv/bin/python tests/vectors/make_vectors.py [--reseal]

Keys, key ids, header, body, inner signature and wrapped key rings come out
the same on every run: keys are derived from fixed seeds, and the key ring
wraps use a fixed salt and nonce. HPKE encryption is randomised, so the
sealed packet and the must-fail packets are kept from the existing files
(when they still open with these keys) and made anew only with --reseal.
The outer signatures are deterministic given those ciphertexts.

TEST ONLY: every private key written here is public. Never use them for data.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub.packets import (  # noqa: E402
    KeyRing,
    MemorySeenPacketIds,
    PacketError,
    PublicBundle,
    b64u_encode,
    open_packet,
    parse_packet,
)
from hub.packets.keys import seal_key_from_seeds, sign_key_from_seed  # noqa: E402
from hub.packets.testing import (  # noqa: E402
    assemble,
    encrypt_inner,
    header_for,
    inner_signature,
    referral_body,
    resign,
)
from hub.packets.wire import INFO_CONTEXT, INNER_CONTEXT, OUTER_CONTEXT  # noqa: E402
from hub.packets.wrapping import _aad, _argon2id_kek, wrap_keyring  # noqa: E402

OUT = Path(__file__).resolve().parent / "refhub-v1"
CREATED_AT = "2026-11-01T00:00:00Z"
AGENCIES = {"pp-ahtjp": "police", "pp-shelter-a": "shelter"}
WARNING = "TEST ONLY. These private keys are published; never use them for real data."

HEADER_FIELDS = {
    "packet_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "referral_id": "7c0e5a52-0d3f-4b8e-9a51-3f2d6c1b9e77",
    "kind": "referral",
    "created_at": "2026-11-22T10:00:00Z",
}
PASSPHRASE = "ពាក្យសម្ងាត់ test passphrase 2026"
WRAP_HOLDER = "user:caseworker-test"
WRAP_SALT = bytes(range(16))
WRAP_NONCE = bytes(range(100, 112))
RAW_HOLDER = "session:test"
RAW_SECRET = bytes(range(32, 64))
RAW_NONCE = bytes(range(200, 212))


def seeds(agency: str) -> dict[str, bytes]:
    """Fixed seed bytes: SHA-256 / SHA-512 of a label, so anyone can re-derive them."""
    label = f"refhub/v1 test vector {agency}".encode()
    return {
        "sign_ed25519": hashlib.sha256(label + b" sign ed25519").digest(),
        "seal_mlkem768_seed": hashlib.sha512(label + b" seal mlkem768").digest(),
        "seal_x25519": hashlib.sha256(label + b" seal x25519").digest(),
    }


def keyring(agency: str) -> KeyRing:
    s = seeds(agency)
    return KeyRing(agency=agency, keys=[
        sign_key_from_seed(s["sign_ed25519"]),
        seal_key_from_seeds(s["seal_mlkem768_seed"], s["seal_x25519"]),
    ])


def body() -> bytes:
    return referral_body(
        attachments=[("consent-note.txt", "text/plain", "យល់ព្រម / consent recorded (fictional)".encode())],
        contact={"officer": "Officer Test Dara (fictional)", "agency": "pp-ahtjp", "phone": "+85500000000"},
    )


def write(name: str, doc: dict) -> None:
    path = OUT / name
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")


def load(name: str) -> dict | None:
    path = OUT / name
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def opens(wire: bytes, reader: KeyRing, sender: PublicBundle) -> bytes | None:
    try:
        return open_packet(wire, reader=reader, sender=sender, seen=MemorySeenPacketIds()).body
    except PacketError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reseal", action="store_true", help="make new HPKE ciphertexts")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)

    rings = {a: keyring(a) for a in AGENCIES}
    bundles = {a: rings[a].public_bundle(created_at=CREATED_AT) for a in AGENCIES}
    police, shelter = rings["pp-ahtjp"], rings["pp-shelter-a"]
    police_pub, shelter_pub = bundles["pp-ahtjp"], bundles["pp-shelter-a"]

    # 1. key rings (private, TEST ONLY)
    write("agencies-test-keyrings.json", {
        "warning": WARNING,
        "agencies": {
            a: {
                "kind": AGENCIES[a],
                "seeds_hex": {k: v.hex() for k, v in seeds(a).items()},
                "keyring": rings[a].to_dict(),
                "keyring_json": rings[a].to_json().decode(),
            }
            for a in AGENCIES
        },
    })

    # 2. public bundles and key ids
    kids = []
    for a in AGENCIES:
        for key in bundles[a].keys:
            kid_input = b"refhub/v1 key\0" + key.alg.encode() + b"\0" + key.public
            kids.append({
                "agency": a, "use": key.use, "alg": key.alg,
                "public_b64u": b64u_encode(key.public),
                "kid_input_b64u": b64u_encode(kid_input),
                "kid_input_sha256_hex": hashlib.sha256(kid_input).hexdigest(),
                "kid": key.kid,
            })
    write("agencies-public-bundles.json", {"bundles": {a: bundles[a].to_dict() for a in AGENCIES}, "kids": kids})

    # 3. header and body, inner signature (deterministic)
    header = header_for(police, "pp-shelter-a", shelter_pub.current_seal_key().kid, **HEADER_FIELDS)
    b = body()
    isig = inner_signature(police, header, b)
    inner_message = INNER_CONTEXT + header + hashlib.sha256(b).digest()
    write("packet-header-body.json", {
        "sender": "pp-ahtjp",
        "recipient": "pp-shelter-a",
        "header": header.decode(),
        "header_b64u": b64u_encode(header),
        "body": b.decode(),
        "body_b64u": b64u_encode(b),
        "body_sha256_hex": hashlib.sha256(b).hexdigest(),
        "inner_signed_message_b64u": b64u_encode(inner_message),
        "inner_signature_b64u": b64u_encode(isig),
        "hpke_info_b64u": b64u_encode(INFO_CONTEXT + header),
        "inner_plaintext_sha256_hex": hashlib.sha256(isig + b).hexdigest(),
    })

    # 4. the sealed packet (ct kept between runs; outer signature recomputed)
    old = load("sealed-packet.json")
    ct = None
    if old and not args.reseal:
        try:
            candidate = parse_packet(old["wire"].encode())
            if candidate.header.raw == header and opens(old["wire"].encode(), shelter, police_pub) == b:
                ct = candidate.ct
        except PacketError:
            ct = None
    if ct is None:
        ct = encrypt_inner(isig + b, shelter_pub.current_seal_key(), header)
    wire = resign(police, header, ct)
    assert opens(wire, shelter, police_pub) == b
    outer_message = OUTER_CONTEXT + header + hashlib.sha256(ct).digest()
    write("sealed-packet.json", {
        "sender": "pp-ahtjp",
        "reader": "pp-shelter-a",
        "wire": wire.decode(),
        "packet_sha256_hex": hashlib.sha256(wire).hexdigest(),
        "ct_sha256_hex": hashlib.sha256(ct).hexdigest(),
        "outer_signed_message_b64u": b64u_encode(outer_message),
        "outer_signature_b64u": b64u_encode(police.signing_key().signer.sign(outer_message)),
        "expected_body_b64u": b64u_encode(b),
    })

    # 5. wrapped key rings (fixed salt and nonce, so deterministic)
    argon = wrap_keyring(shelter, holder=WRAP_HOLDER, passphrase=PASSPHRASE, _salt=WRAP_SALT, _nonce=WRAP_NONCE)
    kek = _argon2id_kek(PASSPHRASE, WRAP_SALT, argon["kdf"])
    raw = wrap_keyring(shelter, holder=RAW_HOLDER, secret=RAW_SECRET, _nonce=RAW_NONCE)
    write("wrapped-keyring.json", {
        "warning": WARNING,
        "passphrase": {
            "holder": WRAP_HOLDER,
            "passphrase": PASSPHRASE,
            "passphrase_utf8_b64u": b64u_encode(PASSPHRASE.encode()),
            "expected_kek_hex": kek.hex(),
            "aad_b64u": b64u_encode(_aad(shelter.agency, WRAP_HOLDER)),
            "wrapped": argon,
        },
        "raw_secret": {
            "holder": RAW_HOLDER,
            "secret_hex": RAW_SECRET.hex(),
            "aad_b64u": b64u_encode(_aad(shelter.agency, RAW_HOLDER)),
            "wrapped": raw,
        },
        "expected_keyring_json": shelter.to_json().decode(),
    })

    # 6. packets that must be refused, each at a named check
    old_fail = {c["name"]: c for c in (load("must-fail-packets.json") or {}).get("cases", [])}

    def kept(name: str):
        case = old_fail.get(name)
        return None if case is None or args.reseal else case["wire"].encode()

    flipped = bytearray(ct)
    flipped[len(flipped) // 2] ^= 0x01
    bad_inner_header = header_for(police, "pp-shelter-a", shelter_pub.current_seal_key().kid,
                                  **{**HEADER_FIELDS, "packet_id": "1" * 32})
    other_header = header_for(police, "pp-shelter-b", "2" * 32, **{**HEADER_FIELDS, "packet_id": "3" * 32})
    short_header = header_for(police, "pp-shelter-a", shelter_pub.current_seal_key().kid,
                              **{**HEADER_FIELDS, "packet_id": "4" * 32})

    def reuse_ct(name: str, make):
        old_wire = kept(name)
        return parse_packet(old_wire).ct if old_wire else make()

    cases = [
        ("version-2", "unsupported_version", "format",
         wire.replace(b'"v":"refhub/v1"', b'"v":"refhub/v2"')),
        ("padded-sig", "malformed_packet", "format", wire[:-2] + b'=="}' if not wire.endswith(b'="}') else wire),
        ("flipped-ct-byte", "bad_signature", "1", assemble(header, bytes(flipped), parse_packet(wire).sig)),
        ("addressed-to-another-agency", "not_addressed_to_reader", "2",
         resign(police, other_header, reuse_ct("addressed-to-another-agency", lambda: b"\x00" * 1200))),
        ("ct-changed-and-resigned", "decryption_failed", "3", resign(police, header, bytes(flipped))),
        ("plaintext-shorter-than-64-bytes", "decryption_failed", "3",
         resign(police, short_header, reuse_ct("plaintext-shorter-than-64-bytes",
                                               lambda: encrypt_inner(b"x" * 63, shelter_pub.current_seal_key(), short_header)))),
        ("inner-signature-over-another-body", "bad_inner_signature", "4",
         resign(police, bad_inner_header, reuse_ct("inner-signature-over-another-body",
                                                   lambda: encrypt_inner(inner_signature(police, bad_inner_header, b + b" ") + b,
                                                                         shelter_pub.current_seal_key(), bad_inner_header)))),
    ]
    write("must-fail-packets.json", {
        "reader": "pp-shelter-a",
        "sender": "pp-ahtjp",
        "cases": [{"name": n, "expected_error": code, "fails_at_check": check, "wire": w.decode()}
                  for n, code, check, w in cases],
    })


if __name__ == "__main__":
    main()
