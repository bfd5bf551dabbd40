"""The public metadata of an agency identity directory (`identity.json`) and its layout.

An identity directory (0700) holds:

* `identity.json`: agency id, name, country, endpoint, every key (id, algorithm,
  purpose, public key, validity, key file name) and the revocations. It is the source
  of truth for the agency card; it holds no secret.
* `card.json`: the agency card exported from it, to hand to the federation admins.
* `tls.crt`: the node's self-signed TLS certificate (PEM).
* `tls-next.crt`: during a TLS renewal (`mlax keys renew-tls`), the next certificate.
* one encrypted key file (0600) per private key: `<purpose>-<algorithm>-<key id>.key`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from exchange.agency import AgencyCard, PublicKey, RevokedKey
from exchange.errors import KeystoreError
from keys.atomic import PUBLIC_FILE_MODE, write_atomic
from keys.card_file import card_to_json
from keys.material import Algorithm, Purpose
from keys.tls import certificate_spki, spki_sha256

IDENTITY_FORMAT = "mlax-identity/v1"
IDENTITY_FILE = "identity.json"
CARD_FILE = "card.json"
TLS_CERTIFICATE_FILE = "tls.crt"
NEXT_TLS_CERTIFICATE_FILE = "tls-next.crt"
MAX_IDENTITY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class KeyRecord:
    """One key of the agency as identity.json lists it (validity in unix ms, end exclusive)."""

    key_id: str
    algorithm: Algorithm
    purpose: Purpose
    public_key: bytes
    not_before: int
    not_after: int
    file: str

    def public(self) -> PublicKey:
        """The key as the directory publishes it (signing and encryption keys only)."""
        published = self.algorithm.published
        if published is None:
            raise KeystoreError(f"Key {self.key_id} ({self.algorithm.value}) is never published.")
        return PublicKey(published, self.public_key, self.not_before, self.not_after)

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "algorithm": self.algorithm.value,
            "purpose": self.purpose.value,
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "not_before": self.not_before,
            "not_after": self.not_after,
            "file": self.file,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> KeyRecord:
        for name in ("not_before", "not_after"):
            if type(doc[name]) is not int:
                raise ValueError(name)
        file = str(doc["file"])
        # identity.json only ever names files beside it; anything else is an edit to refuse.
        if Path(file).name != file or file.startswith("."):
            raise ValueError("file")
        return cls(
            key_id=str(doc["key_id"]),
            algorithm=Algorithm(doc["algorithm"]),
            purpose=Purpose(doc["purpose"]),
            public_key=base64.b64decode(doc["public_key"], validate=True),
            not_before=doc["not_before"],
            not_after=doc["not_after"],
            file=file,
        )


def key_file_name(purpose: Purpose, algorithm: Algorithm, kid: str) -> str:
    return f"{purpose.value}-{algorithm.value}-{kid}.key"


@dataclass(frozen=True)
class IdentityRecord:
    """Everything public about an agency identity: the content of identity.json."""

    agency_id: str
    name: str
    country: str
    endpoint: str
    keys: tuple[KeyRecord, ...]
    revocations: tuple[RevokedKey, ...] = ()

    def key(self, kid: str) -> KeyRecord | None:
        return next((k for k in self.keys if k.key_id == kid), None)

    def revocation(self, kid: str) -> RevokedKey | None:
        return next((r for r in self.revocations if r.key_id == kid), None)

    def of_purpose(self, purpose: Purpose) -> tuple[KeyRecord, ...]:
        return tuple(k for k in self.keys if k.purpose is purpose)

    def tls_key_of(self, certificate_pem: bytes) -> KeyRecord:
        """The TLS key whose public key `certificate_pem` carries."""
        spki = certificate_spki(certificate_pem)
        key = next((k for k in self.of_purpose(Purpose.TLS) if k.public_key == spki), None)
        if key is None:
            raise KeystoreError(
                f"The identity of {self.agency_id} has no key for its TLS certificate."
            )
        return key

    def with_keys(self, keys: tuple[KeyRecord, ...]) -> IdentityRecord:
        return replace(self, keys=keys)

    def card(self, tls_certificate_pem: bytes, next_tls_certificate_pem: bytes = b"") -> AgencyCard:
        """The agency card this identity publishes; validates every field."""
        nxt = next_tls_certificate_pem
        return AgencyCard(
            agency_id=self.agency_id,
            name=self.name,
            country=self.country,
            endpoint=self.endpoint,
            tls_spki_sha256=spki_sha256(tls_certificate_pem),
            tls_certificate_pem=tls_certificate_pem,
            signing_keys=tuple(k.public() for k in self.of_purpose(Purpose.SIGNING)),
            encryption_keys=tuple(k.public() for k in self.of_purpose(Purpose.ENCRYPTION)),
            revoked_keys=self.revocations,
            next_tls_spki_sha256=spki_sha256(nxt) if nxt else b"",
            next_tls_certificate_pem=nxt,
        )

    def to_json(self) -> str:
        doc = {
            "format": IDENTITY_FORMAT,
            "agency_id": self.agency_id,
            "name": self.name,
            "country": self.country,
            "endpoint": self.endpoint,
            "tls_certificate": TLS_CERTIFICATE_FILE,
            "keys": [k.to_json() for k in self.keys],
            "revocations": [
                {"key_id": r.key_id, "revoked_at": r.revoked_at, "reason": r.reason}
                for r in self.revocations
            ],
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, data: bytes, source: str) -> IdentityRecord:
        try:
            doc: Any = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != IDENTITY_FORMAT:
                raise ValueError("format")
            revocations = []
            for r in doc["revocations"]:
                if type(r["revoked_at"]) is not int:
                    raise ValueError("revoked_at")
                revocations.append(RevokedKey(str(r["key_id"]), r["revoked_at"], str(r["reason"])))
            return cls(
                agency_id=str(doc["agency_id"]),
                name=str(doc["name"]),
                country=str(doc["country"]),
                endpoint=str(doc["endpoint"]),
                keys=tuple(KeyRecord.from_json(k) for k in doc["keys"]),
                revocations=tuple(revocations),
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise KeystoreError(f"{source} is not a readable MLAX identity file.") from None


def read_identity_record(directory: Path) -> IdentityRecord:
    """The identity.json of `directory`; KeystoreError when there is none or it is corrupt."""
    path = directory / IDENTITY_FILE
    try:
        with path.open("rb") as f:
            data = f.read(MAX_IDENTITY_BYTES + 1)
    except FileNotFoundError:
        raise KeystoreError(
            f"{directory} holds no agency identity (no {IDENTITY_FILE}); "
            "create one with `mlax keys init`."
        ) from None
    if len(data) > MAX_IDENTITY_BYTES:
        raise KeystoreError(f"{path} is too large to be an MLAX identity file.")
    return IdentityRecord.from_json(data, str(path))


def read_tls_certificate(directory: Path) -> bytes:
    path = directory / TLS_CERTIFICATE_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeystoreError(f"The TLS certificate {path} is missing.") from None


def read_next_tls_certificate(directory: Path) -> bytes:
    """The next certificate of a TLS renewal under way, or b"" when there is none."""
    try:
        return (directory / NEXT_TLS_CERTIFICATE_FILE).read_bytes()
    except FileNotFoundError:
        return b""


def write_public_files(
    directory: Path,
    record: IdentityRecord,
    tls_certificate_pem: bytes,
    *,
    create: bool = False,
    next_tls_certificate_pem: bytes | None = None,
) -> AgencyCard:
    """Validate the card, then write identity.json and re-export card.json from it.

    With `create`, an existing identity.json is never replaced. The card lists the next
    TLS certificate `next_tls_certificate_pem`, by default the one in the directory.
    """
    nxt = (
        read_next_tls_certificate(directory)
        if next_tls_certificate_pem is None
        else next_tls_certificate_pem
    )
    card = record.card(tls_certificate_pem, nxt)
    write_atomic(
        directory / IDENTITY_FILE,
        record.to_json().encode(),
        mode=PUBLIC_FILE_MODE,
        overwrite=not create,
    )
    write_atomic(
        directory / CARD_FILE, card_to_json(card).encode(), mode=PUBLIC_FILE_MODE, overwrite=True
    )
    return card
