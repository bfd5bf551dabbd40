"""An in-memory federation simulator for protocol tests (after python-tuf's RepositorySimulator).

Keys are generated in memory, agency cards and directories are built from them, and
directories are signed k of n by simulated administrators. Nothing is mocked: every
test drives the real `exchange` code with real keys, the way a peer node would.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from nacl.signing import SigningKey

from exchange._proto.mlax.v1 import envelope_pb2
from exchange.agency import AgencyCard, KeyAlgorithm, PublicKey, RevokedKey
from exchange.directory import AdminKey, Directory, SignedDirectory
from exchange.encoding import (
    CTX_ENVELOPE_INNER,
    CTX_ENVELOPE_OUTER,
    pae,
    uuid7,
)
from exchange.envelope import (
    DecryptionKey,
    Envelope,
    Header,
    MessageType,
    Recipient,
    Sender,
    Suite,
    hpke_info,
    load_encryption_key,
)

# A fixed clock, so every test is reproducible: 2026-01-01T00:00:00Z in unix milliseconds.
T0 = 1_767_225_600_000
SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR = 365 * DAY

FEDERATION_ID = "mlax-test-federation"
DUMMY_PEM = b"-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"


def x25519_public(key: x25519.X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def hybrid_private(
    mlkem_key: mlkem.MLKEM768PrivateKey, x_key: x25519.X25519PrivateKey
) -> hpke.MLKEM768X25519PrivateKey:
    return hpke.MLKEM768X25519PrivateKey(mlkem_key, x_key)


def hybrid_public(mlkem_key: mlkem.MLKEM768PrivateKey, x_key: x25519.X25519PrivateKey) -> bytes:
    """Published form of a hybrid key: ML-KEM-768 encapsulation key, then X25519 key."""
    return mlkem_key.public_key().public_bytes_raw() + x25519_public(x_key)


def ed25519_public(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


@dataclass
class SimAgency:
    """One member agency with its private keys; `card` is its current public face."""

    agency_id: str
    country: str
    name: str = "Test Agency"
    endpoint: str = "node.example.test:7443"
    tls_spki_sha256: bytes = field(default_factory=lambda: os.urandom(32))
    signing: list[tuple[SigningKey, PublicKey]] = field(default_factory=list)
    encryption: list[tuple[DecryptionKey, PublicKey]] = field(default_factory=list)
    revoked: list[RevokedKey] = field(default_factory=list)

    def add_signing_key(
        self, not_before: int = T0 - DAY, not_after: int = T0 + YEAR
    ) -> tuple[SigningKey, PublicKey]:
        sk = SigningKey.generate()
        pub = PublicKey(KeyAlgorithm.ED25519, ed25519_public(sk), not_before, not_after)
        self.signing.append((sk, pub))
        return sk, pub

    def add_encryption_key(
        self, *, hybrid: bool = False, not_before: int = T0 - DAY, not_after: int = T0 + YEAR
    ) -> tuple[DecryptionKey, PublicKey]:
        x_key = x25519.X25519PrivateKey.generate()
        private: DecryptionKey
        if hybrid:
            m_key = mlkem.MLKEM768PrivateKey.generate()
            private = hybrid_private(m_key, x_key)
            pub = PublicKey(
                KeyAlgorithm.MLKEM768_X25519, hybrid_public(m_key, x_key), not_before, not_after
            )
        else:
            private = x_key
            pub = PublicKey(KeyAlgorithm.X25519, x25519_public(x_key), not_before, not_after)
        self.encryption.append((private, pub))
        return private, pub

    def revoke(self, kid: str, at: int, reason: str = "") -> None:
        self.revoked.append(RevokedKey(kid, at, reason))

    @property
    def card(self) -> AgencyCard:
        return AgencyCard(
            agency_id=self.agency_id,
            name=self.name,
            country=self.country,
            endpoint=self.endpoint,
            tls_spki_sha256=self.tls_spki_sha256,
            tls_certificate_pem=DUMMY_PEM,
            signing_keys=tuple(pub for _, pub in self.signing),
            encryption_keys=tuple(pub for _, pub in self.encryption),
            revoked_keys=tuple(self.revoked),
        )

    @property
    def signing_key(self) -> SigningKey:
        """The most recently added signing key."""
        return self.signing[-1][0]

    @property
    def signing_public(self) -> PublicKey:
        return self.signing[-1][1]

    def sender(self, signing_key: SigningKey | None = None) -> Sender:
        return Sender(self.agency_id, signing_key or self.signing_key)

    def recipient(self) -> Recipient:
        return Recipient(self.agency_id, {pub.key_id: priv for priv, pub in self.encryption})


@dataclass
class SimAdmin:
    name: str
    signing_key: SigningKey = field(default_factory=SigningKey.generate)

    @property
    def public(self) -> AdminKey:
        return AdminKey(self.name, ed25519_public(self.signing_key))


def make_agency(
    agency_id: str, *, hybrid: bool = False, x25519_too: bool = False, country: str | None = None
) -> SimAgency:
    """An agency with one signing key and one encryption key (hybrid or X25519).

    With `hybrid` and `x25519_too`, the card offers both kinds of encryption key.
    """
    agency = SimAgency(agency_id, country or agency_id[:2], name=f"{agency_id} test agency")
    agency.add_signing_key()
    if not hybrid or x25519_too:
        agency.add_encryption_key(hybrid=False)
    if hybrid:
        agency.add_encryption_key(hybrid=True)
    return agency


class FederationSimulator:
    """The federation's administrators and members, and the directories they publish."""

    def __init__(
        self,
        *,
        federation_id: str = FEDERATION_ID,
        n_admins: int = 3,
        threshold: int = 2,
        now: int = T0,
    ) -> None:
        self.federation_id = federation_id
        self.admins = [SimAdmin(f"admin-{i}") for i in range(n_admins)]
        self.threshold = threshold
        self.version = 1
        self.issued_at = now - HOUR
        self.expires_at = now + 90 * DAY
        self.agencies: dict[str, SimAgency] = {}

    def add_agency(
        self, agency_id: str, *, hybrid: bool = False, x25519_too: bool = False
    ) -> SimAgency:
        agency = make_agency(agency_id, hybrid=hybrid, x25519_too=x25519_too)
        self.agencies[agency_id] = agency
        return agency

    def directory(self, **overrides: Any) -> Directory:
        """The current directory content; keyword arguments replace fields."""
        d = Directory(
            federation_id=self.federation_id,
            version=self.version,
            issued_at=self.issued_at,
            expires_at=self.expires_at,
            threshold=self.threshold,
            admins=tuple(a.public for a in self.admins),
            agencies=tuple(sorted((a.card for a in self.agencies.values()), key=_by_id)),
        )
        return replace(d, **overrides) if overrides else d

    def signing_admins(self) -> list[SigningKey]:
        return [a.signing_key for a in self.admins[: self.threshold]]

    def publish(
        self, directory: Directory | None = None, signers: Iterable[SigningKey] | None = None
    ) -> bytes:
        """Signed directory bytes, by `signers` (default: the first `threshold` admins)."""
        d = self.directory() if directory is None else directory
        return sign_directory(d.to_bytes(), self.signing_admins() if signers is None else signers)


