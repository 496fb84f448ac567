"""Every check of open_packet fails with its own error, in PROTOCOL order."""
from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.packets import (
    BadInnerSignature,
    BadOuterSignature,
    DecryptionFailed,
    MalformedPacket,
    MemorySeenPacketIds,
    NotAddressedToReader,
    PacketError,
    ReplayedPacket,
    RevokedKey,
    UnknownKey,
    generate_keyring,
    open_packet,
    parse_packet,
    revoke_key,
    rotate_keys,
    seal,
)
from hub.packets.testing import assemble, encrypt_inner, header_for, inner_signature, referral_body, resign

NOW = "2026-11-22T10:00:00Z"


@pytest.fixture(scope="module")
def packet(police, shelter):
    return parse_packet(seal(referral_body(), sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4())))


def flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def open_as_shelter(wire, police, shelter, seen=None):
    return open_packet(wire, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds() if seen is None else seen)


def positions(length: int) -> list[int]:
    return [0, length // 2, length - 1]


@pytest.mark.parametrize("part", ["header", "ct", "sig"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipping_a_byte_breaks_the_outer_signature(police, shelter, packet, part, where):
    parts = {"header": packet.header.raw, "ct": packet.ct, "sig": packet.sig}
    pos = dict(zip(["first", "middle", "last"], positions(len(parts[part]))))[where]
    parts[part] = flip(parts[part], pos)
    wire = assemble(parts["header"], parts["ct"], parts["sig"])

    with pytest.raises((BadOuterSignature, MalformedPacket)) as caught:
        open_as_shelter(wire, police, shelter)

    # A flipped header byte may also break the header's JSON, caught before any signature check.
    if part != "header":
        assert isinstance(caught.value, BadOuterSignature)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_flipping_any_byte_fails_with_a_packet_error(police, shelter, packet, data):
    part = data.draw(st.sampled_from(["header", "ct", "sig"]))
    parts = {"header": packet.header.raw, "ct": packet.ct, "sig": packet.sig}
    pos = data.draw(st.integers(0, len(parts[part]) - 1))
    bit = data.draw(st.integers(0, 7))
    raw = bytearray(parts[part])
    raw[pos] ^= 1 << bit
    parts[part] = bytes(raw)

    with pytest.raises(PacketError) as caught:
        open_as_shelter(assemble(parts["header"], parts["ct"], parts["sig"]), police, shelter)

    # A flipped header byte may break the JSON (MalformedPacket), or land in from.agency/from.kid so the
    # signing key is no longer the sender's (UnknownKey, check 1 before the signature); anything else in
    # the header, and every byte of ct and sig, breaks the outer signature.
    expected = (BadOuterSignature, MalformedPacket, UnknownKey) if part == "header" else (BadOuterSignature,)
    assert isinstance(caught.value, expected)


def test_header_with_valid_json_but_changed_field_fails_outer_signature(police, shelter, packet):
    tampered = packet.header.raw.replace(b'"kind":"referral"', b'"kind":"referrax"')
    wire = assemble(tampered, packet.ct, packet.sig)

    with pytest.raises(BadOuterSignature):
        open_as_shelter(wire, police, shelter)


def test_tampered_ct_resigned_by_the_sender_fails_decryption(police, shelter, packet):
    wire = resign(police[0], packet.header.raw, flip(packet.ct, len(packet.ct) // 2))

    with pytest.raises(DecryptionFailed):
        open_as_shelter(wire, police, shelter)


def test_header_changed_and_resigned_fails_decryption_because_info_covers_it(police, shelter, packet):
    other_header = packet.header.raw.replace(packet.header.packet_id.encode(), b"f" * 32)
    wire = resign(police[0], other_header, packet.ct)

    with pytest.raises(DecryptionFailed):
        open_as_shelter(wire, police, shelter)


def test_ciphertext_too_short_for_hpke_fails_decryption(police, shelter, packet):
    with pytest.raises(DecryptionFailed):
        open_as_shelter(resign(police[0], packet.header.raw, b"\x00" * 10), police, shelter)


def test_plaintext_shorter_than_a_signature_fails_decryption(police, shelter):
    key = shelter[1].current_seal_key()
    header = header_for(police[0], "pp-shelter-a", key.kid)
    wire = resign(police[0], header, encrypt_inner(b"x" * 63, key, header))

    with pytest.raises(DecryptionFailed):
        open_as_shelter(wire, police, shelter)


def test_inner_signature_over_another_body_fails(police, shelter):
    key = shelter[1].current_seal_key()
    header = header_for(police[0], "pp-shelter-a", key.kid)
    isig = inner_signature(police[0], header, b'{"a":1}')
    wire = resign(police[0], header, encrypt_inner(isig + b'{"a":2}', key, header))

    with pytest.raises(BadInnerSignature):
        open_as_shelter(wire, police, shelter)


def test_inner_signature_by_another_agency_fails(police, shelter):
    intruder, _ = generate_keyring("pp-intruder")
    key = shelter[1].current_seal_key()
    header = header_for(police[0], "pp-shelter-a", key.kid)
    body = referral_body()
    wire = resign(police[0], header, encrypt_inner(inner_signature(intruder, header, body) + body, key, header))

    with pytest.raises(BadInnerSignature):
        open_as_shelter(wire, police, shelter)


def test_hand_built_packet_with_all_parts_right_opens(police, shelter):
    key = shelter[1].current_seal_key()
    header = header_for(police[0], "pp-shelter-a", key.kid)
    body = referral_body()
    wire = resign(police[0], header, encrypt_inner(inner_signature(police[0], header, body) + body, key, header))

    assert open_as_shelter(wire, police, shelter).body == body


def test_packet_for_another_agency_is_not_addressed_to_the_reader(police, shelter):
    other = generate_keyring("pp-shelter-b", created_at=NOW)
    wire = seal(referral_body(), sender=police[0], recipient=other[1], referral_id=str(uuid.uuid4()))

    with pytest.raises(NotAddressedToReader) as caught:
        open_as_shelter(wire, police, shelter)
    assert "pp-shelter-b" in caught.value.message


def test_packet_sealed_to_a_key_the_reader_does_not_hold_is_unknown_key(police, shelter):
    impostor_ring, impostor_bundle = generate_keyring("pp-shelter-a", created_at=NOW)
    wire = seal(referral_body(), sender=police[0], recipient=impostor_bundle, referral_id=str(uuid.uuid4()))

    with pytest.raises(UnknownKey):
        open_as_shelter(wire, police, shelter)


def test_packet_signed_by_a_key_missing_from_the_sender_bundle_is_unknown_key(police, shelter):
    stranger_ring, _ = generate_keyring("pp-ahtjp", created_at=NOW)
    wire = seal(referral_body(), sender=stranger_ring, recipient=shelter[1], referral_id=str(uuid.uuid4()))

    with pytest.raises(UnknownKey):
        open_as_shelter(wire, police, shelter)


def test_packet_from_another_agency_than_the_bundle_is_unknown_key(police, shelter):
    other = generate_keyring("pp-other", created_at=NOW)
    wire = seal(referral_body(), sender=other[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))

    with pytest.raises(UnknownKey) as caught:
        open_as_shelter(wire, police, shelter)
    assert "pp-other" in caught.value.message


def test_packet_signed_with_a_revoked_key_is_refused(police, shelter):
    ring, bundle = rotate_keys(*police, use="sign", now="2026-11-23T10:00:00Z")
    old_kid = police[0].signing_key().kid
    wire = seal(referral_body(), sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))
    revoked = revoke_key(bundle, old_kid, now="2026-11-24T10:00:00Z")

    with pytest.raises(RevokedKey):
        open_packet(wire, reader=shelter[0], sender=revoked, seen=MemorySeenPacketIds())


def test_packet_sealed_to_an_older_seal_key_still_opens_after_rotation(police, shelter):
    wire = seal(referral_body(), sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))
    ring, bundle = rotate_keys(*shelter, use="seal", now="2026-11-23T10:00:00Z")

    assert open_packet(wire, reader=ring, sender=police[1], seen=MemorySeenPacketIds()).body == referral_body()


def test_replayed_packet_is_refused_the_second_time(police, shelter):
    wire = seal(referral_body(), sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))
    seen = MemorySeenPacketIds()
    open_as_shelter(wire, police, shelter, seen)

    with pytest.raises(ReplayedPacket):
        open_as_shelter(wire, police, shelter, seen)


def test_a_failed_open_does_not_mark_the_packet_seen(police, shelter, packet):
    seen = MemorySeenPacketIds()
    with pytest.raises(BadInnerSignature):
        key = shelter[1].current_seal_key()
        header = header_for(police[0], "pp-shelter-a", key.kid, packet_id="1" * 32)
        wire = resign(police[0], header, encrypt_inner(b"\x00" * 64 + b"{}", key, header))
        open_as_shelter(wire, police, shelter, seen)

    assert not seen.seen("1" * 32)


def test_a_packet_not_opened_because_of_an_earlier_failure_can_still_be_opened_later(police, shelter):
    wire = seal(referral_body(), sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))
    seen = MemorySeenPacketIds()
    with pytest.raises(UnknownKey):
        open_packet(wire, reader=shelter[0], sender=generate_keyring("pp-ahtjp")[1], seen=seen)

    assert open_as_shelter(wire, police, shelter, seen).body == referral_body()
