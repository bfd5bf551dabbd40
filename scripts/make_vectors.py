"""Generate the MLAX wire test vectors in docs/vectors/ from fixed keys and inputs.

Every key derives from a fixed seed, every timestamp and message id is fixed, and
Ed25519 signatures are deterministic, so everything but HPKE reproduces bit for bit.
HPKE encryption draws a fresh ephemeral key inside `cryptography`; the generator
therefore reuses the ciphertexts already recorded in docs/vectors/ whenever they still
decrypt to the expected sealed body, and encrypts afresh only when an input changed
(or with --fresh). Run it once, commit its output; tests/exchange/test_vectors.py
checks the committed files.

    .venv/bin/python scripts/make_vectors.py           # write docs/vectors/*.json
    .venv/bin/python scripts/make_vectors.py --check   # exit 1 if the files are stale
    .venv/bin/python scripts/make_vectors.py --fresh   # new HPKE ciphertexts
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.x509.oid import NameOID
from nacl.signing import SigningKey

from exchange import casework, errors, forms
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import directory_pb2 as dpb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.agency import AgencyCard, KeyAlgorithm, PublicKey, RevokedKey
from exchange.attachment import (
    CTX_ATTACHMENT_CHUNK,
    TAG_SIZE,
    AttachmentKey,
    ChunkCipher,
    StreamVerifier,
    TamperedChunkError,
    chunk_nonce,
)
from exchange.case import Action, Case, Urgency
from exchange.directory import AdminKey, Directory, SignedDirectory, verify_directory
from exchange.encoding import (
    CTX_DIRECTORY,
    CTX_ENVELOPE_DIGEST,
    CTX_ENVELOPE_HPKE_INFO,
    CTX_ENVELOPE_INNER,
    CTX_ENVELOPE_OUTER,
    CTX_KEY_ID,
    CTX_RECEIPT,
    format_uuid,
    key_id,
    pae,
    sha256,
    uuid7,
)
from exchange.envelope import (
    DEFAULT_LIMITS,
    AttachmentDigest,
    DecryptionKey,
    Envelope,
    HandlingCode,
    Header,
    Limits,
    MemorySeenIds,
    MessageType,
    Recipient,
    Sender,
    Suite,
    hpke_info,
    load_encryption_key,
    open_envelope,
    seal,
    verify_bundle,
)
from exchange.receipt import Receipt, ReceiptBody, issue_receipt, verify_receipt

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "vectors"

# 2026-01-01T00:00:00Z in unix milliseconds; every timestamp is an offset from it.
T0 = 1_767_225_600_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

FEDERATION_ID = "mlax-vector-federation"
SENDER_ID = "FR-OCRTEH"  # offers X25519 only; sends the hybrid envelope
HYBRID_ID = "NL-POLITIE"  # offers MLKEM768-X25519; sends the X25519 reply
ENCODING_NOTE = (
    "Byte strings are lowercase hex; integers are JSON numbers (unix milliseconds for "
    "times); text is JSON strings, UTF-8 on the wire. Enum values use their .proto names."
)

# --- fixed key material ---------------------------------------------------------------------


def seed(label: str, n: int = 32) -> bytes:
    """The fixed seed named `label`: the first n bytes of SHA-256("mlax-vector-seed:" label)."""
    return hashlib.sha256(b"mlax-vector-seed:" + label.encode()).digest()[:n]


@dataclass(frozen=True)
class Ed25519Key:
    name: str
    seed: bytes

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    @property
    def public(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def key_id(self) -> str:
        return key_id("ed25519", self.public)

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed.hex(), "public_key": self.public.hex(), "key_id": self.key_id}


@dataclass(frozen=True)
class X25519Key:
    name: str
    seed: bytes

    @property
    def private(self) -> x25519.X25519PrivateKey:
        return x25519.X25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes_raw()

    algorithm = KeyAlgorithm.X25519

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": "KEY_ALGORITHM_X25519",
            "x25519_private_key": self.seed.hex(),
            "public_key": self.public.hex(),
            "key_id": key_id("x25519", self.public),
        }


@dataclass(frozen=True)
class HybridKey:
    """An MLKEM768-X25519 key, expanded from a 32-byte X-Wing seed as X-Wing does."""

    name: str
    xwing_seed: bytes

    @property
    def _expanded(self) -> bytes:
        return hashlib.shake_256(self.xwing_seed).digest(96)

    @property
    def mlkem_seed(self) -> bytes:
        return self._expanded[:64]

    @property
    def x25519_seed(self) -> bytes:
        return self._expanded[64:]

    @property
    def private(self) -> hpke.MLKEM768X25519PrivateKey:
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(self.mlkem_seed),
            x25519.X25519PrivateKey.from_private_bytes(self.x25519_seed),
        )

    @property
    def mlkem_public(self) -> bytes:
        key = mlkem.MLKEM768PrivateKey.from_seed_bytes(self.mlkem_seed)
        return key.public_key().public_bytes_raw()

    @property
    def x25519_public(self) -> bytes:
        key = x25519.X25519PrivateKey.from_private_bytes(self.x25519_seed)
        return key.public_key().public_bytes_raw()

    @property
    def public(self) -> bytes:
        return self.mlkem_public + self.x25519_public

    algorithm = KeyAlgorithm.MLKEM768_X25519

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": "KEY_ALGORITHM_MLKEM768_X25519",
            "xwing_seed": self.xwing_seed.hex(),
            "mlkem768_seed_d_z": self.mlkem_seed.hex(),
            "x25519_private_key": self.x25519_seed.hex(),
            "mlkem768_public_key": self.mlkem_public.hex(),
            "x25519_public_key": self.x25519_public.hex(),
            "public_key": self.public.hex(),
            "key_id": key_id("mlkem768-x25519", self.public),
        }


EncKey = X25519Key | HybridKey

ADMINS = [Ed25519Key(f"admin-{i}", seed(f"admin-{i}")) for i in range(4)]
OUTSIDER = Ed25519Key("outsider", seed("outsider"))
FR_SIGNING = Ed25519Key("FR-OCRTEH signing 2026", seed("FR-OCRTEH/signing/2026"))
FR_OLD_SIGNING = Ed25519Key("FR-OCRTEH signing 2025", seed("FR-OCRTEH/signing/2025"))
FR_X25519 = X25519Key("FR-OCRTEH x25519", seed("FR-OCRTEH/x25519"))
NL_SIGNING = Ed25519Key("NL-POLITIE signing 2026", seed("NL-POLITIE/signing/2026"))
NL_HYBRID = HybridKey("NL-POLITIE mlkem768-x25519", seed("NL-POLITIE/mlkem768-x25519"))

FR_OLD_REVOKED_AT = T0 - 10 * DAY


def tls_certificate(agency_id: str, name: str, country: str, host: str) -> bytes:
    """A self-signed P-256 node certificate, deterministic (RFC 6979 ECDSA, fixed serial)."""
    scalar = int.from_bytes(seed(f"{agency_id}/tls"), "big") % (2**255) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, agency_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name[:64]),
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
        ]
    )
    start = datetime.datetime.fromtimestamp((T0 - 30 * DAY) / 1000, tz=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(seed(f"{agency_id}/tls-serial", 16), "big") >> 1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=395))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def spki_sha256(pem: bytes) -> bytes:
    cert = x509.load_pem_x509_certificate(pem)
    return sha256(
        cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def card(
    agency_id: str,
    name: str,
    host: str,
    signing: list[tuple[Ed25519Key, int, int]],
    encryption: list[tuple[EncKey, int, int]],
    revoked: tuple[RevokedKey, ...] = (),
) -> AgencyCard:
    pem = tls_certificate(agency_id, name, agency_id[:2], host)
    return AgencyCard(
        agency_id=agency_id,
        name=name,
        country=agency_id[:2],
        endpoint=f"{host}:7443",
        tls_spki_sha256=spki_sha256(pem),
        tls_certificate_pem=pem,
        signing_keys=tuple(PublicKey(KeyAlgorithm.ED25519, k.public, a, b) for k, a, b in signing),
        encryption_keys=tuple(PublicKey(k.algorithm, k.public, a, b) for k, a, b in encryption),
        revoked_keys=revoked,
    )


def agencies() -> tuple[AgencyCard, ...]:
    fr = card(
        SENDER_ID,
        "Office central pour la répression de la traite des êtres humains",
        "mlax.ocrteh.example.fr",
        [
            (FR_OLD_SIGNING, T0 - 400 * DAY, T0 + 30 * DAY),
            (FR_SIGNING, T0 - 30 * DAY, T0 + 365 * DAY),
        ],
        [(FR_X25519, T0 - 30 * DAY, T0 + 365 * DAY)],
        (RevokedKey(FR_OLD_SIGNING.key_id, FR_OLD_REVOKED_AT, "superseded after device loss"),),
    )
    nl = card(
        HYBRID_ID,
        "Politie – Landelijke Eenheid, Expertisecentrum Mensenhandel",
        "mlax.politie.example.nl",
        [(NL_SIGNING, T0 - 30 * DAY, T0 + 365 * DAY)],
        [(NL_HYBRID, T0 - 30 * DAY, T0 + 365 * DAY)],
    )
    return (fr, nl)


def directory_v1() -> Directory:
    return Directory(
        federation_id=FEDERATION_ID,
        version=1,
        issued_at=T0 - HOUR,
        expires_at=T0 + 90 * DAY,
        threshold=2,
        admins=tuple(AdminKey(a.name, a.public) for a in ADMINS[:3]),
        agencies=agencies(),
    )


def directory_v2() -> Directory:
    """admin-2 is replaced by admin-3; both the old and the new threshold must sign."""
    return replace(
        directory_v1(),
        version=2,
        issued_at=T0 + 7 * DAY,
        expires_at=T0 + 97 * DAY,
        admins=tuple(AdminKey(a.name, a.public) for a in (ADMINS[0], ADMINS[1], ADMINS[3])),
    )


def directory_elsewhere() -> Directory:
    """A directory of another federation, signed by the same administrators."""
    return replace(directory_v1(), federation_id="another-federation", version=5, agencies=())


# --- JSON forms -----------------------------------------------------------------------------


def public_key_json(k: PublicKey) -> dict[str, Any]:
    return {
        "key_id": k.key_id,
        "algorithm": dpb.KeyAlgorithm.Name(k.algorithm.value),
        "public_key": k.public_key.hex(),
        "not_before": k.not_before,
        "not_after": k.not_after,
    }


def directory_json(d: Directory) -> dict[str, Any]:
    """The directory's fields, named as in directory.proto, in field-number order."""
    return {
        "federation_id": d.federation_id,
        "version": d.version,
        "issued_at": d.issued_at,
        "expires_at": d.expires_at,
        "threshold": d.threshold,
        "admins": [
            {"key_id": a.key_id, "name": a.name, "public_key": a.public_key.hex()} for a in d.admins
        ],
        "agencies": [
            {
                "agency_id": c.agency_id,
                "name": c.name,
                "country": c.country,
                "endpoint": c.endpoint,
                "tls_spki_sha256": c.tls_spki_sha256.hex(),
                "signing_keys": [public_key_json(k) for k in c.signing_keys],
                "encryption_keys": [public_key_json(k) for k in c.encryption_keys],
                "revoked_keys": [
                    {"key_id": r.key_id, "revoked_at": r.revoked_at, "reason": r.reason}
                    for r in c.revoked_keys
                ],
                "tls_certificate_pem": c.tls_certificate_pem.decode("ascii"),
            }
            for c in d.agencies
        ],
    }