def _by_id(card: AgencyCard) -> str:
    return card.agency_id


def sign_directory(directory_bytes: bytes, signers: Iterable[SigningKey]) -> bytes:
    signed = SignedDirectory(directory_bytes)
    for key in signers:
        signed = signed.signed_by(key)
    return signed.to_bytes()


# --- building envelopes by hand, to reach checks `seal` would never let us fail ----------


def make_header(
    sender: SimAgency,
    recipient: AgencyCard,
    *,
    now: int = T0,
    ttl: int = DAY,
    encryption_key: PublicKey | None = None,
    **overrides: Any,
) -> Header:
    key = encryption_key or recipient.current_encryption_key(now)
    header = Header(
        message_id=uuid7(now),
        sender=sender.agency_id,
        recipient=recipient.agency_id,
        message_type=MessageType.NOTE,
        created_at=now,
        expires_at=now + ttl,
        sender_key_id=sender.signing_public.key_id,
        recipient_key_id=key.key_id,
        suite=Suite.for_key(key.algorithm),
    )
    return replace(header, **overrides) if overrides else header


def forge_envelope(
    signing_key: SigningKey,
    header_bytes: bytes,
    body: bytes,
    encryption_key: PublicKey,
    *,
    suite: Suite | None = None,
    inner_header: bytes | None = None,
    inner_body: bytes | None = None,
    inner_signing_key: SigningKey | None = None,
    info_header: bytes | None = None,
    sealed_body: bytes | None = None,
    ciphertext: bytes | None = None,
) -> Envelope:
    """An envelope built from the protocol's primitives, with one chosen part wrong.

    By default it equals what `seal` makes; each keyword swaps in a different value for
    one step (what the inner signature covers, the HPKE info, the ciphertext), while the
    outer signature always verifies.
    """
    inner = (
        (inner_signing_key or signing_key)
        .sign(
            pae(
                CTX_ENVELOPE_INNER,
                header_bytes if inner_header is None else inner_header,
                body if inner_body is None else inner_body,
            )
        )
        .signature
    )
    if sealed_body is None:
        sealed_body = envelope_pb2.SealedBody(body=body, inner_signature=inner).SerializeToString(
            deterministic=True
        )
    if ciphertext is None:
        hpke_suite = (suite or Suite.for_key(encryption_key.algorithm)).hpke
        ciphertext = hpke_suite.encrypt(
            sealed_body,
            load_encryption_key(encryption_key),
            info=hpke_info(header_bytes if info_header is None else info_header),
        )
    outer = signing_key.sign(pae(CTX_ENVELOPE_OUTER, header_bytes, ciphertext)).signature
    return Envelope(header_bytes, ciphertext, outer)


def resign_outer(signing_key: SigningKey, header_bytes: bytes, ciphertext: bytes) -> Envelope:
    """An envelope with the given header and ciphertext and a valid outer signature."""
    outer = signing_key.sign(pae(CTX_ENVELOPE_OUTER, header_bytes, ciphertext)).signature
    return Envelope(header_bytes, ciphertext, outer)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def bit_positions(length: int, sample: int, rng_seed: int = 0) -> Sequence[int]:
    """Every bit of a `length`-byte field, or for large ones a sample plus first/last bytes."""
    total = length * 8
    if total <= sample * 4:
        return range(total)
    rng = random.Random(rng_seed)
    edges = {*range(8), *range(total - 8, total)}
    return sorted(edges | set(rng.sample(range(total), sample)))
