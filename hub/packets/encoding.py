"""Byte and text encodings of refhub/v1: base64url without padding, UTC times, ids.

The decoders are strict so that one packet has exactly one spelling on the
wire: no padding, no whitespace, no standard-alphabet characters, and no
stray bits in the last character.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import secrets
import time

import pybase64

from .errors import MalformedPacket

_ALT = b"-_"
# Big values are encoded and decoded in chunks straight into their final buffer:
# one fresh multi-megabyte buffer instead of two (fresh pages are costly).
_CHUNK = 3 * 4 * 4096  # bytes of binary per chunk; a multiple of 3 (and of 4 for text)
_BIG = 4 * _CHUNK
_PAD = (b"", None, b"==", b"=")  # indexed by len % 4; 1 is never valid
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z")
_HEX32_RE = re.compile(r"[0-9a-f]{32}\Z")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")


def b64u_encode(data: bytes) -> str:
    """base64url without padding, as text."""
    out = pybase64.urlsafe_b64encode(data)
    end = len(out)
    while end and out[end - 1] == 0x3D:  # "="
        end -= 1
    return out[:end].decode("ascii")


def b64u_length(n: int) -> int:
    """Characters of base64url without padding for n bytes."""
    return (4 * n + 2) // 3


def encode_b64u_bytes(data) -> memoryview:
    """base64url without padding, as a zero-copy view of ASCII bytes (for small values)."""
    out = pybase64.urlsafe_b64encode(data)
    end = len(out)
    while end and out[end - 1] == 0x3D:
        end -= 1
    return memoryview(out)[:end]


def write_b64u(out: io.BytesIO, data) -> None:
    """Write base64url without padding of ``data`` to ``out``, chunk by chunk."""
    view = memoryview(data)
    n = len(view)
    last = n - n % 3
    for i in range(0, last, _CHUNK):
        out.write(pybase64.urlsafe_b64encode(view[i:min(i + _CHUNK, last)]))
    if last < n:
        out.write(encode_b64u_bytes(view[last:]))


def presized_buffer(size: int) -> io.BytesIO:
    """A BytesIO whose buffer is allocated once at its final size; getvalue() then shares it."""
    out = io.BytesIO()
    if size:
        out.seek(size - 1)
        out.write(b"\0")
        out.seek(0)
    return out


def decode_b64u_range(buf: bytes, start: int, end: int) -> bytes:
    """Decode ``buf[start:end]`` as strict base64url without padding; no copy of the input.

    Raises MalformedPacket with a message naming the problem.
    """
    n = end - start
    rem = n % 4
    if rem == 1:
        raise MalformedPacket("A base64url field has an impossible length; it was truncated or altered.")
    # pybase64 with validate=True rejects anything outside [A-Za-z0-9+/_=-] and
    # misplaced "="; the standard-alphabet characters and padding are refused here.
    if buf.find(b"=", start, end) >= 0:
        raise MalformedPacket("A base64url field carries '=' padding; refhub/v1 writes base64url without padding.")
    if buf.find(b"+", start, end) >= 0 or buf.find(b"/", start, end) >= 0:
        raise MalformedPacket("A base64url field uses '+' or '/'; refhub/v1 uses the URL-safe alphabet ('-', '_').")
    split = end - rem
    try:
        if start == 0 and split == len(buf):
            main = pybase64.b64decode(buf, altchars=_ALT, validate=True)
        elif split - start < _BIG:
            main = pybase64.b64decode(memoryview(buf)[start:split], altchars=_ALT, validate=True)
        else:
            main = None
        if not rem and main is not None:
            return main
        tail_text = bytes(buf[split:end])
        tail = pybase64.b64decode(tail_text + _PAD[rem], altchars=_ALT, validate=True) if rem else b""
        if rem and pybase64.urlsafe_b64encode(tail)[:rem] != tail_text:
            raise MalformedPacket("A base64url field has stray bits in its last character; it is not canonical.")
        if main is not None:
            return main + tail
        view = memoryview(buf)
        step = _CHUNK // 3 * 4
        out = presized_buffer((split - start) // 4 * 3 + len(tail))
        for i in range(start, split, step):
            out.write(pybase64.b64decode(view[i:min(i + step, split)], altchars=_ALT, validate=True))
        out.write(tail)
        return out.getvalue()
    except (ValueError, TypeError):
        raise MalformedPacket("A base64url field holds characters outside the base64url alphabet.") from None


def b64u_decode(text: str | bytes) -> bytes:
    """Decode strict base64url without padding; raises MalformedPacket on anything else."""
    if isinstance(text, str):
        if not text.isascii():
            raise MalformedPacket("A base64url field holds non-ASCII characters.")
        buf = text.encode("ascii")
    elif isinstance(text, bytes):
        buf = text
    elif isinstance(text, (bytearray, memoryview)):
        buf = bytes(text)
    else:
        raise MalformedPacket(f"A base64url field must be a string, not {type(text).__name__}.")
    return decode_b64u_range(buf, 0, len(buf))


def utc_now() -> str:
    """The current time as refhub/v1 writes it: RFC 3339, UTC, seconds, with Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def is_utc_time(value: object) -> bool:
    """True for a real date-time spelled like 2026-11-22T10:00:00Z."""
    if not isinstance(value, str) or not _TIME_RE.match(value):
        return False
    try:
        dt.datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]),
                    int(value[11:13]), int(value[14:16]), int(value[17:19]))
    except ValueError:
        return False
    return True


def is_kid(value: object) -> bool:
    return isinstance(value, str) and _HEX32_RE.match(value) is not None


is_packet_id = is_kid  # both are 32 lowercase hex digits


def is_uuid(value: object) -> bool:
    """A UUID in its canonical spelling: lowercase hex, 8-4-4-4-12."""
    return isinstance(value, str) and _UUID_RE.match(value) is not None


def is_kind(value: object) -> bool:
    return isinstance(value, str) and _KIND_RE.match(value) is not None


def is_agency_id(value: object) -> bool:
    """Agency ids are short printable text; NUL would make the key ring AAD ambiguous."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 64
        and value.isprintable()
        and value == value.strip()
    )


def new_packet_id() -> str:
    """A fresh random packet id: 32 lowercase hex digits (128 bits)."""
    return secrets.token_hex(16)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKey("duplicate key")
    return out


def strict_json_loads(data: str | bytes):
    """json.loads that refuses duplicate object keys (two parsers must never read two meanings).

    Raises ValueError (including UnicodeDecodeError) or RecursionError; callers
    turn these into their own error class.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")  # strict: no BOM sniffing, no other encodings
    return json.loads(data, object_pairs_hook=_no_duplicates)


def compact_json(obj) -> bytes:
    """The compact JSON spelling refhub/v1 writes: no spaces, UTF-8, keys in insertion order."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
