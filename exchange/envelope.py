"""Sealed envelopes: seal to one recipient agency, open with every check in a fixed order.

An envelope is `header || HPKE(SealedBody) || outer signature`:

* the header travels as the exact protobuf bytes the sender signed;
* the body and an inner Ed25519 signature over PAE(header, body) are encrypted with
  HPKE (RFC 9180, base mode) to the recipient's key, with SHA-256(PAE(header)) as
  HPKE `info`, so a ciphertext cannot be moved under another header;
* an outer Ed25519 signature over PAE(header, ciphertext) lets the recipient
  authenticate the sender before it decrypts anything.

`open_envelope` checks, in this order: size limits, parse, sender and key in the
directory, outer signature, recipient (and that our key is not revoked), expiry,
replay, decryption, body size, inner signature. docs/protocol.md section 7.3 lists
every step with its error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from nacl.signing import SigningKey

from exchange._proto.mlax.v1 import envelope_pb2 as pb
from exchange.agency import AGENCY_ID_RE, AgencyCard, KeyAlgorithm, PublicKey
from exchange.directory import Directory
from exchange.encoding import (
    CTX_ENVELOPE_DIGEST,
    CTX_ENVELOPE_HPKE_INFO,
    CTX_ENVELOPE_INNER,
    CTX_ENVELOPE_OUTER,
    format_uuid,
    key_id,
    pae,
    sha256,
    uuid7,
)
from exchange.errors import (
    DecryptionError,
    ExpiredEnvelopeError,
    InnerSignatureError,
    InvalidFieldError,
    OuterSignatureError,
    OversizedError,
    ReplayError,
    RevokedKeyError,
    UnknownSenderError,
    WrongRecipientError,
)
from exchange.signing import verify_ed25519
from exchange.wire import parse

PROTOCOL_VERSION = 1


KEY_ID_RE = re.compile(r"[0-9a-f]{32}")


def _is_uuid7(raw: bytes) -> bool:
    return len(raw) == 16 and raw[6] >> 4 == 7 and raw[8] >> 6 == 0b10


class MessageType(Enum):
    NOTE = pb.MESSAGE_TYPE_NOTE
    MLA_REQUEST = pb.MESSAGE_TYPE_MLA_REQUEST
    EXTRADITION_REQUEST = pb.MESSAGE_TYPE_EXTRADITION_REQUEST
    VICTIM_ID_REQUEST = pb.MESSAGE_TYPE_VICTIM_ID_REQUEST
    REPLY = pb.MESSAGE_TYPE_REPLY
    CASE_TRANSITION = pb.MESSAGE_TYPE_CASE_TRANSITION
    EVIDENCE = pb.MESSAGE_TYPE_EVIDENCE
    STATISTICS_RELEASE = pb.MESSAGE_TYPE_STATISTICS_RELEASE


class HandlingCode(Enum):
    NO_ONWARD_TRANSMISSION = pb.HANDLING_CODE_NO_ONWARD_TRANSMISSION
    NO_EVIDENTIAL_USE_WITHOUT_CONSENT = pb.HANDLING_CODE_NO_EVIDENTIAL_USE_WITHOUT_CONSENT
    RESTRICTED_TO_NAMED_OFFICERS = pb.HANDLING_CODE_RESTRICTED_TO_NAMED_OFFICERS


def handling_from_wire(
    codes: Iterable[int], restricted_to: Sequence[str], what: str
) -> tuple[HandlingCode, ...]:
    """Handling codes an officer asked for, checked as every node checks them.

    `what` names the item in the error ("a message", "a case", "an attachment").
    """
    try:
        parsed = tuple(dict.fromkeys(HandlingCode(c) for c in codes))
    except ValueError:
        raise InvalidFieldError("Field handling_codes: unknown handling code.") from None
    if HandlingCode.RESTRICTED_TO_NAMED_OFFICERS in parsed and not restricted_to:
        raise InvalidFieldError(
            f"Field restricted_to: {what} restricted to named officers must name them."
        )
    return parsed


def codes_text(codes: Iterable[HandlingCode]) -> str:
    """Handling codes as stored in a database column: their numbers, comma-separated."""
    return ",".join(str(c.value) for c in codes)


def codes_of(text: str) -> tuple[HandlingCode, ...]:
    """The inverse of `codes_text`."""
    return tuple(HandlingCode(int(c)) for c in text.split(",") if c)


class Suite(Enum):
    """HPKE suites: the recipient's key algorithm decides which one a sender uses."""

    X25519_SHA256_CHACHA20POLY1305 = pb.HPKE_SUITE_X25519_SHA256_CHACHA20POLY1305
    MLKEM768X25519_SHA256_CHACHA20POLY1305 = pb.HPKE_SUITE_MLKEM768X25519_SHA256_CHACHA20POLY1305

    @classmethod
    def for_key(cls, algorithm: KeyAlgorithm) -> Suite:
        if algorithm is KeyAlgorithm.X25519:
            return cls.X25519_SHA256_CHACHA20POLY1305
        if algorithm is KeyAlgorithm.MLKEM768_X25519:
            return cls.MLKEM768X25519_SHA256_CHACHA20POLY1305
        raise InvalidFieldError(f"A {algorithm.label} key cannot receive envelopes.")

    @property
    def hpke(self) -> hpke.Suite:
        return _HPKE_SUITES[self]


