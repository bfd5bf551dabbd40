"""Federation administrator keys: the Ed25519 keys that sign the directory, k of n.

An administrator directory holds `admin.key` (the encrypted private key, its label is
the administrator's name) and `admin.pub` (the base64 public key, to hand to whoever
builds the directory).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from exchange.directory import AdminKey
from exchange.errors import InvalidFieldError, KeystoreError
from keys.atomic import PUBLIC_FILE_MODE, ensure_private_dir, write_atomic
from keys.keystore import KdfParams, read_key_file, write_key_file
from keys.material import Algorithm, KeyMaterial, Purpose

ADMIN_KEY_FILE = "admin.key"
ADMIN_PUBLIC_FILE = "admin.pub"
MAX_ADMIN_NAME_CHARS = 200


@dataclass(frozen=True)
class AdminSigner:
    """A decrypted administrator key, ready to sign directories."""

    name: str
    signing_key: SigningKey

    @property
    def public(self) -> AdminKey:
        return AdminKey(self.name, bytes(self.signing_key.verify_key))


def encode_public_key(public_key: bytes) -> str:
    return base64.b64encode(public_key).decode("ascii")


def decode_public_key(text: str) -> bytes:
    """A 32-byte Ed25519 public key from its base64 form; InvalidFieldError otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InvalidFieldError(
            f"{text.strip()[:60]!r} is not an administrator public key (base64 of 32 bytes)."
        )
    return raw


def create_admin(
    directory: Path, name: str, passphrase: bytes, kdf: KdfParams | None = None
) -> AdminKey:
    """Create an administrator key in `directory`; refuses to replace an existing one."""
    if not name.strip() or len(name) > MAX_ADMIN_NAME_CHARS:
        raise InvalidFieldError(f"An administrator name must be 1 to {MAX_ADMIN_NAME_CHARS} chars.")
    if (directory / ADMIN_KEY_FILE).exists():
        raise KeystoreError(f"{directory} already holds an administrator key; it was not replaced.")
    ensure_private_dir(directory)
    material = KeyMaterial.generate(Algorithm.ED25519)
    write_key_file(directory / ADMIN_KEY_FILE, material, Purpose.ADMIN, name, passphrase, kdf)
    write_atomic(
        directory / ADMIN_PUBLIC_FILE,
        (encode_public_key(material.public_key) + "\n").encode(),
        mode=PUBLIC_FILE_MODE,
        overwrite=True,
    )
    return AdminKey(name, material.public_key)


def load_admin(path: Path, passphrase: bytes) -> AdminSigner:
    """Decrypt the administrator key file `path` (or the admin.key in a directory)."""
    if path.is_dir():
        path = path / ADMIN_KEY_FILE
    header, material = read_key_file(path, passphrase, Purpose.ADMIN)
    return AdminSigner(header.label, material.signing_key())
