"""Key lifecycle: agency identities, the encrypted keystore, rotation, revocation, admin keys.

The node uses `load_identity` (decrypted keys for sealing, opening and TLS), `read_card`
and `read_signed_directory`; the `mlax keys` and `mlax directory` commands use the rest.
"""

from keys.admin import AdminSigner, create_admin, decode_public_key, load_admin
from keys.card_file import card_from_json, card_to_json, read_card_file
from keys.directory_file import (
    parse_signed_directory,
    read_signed_directory,
    write_directory_file,
)
from keys.identity import AgencyIdentity, create_identity, load_identity, read_card
from keys.keystore import STRONG_KDF, TEST_KDF, KdfParams
from keys.rotation import RotationKind, revoke_key, rotate_keys

__all__ = [
    "STRONG_KDF",
    "TEST_KDF",
    "AdminSigner",
    "AgencyIdentity",
    "KdfParams",
    "RotationKind",
    "card_from_json",
    "card_to_json",
    "create_admin",
    "create_identity",
    "decode_public_key",
    "load_admin",
    "load_identity",
    "parse_signed_directory",
    "read_card",
    "read_card_file",
    "read_signed_directory",
    "revoke_key",
    "rotate_keys",
    "write_directory_file",
]
