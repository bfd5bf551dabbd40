"""Officer credentials: a per-node certificate authority issues client certificates.

An officer proves who they are with a client certificate signed by their own node's
officer CA; the node then looks the certificate's public key up in its officers table
for the role, so a role change or a removal takes effect on the next call without
reissuing anything.

The node host's `mlax officer ...` commands and the admin calls of the officer API
(node.rpc.officer) share these functions: one rule for names, roles and duplicates, and
one ledger entry per change, `by` naming the admin when the change came over the API.
Keys at rest (the CA's key, the officer's bundle) use the Argon2id key file of
keys.keystore (keys.officer_bundle); legacy PBKDF2 files are still read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Table, bindparam, select
from sqlalchemy.exc import IntegrityError

from exchange.encoding import now_ms
from exchange.errors import (
    ConflictError,
    InvalidFieldError,
    KeystoreError,
    MissingError,
    Status,
)
from exchange.ledger_entry import LedgerEntry
from exchange.policy import Role
from keys import officer_bundle
from keys.atomic import PRIVATE_FILE_MODE, write_atomic
from keys.keystore import KdfParams
from keys.officer_bundle import BundleInfo, key_matches_certificate, seal_bundle
from node.storage import ledger
from node.storage.db import Database
from node.storage.models import OfficerRow

ROLES = tuple(r.value for r in Role)
BUNDLE_FORMAT = officer_bundle.BUNDLE_FORMAT
DEFAULT_DAYS = 365
MAX_DAYS = 3650
MAX_CSR_BYTES = 4096
MAX_NAME_BYTES = 64


class OfficerExistsError(ConflictError):
    """An account with that name, or a credential with that key, exists on this node."""

    status = Status.ALREADY_EXISTS


class NoSuchOfficerError(MissingError):
    """No account with that name on this node."""


class OwnAccountError(ConflictError):
    """An admin tried to change their own account over the API."""


def spki_sha256(cert_pem: bytes) -> bytes:
    """SHA-256 of a certificate's DER SubjectPublicKeyInfo: the pin for TLS peers."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def _ca_certificate(key: ec.EllipticCurvePrivateKey, agency: str) -> x509.Certificate:
    """The officer CA's self-signed certificate for `key` (ten years)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{agency} officer CA")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class OfficerCA:
    key: ec.EllipticCurvePrivateKey
    cert_pem: bytes

    @classmethod
    def load_or_create(
        cls, data_dir: Path, agency: str, passphrase: bytes, kdf: KdfParams | None = None
    ) -> OfficerCA:
        """The node's officer CA; created on first use, its key an Argon2id key file (0600).

        A key file of the earlier PBKDF2 format is read and rewritten in the new one (the
        same key, so replicas reading either agree); a data directory that cannot be
        written keeps the old file, which still reads.
        """
        key_path, cert_path = data_dir / "officer-ca.key", data_dir / "officer-ca.crt"
        if key_path.exists():
            key, legacy = officer_bundle.open_ca_key(
                key_path.read_bytes(), passphrase, str(key_path)
            )
            if not cert_path.exists():
                # The node stopped between writing the key and its certificate: the key
                # is the CA; its certificate is made again (same name, same key).
                cert_pem = _ca_certificate(key, agency).public_bytes(serialization.Encoding.PEM)
                write_atomic(cert_path, cert_pem, mode=0o644, overwrite=False)
            cert_pem = cert_path.read_bytes()
            if not key_matches_certificate(key, cert_pem):
                raise KeystoreError(f"{key_path} is not the key of {cert_path}.")
            if legacy:
                # A read-only data directory keeps the legacy file, which still serves.
                with contextlib.suppress(OSError, KeystoreError):
                    write_atomic(
                        key_path,
                        officer_bundle.seal_ca_key(key, agency, passphrase, kdf),
                        mode=PRIVATE_FILE_MODE,
                        overwrite=True,
                    )
            return cls(key, cert_pem)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _ca_certificate(key, agency)
        write_atomic(
            key_path,
            officer_bundle.seal_ca_key(key, agency, passphrase, kdf),
            mode=PRIVATE_FILE_MODE,
            overwrite=False,
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        write_atomic(cert_path, cert_pem, mode=0o644, overwrite=True)
        return cls(key, cert_pem)

    def issue(self, officer: str, public_key: ec.EllipticCurvePublicKey, days: int) -> bytes:
        """A client certificate (PEM) for `officer`'s public key, valid `days`."""
        issuer = x509.load_pem_x509_certificate(self.cert_pem).subject
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, officer)]))
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class OfficerIssuer:
    """What issuing a credential needs besides the database: the CA and what a bundle names."""

    ca: OfficerCA
    agency: str
    endpoint: str
    server_cert_pem: bytes
    # A TLS renewal under way: the certificate the officer listener presents once the
    # renewal is retired and the node restarted (WhoAmI tells officer clients about it).
    next_server_cert_pem: bytes = b""

    def server_certificates(self) -> list[str]:
        """What WhoAmI lists: the certificate presented now, then the next one if any."""
        pems = [self.server_cert_pem, self.next_server_cert_pem]
        return [p.decode() for p in pems if p]


