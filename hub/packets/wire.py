"""Sealing and opening refhub/v1 packets (PROTOCOL.md section 2).

Wire form: {"v":"refhub/v1","header":"<b64u>","ct":"<b64u>","sig":"<b64u>"}

    isig  = Ed25519(sender sign key, b"refhub/v1 inner\\0" + header + SHA-256(B))
    ct    = HPKE(MLKEM768-X25519, HKDF-SHA256, ChaCha20-Poly1305).encrypt(
                isig + B, recipient seal key, info = b"refhub/v1 packet\\0" + header)
    sig   = Ed25519(sender sign key, b"refhub/v1 outer\\0" + header + SHA-256(ct))

Big packets avoid needless copies: each body byte is hashed once, base64 runs
in C (pybase64) on slices of the wire, and big base64 values are encoded or
decoded chunk by chunk straight into their final buffer. Fresh
multi-megabyte buffers cost page faults, which dominate on some machines.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke

from .encoding import (
    b64u_length,
    compact_json,
    decode_b64u_range,
    encode_b64u_bytes,
    is_agency_id,
    is_kid,
    is_kind,
    is_packet_id,
    is_utc_time,
    is_uuid,
    new_packet_id,
    presized_buffer,
    strict_json_loads,
    utc_now,
    write_b64u,
)
from .errors import (
    BadInnerSignature,
    BadOuterSignature,
    DecryptionFailed,
    MalformedPacket,
    MismatchedReferral,
    NotAddressedToReader,
    PacketTooLarge,
    ReplayedPacket,
    RevokedKey,
    StaleRecipientKey,
    UnknownKey,
    UnsupportedVersion,
    WrongSender,
)
from .keys import KeyRing, PublicBundle, PublicKey

VERSION = "refhub/v1"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
ISIG_LEN = 64

SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
INNER_CONTEXT = b"refhub/v1 inner\0"
OUTER_CONTEXT = b"refhub/v1 outer\0"
INFO_CONTEXT = b"refhub/v1 packet\0"

_WIRE_OPEN = b'{"v":"refhub/v1","header":"'
_WIRE_CT = b'","ct":"'
_WIRE_SIG = b'","sig":"'
_WIRE_CLOSE = b'"}'
_HEADER_FIELDS = {"packet_id", "referral_id", "kind", "created_at", "from", "to"}
_PARTY_FIELDS = {"agency", "kid"}


@dataclass(frozen=True)
class Header:
    """The parsed header. ``raw`` is the exact signed bytes; never re-serialise the fields."""

    raw: bytes
    packet_id: str
    referral_id: str
    kind: str
    created_at: str
    from_agency: str
    from_kid: str
    to_agency: str
    to_kid: str


@dataclass(frozen=True)
class Packet:
    """A parsed (not yet verified) packet."""

    header: Header
    ct: bytes
    sig: bytes
    wire_size: int

    @property
    def packet_id(self) -> str:
        return self.header.packet_id

    @property
    def referral_id(self) -> str:
        return self.header.referral_id


@dataclass(frozen=True)
class OpenedPacket:
    """A packet that passed all five checks: its header, the body B and the inner signature."""

    header: Header
    body: bytes
    inner_sig: bytes

    def statement(self) -> bytes:
        """The sender's signed statement, header + B + isig (PROTOCOL section 2).

        A recipient can show it, with the sender's public bundle, to a court
        without revealing any key: ``verify_statement(header.raw, body,
        inner_sig, sender=...)`` checks it. The header is the first
        ``len(header.raw)`` bytes and isig the last 64.
        """
        return self.header.raw + self.body + self.inner_sig


@runtime_checkable
class SeenPacketIds(Protocol):
    """Packet ids a reader has already opened (replay protection, check 5).

    ``seen`` answers without changing anything. ``mark`` records an id after a
    successful open; an implementation backed by a unique constraint may raise
    ReplayedPacket from ``mark`` when a concurrent open got there first.
    """

    def seen(self, packet_id: str) -> bool: ...

    def mark(self, packet_id: str) -> None: ...


class MemorySeenPacketIds:
    """A set in memory: for tests and for short-lived agency clients."""

    def __init__(self, ids=()):
        self._ids: set[str] = set(ids)

    def seen(self, packet_id: str) -> bool:
        return packet_id in self._ids

    def mark(self, packet_id: str) -> None:
        if packet_id in self._ids:
            raise ReplayedPacket(f"Packet {packet_id} was already opened by this reader.")
        self._ids.add(packet_id)


# --- sealing -------------------------------------------------------------------


def build_header(
    *, packet_id: str, referral_id: str, kind: str, created_at: str,
    from_agency: str, from_kid: str, to_agency: str, to_kid: str,
) -> bytes:
    """The exact header bytes seal() writes: compact JSON, keys in PROTOCOL order."""
    return compact_json({
        "packet_id": packet_id,
        "referral_id": referral_id,
        "kind": kind,
        "created_at": created_at,
        "from": {"agency": from_agency, "kid": from_kid},
        "to": {"agency": to_agency, "kid": to_kid},
    })


def _wire_bytes(header: bytes, ct: bytes, sig: bytes) -> bytes:
    h = encode_b64u_bytes(header)
    s = encode_b64u_bytes(sig)
    if len(ct) < 65536:
        return b"".join((_WIRE_OPEN, h, _WIRE_CT, encode_b64u_bytes(ct), _WIRE_SIG, s, _WIRE_CLOSE))
    size = len(_WIRE_OPEN) + len(h) + len(_WIRE_CT) + b64u_length(len(ct)) + len(_WIRE_SIG) + len(s) + len(_WIRE_CLOSE)
    out = presized_buffer(size)
    out.write(_WIRE_OPEN)
    out.write(h)
    out.write(_WIRE_CT)
    write_b64u(out, ct)
    out.write(_WIRE_SIG)
    out.write(s)
    out.write(_WIRE_CLOSE)
    return out.getvalue()


def seal(
    body: bytes,
    *,
    sender: KeyRing,
    recipient: PublicBundle,
    referral_id: str,
    kind: str = "referral",
    created_at: str | None = None,
    packet_id: str | None = None,
) -> bytes:
    """Seal body bytes B (the referral JSON) from ``sender`` to ``recipient``'s current seal key.

    Returns the wire form as bytes. Arguments that would make a malformed
    header raise MalformedPacket.
    """
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes (the referral JSON encoded as UTF-8), not {type(body).__name__}")
    packet_id = packet_id or new_packet_id()
    created_at = created_at or utc_now()
    if not is_packet_id(packet_id):
        raise MalformedPacket("packet_id must be 32 lowercase hex digits; leave it out to get a random one.")
    if not is_uuid(referral_id):
        raise MalformedPacket("referral_id must be a lowercase UUID such as 0b6f2c1e-8a4d-4c59-9f0e-2d3b7a1c5e90.")
    if not is_kind(kind):
        raise MalformedPacket("kind must be a short lowercase word such as 'referral'.")
    if not is_utc_time(created_at):
        raise MalformedPacket("created_at must be a UTC time like 2026-11-22T10:00:00Z.")
    sign_key = sender.signing_key()
    seal_key = recipient.current_seal_key()
    header = build_header(
        packet_id=packet_id, referral_id=referral_id, kind=kind, created_at=created_at,
        from_agency=sender.agency, from_kid=sign_key.kid, to_agency=recipient.agency, to_kid=seal_key.kid,
    )
    signer = sign_key.signer
    isig = signer.sign(INNER_CONTEXT + header + hashlib.sha256(body).digest())
    ct = SUITE.encrypt(isig + body, seal_key.hpke_public, info=INFO_CONTEXT + header)
    sig = signer.sign(OUTER_CONTEXT + header + hashlib.sha256(ct).digest())
    return _wire_bytes(header, ct, sig)


# --- parsing -------------------------------------------------------------------


def _as_wire_bytes(wire: bytes | str, max_bytes: int) -> bytes:
    if isinstance(wire, str):
        if len(wire) > max_bytes:  # each character is at least one byte
            raise PacketTooLarge(f"The packet is over {max_bytes} bytes; this hub refuses larger packets.")
        try:
            wire = wire.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedPacket("The packet is not valid UTF-8 text.") from None
    elif isinstance(wire, (bytearray, memoryview)):
        if memoryview(wire).nbytes > max_bytes:
            raise PacketTooLarge(f"The packet is over {max_bytes} bytes; this hub refuses larger packets.")
        wire = bytes(wire)
    elif not isinstance(wire, bytes):
        raise MalformedPacket(f"A packet must be bytes or text, not {type(wire).__name__}.")
    if len(wire) > max_bytes:
        raise PacketTooLarge(f"The packet is {len(wire)} bytes, over the limit of {max_bytes}; this hub refuses it.")
    return wire


def _fast_fields(wire: bytes):
    """Slices of the compact form seal() writes, or None for any other spelling.

    Anything this accepts, json.loads reads the same way: the decoder admits
    only base64url characters in the three values, so no escapes or quotes.
    """
    if not wire.startswith(_WIRE_OPEN) or not wire.endswith(_WIRE_CLOSE):
        return None
    h0 = len(_WIRE_OPEN)
    h1 = wire.find(b'"', h0)
    if h1 < 0 or not wire.startswith(_WIRE_CT, h1):
        return None
    c0 = h1 + len(_WIRE_CT)
    c1 = wire.find(b'"', c0)
    if c1 < 0 or not wire.startswith(_WIRE_SIG, c1):
        return None
    s0 = c1 + len(_WIRE_SIG)
    s1 = wire.find(b'"', s0)
    if s1 != len(wire) - len(_WIRE_CLOSE):
        return None
    return (
        decode_b64u_range(wire, h0, h1),
        decode_b64u_range(wire, c0, c1),
        decode_b64u_range(wire, s0, s1),
    )


def _slow_fields(wire: bytes):
    try:
        doc = strict_json_loads(wire)
    except UnicodeDecodeError:
        raise MalformedPacket("The packet is not valid UTF-8.") from None
    except (ValueError, RecursionError):
        raise MalformedPacket("The packet is not valid JSON (or repeats a field).") from None
    if not isinstance(doc, dict):
        raise MalformedPacket('A packet must be a JSON object {"v", "header", "ct", "sig"}.')
    if "v" not in doc:
        raise MalformedPacket("The packet has no 'v' (version) field.")
    if doc["v"] != VERSION:
        raise UnsupportedVersion(f"The packet has version {doc['v']!r}; this code reads only {VERSION!r}.")
    if set(doc) != {"v", "header", "ct", "sig"}:
        missing = sorted({"header", "ct", "sig"} - set(doc))
        extra = sorted(set(doc) - {"v", "header", "ct", "sig"})
        raise MalformedPacket(f"The packet's fields are wrong (missing: {missing}, unexpected: {extra}).")
    out = []
    for name in ("header", "ct", "sig"):
        value = doc[name]
        if not isinstance(value, str):
            raise MalformedPacket(f"The packet's {name!r} must be a base64url string.")
        if not value.isascii():
            raise MalformedPacket(f"The packet's {name!r} holds non-ASCII characters.")
        raw = value.encode("ascii")
        try:
            out.append(decode_b64u_range(raw, 0, len(raw)))
        except MalformedPacket as exc:
            raise MalformedPacket(f"The packet's {name!r} is not valid: {exc.message}") from None
    return out


def parse_header(raw: bytes) -> Header:
    """Parse and check the header bytes; raises MalformedPacket naming the first problem."""
    try:
        h = strict_json_loads(raw)
    except UnicodeDecodeError:
        raise MalformedPacket("The packet header is not valid UTF-8.") from None
    except (ValueError, RecursionError):
        raise MalformedPacket("The packet header is not valid JSON (or repeats a field).") from None
    if not isinstance(h, dict):
        raise MalformedPacket("The packet header must be a JSON object.")
    if set(h) != _HEADER_FIELDS:
        missing = sorted(_HEADER_FIELDS - set(h))
        extra = sorted(set(h) - _HEADER_FIELDS)
        raise MalformedPacket(f"The packet header's fields are wrong (missing: {missing}, unexpected: {extra}).")
    if not is_packet_id(h["packet_id"]):
        raise MalformedPacket("The header's packet_id must be 32 lowercase hex digits.")
    if not is_uuid(h["referral_id"]):
        raise MalformedPacket("The header's referral_id must be a lowercase UUID (8-4-4-4-12 hex digits).")
    if not is_kind(h["kind"]):
        raise MalformedPacket("The header's kind must be a short lowercase word such as 'referral'.")
    if not is_utc_time(h["created_at"]):
        raise MalformedPacket("The header's created_at must be a UTC time like 2026-11-22T10:00:00Z.")
    for party in ("from", "to"):
        p = h[party]
        if not isinstance(p, dict) or set(p) != _PARTY_FIELDS:
            raise MalformedPacket(f"The header's {party!r} must be an object with exactly 'agency' and 'kid'.")
        if not is_agency_id(p["agency"]):
            raise MalformedPacket(f"The header's {party}.agency is not a valid agency id.")
        if not is_kid(p["kid"]):
            raise MalformedPacket(f"The header's {party}.kid must be 32 lowercase hex digits.")
    return Header(
        raw=raw,
        packet_id=h["packet_id"],
        referral_id=h["referral_id"],
        kind=h["kind"],
        created_at=h["created_at"],
        from_agency=h["from"]["agency"],
        from_kid=h["from"]["kid"],
        to_agency=h["to"]["agency"],
        to_kid=h["to"]["kid"],
    )


def parse_packet(wire: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Packet:
    """Check size (before anything else), then the format; nothing is verified yet."""
    wire = _as_wire_bytes(wire, max_bytes)
    try:
        fields = _fast_fields(wire)
    except MalformedPacket:
        fields = None  # let the general parser name the problem
    if fields is None:
        fields = _slow_fields(wire)
    header_raw, ct, sig = fields
    if len(sig) != 64:
        raise MalformedPacket(f"The packet's sig is {len(sig)} bytes; an Ed25519 signature is 64.")
    return Packet(header=parse_header(header_raw), ct=ct, sig=sig, wire_size=len(wire))


def packet_sha256(wire: bytes | str) -> str:
    """Hex SHA-256 of the wire bytes exactly as submitted (for the audit log)."""
    if isinstance(wire, str):
        wire = wire.encode("utf-8")
    return hashlib.sha256(wire).hexdigest()


# --- checks --------------------------------------------------------------------


def _check_outer(packet: Packet, sender: PublicBundle) -> PublicKey:
    """Check 1: the outer sig verifies under from.kid, which belongs to from.agency."""
    h = packet.header
    if h.from_agency != sender.agency:
        raise UnknownKey(
            f"The packet says it comes from {h.from_agency!r} but the public keys given are those of "
            f"{sender.agency!r}; verify it with the bundle of {h.from_agency!r}."
        )
    key = sender.find(h.from_kid)
    if key is None or key.use != "sign":
        raise UnknownKey(
            f"Agency {sender.agency} has no signing key {h.from_kid}; refresh its public key bundle."
        )
    if key.revoked_at is not None:
        raise RevokedKey(
            f"Signing key {key.kid} of {sender.agency} was revoked at {key.revoked_at}; "
            "the sender must reseal with its current key."
        )
    try:
        key.verifier.verify(packet.sig, OUTER_CONTEXT + h.raw + hashlib.sha256(packet.ct).digest())
    except InvalidSignature:
        raise BadOuterSignature() from None
    return key


def _as_packet(wire, max_bytes: int) -> Packet:
    if isinstance(wire, Packet):
        if wire.wire_size > max_bytes:
            raise PacketTooLarge(f"The packet is {wire.wire_size} bytes, over the limit of {max_bytes}.")
        return wire
    return parse_packet(wire, max_bytes=max_bytes)


def open_packet(
    wire: bytes | str | Packet,
    *,
    reader: KeyRing,
    sender: PublicBundle,
    seen: SeenPacketIds,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> OpenedPacket:
    """Open a packet addressed to ``reader``: the five checks of PROTOCOL section 2, in order.

    The packet id is marked seen only after every check passed.
    """
    packet = _as_packet(wire, max_bytes)
    h = packet.header
    # 1. outer signature
    sign_key = _check_outer(packet, sender)
    # 2. addressed to this reader, under a key it holds
    if h.to_agency != reader.agency:
        raise NotAddressedToReader(
            f"The packet is addressed to {h.to_agency!r}, not to {reader.agency!r}; only that agency can open it."
        )
    seal_key = reader.find(h.to_kid)
    if seal_key is None or seal_key.use != "seal":
        raise UnknownKey(
            f"The packet is sealed to key {h.to_kid}, which is not a seal key in the key ring of "
            f"{reader.agency}; it may have been shredded, or the sender used a wrong bundle."
        )
    # 3. decryption
    try:
        inner = SUITE.decrypt(packet.ct, seal_key.hpke_private, info=INFO_CONTEXT + h.raw)
    except Exception:  # InvalidTag, or ValueError on a ciphertext too short to hold the KEM output
        raise DecryptionFailed() from None
    if len(inner) < ISIG_LEN:
        raise DecryptionFailed("The packet decrypts to fewer than 64 bytes, so it cannot hold a signed referral.")
    # 4. inner signature
    view = memoryview(inner)
    isig = bytes(view[:ISIG_LEN])
    try:
        sign_key.verifier.verify(isig, INNER_CONTEXT + h.raw + hashlib.sha256(view[ISIG_LEN:]).digest())
    except InvalidSignature:
        raise BadInnerSignature() from None
    # 5. replay
    if seen.seen(h.packet_id):
        raise ReplayedPacket(f"Packet {h.packet_id} was already opened by {reader.agency}; it is not accepted twice.")
    body = bytes(view[ISIG_LEN:])
    view.release()
    seen.mark(h.packet_id)
    return OpenedPacket(header=h, body=body, inner_sig=isig)


def verify_statement(header: bytes, body: bytes, inner_sig: bytes, *, sender: PublicBundle) -> Header:
    """Check a sender's signed statement (header + B + isig) against its public bundle.

    Works without any private key; raises UnknownKey, RevokedKey or
    BadInnerSignature, or MalformedPacket for a bad header.
    """
    h = parse_header(bytes(header))
    if h.from_agency != sender.agency:
        raise UnknownKey(f"The statement comes from {h.from_agency!r}, not {sender.agency!r}.")
    key = sender.find(h.from_kid)
    if key is None or key.use != "sign":
        raise UnknownKey(f"Agency {sender.agency} has no signing key {h.from_kid}.")
    if key.revoked_at is not None:
        raise RevokedKey(f"Signing key {key.kid} of {sender.agency} was revoked at {key.revoked_at}.")
    try:
        key.verifier.verify(bytes(inner_sig), INNER_CONTEXT + h.raw + hashlib.sha256(body).digest())
    except (InvalidSignature, ValueError):
        raise BadInnerSignature() from None
    return h


def verify_submission(
    wire: bytes | str | Packet,
    *,
    submitter: str,
    sender: PublicBundle,
    recipient: PublicBundle,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Packet:
    """The checks the hub makes on a submitted packet, without any private key.

    Check 1 (outer signature, unrevoked key of from.agency), then from.agency
    is the submitter, then the packet is sealed to the recipient's current
    seal key.
    """
    packet = _as_packet(wire, max_bytes)
    h = packet.header
    _check_outer(packet, sender)
    if h.from_agency != submitter:
        raise WrongSender(f"The packet says it comes from {h.from_agency!r}, but {submitter!r} submitted it.")
    if h.to_agency != recipient.agency:
        raise NotAddressedToReader(
            f"The packet is addressed to {h.to_agency!r}, not to {recipient.agency!r}."
        )
    current = recipient.current_seal_key()
    if h.to_kid != current.kid:
        older = recipient.find(h.to_kid)
        why = "an older key" if older is not None else "a key it does not publish"
        raise StaleRecipientKey(
            f"The packet is sealed to {why} of {recipient.agency} ({h.to_kid}); its current seal key is "
            f"{current.kid}. Fetch its public keys again and reseal."
        )
    return packet


def verify_referral_packets(packets: list[Packet]) -> None:
    """All packets of one referral carry the same referral_id and distinct packet ids."""
    if not packets:
        return
    first = packets[0].header.referral_id
    ids: set[str] = set()
    for p in packets:
        if p.header.referral_id != first:
            raise MismatchedReferral(
                f"Packet {p.header.packet_id} belongs to referral {p.header.referral_id}, not {first}."
            )
        if p.header.packet_id in ids:
            raise ReplayedPacket(f"Packet id {p.header.packet_id} appears twice in one referral.")
        ids.add(p.header.packet_id)


__all__ = [
    "DEFAULT_MAX_BYTES", "VERSION", "SUITE", "Header", "Packet", "OpenedPacket", "SeenPacketIds",
    "MemorySeenPacketIds", "build_header", "seal", "parse_header", "parse_packet", "packet_sha256",
    "open_packet", "verify_statement", "verify_submission", "verify_referral_packets",
]
