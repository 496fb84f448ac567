"""refhub/v1 sealed packets and agency key rings (PROTOCOL.md sections 1 and 2).

A pure library: it imports nothing else of the hub, no Flask and no
SQLAlchemy, so an agency's own system can use it as it is.
"""
from .encoding import b64u_decode, b64u_encode, new_packet_id, utc_now
from .errors import (
    BadInnerSignature,
    BadOuterSignature,
    DecryptionFailed,
    KeyBundleError,
    KeyRingError,
    MalformedKeyRing,
    MalformedPacket,
    MismatchedReferral,
    NoSealKey,
    NotAddressedToReader,
    PacketError,
    PacketTooLarge,
    ReplayedPacket,
    RevokedKey,
    StaleRecipientKey,
    UnknownKey,
    UnsupportedVersion,
    WrongHolder,
    WrongPassphrase,
    WrongSender,
)
from .keys import (
    SEAL_ALG,
    SIGN_ALG,
    KeyRing,
    PrivateKey,
    PublicBundle,
    PublicKey,
    generate_keyring,
    key_id,
    revoke_key,
    rotate_keys,
)
from .wire import (
    DEFAULT_MAX_BYTES,
    VERSION,
    Header,
    MemorySeenPacketIds,
    OpenedPacket,
    Packet,
    SeenPacketIds,
    open_packet,
    packet_sha256,
    parse_packet,
    seal,
    verify_referral_packets,
    verify_statement,
    verify_submission,
)
from .wrapping import DEFAULT_KDF_PARAMS, KEYRING_VERSION, unwrap_keyring, wrap_keyring

__all__ = [
    "SIGN_ALG", "SEAL_ALG", "VERSION", "KEYRING_VERSION", "DEFAULT_MAX_BYTES", "DEFAULT_KDF_PARAMS",
    "b64u_encode", "b64u_decode", "key_id", "new_packet_id", "utc_now",
    "PublicKey", "PublicBundle", "PrivateKey", "KeyRing",
    "generate_keyring", "rotate_keys", "revoke_key", "wrap_keyring", "unwrap_keyring",
    "Header", "Packet", "OpenedPacket", "SeenPacketIds", "MemorySeenPacketIds",
    "seal", "parse_packet", "packet_sha256", "open_packet", "verify_submission",
    "verify_referral_packets", "verify_statement",
    "PacketError", "PacketTooLarge", "MalformedPacket", "UnsupportedVersion", "UnknownKey", "NoSealKey",
    "RevokedKey", "BadOuterSignature", "WrongSender", "NotAddressedToReader", "StaleRecipientKey",
    "DecryptionFailed", "BadInnerSignature", "ReplayedPacket", "MismatchedReferral",
    "KeyRingError", "WrongPassphrase", "WrongHolder", "MalformedKeyRing", "KeyBundleError",
]
