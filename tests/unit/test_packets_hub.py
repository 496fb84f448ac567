"""The checks the hub makes on a submitted packet, without any private key."""
from __future__ import annotations

import uuid

import pytest

from hub.packets import (
    BadOuterSignature,
    MismatchedReferral,
    NotAddressedToReader,
    ReplayedPacket,
    RevokedKey,
    StaleRecipientKey,
    UnknownKey,
    WrongSender,
    generate_keyring,
    parse_packet,
    revoke_key,
    rotate_keys,
    seal,
    verify_referral_packets,
    verify_submission,
)
from hub.packets.testing import assemble, referral_body

NOW = "2026-11-22T10:00:00Z"


def sealed(police, shelter, **kw):
    return seal(referral_body(), sender=police[0], recipient=shelter[1],
                referral_id=kw.pop("referral_id", str(uuid.uuid4())), **kw)


def test_a_good_submission_passes_and_returns_the_parsed_packet(police, shelter):
    wire = sealed(police, shelter)

    packet = verify_submission(wire, submitter="pp-ahtjp", sender=police[1], recipient=shelter[1])

    assert packet.header.to_kid == shelter[1].current_seal_key().kid


def test_packet_submitted_by_another_agency_is_wrong_sender(police, shelter):
    wire = sealed(police, shelter)

    with pytest.raises(WrongSender):
        verify_submission(wire, submitter="pp-shelter-b", sender=police[1], recipient=shelter[1])


def test_packet_with_a_broken_outer_signature_is_refused(police, shelter):
    packet = parse_packet(sealed(police, shelter))
    wire = assemble(packet.header.raw, packet.ct + b"\x00", packet.sig)

    with pytest.raises(BadOuterSignature):
        verify_submission(wire, submitter="pp-ahtjp", sender=police[1], recipient=shelter[1])


def test_packet_signed_with_a_revoked_key_is_refused(police, shelter):
    wire = sealed(police, shelter)
    revoked = revoke_key(police[1], police[0].signing_key().kid, now="2026-11-23T10:00:00Z")

    with pytest.raises(RevokedKey):
        verify_submission(wire, submitter="pp-ahtjp", sender=revoked, recipient=shelter[1])


def test_packet_checked_against_another_agency_bundle_is_unknown_key(police, shelter):
    wire = sealed(police, shelter)

    with pytest.raises(UnknownKey):
        verify_submission(wire, submitter="pp-ahtjp", sender=shelter[1], recipient=shelter[1])


def test_packet_for_another_recipient_is_not_addressed_to_it(police, shelter):
    other = generate_keyring("pp-shelter-b", created_at=NOW)
    wire = sealed(police, other)

    with pytest.raises(NotAddressedToReader):
        verify_submission(wire, submitter="pp-ahtjp", sender=police[1], recipient=shelter[1])


def test_packet_sealed_to_an_older_seal_key_is_stale(police, shelter):
    wire = sealed(police, shelter)
    _, rotated = rotate_keys(*shelter, use="seal", now="2026-11-23T10:00:00Z")

    with pytest.raises(StaleRecipientKey) as caught:
        verify_submission(wire, submitter="pp-ahtjp", sender=police[1], recipient=rotated)
    assert rotated.current_seal_key().kid in caught.value.message


def test_packets_of_one_referral_share_its_id(police, shelter):
    referral_id = str(uuid.uuid4())
    to_shelter = parse_packet(sealed(police, shelter, referral_id=referral_id))
    archive = parse_packet(seal(b"{}", sender=police[0], recipient=police[1], referral_id=referral_id))

    assert verify_referral_packets([to_shelter, archive]) is None  # accepted: it raises on a mismatch


def test_packets_with_different_referral_ids_are_mismatched(police, shelter):
    a = parse_packet(sealed(police, shelter))
    b = parse_packet(seal(b"{}", sender=police[0], recipient=police[1], referral_id=str(uuid.uuid4())))

    with pytest.raises(MismatchedReferral):
        verify_referral_packets([a, b])


def test_repeated_packet_id_within_a_referral_is_a_replay(police, shelter):
    referral_id = str(uuid.uuid4())
    a = parse_packet(sealed(police, shelter, referral_id=referral_id, packet_id="a" * 32))
    b = parse_packet(seal(b"{}", sender=police[0], recipient=police[1], referral_id=referral_id, packet_id="a" * 32))

    with pytest.raises(ReplayedPacket):
        verify_referral_packets([a, b])
