"""RFC 9497 OPRF(ristretto255, SHA-512), mode 0x00 (base OPRF), over libsodium.

A holder keeps an OPRF key; it publishes `evaluate(sk, token)` for its records'
tokens, and answers a querier's `blind_evaluate` on blinded elements it cannot
read. The querier `finalize`s to exactly the values the holder published, so it can
compare without the holder learning which tokens it asked about (requirement P2),
and it cannot compute any value offline without the key (requirement P3).

No group arithmetic is written here: every operation on ristretto255 points and
scalars is a libsodium function (`crypto_core_ristretto255_*`,
`crypto_scalarmult_ristretto255`) reached through `rbcl`, which bundles libsodium.
This module only composes them as RFC 9497 section 3.3.1 specifies, with hash_to_group
and hash_to_scalar per RFC 9380 (expand_message_xmd with SHA-512) and RFC 9496. It is
checked against the RFC 9497 test vectors (A.1.1) in the tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys

import rbcl  # type: ignore[import-untyped]

from exchange.errors import InvalidFieldError, OversizedError

# rbcl writes its bundled libsodium to a temporary file and loads it from there, then
# leaves the file behind: once loaded, the mapping no longer needs it, so remove it
# instead of leaking one copy into the temporary directory per process.
with contextlib.suppress(OSError):
    _lib_path = getattr(sys.modules.get("rbcl._sodium"), "lib_path", None)
    if isinstance(_lib_path, str) and os.path.basename(_lib_path).startswith("tmp"):
        os.unlink(_lib_path)

MODE_OPRF = 0x00
SUITE_ID = b"ristretto255-SHA512"
CONTEXT = b"OPRFV1-" + bytes([MODE_OPRF]) + b"-" + SUITE_ID
ELEMENT_BYTES = 32
SCALAR_BYTES = 32
OUTPUT_BYTES = 64
MAX_INPUT_BYTES = 0xFFFF
_IDENTITY = bytes(ELEMENT_BYTES)


# --- RFC 9380 expand_message_xmd and the RFC 9497 / RFC 9496 hash functions -----------------


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512 (b_in_bytes 64, s_in_bytes 128)."""
    b_in_bytes, s_in_bytes = 64, 128
    ell = -(-length // b_in_bytes)
    if ell > 255 or length > 0xFFFF or len(dst) > 255:
        raise InvalidFieldError("expand_message_xmd was asked for an impossible length.")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(s_in_bytes) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha512(msg_prime).digest()
    blocks = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, blocks[-1], strict=True))
        blocks.append(hashlib.sha512(mixed + bytes([i]) + dst_prime).digest())
    return b"".join(blocks)[:length]


def hash_to_group(msg: bytes) -> bytes:
    """RFC 9497 HashToGroup for ristretto255: 64 uniform bytes mapped by libsodium."""
    uniform = expand_message_xmd(msg, b"HashToGroup-" + CONTEXT, 64)
    return bytes(rbcl.crypto_core_ristretto255_from_hash(uniform))


def hash_to_scalar(msg: bytes, dst: bytes | None = None) -> bytes:
    """RFC 9497 HashToScalar: 64 uniform bytes reduced modulo the group order."""
    uniform = expand_message_xmd(msg, dst or b"HashToScalar-" + CONTEXT, 64)
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(uniform))


# --- validation ----------------------------------------------------------------------------


def _check_input(data: bytes) -> None:
    if len(data) > MAX_INPUT_BYTES:
        raise OversizedError(f"An OPRF input is limited to {MAX_INPUT_BYTES} bytes.")


def _check_scalar(scalar: bytes, what: str) -> None:
    """A canonical, non-zero scalar (RFC 9497 DeserializeScalar plus the zero check)."""
    if len(scalar) != SCALAR_BYTES:
        raise InvalidFieldError(f"The {what} must be a {SCALAR_BYTES}-byte scalar.")
    reduced = bytes(rbcl.crypto_core_ristretto255_scalar_reduce(scalar + bytes(32)))
    if reduced != scalar:
        raise InvalidFieldError(f"The {what} is not a canonical ristretto255 scalar.")
    if scalar == bytes(SCALAR_BYTES):
        raise InvalidFieldError(f"The {what} must not be zero.")


