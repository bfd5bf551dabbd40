"""The encrypted key file: one private key per JSON file, sealed under a passphrase.

The passphrase is stretched with Argon2id (a fresh 16-byte salt per file, parameters
stored in the file) into a 32-byte key for ChaCha20-Poly1305 with a random 12-byte
nonce. The AEAD's associated data is a PAE of every metadata field (format, key id,
algorithm, purpose, label, public key, KDF parameters), so editing or swapping any of
them makes decryption fail. Files are 0600 and written atomically.

`MLAX_KDF_PROFILE=test` selects cheap Argon2id parameters: it exists only so test
suites stay fast, and is never for real keys.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from exchange.encoding import CTX_KEYFILE, key_id, pae
from exchange.errors import KeystoreError, PassphraseError
from keys.atomic import PRIVATE_FILE_MODE, write_atomic
from keys.material import Algorithm, KeyMaterial, Purpose

KEYFILE_FORMAT = "mlax-keyfile/v1"
KDF_NAME = "argon2id"
AEAD_NAME = "chacha20-poly1305"
SALT_BYTES = 16
NONCE_BYTES = 12
MAX_KEYFILE_BYTES = 64 * 1024

KDF_PROFILE_ENV = "MLAX_KDF_PROFILE"


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost: memory in KiB, passes, lanes. The default is for real keys."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 1

    def check(self, source: str) -> None:
        """Refuse costs outside sane bounds: too weak to protect, or large enough to DoS us."""
        if not (
            1 <= self.lanes <= 16
            and 8 * self.lanes <= self.memory_kib <= 4 * 1024 * 1024
            and 1 <= self.iterations <= 64
        ):
            raise KeystoreError(f"{source} has Argon2id parameters outside the accepted range.")


STRONG_KDF = KdfParams()
# For test suites only (see module docstring): still Argon2id, a fraction of the cost.
TEST_KDF = KdfParams(memory_kib=64, iterations=1, lanes=1)
_PROFILES = {"strong": STRONG_KDF, "test": TEST_KDF}


def kdf_params_from_env() -> KdfParams:
    """STRONG_KDF, unless MLAX_KDF_PROFILE names another profile (`test`, for test suites)."""
    name = os.environ.get(KDF_PROFILE_ENV, "strong") or "strong"
    try:
        return _PROFILES[name]
    except KeyError:
        raise KeystoreError(
            f"{KDF_PROFILE_ENV}={name!r} is not a KDF profile; use one of {sorted(_PROFILES)}."
        ) from None


@dataclass(frozen=True)
class KeyFileHeader:
    """The cleartext metadata of a key file; `label` names the owner (agency or admin)."""

    key_id: str
    algorithm: Algorithm
    purpose: Purpose
    label: str
    public_key: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return base64.b64decode(value, validate=True)


def _aad(header: KeyFileHeader, salt: bytes, kdf: KdfParams) -> bytes:
    return pae(
        CTX_KEYFILE,
        KEYFILE_FORMAT.encode(),
        header.key_id.encode(),
        header.algorithm.value.encode(),
        header.purpose.value.encode(),
        header.label.encode(),
        header.public_key,
        KDF_NAME.encode(),
        salt,
        str(kdf.memory_kib).encode(),
        str(kdf.iterations).encode(),
        str(kdf.lanes).encode(),
        AEAD_NAME.encode(),
    )


def derive_key(passphrase: bytes, salt: bytes, kdf: KdfParams) -> bytes:
    """32 bytes from a passphrase with Argon2id at `kdf`'s cost (key files, backup seals)."""
    return Argon2id(
        salt=salt,
        length=32,
        iterations=kdf.iterations,
        lanes=kdf.lanes,
        memory_cost=kdf.memory_kib,
    ).derive(passphrase)


