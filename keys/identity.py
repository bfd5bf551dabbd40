"""An agency's identity: creating it, and loading its keys for the node.

`create_identity` makes every key an agency needs (Ed25519 signing, X25519 and
MLKEM768-X25519 encryption, ECDSA P-256 TLS with a self-signed certificate) in an
identity directory; `load_identity` decrypts them into an `AgencyIdentity`, the one
object a node needs to seal, open and serve TLS. `read_card` needs no passphrase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.signing import SigningKey

from exchange.agency import AgencyCard
from exchange.encoding import now_ms
from exchange.envelope import DecryptionKey, Recipient, Sender
from exchange.errors import InvalidFieldError, KeyNotValidError, KeystoreError
from keys.atomic import PUBLIC_FILE_MODE, ensure_private_dir, write_atomic
from keys.identity_file import (
    IDENTITY_FILE,
    TLS_CERTIFICATE_FILE,
    IdentityRecord,
    KeyRecord,
    key_file_name,
    read_identity_record,
    read_next_tls_certificate,
    read_tls_certificate,
    write_public_files,
)
from keys.keystore import KdfParams, read_key_file, write_key_file
from keys.material import Algorithm, KeyMaterial, Purpose
from keys.tls import (
    certificate_not_after_ms,
    certificate_spki,
    endpoint_host,
    self_signed_certificate,
)

DAY_MS = 24 * 3600 * 1000
DEFAULT_VALIDITY_DAYS = 365


@dataclass(frozen=True)
class NewKey:
    """A key generated but not yet written: its material and its identity.json record."""

    material: KeyMaterial
    record: KeyRecord


def new_key(algorithm: Algorithm, purpose: Purpose, not_before: int, not_after: int) -> NewKey:
    """Generate a key of `algorithm` valid over [not_before, not_after)."""
    material = KeyMaterial.generate(algorithm)
    record = KeyRecord(
        key_id=material.key_id,
        algorithm=algorithm,
        purpose=purpose,
        public_key=material.public_key,
        not_before=not_before,
        not_after=not_after,
        file=key_file_name(purpose, algorithm, material.key_id),
    )
    return NewKey(material, record)


def write_new_keys(
    directory: Path,
    agency_id: str,
    keys: tuple[NewKey, ...],
    passphrase: bytes,
    kdf: KdfParams | None = None,
) -> None:
    """Encrypt each new key into its own 0600 key file in `directory`."""
    for key in keys:
        write_key_file(
            directory / key.record.file,
            key.material,
            key.record.purpose,
            agency_id,
            passphrase,
            kdf,
        )


def validity_window(validity_days: int, at_ms: int) -> tuple[int, int]:
    """[at_ms, at_ms + validity_days) in unix ms; refuses a non-positive validity."""
    if validity_days < 1:
        raise InvalidFieldError("A key must be valid for at least one day.")
    return at_ms, at_ms + validity_days * DAY_MS


def _check_fields(agency_id: str, name: str, country: str, endpoint: str) -> None:
    """Validate what the user typed, the way the directory will, before generating keys."""
    AgencyCard(agency_id, name, country, endpoint, bytes(32), b"", (), ())
    endpoint_host(endpoint)


def create_identity(
    directory: Path,
    *,
    agency_id: str,
    name: str,
    endpoint: str,
    passphrase: bytes,
    country: str | None = None,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    at_ms: int | None = None,
    kdf: KdfParams | None = None,
) -> AgencyCard:
    """Create the identity of `agency_id` in `directory` and return its card.

    Refuses a directory that already holds an identity. Everything is validated before
    the first file is written.
    """
    if (directory / IDENTITY_FILE).exists():
        raise KeystoreError(f"{directory} already holds an agency identity; it was not replaced.")
    not_before, not_after = validity_window(validity_days, now_ms() if at_ms is None else at_ms)
    country = country if country is not None else agency_id[:2]
    _check_fields(agency_id, name, country, endpoint)
    keys = (
        new_key(Algorithm.ED25519, Purpose.SIGNING, not_before, not_after),
        new_key(Algorithm.X25519, Purpose.ENCRYPTION, not_before, not_after),
        new_key(Algorithm.MLKEM768_X25519, Purpose.ENCRYPTION, not_before, not_after),
        new_key(Algorithm.ECDSA_P256, Purpose.TLS, not_before, not_after),
    )
    tls = keys[-1]
    certificate = self_signed_certificate(
        tls.material.tls_key(),
        agency_id=agency_id,
        name=name,
        country=country,
        endpoint=endpoint,
        not_before_ms=not_before,
        not_after_ms=not_after,
    )
    record = IdentityRecord(agency_id, name, country, endpoint, tuple(k.record for k in keys))
    record.card(certificate)  # the complete card must validate before anything is written
    ensure_private_dir(directory)
    write_new_keys(directory, agency_id, keys, passphrase, kdf)
    write_atomic(
        directory / TLS_CERTIFICATE_FILE, certificate, mode=PUBLIC_FILE_MODE, overwrite=True
    )
    # identity.json last: its presence marks a complete identity.
    return write_public_files(directory, record, certificate, create=True)


def read_card(directory: Path) -> AgencyCard:
    """The agency card of the identity in `directory`; needs no passphrase."""
    return read_identity_record(directory).card(
        read_tls_certificate(directory), read_next_tls_certificate(directory)
    )


@dataclass(frozen=True)
class AgencyIdentity:
    """An agency's card with its decrypted private keys, as a node holds them in memory."""

    card: AgencyCard
    signing_keys: Mapping[str, SigningKey] = field(repr=False)
    decryption_keys: Mapping[str, DecryptionKey] = field(repr=False)
    tls_key: ec.EllipticCurvePrivateKey = field(repr=False)
    tls_certificate_not_after: int
    # A TLS renewal under way (`mlax keys renew-tls`): the next key and its certificate.
    next_tls_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    next_tls_certificate_not_after: int = 0

    @property
    def agency_id(self) -> str:
        return self.card.agency_id

    @property
    def tls_valid_until(self) -> int:
        """When this node's last TLS certificate expires: a renewal's next one covers the
        current one (unix ms)."""
        return max(self.tls_certificate_not_after, self.next_tls_certificate_not_after)

    def sender(self, at_ms: int | None = None, published: AgencyCard | None = None) -> Sender:
        """A Sender with the newest signing key valid at `at_ms` (default now).

        Pass the card the trusted directory lists for us as `published`: after a rotation
        the new key is then used only once peers can verify it.
        """
        t = now_ms() if at_ms is None else at_ms
        card = published or self.card
        if card.agency_id != self.agency_id:
            raise InvalidFieldError(f"The card of {card.agency_id} is not ours ({self.agency_id}).")
        usable = [
            k
            for k in card.signing_keys
            if k.key_id in self.signing_keys
            and k.valid_at(t)
            and card.revocation(k.key_id) is None
            and self.card.revocation(k.key_id) is None
        ]
        if not usable:
            raise KeyNotValidError(
                f"{self.agency_id} holds no signing key that is valid now and listed in its card."
            )
        newest = max(usable, key=lambda k: k.not_before)
        return Sender(self.agency_id, self.signing_keys[newest.key_id])

    def recipient(self) -> Recipient:
        """A Recipient with every unrevoked decryption key, expired ones included.

        Expired keys stay so that envelopes sealed before a rotation can still be opened.
        """
        return Recipient(self.agency_id, dict(self.decryption_keys))

    def tls_private_key_pem(self) -> bytes:
        """The TLS private key as unencrypted PKCS#8 PEM, for gRPC; keep it in memory only."""
        return _pkcs8(self.tls_key)

    def tls_certificate_pem(self) -> bytes:
        return self.card.tls_certificate_pem

    def next_tls_pair(self) -> tuple[bytes, bytes] | None:
        """The next TLS private key (PKCS#8 PEM) and certificate of a renewal, if any."""
        if self.next_tls_key is None:
            return None
        return _pkcs8(self.next_tls_key), self.card.next_tls_certificate_pem


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(directory: Path, record: KeyRecord, agency_id: str, passphrase: bytes) -> KeyMaterial:
    path = directory / record.file
    header, material = read_key_file(path, passphrase, record.purpose)
    # The AEAD binds the file's own metadata; this binds the file to identity.json.
    if header.key_id != record.key_id or header.label != agency_id:
        raise KeystoreError(f"{path} is not the key identity.json lists for {agency_id}.")
    return material


