"""Anything that is not a well-formed packet gives a PacketError that says what is wrong."""
from __future__ import annotations

import base64
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.packets import (
    DEFAULT_MAX_BYTES,
    MalformedPacket,
    MemorySeenPacketIds,
    PacketError,
    PacketTooLarge,
    UnsupportedVersion,
    b64u_decode,
    b64u_encode,
    open_packet,
    packet_sha256,
    parse_packet,
    seal,
)
from hub.packets.testing import assemble, header_for, resign

@pytest.fixture(scope="module")
def wire(police, shelter):
    return seal(b'{"person":{}}', sender=police[0], recipient=shelter[1], referral_id=str(uuid.uuid4()))


def b64(data: bytes) -> str:
    return b64u_encode(data)


def with_fields(wire: bytes, **changes) -> bytes:
    doc = json.loads(wire)
    for name, value in changes.items():
        if value is ...:
            del doc[name]
        else:
            doc[name] = value
    return json.dumps(doc).encode()


def header_doc(wire: bytes) -> dict:
    return json.loads(b64u_decode(json.loads(wire)["header"]))


def with_header(wire: bytes, header: object) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return with_fields(wire, header=b64(raw))


# --- size ----------------------------------------------------------------------


def test_a_30_mb_blob_is_refused_for_size_before_anyone_parses_it():
    blob = b"\xff" * (30 * 1024 * 1024)

    with pytest.raises(PacketTooLarge):
        parse_packet(blob)


def test_the_size_limit_is_the_configured_one(wire):
    with pytest.raises(PacketTooLarge):
        parse_packet(wire, max_bytes=len(wire) - 1)
    assert parse_packet(wire, max_bytes=len(wire)).wire_size == len(wire)


def test_text_wire_is_measured_in_utf8_bytes():
    with pytest.raises(PacketTooLarge):
        parse_packet("ក" * 400, max_bytes=1000)  # 400 characters, 1,200 bytes


def test_default_limit_is_20_mib():
    assert DEFAULT_MAX_BYTES == 20 * 1024 * 1024


def test_open_packet_checks_size_too(police, shelter, wire):
    with pytest.raises(PacketTooLarge):
        open_packet(wire, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds(), max_bytes=100)


# --- the outer JSON ---------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"", b"not json", b"[1,2]", b'"text"', b"{", b"null", b"\xff\xfe{}", b"{}"])
def test_garbage_is_malformed(bad):
    with pytest.raises(MalformedPacket):
        parse_packet(bad)


def test_non_utf8_wire_is_malformed(wire):
    with pytest.raises(MalformedPacket) as caught:
        parse_packet(wire[:-2] + b"\xc3\x28" + wire[-2:])
    assert "UTF-8" in caught.value.message or "JSON" in caught.value.message


def test_other_version_is_unsupported(wire):
    with pytest.raises(UnsupportedVersion) as caught:
        parse_packet(with_fields(wire, v="refhub/v2"))
    assert "refhub/v2" in caught.value.message


def test_version_of_the_wrong_type_is_unsupported(wire):
    with pytest.raises(UnsupportedVersion):
        parse_packet(with_fields(wire, v=1))


@pytest.mark.parametrize("field", ["v", "header", "ct", "sig"])
def test_missing_field_is_malformed(wire, field):
    with pytest.raises(MalformedPacket) as caught:
        parse_packet(with_fields(wire, **{field: ...}))
    assert field in caught.value.message


def test_extra_field_is_malformed(wire):
    with pytest.raises(MalformedPacket):
        parse_packet(with_fields(wire, note="hello"))


def test_repeated_field_is_malformed(wire):
    doubled = wire[:-1] + b',"ct":"AAAA"}'
    with pytest.raises(MalformedPacket):
        parse_packet(doubled)


@pytest.mark.parametrize("field", ["header", "ct", "sig"])
@pytest.mark.parametrize("value", [None, 5, ["x"], {"a": 1}])
def test_fields_that_are_not_strings_are_malformed(wire, field, value):
    with pytest.raises(MalformedPacket):
        parse_packet(with_fields(wire, **{field: value}))


@pytest.mark.parametrize("field", ["header", "ct", "sig"])
def test_padded_base64_is_malformed(wire, field):
    value = json.loads(wire)[field]
    padded = base64.urlsafe_b64encode(b64u_decode(value)).decode()
    if padded == value:  # no padding needed for this length: add a stray "="
        padded = value + "=="
    with pytest.raises(MalformedPacket):
        parse_packet(with_fields(wire, **{field: padded}))


@pytest.mark.parametrize("field", ["header", "ct", "sig"])
@pytest.mark.parametrize("char", ["+", "/", "!", " ", "\n", "é"])
def test_characters_outside_base64url_are_malformed(wire, field, char):
    value = json.loads(wire)[field]
    with pytest.raises(MalformedPacket):
        parse_packet(with_fields(wire, **{field: value[:4] + char + value[5:]}))


def test_truncated_base64_is_malformed(wire):
    value = json.loads(wire)["ct"]
    cut = value[: len(value) - (len(value) % 4) - 3]  # length 1 modulo 4
    with pytest.raises(MalformedPacket):
        parse_packet(with_fields(wire, ct=cut))


def test_non_canonical_last_base64_character_is_malformed(wire):
    sig = json.loads(wire)["sig"]  # 64 bytes: 86 characters, 2 spare bits in the last
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    stray = alphabet[alphabet.index(sig[-1]) | 1]
    with pytest.raises(MalformedPacket):
        parse_packet(with_fields(wire, sig=sig[:-1] + stray))