_HPKE_SUITES = {
    Suite.X25519_SHA256_CHACHA20POLY1305: hpke.Suite(
        hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
    ),
    Suite.MLKEM768X25519_SHA256_CHACHA20POLY1305: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
    ),
}

DecryptionKey = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey
EncryptionKey = x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey


def load_encryption_key(key: PublicKey) -> EncryptionKey:
    """The cryptography public-key object for a published encryption key."""
    if key.algorithm is KeyAlgorithm.X25519:
        return x25519.X25519PublicKey.from_public_bytes(key.public_key)
    if key.algorithm is KeyAlgorithm.MLKEM768_X25519:
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(key.public_key[:1184]),
            x25519.X25519PublicKey.from_public_bytes(key.public_key[1184:]),
        )
    raise InvalidFieldError(f"A {key.algorithm.label} key cannot receive envelopes.")


@dataclass(frozen=True)
class Limits:
    """Sizes and clock tolerances; nodes take them from configuration."""

    max_envelope_bytes: int = 4 * 1024 * 1024 - 64 * 1024
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 3 * 1024 * 1024
    max_clock_skew_ms: int = 5 * 60 * 1000
    max_lifetime_ms: int = 90 * 24 * 3600 * 1000
    max_case_ref_chars: int = 128
    max_named_officers: int = 64
    max_attachments: int = 256


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class AttachmentDigest:
    name: str
    sha256: bytes
    size: int


