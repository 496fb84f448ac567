"""The exception tree of refhub/v1 packets and key rings.

Every error has a snake_case ``code`` (the machine-readable name the API puts
in its error envelope), a suggested HTTP ``status`` and a message for people
that says what is wrong and what to do. Messages never carry victim data or
key bytes.
"""
from __future__ import annotations


class PacketError(Exception):
    """Base of every error raised by hub.packets."""

    code = "packet_error"
    status = 400
    default_message = "The packet could not be processed."

    def __init__(self, message: str | None = None):
        self.message = message or self.default_message
        super().__init__(self.message)


class PacketTooLarge(PacketError):
    code = "packet_too_large"
    status = 413
    default_message = (
        "The packet is larger than this hub accepts; send large attachments separately "
        "or ask the hub operator to raise packets.max_bytes."
    )


class MalformedPacket(PacketError):
    code = "malformed_packet"
    status = 400
    default_message = "The packet is not a well-formed refhub/v1 packet; reseal it with a conforming client."


class UnsupportedVersion(PacketError):
    code = "unsupported_version"
    status = 400
    default_message = "The packet uses a protocol version this hub does not speak; reseal it as refhub/v1."


class UnknownKey(PacketError):
    code = "unknown_key"
    status = 422
    default_message = "The packet names a key that is not known; refresh the agency's public key bundle."


class NoSealKey(UnknownKey):
    code = "no_seal_key"
    status = 422
    default_message = (
        "The agency has no unrevoked seal key, so nothing can be sealed to it; "
        "ask the agency to rotate its keys."
    )


class RevokedKey(PacketError):
    code = "revoked_key"
    status = 422
    default_message = (
        "The packet was signed with a revoked key; the sender must reseal it with its current key."
    )


class BadOuterSignature(PacketError):
    code = "bad_signature"
    status = 422
    default_message = (
        "The packet's signature does not verify: it was altered in transit or signed by "
        "someone else. Ask the sender to send it again."
    )


class WrongSender(PacketError):
    code = "wrong_sender"
    status = 403
    default_message = "The packet says it comes from another agency than the one submitting it."


class NotAddressedToReader(PacketError):
    code = "not_addressed_to_reader"
    status = 422
    default_message = "The packet is addressed to another agency; only that agency can open it."


class StaleRecipientKey(PacketError):
    code = "stale_recipient_key"
    status = 409
    default_message = (
        "The packet is sealed to a key that is no longer the recipient's current seal key; "
        "fetch the recipient's public keys again and reseal."
    )


class DecryptionFailed(PacketError):
    code = "decryption_failed"
    status = 422
    default_message = (
        "The packet could not be decrypted with this agency's key; it was damaged or sealed "
        "wrongly. Ask the sender to send it again."
    )


class BadInnerSignature(PacketError):
    code = "bad_inner_signature"
    status = 422
    default_message = (
        "The sealed referral's inner signature does not verify; do not trust its content "
        "and ask the sender to send it again."
    )


class ReplayedPacket(PacketError):
    code = "replayed_packet"
    status = 409
    default_message = "This packet id was already seen; a packet cannot be delivered twice."


class MismatchedReferral(PacketError):
    code = "mismatched_referral"
    status = 422
    default_message = "The packets of one referral carry different referral ids; seal them again together."


class KeyRingError(PacketError):
    """Base of errors about key rings and public key bundles."""

    code = "keyring_error"
    status = 400
    default_message = "The key ring could not be used."


class WrongPassphrase(KeyRingError):
    code = "wrong_passphrase"
    status = 401
    default_message = "The passphrase or secret does not unlock this key ring; check it and try again."


class WrongHolder(KeyRingError):
    code = "wrong_holder"
    status = 403
    default_message = "This wrapped key ring belongs to another holder or agency; use your own copy."


class MalformedKeyRing(KeyRingError):
    code = "malformed_keyring"
    status = 400
    default_message = "The key ring document is damaged or not refhub/v1; restore it from a good copy."


class KeyBundleError(KeyRingError):
    code = "malformed_key_bundle"
    status = 400
    default_message = "The public key bundle is not valid refhub/v1; fetch it again from its agency."