def file_form(signed: SignedDirectory) -> dict[str, Any]:
    """The directory JSON file form operators exchange and pin out of band."""
    return {
        "format": "mlax-directory/v1",
        "directory": base64.b64encode(signed.directory).decode("ascii"),
        "signatures": [
            {"key_id": kid, "signature": base64.b64encode(sig).decode("ascii")}
            for kid, sig in signed.signatures
        ],
    }


def signed_by(directory_bytes: bytes, signers: list[Ed25519Key]) -> SignedDirectory:
    return SignedDirectory(
        directory_bytes,
        tuple((k.key_id, k.sign(pae(CTX_DIRECTORY, directory_bytes))) for k in signers),
    )


def error_json(name: str) -> dict[str, str]:
    cls = getattr(errors, name)
    return {"error": name, "status": cls.status}


# --- vector files ---------------------------------------------------------------------------


def pae_vectors() -> dict[str, Any]:
    cases: list[tuple[str, list[bytes]]] = [
        ("no pieces", []),
        ("one empty piece", [b""]),
        ("two empty pieces", [b"", b""]),
        ("context only", [CTX_RECEIPT]),
        ("context and empty piece", [CTX_ENVELOPE_INNER, b""]),
        ("context and text", [CTX_ENVELOPE_OUTER, b"header", b"ciphertext"]),
        ("key id input", [CTX_KEY_ID, b"ed25519", bytes(range(32))]),
        ("binary pieces incl. 0x00 and a 300-byte piece", [b"\x00", b"\xff" * 2, bytes(300)]),
    ]
    return {
        "description": "PASETO PAE: LE64(count) || for each piece: LE64(len(piece)) || piece.",
        "encoding": ENCODING_NOTE,
        "contexts": {
            name: ctx.decode()
            for name, ctx in (
                ("envelope_outer", CTX_ENVELOPE_OUTER),
                ("envelope_inner", CTX_ENVELOPE_INNER),
                ("envelope_hpke_info", CTX_ENVELOPE_HPKE_INFO),
                ("envelope_digest", CTX_ENVELOPE_DIGEST),
                ("receipt", CTX_RECEIPT),
                ("directory", CTX_DIRECTORY),
                ("key_id", CTX_KEY_ID),
            )
        },
        "cases": [
            {"name": n, "pieces": [p.hex() for p in pieces], "pae": pae(*pieces).hex()}
            for n, pieces in cases
        ],
    }


