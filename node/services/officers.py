"""Officer credentials: a per-node certificate authority issues client certificates.

An officer proves who they are with a client certificate signed by their own node's
officer CA; the node then looks the certificate's public key up in its officers table
for the role, so a role change or a removal takes effect on the next call without
reissuing anything.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Table, bindparam, select

from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError, KeystoreError, PassphraseError
from exchange.ledger_entry import LedgerEntry
from exchange.policy import Role
from node.storage import ledger
from node.storage.db import Database
from node.storage.models import OfficerRow

ROLES = tuple(r.value for r in Role)
BUNDLE_FORMAT = "mlax-officer/v1"


def spki_sha256(cert_pem: bytes) -> bytes:
    """SHA-256 of a certificate's DER SubjectPublicKeyInfo: the pin for TLS peers."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class OfficerCA:
    key: ec.EllipticCurvePrivateKey
    cert_pem: bytes

    @classmethod
    def load_or_create(cls, data_dir: Path, agency: str, passphrase: bytes) -> OfficerCA:
        """The node's officer CA; created on first use, its key encrypted at rest (0600)."""
        key_path, cert_path = data_dir / "officer-ca.key", data_dir / "officer-ca.crt"
        if key_path.exists():
            try:
                key = serialization.load_pem_private_key(key_path.read_bytes(), passphrase)
            except ValueError:
                raise PassphraseError(f"The passphrase does not decrypt {key_path}.") from None
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise KeystoreError(f"{key_path} is not an officer CA key.")
            return cls(key, cert_path.read_bytes())
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{agency} officer CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (
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
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(passphrase),
            ),
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        cert_path.write_bytes(cert_pem)
        return cls(key, cert_pem)

    def issue(self, officer: str, days: int) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer = x509.load_pem_x509_certificate(self.cert_pem).subject
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, officer)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return key, cert.public_bytes(serialization.Encoding.PEM)


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
    days: int = 365,
) -> dict[str, str]:
    """Register an officer and return their credential bundle (private key encrypted)."""
    if role not in ROLES:
        raise InvalidFieldError(f"Role {role!r} is not one of {', '.join(ROLES)}.")
    if not name or len(name) > 128 or not name.isprintable():
        raise InvalidFieldError("An officer name must be 1 to 128 printable characters.")
    with db.read() as s:
        if s.scalars(select(OfficerRow).where(OfficerRow.name == name)).first() is not None:
            raise InvalidFieldError(f"Officer {name!r} already exists on this node.")
    key, cert_pem = ca.issue(name, days)
    with db.write() as s:
        s.add(
            OfficerRow(
                name=name,
                role=role,
                cert_spki_sha256=spki_sha256(cert_pem),
                active=True,
                created_at=now_ms(),
            )
        )
        ledger.append(s, LedgerEntry.of("officer.added", now_ms(), officer=name, role=role))
    return {
        "format": BUNDLE_FORMAT,
        "officer": name,
        "role": role,
        "agency": agency,
        "endpoint": endpoint,
        "server_certificate": server_cert_pem.decode(),
        "certificate": cert_pem.decode(),
        "private_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(bundle_passphrase),
        ).decode(),
    }


def set_officer(
    db: Database, name: str, *, role: str | None = None, active: bool | None = None
) -> None:
    """Change an officer's role or deactivate them; takes effect on their next call."""
    if role is not None and role not in ROLES:
        raise InvalidFieldError(f"Role {role!r} is not one of {', '.join(ROLES)}.")
    with db.write() as s:
        row = s.scalars(select(OfficerRow).where(OfficerRow.name == name)).first()
        if row is None:
            raise InvalidFieldError(f"No officer {name!r} on this node.")
        if role is not None:
            row.role = role
        if active is not None:
            row.active = active
        ledger.append(
            s,
            LedgerEntry.of(
                "officer.changed", now_ms(), officer=name, role=row.role, active=row.active
            ),
        )


def list_officers(db: Database) -> list[OfficerRow]:
    with db.read() as s:
        return list(s.scalars(select(OfficerRow).order_by(OfficerRow.name)).all())


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


def write_bundle(path: Path, bundle: dict[str, str]) -> None:
    """Write a credential bundle, mode 0600: it holds the officer's (encrypted) key."""
    _write_private(path, json.dumps(bundle, indent=2).encode())
