"""Officer credentials at rest: the officer's bundle and the officer CA's key file.

Both hold an ECDSA P-256 key in the MLAX key file of `keys.keystore` (Argon2id, then
ChaCha20-Poly1305, metadata bound as associated data), the one format of every private
key MLAX writes. Files written before it used PKCS#8 PEM encrypted with PBKDF2
(cryptography's `BestAvailableEncryption`): they are still read, never written.

A bundle (`"format": "mlax-officer/v2"`) is a JSON object: `officer`, `role`, `agency`,
`endpoint`, `server_certificate` and `certificate` (PEM), and `key_file`, the key file of
the officer's key (purpose `tls`, label the officer's name) nested as an object. A
`mlax-officer/v1` bundle has `private_key`, the PBKDF2-encrypted PEM, instead.

Either format may carry `server_certificates`, a list of further PEM certificates the
officer trusts for its node (at most `MAX_SERVER_CERTIFICATES`): the officer SDK adds the
next certificate of a TLS renewal there (`add_server_certificates`, which rewrites only
that field), so the credential keeps reaching the node after the renewal. A reader that
does not know the field trusts `server_certificate` alone, as before.

This module does no network I/O and imports no storage: the officer SDK (node.client)
and the node (node.services.officers) share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from exchange.errors import KeystoreError, PassphraseError
from keys.atomic import PRIVATE_FILE_MODE, write_atomic
from keys.keystore import KdfParams, open_key, seal_key
from keys.material import Algorithm, KeyMaterial, Purpose

BUNDLE_FORMAT = "mlax-officer/v2"
LEGACY_BUNDLE_FORMAT = "mlax-officer/v1"  # PBKDF2 PKCS#8: read only
MAX_BUNDLE_BYTES = 256 * 1024
# Further trusted server certificates a bundle keeps (the oldest learned one goes first).
MAX_SERVER_CERTIFICATES = 4
MAX_SERVER_CERTIFICATE_BYTES = 16 * 1024
_PEM = b"-----BEGIN"
_CERT_PEM = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class BundleInfo:
    """The cleartext part of an officer's bundle."""

    officer: str
    role: str
    agency: str
    endpoint: str
    server_certificate: bytes
    certificate: bytes
    # Further certificates of the node's officer listener (a TLS renewal's next one).
    more_server_certificates: tuple[bytes, ...] = ()

    @property
    def server_certificates(self) -> tuple[bytes, ...]:
        """Every certificate trusted for the node: `server_certificate` first."""
        return (self.server_certificate, *self.more_server_certificates)


def _material(key: ec.EllipticCurvePrivateKey) -> KeyMaterial:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyMaterial.from_secret(Algorithm.ECDSA_P256, der)


def seal_bundle(
    info: BundleInfo,
    key: ec.EllipticCurvePrivateKey,
    passphrase: bytes,
    kdf: KdfParams | None = None,
) -> dict[str, Any]:
    """The bundle document: `info` and the officer's key sealed under `passphrase`."""
    key_file = json.loads(seal_key(_material(key), Purpose.TLS, info.officer, passphrase, kdf))
    return {
        "format": BUNDLE_FORMAT,
        "officer": info.officer,
        "role": info.role,
        "agency": info.agency,
        "endpoint": info.endpoint,
        "server_certificate": info.server_certificate.decode(),
        "certificate": info.certificate.decode(),
        **_more_field(info.more_server_certificates),
        "key_file": key_file,
    }


def _more_field(pems: tuple[bytes, ...]) -> dict[str, Any]:
    return {"server_certificates": [p.decode() for p in pems]} if pems else {}