def key_id_vectors() -> dict[str, Any]:
    rows: list[tuple[str, str, bytes, dict[str, str]]] = [
        *((k.name, "ed25519", k.public, {"seed": k.seed.hex()}) for k in ADMINS),
        (OUTSIDER.name, "ed25519", OUTSIDER.public, {"seed": OUTSIDER.seed.hex()}),
        (FR_SIGNING.name, "ed25519", FR_SIGNING.public, {"seed": FR_SIGNING.seed.hex()}),
        (
            FR_OLD_SIGNING.name,
            "ed25519",
            FR_OLD_SIGNING.public,
            {"seed": FR_OLD_SIGNING.seed.hex()},
        ),
        (FR_X25519.name, "x25519", FR_X25519.public, {"x25519_private_key": FR_X25519.seed.hex()}),
        (NL_SIGNING.name, "ed25519", NL_SIGNING.public, {"seed": NL_SIGNING.seed.hex()}),
        (
            NL_HYBRID.name,
            "mlkem768-x25519",
            NL_HYBRID.public,
            {"xwing_seed": NL_HYBRID.xwing_seed.hex()},
        ),
    ]
    keys = []
    for name, alg, public, private in rows:
        data = pae(CTX_KEY_ID, alg.encode(), public)
        keys.append(
            {
                "name": name,
                "algorithm_label": alg,
                **private,
                "public_key": public.hex(),
                "pae_input": data.hex(),
                "sha256": sha256(data).hex(),
                "key_id": key_id(alg, public),
            }
        )
    return {
        "description": "key_id = lowercase hex of the first 16 bytes of "
        'SHA-256(PAE("mlax/v1/key-id", algorithm_label, public_key)).',
        "encoding": ENCODING_NOTE,
        "seed_rule": 'seed(label) = SHA-256("mlax-vector-seed:" || label); hybrid keys expand '
        "their 32-byte X-Wing seed with SHAKE256(xwing_seed, 96): [0:64] ML-KEM-768 seed d||z, "
        "[64:96] X25519 private key.",
        "keys": keys,
    }


def signatures_json(signed: SignedDirectory) -> list[dict[str, str]]:
    return [{"key_id": k, "signature": s.hex()} for k, s in signed.signatures]


def signing_input_prefix(directory_bytes: bytes) -> bytes:
    """PAE(ctx, directory) minus the directory bytes themselves, which follow it."""
    return pae(CTX_DIRECTORY, directory_bytes)[: -len(directory_bytes)]


def error_name(check: Callable[[], object]) -> str | None:
    """The class name of the MlaxError `check` raises, or None when it passes."""
    try:
        check()
    except errors.MlaxError as e:
        return type(e).__name__
    return None


def directory_vectors() -> dict[str, Any]:
    v1, v2, other = directory_v1(), directory_v2(), directory_elsewhere()
    b1, b2, bo = v1.to_bytes(), v2.to_bytes(), other.to_bytes()
    a0, a1, a2, a3 = ADMINS
    signed = {
        "v1": signed_by(b1, [a0, a1]),
        # The rotation is signed by every administrator, old and new.
        "v2": signed_by(b2, [a0, a1, a2, a3]),
        "v1-one-signature": signed_by(b1, [a0]),
        "v1-tampered": SignedDirectory(
            b1.replace(FEDERATION_ID.encode(), b"mlax-vector-federatioN"),
            signed_by(b1, [a0, a1]).signatures,
        ),
        "v1-plus-outsider": signed_by(b1, [a0, a1, OUTSIDER]),
        "v1-admin-0-twice": SignedDirectory(b1, signed_by(b1, [a0]).signatures * 2),
        "v2-new-admins-only": signed_by(b2, [a0, a3]),
        "another-federation": signed_by(bo, [a0, a1, a2]),
    }
    now = T0
    # (name, signed directory, trusted directory, now, accepted version or error)
    table: list[tuple[str, str, str | None, int, int | str]] = [
        ("v1 bootstrap, pinned out of band", "v1", None, now, 1),
        ("v2 after v1: the old and the new thresholds both signed", "v2", "v1", now, 2),
        ("one signature, two needed", "v1-one-signature", None, now, "ThresholdError"),
        ("directory bytes tampered after signing", "v1-tampered", None, now, "BadSignatureError"),
        ("a signature by a non-administrator", "v1-plus-outsider", None, now, "UnknownSignerError"),
        ("the same administrator twice", "v1-admin-0-twice", None, now, "DuplicateSignatureError"),
        (
            "v2 signed by its new threshold but only one old administrator",
            "v2-new-admins-only",
            "v1",
            now,
            "ThresholdError",
        ),
        (
            "v2 on first install: admin-2, no longer an administrator, signed it",
            "v2",
            None,
            now,
            "UnknownSignerError",
        ),
        ("v2 on first install needs only its own threshold", "v2-new-admins-only", None, now, 2),
        ("v1 again after v1 (rollback)", "v1", "v1", now, "RollbackError"),
        ("v1 at its expiry instant", "v1", None, v1.expires_at, "ExpiredDirectoryError"),
        (
            "a directory of another federation",
            "another-federation",
            "v1",
            now,
            "FederationMismatchError",
        ),
    ]
    cases: list[dict[str, Any]] = [
        {
            "name": name,
            "signed_directory": which,
            "trusted": trusted,
            "now_ms": at,
            **({"accepted_version": want} if isinstance(want, int) else error_json(want)),
        }
        for name, which, trusted, at, want in table
    ]
    # The generator checks its own expectations with the real verifier.
    trusted_v1 = verify_directory(signed["v1"].to_bytes(), None, now)
    for case in cases:
        data = signed[case["signed_directory"]].to_bytes()
        trusted = trusted_v1 if case["trusted"] else None
        outcome = error_name(lambda: verify_directory(data, trusted, case["now_ms"]))  # noqa: B023
        assert outcome == case.get("error"), (case["name"], outcome)
        if outcome is None:
            assert (
                verify_directory(data, trusted, case["now_ms"]).version == case["accepted_version"]
            )
    v2_fields = directory_json(v2)
    return {
        "description": "A 2-of-3 signed federation directory of two agencies (v1), an "
        "administrator rotation (v2) and the cases a verifier must refuse. In verify_cases, "
        "signed_directory names a key of signed_directories and trusted names the directory "
        'already trusted (null on first install); "v1" and "v2" name '
        "directories.v1/v2.signed_directory.",
        "encoding": ENCODING_NOTE,
        "admins": [{"name": a.name, **a.to_json()} for a in ADMINS],
        "outsider": OUTSIDER.to_json(),
        "directories": {
            "v1": {
                "fields": directory_json(v1),
                "directory": b1.hex(),
                "signing_input_prefix": signing_input_prefix(b1).hex(),
                "signatures": signatures_json(signed["v1"]),
                "signed_directory": signed["v1"].to_bytes().hex(),
                "file_form": file_form(signed["v1"]),
            },
            "v2": {
                "fields_changed_from_v1": {
                    k: v2_fields[k] for k in ("version", "issued_at", "expires_at", "admins")
                },
                "directory": b2.hex(),
                "signing_input_prefix": signing_input_prefix(b2).hex(),
                "signatures": signatures_json(signed["v2"]),
                "signed_directory": signed["v2"].to_bytes().hex(),
            },
        },
        "signed_directories": {
            name: s.to_bytes().hex() for name, s in signed.items() if name not in ("v1", "v2")
        },
        "verify_cases": cases,
    }


# --- envelopes ------------------------------------------------------------------------------


