"""The one Ed25519 verification every signature check in MLAX goes through."""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`.

    Malformed keys and signatures are simply invalid: callers raise their own error.
    """
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE or len(signature) != ED25519_SIGNATURE_SIZE:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except BadSignatureError:
        return False
    return True