def _check_element(element: bytes, what: str) -> None:
    """A canonical encoding of a ristretto255 element other than the identity.

    RFC 9497 DeserializeElement must refuse the identity: evaluating it would return the
    identity whatever the key, and a peer who sent it would learn nothing useful but
    would show that we skip the check.
    """
    if len(element) != ELEMENT_BYTES:
        raise InvalidFieldError(f"The {what} must be a {ELEMENT_BYTES}-byte ristretto255 element.")
    if element == _IDENTITY:
        raise InvalidFieldError(f"The {what} is the identity element.")
    if not rbcl.crypto_core_ristretto255_is_valid_point(element):
        raise InvalidFieldError(f"The {what} is not a canonical ristretto255 element.")


def _mul(scalar: bytes, element: bytes) -> bytes:
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, element))
    except RuntimeError:  # libsodium refuses a product that is the identity
        raise InvalidFieldError("The OPRF product is the identity element.") from None


# --- the protocol --------------------------------------------------------------------------


def generate_key() -> bytes:
    """A fresh random OPRF private key (a non-zero scalar from libsodium's CSPRNG)."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_random())


def derive_key_pair(seed: bytes, info: bytes) -> bytes:
    """RFC 9497 DeriveKeyPair (section 3.2.1): the private key from a 32-byte seed and info.

    Only the private scalar is returned: mode 0x00 has no public key.
    """
    if len(seed) != 32:
        raise InvalidFieldError("The key seed must be 32 bytes.")
    if len(info) > MAX_INPUT_BYTES:
        raise OversizedError(f"The key info is limited to {MAX_INPUT_BYTES} bytes.")
    derive_input = seed + len(info).to_bytes(2, "big") + info
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), b"DeriveKeyPair" + CONTEXT)
        if sk != bytes(SCALAR_BYTES):
            return sk
    raise InvalidFieldError("DeriveKeyPair found no non-zero scalar.")  # pragma: no cover


def blind(input: bytes, blind: bytes | None = None) -> tuple[bytes, bytes]:
    """RFC 9497 Blind: (blind scalar, serialized blinded element) for `input`.

    `blind` is for test vectors only; in use it is drawn fresh for every input, and the
    holder sees only the blinded element, uniformly random whatever the input.
    """
    _check_input(input)
    scalar = generate_key() if blind is None else blind
    _check_scalar(scalar, "blind")
    element = hash_to_group(input)
    if element == _IDENTITY:  # pragma: no cover - probability 2**-252
        raise InvalidFieldError("The OPRF input hashes to the identity element.")
    return scalar, _mul(scalar, element)


def check_element(element: bytes) -> None:
    """Raise InvalidFieldError unless `element` is a valid blinded element (cheap)."""
    _check_element(element, "blinded element")


def blind_evaluate(sk: bytes, blinded_element: bytes) -> bytes:
    """RFC 9497 BlindEvaluate: the holder's key applied to a querier's blinded element.

    Raises InvalidFieldError (INVALID_ARGUMENT) for a non-canonical encoding or the
    identity element.
    """
    _check_scalar(sk, "OPRF key")
    _check_element(blinded_element, "blinded element")
    return _mul(sk, blinded_element)


def finalize(input: bytes, blind: bytes, evaluated_element: bytes) -> bytes:
    """RFC 9497 Finalize: unblind the holder's answer and hash it to the 64-byte output."""
    _check_input(input)
    _check_scalar(blind, "blind")
    _check_element(evaluated_element, "evaluated element")
    inverse = bytes(rbcl.crypto_core_ristretto255_scalar_invert(blind))
    return _output(input, _mul(inverse, evaluated_element))


def evaluate(sk: bytes, input: bytes) -> bytes:
    """RFC 9497 Evaluate: the holder's direct evaluation, equal to a blind round trip."""
    _check_input(input)
    _check_scalar(sk, "OPRF key")
    element = hash_to_group(input)
    if element == _IDENTITY:  # pragma: no cover - probability 2**-252
        raise InvalidFieldError("The OPRF input hashes to the identity element.")
    return _output(input, _mul(sk, element))


def _output(input: bytes, unblinded: bytes) -> bytes:
    hash_input = (
        len(input).to_bytes(2, "big")
        + input
        + len(unblinded).to_bytes(2, "big")
        + unblinded
        + b"Finalize"
    )
    return hashlib.sha512(hash_input).digest()