Encryptor = Callable[[str, Suite, bytes, EncKey, bytes], bytes]


@dataclass(frozen=True)
class Party:
    agency_id: str
    signing: Ed25519Key
    encryption: EncKey


FR = Party(SENDER_ID, FR_SIGNING, FR_X25519)
NL = Party(HYBRID_ID, NL_SIGNING, NL_HYBRID)


def header_json(h: Header) -> dict[str, Any]:
    return {
        "protocol_version": 1,
        "message_id": h.message_id.hex(),
        "sender": h.sender,
        "recipient": h.recipient,
        "message_type": epb.MessageType.Name(h.message_type.value),
        "case_ref": h.case_ref,
        "created_at": h.created_at,
        "expires_at": h.expires_at,
        "sender_key_id": h.sender_key_id,
        "recipient_key_id": h.recipient_key_id,
        "suite": epb.HpkeSuite.Name(h.suite.value),
        "handling_codes": [epb.HandlingCode.Name(c.value) for c in h.handling_codes],
        "attachments": [
            {"name": a.name, "sha256": a.sha256.hex(), "size": a.size} for a in h.attachments
        ],
        "restricted_to": list(h.restricted_to),
        "in_reply_to": h.in_reply_to.hex(),
    }


def build_envelope(
    name: str,
    signer: Ed25519Key,
    header: Header,
    body: bytes,
    to: EncKey,
    encrypt: Encryptor,
    inner_signer: Ed25519Key | None = None,
) -> tuple[Envelope, bytes, bytes, bytes]:
    """The seal algorithm step by step: (envelope, inner signature, sealed body, info)."""
    header_bytes = header.to_bytes()
    inner = (inner_signer or signer).sign(pae(CTX_ENVELOPE_INNER, header_bytes, body))
    sealed = epb.SealedBody(body=body, inner_signature=inner).SerializeToString(deterministic=True)
    info = hpke_info(header_bytes)
    ciphertext = encrypt(name, header.suite, sealed, to, info)
    outer = signer.sign(pae(CTX_ENVELOPE_OUTER, header_bytes, ciphertext))
    return Envelope(header_bytes, ciphertext, outer), inner, sealed, info


def resigned(signer: Ed25519Key, header_bytes: bytes, ciphertext: bytes) -> Envelope:
    return Envelope(
        header_bytes, ciphertext, signer.sign(pae(CTX_ENVELOPE_OUTER, header_bytes, ciphertext))
    )


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def body_content(subject: str, text: str) -> bytes:
    return opb.Content(subject=subject, text=text, media_type="text/plain").SerializeToString(
        deterministic=True
    )


def envelope_vectors(
    sender: Party,
    recipient: Party,
    header: Header,
    body: bytes,
    directory: Directory,
    encrypt: Encryptor,
    open_at: int,
) -> dict[str, Any]:
    """One envelope with every intermediate value, its bundle, and refusals with their errors."""
    suite_name = "x25519" if isinstance(recipient.encryption, X25519Key) else "hybrid"
    env, inner, sealed, info = build_envelope(
        f"{suite_name}/main", sender.signing, header, body, recipient.encryption, encrypt
    )
    # What we build step by step is what `seal` builds (it differs only in HPKE randomness).
    recipient_card = directory.agency(recipient.agency_id)
    assert recipient_card is not None
    sealed_env = seal(
        Sender(sender.agency_id, sender.signing.signing_key),
        recipient_card,
        body,
        header.message_type,
        now_ms=header.created_at,
        case_ref=header.case_ref,
        handling_codes=header.handling_codes,
        attachments=header.attachments,
        restricted_to=header.restricted_to,
        in_reply_to=header.in_reply_to,
        message_id=header.message_id,
    )
    assert sealed_env.header == env.header
    enc_len = 32 if header.suite is Suite.X25519_SHA256_CHACHA20POLY1305 else 1120
    opened = open_envelope(
        env.to_bytes(), directory, recipient_of(recipient), MemorySeenIds(), now_ms=open_at
    )
    assert opened.body == body
    bundle = opened.non_repudiation_bundle()
    assert not verify_bundle(bundle, directory).key_revoked_later
    hb = env.header

    negatives: list[dict[str, Any]] = []

    def negative(name: str, envelope: Envelope | bytes, err: str, **how: Any) -> None:
        data = envelope if isinstance(envelope, bytes) else envelope.to_bytes()
        # A case without its own envelope bytes reuses the top-level envelope.
        own = {} if data == env.to_bytes() else {"envelope": data.hex()}
        negatives.append({"name": name, **own, **how, **error_json(err)})

    negative(
        "outer signature bit flipped",
        replace(env, outer_signature=flip(env.outer_signature, 0)),
        "OuterSignatureError",
    )
    negative(
        "unknown field 4 appended to the envelope", env.to_bytes() + b"\x20\x01", "MalformedError"
    )
    negative(
        "envelope over the size limit",
        env,
        "OversizedError",
        limits={"max_envelope_bytes": len(env.to_bytes()) - 1},
    )
    changed = replace(header, case_ref=header.case_ref + "-X").to_bytes()
    negative(
        "header changed, outer signature redone (HPKE info no longer matches)",
        resigned(sender.signing, changed, env.ciphertext),
        "DecryptionError",
    )
    negative(
        "ciphertext bit flipped, outer signature redone",
        resigned(sender.signing, hb, flip(env.ciphertext, enc_len + 3)),
        "DecryptionError",
    )
    other_suite = (
        Suite.MLKEM768X25519_SHA256_CHACHA20POLY1305
        if header.suite is Suite.X25519_SHA256_CHACHA20POLY1305
        else Suite.X25519_SHA256_CHACHA20POLY1305
    )
    negative(
        "suite does not fit the recipient key, outer signature redone",
        resigned(sender.signing, replace(header, suite=other_suite).to_bytes(), env.ciphertext),
        "DecryptionError",
    )
    negative("opened at the expiry instant", env, "ExpiredEnvelopeError", now_ms=header.expires_at)
    negative(
        "created beyond the allowed clock skew",
        env,
        "ExpiredEnvelopeError",
        now_ms=header.created_at - DEFAULT_LIMITS.max_clock_skew_ms - 1,
    )
    negative(
        "message id already received",
        env,
        "ReplayError",
        seen=[[header.sender, header.message_id.hex()]],
    )
    negative("opened by another agency", env, "WrongRecipientError", recipient=sender.agency_id)
    negative(
        "recipient does not hold the named key",
        env,
        "WrongRecipientError",
        recipient_holds_no_key=True,
    )
    bad_inner, *_ = build_envelope(
        f"{suite_name}/bad-inner",
        sender.signing,
        header,
        body,
        recipient.encryption,
        encrypt,
        inner_signer=recipient.signing,
    )
    negative(
        "inner signature by another key (recorded HPKE ciphertext)",
        bad_inner,
        "InnerSignatureError",
    )

    for case in negatives:
        check_negative(case, env.to_bytes(), directory, recipient, open_at)

    return {
        "description": f"One envelope from {sender.agency_id} to {recipient.agency_id}, sealed "
        f"with {epb.HpkeSuite.Name(header.suite.value)}, with every intermediate value.",
        "encoding": ENCODING_NOTE,
        "directory": "directory.json: directories.v1.signed_directory",
        "negative_fields": "Each refusal is opened like the envelope (open.recipient holding "
        "recipient.encryption_key, at open.now_ms, nothing seen) except where it says: "
        "envelope (else the top-level envelope), now_ms, limits (overrides of the defaults), "
        "seen ([sender, message id] pairs already received), recipient (open as this agency, "
        "holding no key), recipient_holds_no_key.",
        "sender": {"agency_id": sender.agency_id, "signing_key": sender.signing.to_json()},
        "recipient": {
            "agency_id": recipient.agency_id,
            "encryption_key": recipient.encryption.to_json(),
        },
        "message_id": {
            "unix_ms": header.created_at,
            "rand": seed(f"{suite_name}/message-id", 10).hex(),
            "bytes": header.message_id.hex(),
            "text": format_uuid(header.message_id),
        },
        "header_fields": header_json(header),
        "header": hb.hex(),
        "body": body.hex(),
        "inner_signing_input": pae(CTX_ENVELOPE_INNER, hb, body).hex(),
        "inner_signature": inner.hex(),
        "sealed_body": sealed.hex(),
        "hpke": {
            "suite": epb.HpkeSuite.Name(header.suite.value),
            "mode": "base (0x00)",
            "kem_id": "0x0020" if enc_len == 32 else "0x647a",
            "kdf_id": "0x0001",
            "aead_id": "0x0003",
            "aad": "",
            "info": info.hex(),
            "enc_length": enc_len,
            "enc": env.ciphertext[:enc_len].hex(),
        },
        "ciphertext": env.ciphertext.hex(),
        "outer_signing_input": pae(CTX_ENVELOPE_OUTER, hb, env.ciphertext).hex(),
        "outer_signature": env.outer_signature.hex(),
        "envelope": env.to_bytes().hex(),
        "envelope_digest": env.digest.hex(),
        "open": {"recipient": recipient.agency_id, "now_ms": open_at},
        "non_repudiation_bundle": bundle.hex(),
        "negative": negatives,
    }


