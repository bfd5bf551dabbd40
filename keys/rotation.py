"""Key rotation and revocation for an agency identity.

Rotation never stops traffic: the new key is valid from now, and the key it replaces
stays valid for an overlap (default 30 days) instead of expiring at once. During the
overlap peers may still verify signatures by, and encrypt to, the old key while the
administrators publish a directory with the new one; the overlap must therefore be
longer than the federation needs to re-sign its directory. The node keeps signing with
the old key until the directory it trusts lists the new one (`AgencyIdentity.sender`).

Revocation takes effect at once and cannot be undone; it is refused for the last valid
key of a purpose, since the agency could then neither sign nor be written to: rotate
first, then revoke.

Both change only this identity: the card must be re-added to the directory and the
directory re-signed by the administrators before peers see the change.

TLS renewal (`renew_tls`, then `retire_tls`) replaces the node's TLS key and certificate
the same way: the next certificate is published in the card as `next_tls_*` beside the
current one, peers accept both, the node presents the next one once the directory it
trusts lists it (node/peers/channels.py), and `retire_tls` then makes it the only one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from exchange.agency import AgencyCard, RevokedKey
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError, KeystoreError
from keys.atomic import PUBLIC_FILE_MODE, write_atomic
from keys.identity import (
    DAY_MS,
    DEFAULT_VALIDITY_DAYS,
    load_identity,
    new_key,
    validity_window,
    write_new_keys,
)
from keys.identity_file import (
    NEXT_TLS_CERTIFICATE_FILE,
    TLS_CERTIFICATE_FILE,
    IdentityRecord,
    KeyRecord,
    read_identity_record,
    read_next_tls_certificate,
    read_tls_certificate,
    write_public_files,
)
from keys.keystore import KdfParams
from keys.material import Algorithm, Purpose
from keys.tls import self_signed_certificate, spki_sha256

DEFAULT_OVERLAP_DAYS = 30
MAX_REASON_CHARS = 200
MIN_KEY_ID_PREFIX = 8


class RotationKind(Enum):
    """Which keys `rotate_keys` replaces."""

    SIGNING = "signing"
    ENCRYPTION = "encryption"
    ALL = "all"

    @property
    def algorithms(self) -> tuple[tuple[Algorithm, Purpose], ...]:
        signing = ((Algorithm.ED25519, Purpose.SIGNING),)
        encryption = (
            (Algorithm.X25519, Purpose.ENCRYPTION),
            (Algorithm.MLKEM768_X25519, Purpose.ENCRYPTION),
        )
        return {
            RotationKind.SIGNING: signing,
            RotationKind.ENCRYPTION: encryption,
            RotationKind.ALL: signing + encryption,
        }[self]


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: keys added, old keys with their shortened validity, new card."""

    added: tuple[KeyRecord, ...]
    shortened: tuple[tuple[KeyRecord, KeyRecord], ...]
    card: AgencyCard


def rotate_keys(
    directory: Path,
    passphrase: bytes,
    kind: RotationKind = RotationKind.ALL,
    *,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    overlap_days: int = DEFAULT_OVERLAP_DAYS,
    at_ms: int | None = None,
    kdf: KdfParams | None = None,
) -> Rotation:
    """Add new keys of `kind` valid from now; old ones of that kind end after the overlap."""
    if overlap_days < 0:
        raise InvalidFieldError("The overlap cannot be negative.")
    # Proves the passphrase opens the current keys, so every key file keeps one passphrase.
    load_identity(directory, passphrase)
    record = read_identity_record(directory)
    t = now_ms() if at_ms is None else at_ms
    not_before, not_after = validity_window(validity_days, t)
    cutoff = t + overlap_days * DAY_MS
    new = tuple(new_key(alg, purpose, not_before, not_after) for alg, purpose in kind.algorithms)
    rotated = set(kind.algorithms)
    keys: list[KeyRecord] = []
    shortened: list[tuple[KeyRecord, KeyRecord]] = []
    for key in record.keys:
        if (
            (key.algorithm, key.purpose) in rotated
            and record.revocation(key.key_id) is None
            and key.not_after > cutoff
        ):
            ended = replace(key, not_after=max(cutoff, key.not_before + 1))
            shortened.append((key, ended))
            key = ended
        keys.append(key)
    keys.extend(k.record for k in new)
    updated = record.with_keys(tuple(keys))
    certificate = read_tls_certificate(directory)
    updated.card(certificate)  # validate before writing anything
    write_new_keys(directory, record.agency_id, new, passphrase, kdf)
    card = write_public_files(directory, updated, certificate)
    return Rotation(tuple(k.record for k in new), tuple(shortened), card)