def test_signature_of_the_wrong_length_is_malformed(wire):
    with pytest.raises(MalformedPacket):
        parse_packet(with_fields(wire, sig=b64(b"x" * 63)))


# --- the header ------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"1", b"null", b"{", b"\xff\xfe", b""])
def test_header_that_is_not_a_json_object_is_malformed(wire, raw):
    with pytest.raises(MalformedPacket):
        parse_packet(with_header(wire, raw))


@pytest.mark.parametrize("field", ["packet_id", "referral_id", "kind", "created_at", "from", "to"])
def test_header_missing_a_field_is_malformed(wire, field):
    h = header_doc(wire)
    del h[field]
    with pytest.raises(MalformedPacket) as caught:
        parse_packet(with_header(wire, h))
    assert field in caught.value.message


@pytest.mark.parametrize(
    "field,value",
    [
        ("packet_id", 12),
        ("packet_id", "ABCDEF" + "0" * 26),
        ("packet_id", "0" * 31),
        ("referral_id", "not-a-uuid"),
        ("referral_id", "0B6F2C1E-8A4D-4C59-9F0E-2D3B7A1C5E90"),
        ("referral_id", None),
        ("kind", ""),
        ("kind", 7),
        ("created_at", "2026-11-22 10:00:00"),
        ("created_at", "2026-13-22T10:00:00Z"),
        ("created_at", "2026-11-22T10:00:00+07:00"),
        ("created_at", 1764000000),
        ("from", "pp-ahtjp"),
        ("from", {"agency": "pp-ahtjp"}),
        ("from", {"agency": "pp-ahtjp", "kid": "x" * 32}),
        ("from", {"agency": "", "kid": "0" * 32}),
        ("to", {"agency": "pp-shelter-a", "kid": "0" * 32, "extra": 1}),
        ("to", {"agency": 5, "kid": "0" * 32}),
        ("to", None),
    ],
)
def test_header_field_of_wrong_type_or_form_is_malformed(wire, field, value):
    h = header_doc(wire)
    h[field] = value
    with pytest.raises(MalformedPacket):
        parse_packet(with_header(wire, h))


def test_header_with_unexpected_field_is_malformed(wire):
    h = header_doc(wire)
    h["priority"] = "urgent"
    with pytest.raises(MalformedPacket):
        parse_packet(with_header(wire, h))


def test_header_with_a_repeated_field_is_malformed(wire):
    raw = b64u_decode(json.loads(wire)["header"])
    doubled = raw[:-1] + b',"kind":"other"}'
    with pytest.raises(MalformedPacket):
        parse_packet(with_header(wire, doubled))


def test_header_that_is_not_utf8_is_malformed(wire):
    raw = b64u_decode(json.loads(wire)["header"]).replace(b'"referral"', b'"r\xffferral"')
    with pytest.raises(MalformedPacket):
        parse_packet(with_header(wire, raw))


def test_malformed_header_is_reported_even_with_a_valid_outer_signature(police, shelter):
    # The sender signed it, but it is still not a refhub/v1 header.
    header = header_for(police[0], "pp-shelter-a", shelter[1].current_seal_key().kid).replace(b'"kind"', b'"sort"')
    with pytest.raises(MalformedPacket):
        parse_packet(resign(police[0], header, b"\x00" * 2000))


# --- the base64url helpers ---------------------------------------------------------


@given(st.binary(max_size=300))
def test_b64u_round_trips_without_padding(data):
    text = b64u_encode(data)
    assert "=" not in text
    assert b64u_decode(text) == data


@pytest.mark.parametrize("bad", ["QQ==", "QQ=", "Q", "a+bc", "a/bc", "ab c", "abé", "QR"])
def test_b64u_decode_refuses_anything_but_canonical_unpadded_base64url(bad):
    with pytest.raises(MalformedPacket):
        b64u_decode(bad)


def test_packet_sha256_is_of_the_wire_bytes(wire):
    import hashlib

    assert packet_sha256(wire) == hashlib.sha256(wire).hexdigest()
    assert packet_sha256(wire.decode()) == hashlib.sha256(wire).hexdigest()


# --- fuzzing ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_random_bytes_only_ever_raise_packet_errors(police, shelter, data):
    with pytest.raises(PacketError):
        open_packet(data, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=json_values)
def test_random_json_only_ever_raises_packet_errors(police, shelter, doc):
    with pytest.raises(PacketError):
        open_packet(json.dumps(doc), reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=json_values, ct=st.binary(max_size=200), sig=st.binary(min_size=60, max_size=68))
def test_random_headers_in_a_well_formed_wire_only_raise_packet_errors(police, shelter, header, ct, sig):
    wire = assemble(json.dumps(header).encode(), ct, sig)
    with pytest.raises(PacketError):
        open_packet(wire, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_to_a_real_wire_only_raises_packet_errors(police, shelter, wire, data):
    pos = data.draw(st.integers(0, len(wire) - 1))
    value = data.draw(st.integers(0, 255))
    damaged = wire[:pos] + bytes([value]) + wire[pos + 1:]
    if damaged == wire:
        return
    with pytest.raises(PacketError):
        open_packet(damaged, reader=shelter[0], sender=police[1], seen=MemorySeenPacketIds())


def test_deeply_nested_json_is_malformed_not_a_crash():
    with pytest.raises(MalformedPacket):
        parse_packet(b"[" * 100000 + b"]" * 100000)


def test_huge_integer_is_malformed_not_a_crash():
    with pytest.raises(MalformedPacket):
        parse_packet(b'{"v":' + b"9" * 5000 + b"}")