def recipient_of(party: Party) -> Recipient:
    priv: DecryptionKey = party.encryption.private
    kid = key_id(party.encryption.algorithm.label, party.encryption.public)
    return Recipient(party.agency_id, {kid: priv})


def check_negative(
    case: dict[str, Any], main: bytes, directory: Directory, recipient: Party, open_at: int
) -> None:
    """Run one refusal through the real `open_envelope` and insist on the named error."""
    seen = MemorySeenIds()
    for sender_id, mid in case.get("seen", []):
        seen.add(sender_id, bytes.fromhex(mid))
    who = recipient_of(recipient)
    if "recipient" in case:
        who = Recipient(case["recipient"], {})
    if case.get("recipient_holds_no_key"):
        who = Recipient(recipient.agency_id, {})
    data = bytes.fromhex(case["envelope"]) if "envelope" in case else main
    limits = Limits(**case.get("limits", {}))
    now = case.get("now_ms", open_at)
    outcome = error_name(
        lambda: open_envelope(data, directory, who, seen, now_ms=now, limits=limits)
    )
    assert outcome == case["error"], (case["name"], outcome)


def sender_key_refusals(directory: Directory, base: Header, open_at: int) -> list[dict[str, Any]]:
    """Refusals decided by the sender's directory entry, before any signature is checked."""
    junk = bytes(48)  # never reached: these checks come first

    def case(name: str, header: Header, signer: Ed25519Key, err: str) -> dict[str, Any]:
        env = resigned(signer, header.to_bytes(), junk)
        out = {"name": name, "envelope": env.to_bytes().hex(), **error_json(err)}
        check_negative(out, b"", directory, NL, open_at)
        return out

    return [
        case(
            "sender is not a member",
            replace(base, sender="DE-BKA"),
            FR_SIGNING,
            "UnknownSenderError",
        ),
        case(
            "sender key id not listed",
            replace(base, sender_key_id=OUTSIDER.key_id),
            OUTSIDER,
            "UnknownKeyError",
        ),
        case(
            "sender key revoked",
            replace(base, sender_key_id=FR_OLD_SIGNING.key_id),
            FR_OLD_SIGNING,
            "RevokedKeyError",
        ),
        case(
            "created before the sender key's not_before",
            replace(base, created_at=T0 - 31 * DAY, expires_at=T0 + DAY),
            FR_SIGNING,
            "KeyNotValidError",
        ),
    ]


def bundle_cases(directory: Directory, base: Header) -> list[dict[str, Any]]:
    """Non-repudiation bundles signed by the key FR-OCRTEH revoked at T0 - 10 days."""
    body = body_content("Earlier note", "Sent before the key was revoked.")

    def bundle(created_at: int, body_signed: bytes, body_sent: bytes) -> bytes:
        header = replace(
            base,
            message_id=uuid7(created_at, seed(f"bundle/{created_at}", 10)),
            created_at=created_at,
            expires_at=created_at + 30 * DAY,
            sender_key_id=FR_OLD_SIGNING.key_id,
        ).to_bytes()
        sig = FR_OLD_SIGNING.sign(pae(CTX_ENVELOPE_INNER, header, body_signed))
        return epb.NonRepudiationBundle(
            header=header, body=body_sent, inner_signature=sig
        ).SerializeToString(deterministic=True)

    before, after = FR_OLD_REVOKED_AT - 10 * DAY, FR_OLD_REVOKED_AT + 5 * DAY
    cases: list[dict[str, Any]] = [
        {
            "name": "signed before the key was revoked",
            "bundle": bundle(before, body, body).hex(),
            "key_revoked_later": True,
        },
        {
            "name": "signed after the key was revoked",
            "bundle": bundle(after, body, body).hex(),
            **error_json("RevokedKeyError"),
        },
        {
            "name": "body changed",
            "bundle": bundle(before, body, body + b" ").hex(),
            **error_json("InnerSignatureError"),
        },
    ]
    for c in cases:
        data = bytes.fromhex(c["bundle"])
        assert error_name(lambda: verify_bundle(data, directory)) == c.get("error"), c  # noqa: B023
        if "error" not in c:
            assert verify_bundle(data, directory).key_revoked_later is c["key_revoked_later"]
    return cases


