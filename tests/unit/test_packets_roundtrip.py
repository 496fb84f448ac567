"""Sealing then opening gives back the exact body, for the recipient and for the sender's archive."""
from __future__ import annotations

import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.packets import (
    MemorySeenPacketIds,
    open_packet,
    parse_packet,
    seal,
    verify_statement,
)
from hub.packets.testing import referral_body

NOW = "2026-11-22T10:00:00Z"


def test_shelter_reads_the_referral_the_police_sealed(police, shelter):
    body = referral_body()
    wire = seal(body, sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))

    opened = open_packet(wire, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds())

    assert opened.body == body
    person = json.loads(opened.body)["person"]
    assert person["name_khmer"] == "សុខា តេស្ត"
    assert person["name_latin"] == "Test Person Sokha"


def test_attachments_travel_byte_for_byte(police, shelter):
    photo = bytes(range(256)) * 40
    body = referral_body(attachments=[("id-card.jpg", "image/jpeg", photo), ("note.txt", "text/plain", "ចំណាំ".encode())])
    wire = seal(body, sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))

    opened = open_packet(wire, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds())

    from hub.packets import b64u_decode

    attachments = json.loads(opened.body)["attachments"]
    assert b64u_decode(attachments[0]["bytes"]) == photo
    assert b64u_decode(attachments[1]["bytes"]).decode() == "ចំណាំ"


def test_sender_can_open_its_own_archive_copy(police):
    body = referral_body()
    wire = seal(body, sender=police[0], recipient=police[1], referral_id=str(uuid.uuid4()))

    opened = open_packet(wire, reader=police[0], sender=police[1], seen=MemorySeenPacketIds())

    assert opened.body == body


def test_header_records_who_sent_to_whom_under_which_keys(police, shelter):
    referral_id = str(uuid.uuid4())
    wire = seal(b"{}", sender=police[0], recipient=shelter[1], referral_id=referral_id,
                created_at=NOW, packet_id="ab" * 16)

    header = parse_packet(wire).header

    assert header.raw == (
        b'{"packet_id":"' + b"ab" * 16 + b'","referral_id":"' + referral_id.encode()
        + b'","kind":"referral","created_at":"2026-11-22T10:00:00Z",'
        + b'"from":{"agency":"pp-ahtjp","kid":"' + police[0].signing_key().kid.encode() + b'"},'
        + b'"to":{"agency":"pp-shelter-a","kid":"' + shelter[1].current_seal_key().kid.encode() + b'"}}'
    )
    assert (header.from_agency, header.to_agency) == ("pp-ahtjp", "pp-shelter-a")


def test_wire_form_is_the_compact_json_of_the_protocol(police, shelter):
    wire = seal(b"{}", sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))

    assert wire.startswith(b'{"v":"refhub/v1","header":"')
    assert list(json.loads(wire)) == ["v", "header", "ct", "sig"]
    assert b"=" not in wire


def test_opened_packet_is_a_statement_a_court_can_check_without_keys(police, shelter):
    body = referral_body()
    wire = seal(body, sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))
    opened = open_packet(wire, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds())

    statement = opened.statement()

    assert statement == opened.header.raw + body + opened.inner_sig
    assert verify_statement(opened.header.raw, opened.body, opened.inner_sig, sender=police[1]) == opened.header


def test_empty_body_round_trips(police, shelter):
    wire = seal(b"", sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))

    assert open_packet(wire, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds()).body == b""


def test_wire_given_as_text_opens_too(police, shelter):
    body = referral_body()
    wire = seal(body, sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))

    assert open_packet(wire.decode(), reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds()).body == body


def test_a_reformatted_wire_with_spaces_and_other_key_order_still_opens(police, shelter):
    body = referral_body()
    wire = seal(body, sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))
    doc = json.loads(wire)
    reformatted = json.dumps({"sig": doc["sig"], "ct": doc["ct"], "header": doc["header"], "v": doc["v"]}, indent=2)

    assert open_packet(reformatted, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds()).body == body


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=4096))
def test_any_body_bytes_round_trip(police, shelter, body):
    wire = seal(body, sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))

    assert open_packet(wire, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds()).body == body


names = st.text(alphabet=st.sampled_from("ABCabcxyz កខ គ ឃ ង ច ឆ ជ ញ ា ិ ី ុ ូ េ ៃ ោ ំ ះ ្"), max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(latin=names, khmer=names, extra=st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=4),
       blob=st.binary(max_size=2048))
def test_random_referrals_round_trip_with_unknown_fields_kept(police, shelter, latin, khmer, extra, blob):
    body = referral_body(attachments=[("scan.pdf", "application/pdf", blob)], extra=extra,
                         person={"name_latin": latin, "name_khmer": khmer, "fictional": True})
    wire = seal(body, sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))

    opened = open_packet(wire, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds())

    assert opened.body == body
    assert json.loads(opened.body)["extra"] == extra