def load_identity(directory: Path, passphrase: bytes) -> AgencyIdentity:
    """Decrypt every unrevoked key of the identity in `directory`.

    Raises PassphraseError for a wrong passphrase, KeystoreError for missing or
    mismatched files.
    """
    record = read_identity_record(directory)
    certificate = read_tls_certificate(directory)
    next_certificate = read_next_tls_certificate(directory)
    card = record.card(certificate, next_certificate)
    signing: dict[str, SigningKey] = {}
    decryption: dict[str, DecryptionKey] = {}
    for key in record.keys:
        if record.revocation(key.key_id) is not None or key.purpose is Purpose.TLS:
            continue
        material = _load_key(directory, key, record.agency_id, passphrase)
        if key.purpose is Purpose.SIGNING:
            signing[key.key_id] = material.signing_key()
        else:
            decryption[key.key_id] = material.decryption_key()
    tls_key = _load_tls_key(directory, record, certificate, passphrase)
    next_key = (
        _load_tls_key(directory, record, next_certificate, passphrase) if next_certificate else None
    )
    return AgencyIdentity(
        card=card,
        signing_keys=MappingProxyType(signing),
        decryption_keys=MappingProxyType(decryption),
        tls_key=tls_key,
        tls_certificate_not_after=certificate_not_after_ms(certificate),
        next_tls_key=next_key,
        next_tls_certificate_not_after=(
            certificate_not_after_ms(next_certificate) if next_certificate else 0
        ),
    )


def _load_tls_key(
    directory: Path, record: IdentityRecord, certificate: bytes, passphrase: bytes
) -> ec.EllipticCurvePrivateKey:
    """The private key of `certificate`, one of the identity's TLS keys."""
    material = _load_key(directory, record.tls_key_of(certificate), record.agency_id, passphrase)
    if material.public_key != certificate_spki(certificate):
        raise KeystoreError(f"A TLS certificate in {directory} is not for its TLS key.")
    return material.tls_key()