def receipt_vectors(hybrid: dict[str, Any], directory: Directory) -> dict[str, Any]:
    mid = bytes.fromhex(hybrid["message_id"]["bytes"])
    digest = bytes.fromhex(hybrid["envelope_digest"])
    body = ReceiptBody(
        message_id=mid,
        sender=SENDER_ID,
        receiver=HYBRID_ID,
        envelope_digest=digest,
        received_at=hybrid["open"]["now_ms"] + 7,
        receiver_key_id=NL_SIGNING.key_id,
        ledger_index=41,
    )
    receipt = issue_receipt(body, NL_SIGNING.signing_key)
    verify_receipt(receipt, directory, message_id=mid, envelope_digest=digest, receiver=HYBRID_ID)
    bad = Receipt(receipt.body, flip(receipt.signature, 5))
    return {
        "description": "NL-POLITIE's receipt for the envelope of envelope_mlkem768x25519.json.",
        "encoding": ENCODING_NOTE,
        "directory": "directory.json: directories.v1.signed_directory",
        "receiver_signing_key": NL_SIGNING.to_json(),
        "body_fields": {
            "message_id": mid.hex(),
            "sender": body.sender,
            "receiver": body.receiver,
            "envelope_digest": digest.hex(),
            "received_at": body.received_at,
            "receiver_key_id": body.receiver_key_id,
            "ledger_index": body.ledger_index,
        },
        "envelope_digest_input": 'PAE("mlax/v1/envelope/digest", header, ciphertext, '
        "outer_signature) of envelope_mlkem768x25519.json",
        "body": receipt.body.hex(),
        "signing_input": pae(CTX_RECEIPT, receipt.body).hex(),
        "signature": receipt.signature.hex(),
        "receipt": receipt.to_bytes().hex(),
        "negative": [
            {
                "name": "signature bit flipped",
                "receipt": bad.to_bytes().hex(),
                "message_id": mid.hex(),
                "envelope_digest": digest.hex(),
                **error_json("ReceiptError"),
            },
            {
                "name": "receipt checked against another envelope",
                "receipt": receipt.to_bytes().hex(),
                "message_id": mid.hex(),
                "envelope_digest": sha256(b"another envelope").hex(),
                **error_json("ReceiptError"),
            },
        ],
    }


# --- casework and evidence ------------------------------------------------------------------


def attachment_vectors() -> dict[str, Any]:
    """One attachment of 262144 + 5 bytes in 256 KiB chunks: two chunks, the last 5 bytes."""
    chunk_size = 262_144
    size = chunk_size + 5
    plaintext = bytes(i % 251 for i in range(size))
    key = AttachmentKey(
        attachment_id=seed("attachment/id", 16),
        key=seed("attachment/key"),
        chunk_size=chunk_size,
        size=size,
        sha256=sha256(plaintext),
        name="relevés-bancaires.pdf",
    )
    cipher = ChunkCipher.of(key)
    ad = pae(CTX_ATTACHMENT_CHUNK, key.attachment_id)
    chunks: list[dict[str, Any]] = []
    sealed_all: list[bytes] = []
    verifier = StreamVerifier(key)
    for i in range(key.chunks):
        part = plaintext[i * chunk_size : (i + 1) * chunk_size]
        final = key.is_final(i)
        sealed = cipher.seal(i, part, final=final)
        assert verifier.feed(i, sealed) == part
        sealed_all.append(sealed)
        entry: dict[str, Any] = {
            "index": i,
            "final": final,
            "plaintext_length": len(part),
            "nonce": chunk_nonce(i, final).hex(),
            "cipher_offset": key.cipher_offset(i),
            "ciphertext_length": len(sealed),
            "ciphertext_sha256": sha256(sealed).hex(),
            "ciphertext_first_32": sealed[:32].hex(),
            "tag": sealed[-TAG_SIZE:].hex(),
        }
        if len(sealed) <= 64:
            entry["plaintext"] = part.hex()
            entry["ciphertext"] = sealed.hex()
        chunks.append(entry)
    verifier.finish()
    last = key.chunks - 1
    last_plain = plaintext[last * chunk_size :]
    negative = [
        (
            "the final chunk opened with final flag 0",
            key.attachment_id,
            last,
            False,
            sealed_all[last],
        ),
        ("the final chunk opened at index 0", key.attachment_id, 0, True, sealed_all[last]),
        (
            "the final chunk opened as a chunk of another attachment id",
            seed("attachment/other-id", 16),
            last,
            True,
            sealed_all[last],
        ),
        (
            "the final chunk with its first byte flipped",
            key.attachment_id,
            last,
            True,
            bytes([sealed_all[last][0] ^ 1]) + sealed_all[last][1:],
        ),
        (
            "the last chunk sealed without the final flag, opened as final",
            key.attachment_id,
            last,
            True,
            cipher.seal(last, last_plain, final=False),
        ),
        (
            "the final chunk cut by one byte",
            key.attachment_id,
            last,
            True,
            sealed_all[last][:-1],
        ),
    ]
    refusals = []
    for name, aid, index, final, data in negative:
        try:
            ChunkCipher(aid, key.key).open(index, data, final=final)
        except TamperedChunkError:
            pass
        else:
            raise AssertionError(name)
        refusals.append(
            {
                "name": name,
                "attachment_id": aid.hex(),
                "index": index,
                "final": final,
                "ciphertext": data.hex(),
                "error": "TamperedChunkError",
                "status": TamperedChunkError.status,
            }
        )
    return {
        "description": "An evidence file as a STREAM of ChaCha20-Poly1305 chunks: chunk i "
        "(plaintext bytes [i*chunk_size, (i+1)*chunk_size)) is sealed under the attachment's "
        "key with nonce = i as 11 bytes big-endian || final flag (0x01 for the last chunk, "
        "else 0x00) and associated data PAE(context, attachment_id); ciphertext = "
        "encrypted chunk || 16-byte tag. Chunks are stored and sent as they are, "
        "concatenated in index order.",
        "encoding": ENCODING_NOTE,
        "context": CTX_ATTACHMENT_CHUNK.decode(),
        "plaintext_rule": "bytes(i % 251 for i in range(size))",
        "attachment_key": {
            "attachment_id": key.attachment_id.hex(),
            "key": key.key.hex(),
            "chunk_size": key.chunk_size,
            "size": key.size,
            "sha256": key.sha256.hex(),
            "name": key.name,
        },
        "attachment_key_bytes": key.to_bytes().hex(),
        "header_attachment_digest": key.digest().SerializeToString(deterministic=True).hex(),
        "associated_data": ad.hex(),
        "chunks": chunks,
        "cipher_size": key.cipher_size,
        "ciphertext_stream_sha256": sha256(b"".join(sealed_all)).hex(),
        "file_sha256": sha256(plaintext).hex(),
        "negative": refusals,
    }


CASE_REF = "FR-OCRTEH-2026-00001"


def vector_form() -> Any:
    """A short MLA request of FR-OCRTEH to NL-POLITIE."""
    return forms.form_from_mapping(
        forms.CaseType.MLA,
        {
            "requesting_authority": {"agency_id": SENDER_ID, "name": "OCRTEH"},
            "requested_authority": {"agency_id": HYBRID_ID, "name": "Politie"},
            "legal_basis": ["untoc-art18", "palermo-protocol"],
            "offences": [
                {
                    "description": "Trafficking in human beings for sexual exploitation.",
                    "legal_provision": "Code pénal, art. 225-4-1",
                }
            ],
            "summary_of_facts": "Three women recruited in Rotterdam were exploited in Lyon.",
            "assistance_sought": ["banking-records"],
            "assistance_details": "Statements of account NL00 BANK 0123 4567 89 since 2025.",
            "urgency": "ordinary",
            "contact_officer": {"name": "Cdt Claire Roux", "email": "c.roux@ocrteh.example"},
            "language": "fr",
        },
        now_ms=T0,
    )


