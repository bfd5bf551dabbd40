"""Tampering in transit: every changed bit of an envelope is refused with a protocol error.

Flips in the ciphertext or the outer signature must fail the outer signature check, before
anything is decrypted. Flips in the header may fail earlier (it no longer parses, names
an unknown sender or key) but always with an `MlaxError`, never another exception and
never an accepted envelope.
"""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest
from factories import T0, SimAgency, bit_positions, flip_bit

from exchange.directory import Directory
from exchange.envelope import (
    Envelope,
    MemorySeenIds,
    MessageType,
    authenticate,
    open_envelope,
    seal,
)
from exchange.errors import (
    InvalidFieldError,
    KeyNotValidError,
    MalformedError,
    MlaxError,
    OuterSignatureError,
    UnknownKeyError,
    UnknownSenderError,
)

# Header flips may stop at any pre-signature check, or at the signature itself.
HEADER_FLIP_ERRORS = (
    MalformedError,
    InvalidFieldError,
    UnknownSenderError,
    UnknownKeyError,
    KeyNotValidError,
    OuterSignatureError,
)


def _open_error(data: bytes, directory: Directory, receiver: SimAgency) -> type[MlaxError]:
    """The class of the error opening `data` raises; fails the test if it opens."""
    try:
        open_envelope(data, directory, receiver.recipient(), MemorySeenIds(), now_ms=T0)
    except MlaxError as e:
        return type(e)
    pytest.fail("a tampered envelope was accepted")


def _sealed(sender: SimAgency, receiver: SimAgency, body: bytes) -> Envelope:
    return seal(
        sender.sender(),
        receiver.card,
        body,
        MessageType.MLA_REQUEST,
        now_ms=T0,
        case_ref="FR/2026/7",
        restricted_to=("officer.a",),
    )


@pytest.fixture(params=["receiver", "pq_receiver"])
def target(request: pytest.FixtureRequest) -> SimAgency:
    receiver: SimAgency = request.getfixturevalue(request.param)
    return receiver


def test_every_header_bit_flip_is_refused(
    sender: SimAgency, target: SimAgency, directory: Directory
) -> None:
    envelope = _sealed(sender, target, b"body")
    seen: Counter[str] = Counter()
    for bit in range(len(envelope.header) * 8):
        tampered = Envelope(
            flip_bit(envelope.header, bit), envelope.ciphertext, envelope.outer_signature
        )
        error = _open_error(tampered.to_bytes(), directory, target)
        assert issubclass(error, HEADER_FLIP_ERRORS), (bit, error)
        seen[error.__name__] += 1
    # Most flips parse fine and are caught by the signature; some fail earlier.
    assert seen["OuterSignatureError"] > 0
    assert len(seen) > 1, seen


def test_every_ciphertext_bit_flip_fails_the_outer_signature(
    sender: SimAgency, target: SimAgency, directory: Directory
) -> None:
    envelope = _sealed(sender, target, b"")
    for bit in bit_positions(len(envelope.ciphertext), sample=200):
        tampered = Envelope(
            envelope.header, flip_bit(envelope.ciphertext, bit), envelope.outer_signature
        )
        assert _open_error(tampered.to_bytes(), directory, target) is OuterSignatureError, bit


def test_large_ciphertext_bit_flips_fail_the_outer_signature(
    sender: SimAgency, target: SimAgency, directory: Directory
) -> None:
    envelope = _sealed(sender, target, os.urandom(64 * 1024))
    for bit in bit_positions(len(envelope.ciphertext), sample=200, rng_seed=1):
        tampered = Envelope(
            envelope.header, flip_bit(envelope.ciphertext, bit), envelope.outer_signature
        )
        assert _open_error(tampered.to_bytes(), directory, target) is OuterSignatureError, bit


def test_every_outer_signature_bit_flip_is_refused(
    sender: SimAgency, target: SimAgency, directory: Directory
) -> None:
    envelope = _sealed(sender, target, b"body")
    for bit in range(len(envelope.outer_signature) * 8):
        tampered = Envelope(
            envelope.header, envelope.ciphertext, flip_bit(envelope.outer_signature, bit)
        )
        assert _open_error(tampered.to_bytes(), directory, target) is OuterSignatureError, bit


def test_truncated_or_extended_ciphertext_and_signature_are_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    e = _sealed(sender, receiver, b"body")
    variants = [
        Envelope(e.header, e.ciphertext[:-1], e.outer_signature),
        Envelope(e.header, e.ciphertext + b"\0", e.outer_signature),
        Envelope(e.header, b"", e.outer_signature),
        Envelope(e.header, e.ciphertext, e.outer_signature[:-1]),
        Envelope(e.header, e.ciphertext, e.outer_signature + b"\0"),
        Envelope(e.header, e.ciphertext, b""),
        Envelope(e.header, e.ciphertext, b"\0" * 64),
    ]
    for v in variants:
        assert _open_error(v.to_bytes(), directory, receiver) is OuterSignatureError


def test_swapped_parts_of_two_envelopes_are_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    a = _sealed(sender, receiver, b"a")
    b = _sealed(sender, receiver, b"b")
    for mixed in (
        Envelope(a.header, b.ciphertext, a.outer_signature),
        Envelope(a.header, b.ciphertext, b.outer_signature),
        Envelope(b.header, a.ciphertext, a.outer_signature),
    ):
        assert _open_error(mixed.to_bytes(), directory, receiver) is OuterSignatureError


def test_every_prefix_of_an_envelope_is_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    data = _sealed(sender, receiver, b"").to_bytes()
    for n in range(len(data)):
        error = _open_error(data[:n], directory, receiver)
        assert issubclass(error, MlaxError), n
    # The empty message parses as an empty envelope, whose empty header is refused.
    assert _open_error(b"", directory, receiver) is InvalidFieldError


def test_serialised_envelope_bit_flips_are_refused_with_protocol_errors(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    # Flips anywhere in the serialised envelope, framing included.
    data = _sealed(sender, receiver, b"body").to_bytes()
    for bit in range(len(data) * 8):
        _open_error(flip_bit(data, bit), directory, receiver)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\0",
        b"\xff" * 16,
        b"\x0a\xff\xff\xff\xff\x0f",  # header field claiming 4 GiB
        b"\x0a\x05hello",  # header that is not a header
        b"\x08\x01",  # a varint where bytes belong
        b"\x22\x00",  # unknown field 4
        b"\x7a\x00",  # unknown field 15
        b"\x0b\x0c",  # an empty group
        b"\x0a" + b"\x80" * 10 + b"\x01",  # over-long varint length
    ],
)
def test_garbage_is_refused_with_a_protocol_error(
    garbage: bytes, receiver: SimAgency, directory: Directory
) -> None:
    assert issubclass(_open_error(garbage, directory, receiver), MlaxError)


def test_random_garbage_is_refused_with_a_protocol_error(
    receiver: SimAgency, directory: Directory
) -> None:
    rng = random.Random(7)
    for _ in range(500):
        data = rng.randbytes(rng.randrange(0, 600))
        assert issubclass(_open_error(data, directory, receiver), MlaxError)


def test_tampering_is_caught_before_decryption(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    # authenticate alone (no private key at all) already refuses a flipped ciphertext.
    e = _sealed(sender, receiver, b"body")
    tampered = Envelope(e.header, flip_bit(e.ciphertext, 100), e.outer_signature)
    with pytest.raises(OuterSignatureError):
        authenticate(tampered.to_bytes(), directory)