@dataclass(frozen=True)
class Header:
    """The signed cleartext header: routing and key metadata, never content."""

    message_id: bytes
    sender: str
    recipient: str
    message_type: MessageType
    created_at: int
    expires_at: int
    sender_key_id: str
    recipient_key_id: str
    suite: Suite
    case_ref: str = ""
    handling_codes: tuple[HandlingCode, ...] = ()
    attachments: tuple[AttachmentDigest, ...] = ()
    restricted_to: tuple[str, ...] = ()
    in_reply_to: bytes = b""

    @property
    def message_id_text(self) -> str:
        return format_uuid(self.message_id)

    def to_bytes(self) -> bytes:
        return pb.EnvelopeHeader(
            protocol_version=PROTOCOL_VERSION,
            message_id=self.message_id,
            sender=self.sender,
            recipient=self.recipient,
            message_type=self.message_type.value,
            case_ref=self.case_ref,
            created_at=self.created_at,
            expires_at=self.expires_at,
            sender_key_id=self.sender_key_id,
            recipient_key_id=self.recipient_key_id,
            suite=self.suite.value,
            handling_codes=[c.value for c in self.handling_codes],
            attachments=[
                pb.AttachmentDigest(name=a.name, sha256=a.sha256, size=a.size)
                for a in self.attachments
            ],
            restricted_to=list(self.restricted_to),
            in_reply_to=self.in_reply_to,
        ).SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Header:
        """Parse and validate header bytes; raises MalformedError or InvalidFieldError."""
        msg = parse(
            pb.EnvelopeHeader, data, "envelope header", limits.max_header_bytes, canonical=True
        )
        if msg.protocol_version != PROTOCOL_VERSION:
            raise InvalidFieldError(f"Protocol version {msg.protocol_version} is not supported.")
        mid = bytes(msg.message_id)
        if not _is_uuid7(mid):
            raise InvalidFieldError("The message id is not a 16-byte UUIDv7.")
        for role, agency in (("sender", msg.sender), ("recipient", msg.recipient)):
            if not AGENCY_ID_RE.fullmatch(agency):
                raise InvalidFieldError(f"The {role} {agency[:40]!r} is not an agency id.")
        try:
            message_type = MessageType(msg.message_type)
            suite = Suite(msg.suite)
            codes = tuple(HandlingCode(c) for c in msg.handling_codes)
        except ValueError:
            raise InvalidFieldError(
                "The header names a message type, suite or handling code this version "
                "does not define."
            ) from None
        if len(msg.case_ref) > limits.max_case_ref_chars:
            raise OversizedError(f"The case reference exceeds {limits.max_case_ref_chars} chars.")
        if not 0 < msg.created_at < msg.expires_at:
            raise InvalidFieldError("The envelope expires before it was created.")
        if msg.expires_at - msg.created_at > limits.max_lifetime_ms:
            raise InvalidFieldError("The envelope's lifetime exceeds the federation maximum.")
        if len(msg.restricted_to) > limits.max_named_officers:
            raise OversizedError(f"More than {limits.max_named_officers} named officers.")
        if len(msg.attachments) > limits.max_attachments:
            raise OversizedError(f"More than {limits.max_attachments} attachments.")
        if any(len(a.sha256) != 32 for a in msg.attachments):
            raise InvalidFieldError("An attachment digest is not a 32-byte SHA-256.")
        if msg.in_reply_to and not _is_uuid7(bytes(msg.in_reply_to)):
            raise InvalidFieldError("in_reply_to is not a UUIDv7 message id.")
        for role, kid in (("sender", msg.sender_key_id), ("recipient", msg.recipient_key_id)):
            if not KEY_ID_RE.fullmatch(kid):
                raise InvalidFieldError(f"The {role} key id is not 32 lowercase hex digits.")
        if len(set(msg.handling_codes)) != len(msg.handling_codes):
            raise InvalidFieldError("A handling code is listed twice.")
        restricted = pb.HANDLING_CODE_RESTRICTED_TO_NAMED_OFFICERS in msg.handling_codes
        if restricted and not msg.restricted_to:
            raise InvalidFieldError("A message restricted to named officers must name them.")
        return cls(
            message_id=mid,
            sender=msg.sender,
            recipient=msg.recipient,
            message_type=message_type,
            created_at=msg.created_at,
            expires_at=msg.expires_at,
            sender_key_id=msg.sender_key_id,
            recipient_key_id=msg.recipient_key_id,
            suite=suite,
            case_ref=msg.case_ref,
            handling_codes=codes,
            attachments=tuple(
                AttachmentDigest(a.name, bytes(a.sha256), a.size) for a in msg.attachments
            ),
            restricted_to=tuple(msg.restricted_to),
            in_reply_to=bytes(msg.in_reply_to),
        )


@dataclass(frozen=True)
class Envelope:
    """What travels: header bytes, HPKE ciphertext, outer signature."""

    header: bytes
    ciphertext: bytes
    outer_signature: bytes

    def to_bytes(self) -> bytes:
        return pb.Envelope(
            header=self.header, ciphertext=self.ciphertext, outer_signature=self.outer_signature
        ).SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
        msg = parse(pb.Envelope, data, "envelope", limits.max_envelope_bytes)
        return cls(bytes(msg.header), bytes(msg.ciphertext), bytes(msg.outer_signature))

    @property
    def digest(self) -> bytes:
        """SHA-256 naming this envelope in receipts and ledger entries."""
        return sha256(pae(CTX_ENVELOPE_DIGEST, self.header, self.ciphertext, self.outer_signature))


@dataclass(frozen=True)
class Sender:
    """What sealing needs of the sending agency: its id and current signing key."""

    agency_id: str
    signing_key: SigningKey

    @property
    def key_id(self) -> str:
        return key_id("ed25519", bytes(self.signing_key.verify_key))


@dataclass(frozen=True)
class Recipient:
    """What opening needs of the receiving agency: its id and decryption keys by key id."""

    agency_id: str
    decryption_keys: dict[str, DecryptionKey] = field(default_factory=dict)


class SeenIds(Protocol):
    """Replay protection: which (sender, message id) pairs were already accepted.

    `open_envelope` only asks; the caller records the id durably in the same
    transaction that stores the envelope, so a crash cannot lose or double it.
    """

    def seen(self, sender: str, message_id: bytes) -> bool: ...


class MemorySeenIds:
    """A SeenIds for tests and tools; nodes use their database."""

    def __init__(self) -> None:
        self._ids: set[tuple[str, bytes]] = set()

    def seen(self, sender: str, message_id: bytes) -> bool:
        return (sender, message_id) in self._ids

    def add(self, sender: str, message_id: bytes) -> None:
        self._ids.add((sender, message_id))