def case_header(sender: str, message_type: MessageType, at: int, n: int) -> Header:
    """A header with the fields the case checks read; keys and ids are placeholders."""
    return Header(
        message_id=uuid7(at, seed(f"case/message-id/{n}", 10)),
        sender=sender,
        recipient=HYBRID_ID if sender == SENDER_ID else SENDER_ID,
        message_type=message_type,
        created_at=at,
        expires_at=at + 30 * DAY,
        sender_key_id=(FR_SIGNING if sender == SENDER_ID else NL_SIGNING).key_id,
        recipient_key_id=key_id("ed25519", bytes(32)),
        suite=Suite.X25519_SHA256_CHACHA20POLY1305,
        case_ref=CASE_REF,
    )


def case_error(check: Callable[[], object]) -> dict[str, str]:
    try:
        check()
    except errors.MlaxError as e:
        return {"error": type(e).__name__, "status": e.status}
    raise AssertionError("the check passed")


def statistics_vectors() -> dict[str, Any]:
    """A statistics release's canonical JSON and digest, and a supervisor's approval of it."""
    from exchange.stats import release as rel
    from exchange.stats.tables import TABLES_BY_NAME

    table = TABLES_BY_NAME["cases_by_peer"]
    plans = rel.plan((table,), 1.0, 90)
    params = rel.Parameters(
        SENDER_ID, rel.Period.parse("2026-01-01", "2026-06-30"), 1.0, 11, 90, "opendp 0.16.0"
    )
    released = {table.name: {("mla", "sent", HYBRID_ID): 14}}
    release_id = "0192f0c4-7b7e-7cc0-9a39-2f1b5c3d4e5f"
    doc = rel.document(release_id, params, plans, released, (HYBRID_ID,))
    body = rel.canonical(doc)
    digest = rel.digest(doc)
    supervisor, approved_at = "cdt.roux", T0 + 3 * HOUR
    scalar = int.from_bytes(seed("FR-OCRTEH/supervisor/cdt.roux"), "big") % (2**255) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    message = rel.approval_message(release_id, digest, supervisor, approved_at)
    signature = key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    key.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "description": (
            "A statistics release (docs/statistics.md) as it travels in a STATISTICS_RELEASE "
            "envelope: its canonical JSON (sorted keys, no spaces, UTF-8) and SHA-256 digest, "
            "and the message a supervisor signs with ECDSA P-256/SHA-256 to approve it: "
            'PAE("mlax/v1/stats/approval", release_id, digest, supervisor, at as 8 bytes '
            "big-endian)."
        ),
        "context": "mlax/v1/stats/approval",
        "release_json": body.decode(),
        "release_sha256": digest.hex(),
        "approval": {
            "release_id": release_id,
            "supervisor": supervisor,
            "at": approved_at,
            "message": message.hex(),
            "public_key_pem": public.decode(),
            "signature": signature.hex(),
        },
    }


def case_transition_vectors() -> dict[str, Any]:
    form = vector_form()
    digest = casework.form_digest(form)
    supervisor, approved_at = "cdt.roux", T0 + 3 * HOUR
    scalar = int.from_bytes(seed("FR-OCRTEH/supervisor/cdt.roux"), "big") % (2**255) + 1
    supervisor_key = ec.derive_private_key(scalar, ec.SECP256R1())
    message = casework.approval_message(CASE_REF, digest, supervisor, approved_at)
    signature = supervisor_key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    supervisor_key.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
    approval = cpb.CaseApproval(supervisor=supervisor, at=approved_at, form_digest=digest)

    case = Case(CASE_REF, SENDER_ID, HYBRID_ID, Urgency.ORDINARY, opened_at=T0 + HOUR)
    steps: list[tuple[str, Action, str, str, Any]] = [
        ("submission", Action.SUBMIT, SENDER_ID, "officer.dupont", None),
        (
            "acknowledgement",
            Action.ACKNOWLEDGE,
            HYBRID_ID,
            "insp.de.vries",
            forms.details_from_mapping(Action.ACKNOWLEDGE, {"reference": "NL-LE-2026-0412"}),
        ),
        (
            "refusal",
            Action.REFUSE,
            HYBRID_ID,
            "insp.de.vries",
            forms.details_from_mapping(
                Action.REFUSE,
                {
                    "grounds": ["no-dual-criminality"],
                    "explanation": "The conduct described is not an offence here.",
                },
            ),
        ),
    ]
    transitions: list[dict[str, Any]] = []
    seq, head = 0, b""
    received: casework.Applied | None = None
    for n, (name, action, sender, officer, details) in enumerate(steps, start=1):
        at = approved_at + n * MINUTE
        data, applied = casework.build(
            case,
            action=action,
            party_agency=sender,
            seq=seq + 1,
            prev_digest=head,
            at_ms=at,
            officer=officer,
            details=details,
            form=form if action is Action.SUBMIT else None,
            approval=approval if action is Action.SUBMIT else None,
        )
        message_type = (
            MessageType.MLA_REQUEST if action is Action.SUBMIT else MessageType.CASE_TRANSITION
        )
        header = case_header(sender, message_type, at, n)
        # The receiving party's check accepts it and reaches the same state and digest.
        received = (
            casework.check_submission(header, data)
            if received is None
            else casework.check_transition(received.case, seq, head, header, data)
        )
        assert (received.case.state, received.digest) == (applied.case.state, applied.digest)
        ctx_prefix = pae(casework.CTX_CASE_TRANSITION, data)[: -len(data)]
        transitions.append(
            {
                "name": name,
                "sender": sender,
                "message_type": epb.MessageType.Name(message_type.value),
                "fields": {
                    "case_ref": CASE_REF,
                    "action": cpb.CaseAction.Name(casework.ACTION_TO_WIRE[action]),
                    "seq": seq + 1,
                    "prev_digest": head.hex(),
                    "at": at,
                    "officer": officer,
                },
                "body": data.hex(),
                "digest_input_prefix": ctx_prefix.hex(),
                "digest": applied.digest.hex(),
                "state_after": applied.case.state.value,
            }
        )
        case, seq, head = applied.case, seq + 1, applied.digest
    # What a node holding the case at step 2 (acknowledged) refuses, and with which error.
    assert received is not None
    at_two = _replay_to(2, transitions)
    refusal = bytes.fromhex(transitions[2]["body"])
    refusal_at = transitions[2]["fields"]["at"]

    def refusal_body(**changes: Any) -> bytes:
        body = casework.parse_body(refusal)
        for field, value in changes.items():
            setattr(body, field, value)
        return body.SerializeToString(deterministic=True)

    two_digest = bytes.fromhex(transitions[1]["digest"])
    one_digest = bytes.fromhex(transitions[0]["digest"])
    negatives = [
        ("prev_digest names step 1, not step 2", refusal_body(prev_digest=one_digest), HYBRID_ID),
        (
            "seq 2 again (already used)",
            refusal_body(seq=2, prev_digest=one_digest),
            HYBRID_ID,
        ),
        ("seq 4 (step 3 not yet applied here)", refusal_body(seq=4), HYBRID_ID),
        ("sent by the requesting agency, not entitled to refuse", refusal, SENDER_ID),
    ]
    refused = []
    for name, data, sender in negatives:
        header = case_header(sender, MessageType.CASE_TRANSITION, refusal_at, 99)
        outcome = case_error(
            partial(casework.check_transition, at_two, 2, two_digest, header, data)
        )
        refused.append(
            {
                "name": name,
                "holder_seq": 2,
                "holder_head_digest": two_digest.hex(),
                "sender": sender,
                "at": refusal_at,
                "body": data.hex(),
                **outcome,
            }
        )
    return {
        "description": "A case's transitions as sealed bodies (CaseTransitionBody, "
        "deterministic protobuf) forming a hash chain: digest = SHA-256(PAE("
        '"mlax/v1/case/transition", body)), and each body\'s prev_digest is the previous '
        "digest. The submission carries the form and the supervisor's approval; the "
        "approval message is what the supervisor signs with ECDSA P-256/SHA-256.",
        "encoding": ENCODING_NOTE,
        "contexts": {
            "transition": casework.CTX_CASE_TRANSITION.decode(),
            "approval": casework.CTX_CASE_APPROVAL.decode(),
        },
        "case_ref": CASE_REF,
        "requesting": SENDER_ID,
        "requested": HYBRID_ID,
        "form": form.SerializeToString(deterministic=True).hex(),
        "form_digest": digest.hex(),
        "approval": {
            "case_ref": CASE_REF,
            "form_digest": digest.hex(),
            "supervisor": supervisor,
            "at": approved_at,
            "at_bytes": approved_at.to_bytes(8, "big", signed=True).hex(),
            "message": message.hex(),
            "supervisor_private_scalar": scalar.to_bytes(32, "big").hex(),
            "supervisor_public_key": supervisor_key.public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            .hex(),
            "signature_rfc6979_der": signature.hex(),
        },
        "transitions": transitions,
        "negative": refused,
    }