@dataclass(frozen=True)
class OfficerAccount:
    """An officer account as the admin calls and `mlax officer list` show it."""

    name: str
    role: str
    active: bool
    created_at: int

    @classmethod
    def of(cls, row: OfficerRow) -> OfficerAccount:
        return cls(row.name, row.role, bool(row.active), row.created_at)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidFieldError(f"Role {role!r} is not one of {', '.join(ROLES)}.")


def _check_name(name: str) -> None:
    # The name is the certificate's common name, which X.509 bounds to 64 bytes.
    if not name or len(name.encode()) > MAX_NAME_BYTES or not name.isprintable():
        raise InvalidFieldError(
            f"An officer name must be printable and 1 to {MAX_NAME_BYTES} bytes in UTF-8."
        )


def _public_key_of_csr(csr_der: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 key of a certificate signing request that its own key signed."""
    if not csr_der or len(csr_der) > MAX_CSR_BYTES:
        raise InvalidFieldError(f"The csr must be 1 to {MAX_CSR_BYTES} bytes of DER.")
    try:
        csr = x509.load_der_x509_csr(csr_der)
        public_key = csr.public_key()
        signed = csr.is_signature_valid
    except (ValueError, TypeError):
        raise InvalidFieldError("The csr is not a PKCS#10 certificate signing request.") from None
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != (
        "secp256r1"
    ):
        raise InvalidFieldError("The csr must be for an ECDSA P-256 key.")
    if not signed:
        raise InvalidFieldError("The csr's signature does not verify with its own key.")
    return public_key


def register_officer(
    db: Database,
    issuer: OfficerIssuer,
    *,
    name: str,
    role: str,
    public_key: ec.EllipticCurvePublicKey,
    days: int = DEFAULT_DAYS,
    by: str | None = None,
) -> tuple[OfficerAccount, bytes]:
    """Register an officer with a certificate for `public_key`; ledgered as officer.added
    (with `by`, the admin, when the call came over the API). Returns the certificate."""
    _check_role(role)
    _check_name(name)
    if not 1 <= days <= MAX_DAYS:
        raise InvalidFieldError(f"A credential is valid for 1 to {MAX_DAYS} days.")
    cert_pem = issuer.ca.issue(name, public_key, days)
    pin = spki_sha256(cert_pem)
    try:
        with db.write() as s:
            taken = s.scalars(
                select(OfficerRow).where(
                    (OfficerRow.name == name) | (OfficerRow.cert_spki_sha256 == pin)
                )
            ).first()
            if taken is not None:
                if taken.name == name:
                    raise OfficerExistsError(f"Officer {name!r} already exists on this node.")
                raise OfficerExistsError("That key already belongs to an officer of this node.")
            row = OfficerRow(
                name=name, role=role, cert_spki_sha256=pin, active=True, created_at=now_ms()
            )
            s.add(row)
            fields: dict[str, Any] = {"officer": name, "role": role}
            if by is not None:
                fields["by"] = by
            ledger.append(s, LedgerEntry.of("officer.added", now_ms(), **fields))
            account = OfficerAccount(name, role, True, row.created_at)
    except IntegrityError:  # a concurrent issue of the same name won the race
        raise OfficerExistsError(f"Officer {name!r} already exists on this node.") from None
    return account, cert_pem


def issue_from_csr(
    db: Database,
    issuer: OfficerIssuer,
    *,
    name: str,
    role: str,
    csr_der: bytes,
    days: int,
    by: str,
) -> tuple[OfficerAccount, bytes]:
    """The admin API's issue: the caller keeps the private key and sends a signed CSR."""
    _check_role(role)
    _check_name(name)
    return register_officer(
        db,
        issuer,
        name=name,
        role=role,
        public_key=_public_key_of_csr(csr_der),
        days=days or DEFAULT_DAYS,
        by=by,
    )


def add_officer(
    db: Database,
    ca: OfficerCA,
    *,
    name: str,
    role: str,
    agency: str,
    endpoint: str,
    server_cert_pem: bytes,
    bundle_passphrase: bytes,
    days: int = DEFAULT_DAYS,
    kdf: KdfParams | None = None,
) -> dict[str, Any]:
    """The node host's issue: register an officer with a fresh key and return their
    credential bundle, the key sealed under `bundle_passphrase` (Argon2id)."""
    _check_role(role)
    _check_name(name)
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = OfficerIssuer(ca, agency, endpoint, server_cert_pem)
    _, cert_pem = register_officer(
        db, issuer, name=name, role=role, public_key=key.public_key(), days=days
    )
    info = BundleInfo(name, role, agency, endpoint, server_cert_pem, cert_pem)
    return seal_bundle(info, key, bundle_passphrase, kdf)


def set_officer(
    db: Database,
    name: str,
    *,
    role: str | None = None,
    active: bool | None = None,
    by: str | None = None,
) -> OfficerAccount:
    """Change an officer's role or deactivate them; takes effect on their next call.

    Ledgered as officer.changed, with `by` (the admin) when the call came over the API;
    an admin may not change their own account that way (another admin or the host can),
    so the last admin cannot lock the API out by mistake.
    """
    if role is not None:
        _check_role(role)
    if by is not None and by == name:
        raise OwnAccountError(
            "An admin cannot change their own account over the API; another admin or the "
            "node's host can."
        )
    with db.write() as s:
        row = s.scalars(select(OfficerRow).where(OfficerRow.name == name)).first()
        if row is None:
            raise NoSuchOfficerError(f"No officer {name!r} on this node.")
        if role is not None:
            row.role = role
        if active is not None:
            row.active = active
        fields: dict[str, Any] = {"officer": name, "role": row.role, "active": row.active}
        if by is not None:
            fields["by"] = by
        ledger.append(s, LedgerEntry.of("officer.changed", now_ms(), **fields))
        return OfficerAccount.of(row)


def list_officers(db: Database) -> list[OfficerRow]:
    with db.read() as s:
        return list(s.scalars(select(OfficerRow).order_by(OfficerRow.name)).all())


def list_accounts(db: Database, *, by: str) -> list[OfficerAccount]:
    """The admin API's list: every account, ledgered as officer.listed (who and how many)."""
    with db.write() as s:
        rows = s.scalars(select(OfficerRow).order_by(OfficerRow.name)).all()
        accounts = [OfficerAccount.of(r) for r in rows]
        ledger.append(s, LedgerEntry.of("officer.listed", now_ms(), by=by, count=len(accounts)))
    return accounts


def lookup(db: Database, cert_pem: bytes) -> OfficerRow | None:
    """The active officer whose certificate this is, if any."""
    pin = spki_sha256(cert_pem)
    with db.read() as s:
        return s.scalars(
            select(OfficerRow).where(OfficerRow.cert_spki_sha256 == pin, OfficerRow.active)
        ).first()


@functools.lru_cache(maxsize=4096)
def pin_of(cert_pem: bytes) -> bytes:
    """`spki_sha256`, remembered per certificate: a certificate's key never changes."""
    return spki_sha256(cert_pem)


_OFFICERS = cast(Table, OfficerRow.__table__)
# Prebuilt: every officer call runs it, and building it per call cost more than running it.
_ACTIVE_BY_PIN = select(_OFFICERS.c.name, _OFFICERS.c.role).where(
    _OFFICERS.c.cert_spki_sha256 == bindparam("b_pin"), _OFFICERS.c.active
)


@dataclass(frozen=True)
class ActiveOfficer:
    name: str
    role: str


def active_officer(db: Database, cert_pem: bytes) -> ActiveOfficer | None:
    """The active officer whose certificate this is, read afresh on every call (one
    statement, no ORM session): a deactivation or demotion applies to the next call."""
    with db.engine.connect() as conn:
        row = conn.execute(_ACTIVE_BY_PIN, {"b_pin": pin_of(cert_pem)}).first()
    return ActiveOfficer(row.name, row.role) if row is not None else None


def write_bundle(path: Path, bundle: dict[str, Any]) -> None:
    """Write a credential bundle, mode 0600: it holds the officer's (encrypted) key."""
    officer_bundle.write_bundle(path, bundle, overwrite=True)