def seal_key(
    material: KeyMaterial,
    purpose: Purpose,
    label: str,
    passphrase: bytes,
    kdf: KdfParams | None = None,
) -> bytes:
    """The key file bytes (JSON) holding `material` encrypted under `passphrase`."""
    if not passphrase:
        raise KeystoreError("The key passphrase must not be empty.")
    kdf = kdf or kdf_params_from_env()
    kdf.check("The requested KDF profile")
    header = KeyFileHeader(material.key_id, material.algorithm, purpose, label, material.public_key)
    salt = secrets.token_bytes(SALT_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    aead = ChaCha20Poly1305(derive_key(passphrase, salt, kdf))
    ciphertext = aead.encrypt(nonce, material.secret, _aad(header, salt, kdf))
    doc = {
        "format": KEYFILE_FORMAT,
        "key_id": header.key_id,
        "algorithm": header.algorithm.value,
        "purpose": header.purpose.value,
        "label": header.label,
        "public_key": _b64(header.public_key),
        "kdf": {
            "name": KDF_NAME,
            "salt": _b64(salt),
            "memory_kib": kdf.memory_kib,
            "iterations": kdf.iterations,
            "lanes": kdf.lanes,
        },
        "aead": {"name": AEAD_NAME, "nonce": _b64(nonce)},
        "ciphertext": _b64(ciphertext),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def write_key_file(
    path: Path,
    material: KeyMaterial,
    purpose: Purpose,
    label: str,
    passphrase: bytes,
    kdf: KdfParams | None = None,
) -> KeyFileHeader:
    """Create the key file `path` (0600, atomically); refuses to replace an existing file."""
    write_atomic(
        path,
        seal_key(material, purpose, label, passphrase, kdf),
        mode=PRIVATE_FILE_MODE,
        overwrite=False,
    )
    return KeyFileHeader(material.key_id, material.algorithm, purpose, label, material.public_key)


@dataclass(frozen=True)
class _Parsed:
    header: KeyFileHeader
    salt: bytes
    kdf: KdfParams
    nonce: bytes
    ciphertext: bytes


def _parse(data: bytes, source: str) -> _Parsed:
    if len(data) > MAX_KEYFILE_BYTES:
        raise KeystoreError(f"{source} is too large to be an MLAX key file.")
    try:
        doc: Any = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != KEYFILE_FORMAT:
            raise ValueError("format")
        kdf_doc, aead_doc = doc["kdf"], doc["aead"]
        if kdf_doc["name"] != KDF_NAME or aead_doc["name"] != AEAD_NAME:
            raise ValueError("construction")
        numbers = (kdf_doc["memory_kib"], kdf_doc["iterations"], kdf_doc["lanes"])
        if not all(type(n) is int for n in numbers):
            raise ValueError("kdf numbers")
        header = KeyFileHeader(
            key_id=str(doc["key_id"]),
            algorithm=Algorithm(doc["algorithm"]),
            purpose=Purpose(doc["purpose"]),
            label=str(doc["label"]),
            public_key=_unb64(doc["public_key"]),
        )
        parsed = _Parsed(
            header=header,
            salt=_unb64(kdf_doc["salt"]),
            kdf=KdfParams(*numbers),
            nonce=_unb64(aead_doc["nonce"]),
            ciphertext=_unb64(doc["ciphertext"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise KeystoreError(f"{source} is not a readable MLAX key file.") from None
    parsed.kdf.check(source)
    if len(parsed.salt) < SALT_BYTES or len(parsed.nonce) != NONCE_BYTES:
        raise KeystoreError(f"{source} has a malformed salt or nonce.")
    if key_id(header.algorithm.value, header.public_key) != header.key_id:
        raise KeystoreError(f"{source} is corrupt: its key id does not match its public key.")
    return parsed


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(MAX_KEYFILE_BYTES + 1)
    except FileNotFoundError:
        raise KeystoreError(f"There is no key file at {path}.") from None
    except IsADirectoryError:
        raise KeystoreError(f"{path} is a directory, not a key file.") from None
    except PermissionError:
        raise KeystoreError(f"The key file {path} is not readable by this user.") from None


def read_key_header(path: Path) -> KeyFileHeader:
    """The cleartext metadata of the key file `path`, without decrypting it."""
    return _parse(_read(path), str(path)).header


def _decrypt(parsed: _Parsed, passphrase: bytes, source: str) -> KeyMaterial:
    header = parsed.header
    aead = ChaCha20Poly1305(derive_key(passphrase, parsed.salt, parsed.kdf))
    try:
        secret = aead.decrypt(
            parsed.nonce, parsed.ciphertext, _aad(header, parsed.salt, parsed.kdf)
        )
    except InvalidTag:
        # Indistinguishable by design from a tampered file; the passphrase is the usual cause.
        raise PassphraseError(f"The passphrase does not decrypt {source}.") from None
    material = KeyMaterial.from_secret(header.algorithm, secret)
    if material.public_key != header.public_key:
        raise KeystoreError(f"{source} is corrupt: its private key does not match its public key.")
    return material


def open_key(data: bytes, passphrase: bytes, source: str) -> tuple[KeyFileHeader, KeyMaterial]:
    """Decrypt key file bytes; PassphraseError when the passphrase (or an edit) breaks the tag."""
    parsed = _parse(data, source)
    return parsed.header, _decrypt(parsed, passphrase, source)


def read_key_file(
    path: Path, passphrase: bytes, purpose: Purpose | None = None
) -> tuple[KeyFileHeader, KeyMaterial]:
    """Read and decrypt the key file `path`, optionally requiring its purpose."""
    parsed = _parse(_read(path), str(path))
    if purpose is not None and parsed.header.purpose is not purpose:
        raise KeystoreError(f"{path} holds a {parsed.header.purpose.noun}, not a {purpose.noun}.")
    return parsed.header, _decrypt(parsed, passphrase, str(path))