def _replay_to(steps: int, transitions: list[dict[str, Any]]) -> Case:
    """The case as a node holds it after the first `steps` transitions of the vector."""
    applied: casework.Applied | None = None
    for n, t in enumerate(transitions[:steps], start=1):
        message_type = MessageType(epb.MessageType.Value(t["message_type"]))
        header = case_header(t["sender"], message_type, t["fields"]["at"], n)
        data = bytes.fromhex(t["body"])
        applied = (
            casework.check_submission(header, data)
            if applied is None
            else casework.check_transition(
                applied.case, n - 1, bytes.fromhex(transitions[n - 2]["digest"]), header, data
            )
        )
    assert applied is not None
    return applied.case


# --- HPKE: reuse what is recorded -----------------------------------------------------------


def recorded_ciphertexts() -> dict[str, bytes]:
    """HPKE ciphertexts in the committed vectors, by the name `build_envelope` gives them."""
    found: dict[str, bytes] = {}
    for short, file in (
        ("x25519", "envelope_x25519.json"),
        ("hybrid", "envelope_mlkem768x25519.json"),
    ):
        path = VECTORS / file
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        found[f"{short}/main"] = bytes.fromhex(doc["ciphertext"])
        for case in doc.get("negative", []):
            if case["error"] == "InnerSignatureError":
                env = Envelope.from_bytes(bytes.fromhex(case["envelope"]))
                found[f"{short}/bad-inner"] = env.ciphertext
    return found


def make_encryptor(recorded: dict[str, bytes], fresh: bool, check: bool) -> Encryptor:
    def encrypt(name: str, suite: Suite, sealed: bytes, to: EncKey, info: bytes) -> bytes:
        old = None if fresh else recorded.get(name)
        if old is not None:
            try:
                if suite.hpke.decrypt(old, to.private, info=info) == sealed:
                    return old
            except (InvalidTag, ValueError):
                pass
        if check:
            raise SystemExit(f"{name}: the recorded HPKE ciphertext no longer fits its inputs")
        pub = load_encryption_key(PublicKey(to.algorithm, to.public, 0, 1))
        return suite.hpke.encrypt(sealed, pub, info=info)

    return encrypt


# --- main -----------------------------------------------------------------------------------


def build(encrypt: Encryptor) -> dict[str, dict[str, Any]]:
    directory = directory_v1()
    signed = signed_by(directory.to_bytes(), ADMINS[:2]).to_bytes()
    trusted = verify_directory(signed, None, T0)

    created = T0 + 1_000
    request = Header(
        message_id=uuid7(created, seed("hybrid/message-id", 10)),
        sender=SENDER_ID,
        recipient=HYBRID_ID,
        message_type=MessageType.MLA_REQUEST,
        created_at=created,
        expires_at=created + 30 * DAY,
        sender_key_id=FR_SIGNING.key_id,
        recipient_key_id=NL_HYBRID.to_json()["key_id"],
        suite=Suite.MLKEM768X25519_SHA256_CHACHA20POLY1305,
        case_ref="FR-2026-0001",
        handling_codes=(
            HandlingCode.NO_ONWARD_TRANSMISSION,
            HandlingCode.RESTRICTED_TO_NAMED_OFFICERS,
        ),
        attachments=(AttachmentDigest("déclaration-témoin.pdf", sha256(b"witness statement"), 17),),
        restricted_to=("officer.dupont", "officer.martin"),
    )
    request_body = body_content(
        "Demande d'entraide – dossier FR-2026-0001",
        "Please confirm whether the person described in the attached statement is known.",
    )
    hybrid = envelope_vectors(FR, NL, request, request_body, trusted, encrypt, created + MINUTE)
    hybrid["negative"].extend(sender_key_refusals(trusted, request, created + MINUTE))
    hybrid["bundle_cases"] = bundle_cases(trusted, request)

    replied = T0 + 2 * HOUR
    reply = Header(
        message_id=uuid7(replied, seed("x25519/message-id", 10)),
        sender=HYBRID_ID,
        recipient=SENDER_ID,
        message_type=MessageType.REPLY,
        created_at=replied,
        expires_at=replied + 30 * DAY,
        sender_key_id=NL_SIGNING.key_id,
        recipient_key_id=FR_X25519.to_json()["key_id"],
        suite=Suite.X25519_SHA256_CHACHA20POLY1305,
        case_ref="FR-2026-0001",
        in_reply_to=request.message_id,
    )
    reply_body = body_content("Re: FR-2026-0001", "No record held.")
    x25519_doc = envelope_vectors(NL, FR, reply, reply_body, trusted, encrypt, replied + MINUTE)

    return {
        "pae.json": pae_vectors(),
        "key_ids.json": key_id_vectors(),
        "directory.json": directory_vectors(),
        "envelope_mlkem768x25519.json": hybrid,
        "envelope_x25519.json": x25519_doc,
        "receipt.json": receipt_vectors(hybrid, trusted),
        "attachment.json": attachment_vectors(),
        "case_transition.json": case_transition_vectors(),
        "statistics.json": statistics_vectors(),
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/vectors is stale")
    parser.add_argument("--fresh", action="store_true", help="encrypt afresh with HPKE")
    args = parser.parse_args(argv)
    docs = build(make_encryptor(recorded_ciphertexts(), args.fresh, args.check))
    stale = []
    for name, doc in docs.items():
        path = VECTORS / name
        text = render(doc)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        VECTORS.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print("stale vectors: " + ", ".join(stale), file=sys.stderr)
        return 1
    total = sum(len(render(d).encode()) for d in docs.values())
    print(f"{'checked' if args.check else 'wrote'} {len(docs)} files, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
