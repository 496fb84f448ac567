"""The error tree: stable codes for the API, and a library that stands alone."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hub.packets as packets

ROOT = Path(__file__).resolve().parents[2]

CODES = {
    "PacketTooLarge": "packet_too_large",
    "MalformedPacket": "malformed_packet",
    "UnsupportedVersion": "unsupported_version",
    "UnknownKey": "unknown_key",
    "RevokedKey": "revoked_key",
    "BadOuterSignature": "bad_signature",
    "WrongSender": "wrong_sender",
    "NotAddressedToReader": "not_addressed_to_reader",
    "StaleRecipientKey": "stale_recipient_key",
    "DecryptionFailed": "decryption_failed",
    "BadInnerSignature": "bad_inner_signature",
    "ReplayedPacket": "replayed_packet",
    "MismatchedReferral": "mismatched_referral",
    "WrongPassphrase": "wrong_passphrase",
    "WrongHolder": "wrong_holder",
    "MalformedKeyRing": "malformed_keyring",
    "KeyBundleError": "malformed_key_bundle",
}


def test_every_error_has_its_api_code_and_a_message_for_people():
    for name, code in CODES.items():
        cls = getattr(packets, name)
        assert issubclass(cls, packets.PacketError)
        assert cls.code == code
        error = cls()
        assert error.message and str(error) == error.message


def test_key_ring_errors_are_their_own_branch():
    for name in ["WrongPassphrase", "WrongHolder", "MalformedKeyRing", "KeyBundleError"]:
        assert issubclass(getattr(packets, name), packets.KeyRingError)


def test_the_packets_library_imports_nothing_else_of_the_hub():
    probe = (
        "import sys, hub.packets, hub.packets.testing\n"
        "bad = sorted(m for m in sys.modules if m in ('flask', 'sqlalchemy') or m.startswith(('flask.', 'sqlalchemy.'))"
        " or (m.startswith('hub.') and not m.startswith('hub.packets')))\n"
        "print(' '.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