def _server_certificates(value: Any) -> tuple[bytes, ...]:
    """The `server_certificates` field, bounded (ValueError if malformed)."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_SERVER_CERTIFICATES:
        raise ValueError("server_certificates")
    if not all(isinstance(p, str) and _is_certificate_pem(p) for p in value):
        raise ValueError("server_certificates")
    return tuple(p.encode() for p in value)


def _is_certificate_pem(pem: str) -> bool:
    return len(pem) <= MAX_SERVER_CERTIFICATE_BYTES and pem.lstrip().startswith(_CERT_PEM)


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    return (json.dumps(bundle, indent=2) + "\n").encode()


def write_bundle(path: Path, bundle: dict[str, Any], *, overwrite: bool = False) -> None:
    """Write a bundle atomically, mode 0600; an existing file is kept unless `overwrite`."""
    write_atomic(path, bundle_bytes(bundle), mode=PRIVATE_FILE_MODE, overwrite=overwrite)


def _legacy_key(pem: bytes, passphrase: bytes, source: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, passphrase)
    except (ValueError, TypeError):
        raise PassphraseError(f"The passphrase does not decrypt {source}.") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeystoreError(f"{source} does not hold an ECDSA key.")
    return key


def _sealed_key(
    key_file: bytes, passphrase: bytes, source: str, purpose: Purpose
) -> ec.EllipticCurvePrivateKey:
    header, material = open_key(key_file, passphrase, source)
    if header.purpose is not purpose or header.algorithm is not Algorithm.ECDSA_P256:
        raise KeystoreError(f"{source} holds a {header.purpose.noun}, not a {purpose.noun}.")
    return material.tls_key()


def _public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches_certificate(key: ec.EllipticCurvePrivateKey, cert_pem: bytes) -> bool:
    from cryptography import x509

    try:
        cert_key = x509.load_pem_x509_certificate(cert_pem).public_key()
    except ValueError:
        return False
    if not isinstance(cert_key, ec.EllipticCurvePublicKey):
        return False
    return _public_der(cert_key) == _public_der(key.public_key())


def open_bundle(
    data: bytes, passphrase: bytes, source: str
) -> tuple[BundleInfo, ec.EllipticCurvePrivateKey]:
    """Read a bundle of either format and decrypt its key (PassphraseError if it cannot)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise KeystoreError(f"{source} is too large to be an MLAX officer credential.")
    try:
        doc: Any = json.loads(data)
        fmt = doc.get("format")
        if fmt not in (BUNDLE_FORMAT, LEGACY_BUNDLE_FORMAT):
            raise ValueError("format")
        info = BundleInfo(
            officer=str(doc["officer"]),
            role=str(doc["role"]),
            agency=str(doc["agency"]),
            endpoint=str(doc["endpoint"]),
            server_certificate=doc["server_certificate"].encode(),
            certificate=doc["certificate"].encode(),
            more_server_certificates=_server_certificates(doc.get("server_certificates")),
        )
        if fmt == BUNDLE_FORMAT:
            if not isinstance(doc["key_file"], dict):
                raise ValueError("key_file")
            sealed = json.dumps(doc["key_file"]).encode()
        else:
            legacy = doc["private_key"].encode()
    except (ValueError, KeyError, AttributeError, TypeError):
        raise KeystoreError(f"{source} is not an MLAX officer credential.") from None
    if fmt == BUNDLE_FORMAT:
        key = _sealed_key(sealed, passphrase, source, Purpose.TLS)
    else:
        key = _legacy_key(legacy, passphrase, source)
    if not key_matches_certificate(key, info.certificate):
        raise KeystoreError(f"{source} is corrupt: its key does not match its certificate.")
    return info, key


def add_server_certificates(path: Path, pems: list[bytes]) -> bool:
    """Trust `pems` too for the bundle at `path`: rewrite its `server_certificates` field
    atomically (0600), every other field as it was, the sealed key untouched. Certificates
    it already trusts are skipped; past `MAX_SERVER_CERTIFICATES` the oldest learned one
    goes. False if nothing changed. KeystoreError if the file is not a bundle; OSError if
    it cannot be rewritten (e.g. a read-only credential)."""
    source = str(path)
    with path.open("rb") as f:
        data = f.read(MAX_BUNDLE_BYTES + 1)
    if len(data) > MAX_BUNDLE_BYTES:
        raise KeystoreError(f"{source} is too large to be an MLAX officer credential.")
    try:
        doc: Any = json.loads(data)
        if doc.get("format") not in (BUNDLE_FORMAT, LEGACY_BUNDLE_FORMAT):
            raise ValueError("format")
        primary = doc["server_certificate"].encode()
        learned = list(_server_certificates(doc.get("server_certificates")))
    except (ValueError, KeyError, AttributeError, TypeError):
        raise KeystoreError(f"{source} is not an MLAX officer credential.") from None
    new: list[bytes] = []
    for pem in pems:
        usable = pem.isascii() and _is_certificate_pem(pem.decode())
        if usable and pem != primary and pem not in learned and pem not in new:
            new.append(pem)
    if not new:
        return False
    doc["server_certificates"] = [p.decode() for p in (learned + new)[-MAX_SERVER_CERTIFICATES:]]
    write_bundle(path, doc, overwrite=True)
    return True


# -- the officer CA's key ------------------------------------------------------------------


def seal_ca_key(
    key: ec.EllipticCurvePrivateKey, agency: str, passphrase: bytes, kdf: KdfParams | None = None
) -> bytes:
    """The officer CA's key file bytes (purpose `officer-ca`, label the agency)."""
    return seal_key(_material(key), Purpose.OFFICER_CA, agency, passphrase, kdf)


def open_ca_key(
    data: bytes, passphrase: bytes, source: str
) -> tuple[ec.EllipticCurvePrivateKey, bool]:
    """Decrypt an officer CA key file; the flag is true for a legacy PBKDF2 PEM file."""
    if data.lstrip().startswith(_PEM):
        return _legacy_key(data, passphrase, source), True
    return _sealed_key(data, passphrase, source, Purpose.OFFICER_CA), False