def find_key(record: IdentityRecord, kid: str) -> KeyRecord:
    """The signing or encryption key with id `kid`, or a unique prefix of at least 8 chars."""
    published = [k for k in record.keys if k.purpose in (Purpose.SIGNING, Purpose.ENCRYPTION)]
    exact = [k for k in published if k.key_id == kid]
    matches = exact or (
        [k for k in published if k.key_id.startswith(kid)] if len(kid) >= MIN_KEY_ID_PREFIX else []
    )
    if not matches:
        raise KeystoreError(f"{record.agency_id} has no signing or encryption key {kid!r}.")
    if len(matches) > 1:
        raise KeystoreError(f"Key id prefix {kid!r} matches several keys; give the full id.")
    return matches[0]


def revoke_key(
    directory: Path, kid: str, reason: str = "", *, at_ms: int | None = None
) -> tuple[KeyRecord, RevokedKey, AgencyCard]:
    """Revoke key `kid` as of now; refuses unknown ids and the last valid key of a purpose."""
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidFieldError(f"The revocation reason exceeds {MAX_REASON_CHARS} characters.")
    record = read_identity_record(directory)
    key = find_key(record, kid)
    if record.revocation(key.key_id) is not None:
        raise KeystoreError(f"Key {key.key_id} is already revoked.")
    t = now_ms() if at_ms is None else at_ms
    remaining = [
        k
        for k in record.of_purpose(key.purpose)
        if k.key_id != key.key_id
        and record.revocation(k.key_id) is None
        and k.not_before <= t < k.not_after
    ]
    if not remaining:
        raise KeystoreError(
            f"Key {key.key_id} is the last valid {key.purpose.value} key of {record.agency_id}; "
            f"run `mlax keys rotate --kind {key.purpose.value}` first, then revoke it."
        )
    revocation = RevokedKey(key.key_id, t, reason)
    updated = replace(record, revocations=(*record.revocations, revocation))
    card = write_public_files(directory, updated, read_tls_certificate(directory))
    return key, revocation, card


def renew_tls(
    directory: Path,
    passphrase: bytes,
    *,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    at_ms: int | None = None,
    kdf: KdfParams | None = None,
) -> AgencyCard:
    """Make the next TLS key (0600, encrypted like the others) and certificate; the new card
    lists it as `next_tls_*`. Refused while a renewal is already under way."""
    load_identity(directory, passphrase)  # one passphrase for every key file
    record = read_identity_record(directory)
    current = read_tls_certificate(directory)
    pending = read_next_tls_certificate(directory)
    if pending:
        raise KeystoreError(
            f"A TLS renewal is already under way (next pin {spki_sha256(pending).hex()}); "
            "finish it with `mlax keys renew-tls --retire` first."
        )
    not_before, not_after = validity_window(validity_days, now_ms() if at_ms is None else at_ms)
    key = new_key(Algorithm.ECDSA_P256, Purpose.TLS, not_before, not_after)
    certificate = self_signed_certificate(
        key.material.tls_key(),
        agency_id=record.agency_id,
        name=record.name,
        country=record.country,
        endpoint=record.endpoint,
        not_before_ms=not_before,
        not_after_ms=not_after,
    )
    updated = record.with_keys((*record.keys, key.record))
    updated.card(current, certificate)  # validate before writing anything
    write_new_keys(directory, record.agency_id, (key,), passphrase, kdf)
    # identity.json lists the key before tls-next.crt names it: a crash in between leaves
    # an unused key, never a certificate without its key.
    write_public_files(directory, updated, current, next_tls_certificate_pem=b"")
    write_atomic(
        directory / NEXT_TLS_CERTIFICATE_FILE, certificate, mode=PUBLIC_FILE_MODE, overwrite=True
    )
    return write_public_files(directory, updated, current, next_tls_certificate_pem=certificate)


def retire_tls(directory: Path) -> tuple[bytes, AgencyCard]:
    """End a TLS renewal: the next certificate becomes the only one, the old key is deleted.

    Returns the retired pin and the new card. Run it once the directory lists the next pin
    (the node then presents it); the card it leaves lists only the new certificate.
    """
    record = read_identity_record(directory)
    old = read_tls_certificate(directory)
    new = read_next_tls_certificate(directory)
    if not new:
        raise KeystoreError(
            f"No TLS renewal is under way in {directory}: run `mlax keys renew-tls` first."
        )
    old_key = record.tls_key_of(old)
    record.tls_key_of(new)  # the next certificate has its key before anything changes
    updated = record.with_keys(tuple(k for k in record.keys if k.key_id != old_key.key_id))
    updated.card(new)
    # One rename swaps the certificates; identity.json still lists both keys meanwhile.
    (directory / NEXT_TLS_CERTIFICATE_FILE).replace(directory / TLS_CERTIFICATE_FILE)
    card = write_public_files(directory, updated, new, next_tls_certificate_pem=b"")
    (directory / old_key.file).unlink(missing_ok=True)
    return spki_sha256(old), card