@dataclass(frozen=True)
class Opened:
    """A verified, decrypted envelope."""

    envelope: Envelope
    header: Header
    body: bytes
    inner_signature: bytes

    def non_repudiation_bundle(self) -> bytes:
        """What the recipient hands a third party to prove who sent this plaintext."""
        return pb.NonRepudiationBundle(
            header=self.envelope.header, body=self.body, inner_signature=self.inner_signature
        ).SerializeToString(deterministic=True)


def hpke_info(header: bytes) -> bytes:
    """HPKE `info`: SHA-256(PAE(ctx, header)), 32 bytes.

    Binds the whole header into the key schedule while staying within the 64 bytes of
    `info` every RFC 9180 implementation must accept.
    """
    return sha256(pae(CTX_ENVELOPE_HPKE_INFO, header))


def seal(
    sender: Sender,
    recipient: AgencyCard,
    body: bytes,
    message_type: MessageType,
    *,
    now_ms: int,
    ttl_ms: int = 30 * 24 * 3600 * 1000,
    case_ref: str = "",
    handling_codes: tuple[HandlingCode, ...] = (),
    attachments: tuple[AttachmentDigest, ...] = (),
    restricted_to: tuple[str, ...] = (),
    in_reply_to: bytes = b"",
    message_id: bytes | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Envelope:
    """Seal `body` to `recipient`'s preferred current encryption key."""
    if len(body) > limits.max_body_bytes:
        raise OversizedError(
            f"The body is {len(body)} bytes; the limit is {limits.max_body_bytes}."
        )
    key = recipient.current_encryption_key(now_ms)
    suite = Suite.for_key(key.algorithm)
    header = Header(
        message_id=uuid7(now_ms) if message_id is None else message_id,
        sender=sender.agency_id,
        recipient=recipient.agency_id,
        message_type=message_type,
        created_at=now_ms,
        expires_at=now_ms + ttl_ms,
        sender_key_id=sender.key_id,
        recipient_key_id=key.key_id,
        suite=suite,
        case_ref=case_ref,
        handling_codes=handling_codes,
        attachments=attachments,
        restricted_to=restricted_to,
        in_reply_to=in_reply_to,
    )
    header_bytes = header.to_bytes()
    Header.from_bytes(header_bytes, limits)  # what we send must pass the receiver's checks
    inner = sender.signing_key.sign(pae(CTX_ENVELOPE_INNER, header_bytes, body)).signature
    sealed = pb.SealedBody(body=body, inner_signature=inner).SerializeToString(deterministic=True)
    ciphertext = suite.hpke.encrypt(sealed, load_encryption_key(key), info=hpke_info(header_bytes))
    outer = sender.signing_key.sign(pae(CTX_ENVELOPE_OUTER, header_bytes, ciphertext)).signature
    return Envelope(header_bytes, ciphertext, outer)


def authenticate(
    data: bytes, directory: Directory, limits: Limits = DEFAULT_LIMITS
) -> tuple[Envelope, Header, AgencyCard]:
    """The pre-decryption checks: size, parse, sender and key, outer signature.

    A node runs these before it spends anything on the envelope; `open_envelope`
    continues from here.
    """
    envelope = Envelope.from_bytes(data, limits)
    header = Header.from_bytes(envelope.header, limits)
    card = directory.agency(header.sender)
    if card is None:
        raise UnknownSenderError(f"Sender {header.sender} is not a member of the federation.")
    key = card.signing_key(header.sender_key_id, header.created_at)
    if not verify_ed25519(
        key.public_key,
        pae(CTX_ENVELOPE_OUTER, envelope.header, envelope.ciphertext),
        envelope.outer_signature,
    ):
        raise OuterSignatureError(
            f"The outer signature of message {header.message_id_text} does not verify."
        )
    return envelope, header, card


def decrypt(
    envelope: Envelope, header: Header, private_key: DecryptionKey, limits: Limits = DEFAULT_LIMITS
) -> tuple[bytes, bytes]:
    """Decrypt the sealed body: (body, inner signature). No signature or time checks.

    `open_envelope` calls this after its checks; a node also uses it to reread an
    envelope it accepted earlier.
    """
    expected_suite = (
        Suite.X25519_SHA256_CHACHA20POLY1305
        if isinstance(private_key, x25519.X25519PrivateKey)
        else Suite.MLKEM768X25519_SHA256_CHACHA20POLY1305
    )
    if header.suite is not expected_suite:
        raise DecryptionError(
            f"Message {header.message_id_text} names a suite that does not fit the key."
        )
    try:
        sealed_bytes = header.suite.hpke.decrypt(
            envelope.ciphertext, private_key, info=hpke_info(envelope.header)
        )
    except (InvalidTag, ValueError):
        raise DecryptionError(
            f"Message {header.message_id_text} does not decrypt with our key."
        ) from None
    sealed = parse(pb.SealedBody, sealed_bytes, "sealed body", limits.max_envelope_bytes)
    return bytes(sealed.body), bytes(sealed.inner_signature)


def open_envelope(
    data: bytes,
    directory: Directory,
    recipient: Recipient,
    seen: SeenIds,
    *,
    now_ms: int,
    limits: Limits = DEFAULT_LIMITS,
) -> Opened:
    """Verify and decrypt an envelope to `recipient`; each failed check has its own error."""
    envelope, header, card = authenticate(data, directory, limits)
    return open_authenticated(
        envelope, header, card, directory, recipient, seen, now_ms=now_ms, limits=limits
    )


def open_authenticated(
    envelope: Envelope,
    header: Header,
    card: AgencyCard,
    directory: Directory,
    recipient: Recipient,
    seen: SeenIds,
    *,
    now_ms: int,
    limits: Limits = DEFAULT_LIMITS,
) -> Opened:
    """The checks of `open_envelope` after `authenticate`, for callers that ran it already."""
    if header.recipient != recipient.agency_id:
        raise WrongRecipientError(
            f"Message {header.message_id_text} is addressed to {header.recipient}, "
            f"not {recipient.agency_id}."
        )
    private_key = recipient.decryption_keys.get(header.recipient_key_id)
    if private_key is None:
        raise WrongRecipientError(
            f"Message {header.message_id_text} is encrypted to key {header.recipient_key_id}, "
            "which this node does not hold."
        )
    own_card = directory.agency(recipient.agency_id)
    if own_card is not None and own_card.revocation(header.recipient_key_id) is not None:
        # Our key was withdrawn (it may be compromised): refuse what is sealed to it.
        raise RevokedKeyError(
            f"Message {header.message_id_text} is encrypted to our revoked key "
            f"{header.recipient_key_id}."
        )
    if now_ms >= header.expires_at:
        raise ExpiredEnvelopeError(f"Message {header.message_id_text} has expired.")
    if header.created_at > now_ms + limits.max_clock_skew_ms:
        raise ExpiredEnvelopeError(
            f"Message {header.message_id_text} claims a creation time in the future."
        )
    if seen.seen(header.sender, header.message_id):
        raise ReplayError(f"Message {header.message_id_text} was already received.")
    body, inner_signature = decrypt(envelope, header, private_key, limits)
    if len(body) > limits.max_body_bytes:
        raise OversizedError(
            f"Message {header.message_id_text} has a {len(body)}-byte body; the limit is "
            f"{limits.max_body_bytes}."
        )
    sender_key = card.signing_key(header.sender_key_id, header.created_at)
    if not verify_ed25519(
        sender_key.public_key, pae(CTX_ENVELOPE_INNER, envelope.header, body), inner_signature
    ):
        raise InnerSignatureError(
            f"The inner signature of message {header.message_id_text} does not verify."
        )
    return Opened(envelope, header, body, inner_signature)


@dataclass(frozen=True)
class Statement:
    """What a verified non-repudiation bundle proves: this sender sent this body."""

    header: Header
    body: bytes
    key_revoked_later: bool


def verify_bundle(data: bytes, directory: Directory, limits: Limits = DEFAULT_LIMITS) -> Statement:
    """Verify a non-repudiation bundle using only the directory in force when it was sent.

    The sender's key must be listed and valid at the stated creation time. A key revoked
    after that time still proves the statement, flagged, since a thief holding the key
    could have backdated it; the receiver's ledger and receipt fix the real time.
    """
    msg = parse(pb.NonRepudiationBundle, data, "non-repudiation bundle", limits.max_envelope_bytes)
    header_bytes = bytes(msg.header)
    header = Header.from_bytes(header_bytes, limits)
    card = directory.agency(header.sender)
    if card is None:
        raise UnknownSenderError(f"Sender {header.sender} is not in this directory.")
    key = card.signing_key(header.sender_key_id, header.created_at, historical=True)
    if not verify_ed25519(
        key.public_key, pae(CTX_ENVELOPE_INNER, header_bytes, bytes(msg.body)), msg.inner_signature
    ):
        raise InnerSignatureError(
            f"The sender's signature on message {header.message_id_text} does not verify."
        )
    revoked_later = card.revocation(header.sender_key_id) is not None
    return Statement(header, bytes(msg.body), key_revoked_later=revoked_later)
