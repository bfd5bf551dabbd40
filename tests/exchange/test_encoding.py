"""The byte encodings under every signature: PAE, key ids, UUIDv7, known answers by hand."""

from __future__ import annotations

import hashlib
import re
import uuid

import pytest

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
    now_ms,
    pae,
    parse_uuid,
    sha256,
    uuid7,
)

# PASETO's PAE, written out by hand: LE64(number of pieces), then LE64(len) || piece each.
PAE_VECTORS = [
    ((), b"\x00\x00\x00\x00\x00\x00\x00\x00"),
    ((b"",), b"\x01\x00\x00\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00\x00\x00\x00\x00"),
    (
        (b"test",),
        b"\x01\x00\x00\x00\x00\x00\x00\x00" + b"\x04\x00\x00\x00\x00\x00\x00\x00" + b"test",
    ),
    (
        (b"", b""),
        b"\x02\x00\x00\x00\x00\x00\x00\x00"
        + b"\x00\x00\x00\x00\x00\x00\x00\x00"
        + b"\x00\x00\x00\x00\x00\x00\x00\x00",
    ),
    (
        (b"mlax/v1/envelope/outer", b"H", b"ct"),
        b"\x03\x00\x00\x00\x00\x00\x00\x00"
        + b"\x16\x00\x00\x00\x00\x00\x00\x00mlax/v1/envelope/outer"
        + b"\x01\x00\x00\x00\x00\x00\x00\x00H"
        + b"\x02\x00\x00\x00\x00\x00\x00\x00ct",
    ),
    (
        (b"\xff" * 256,),
        b"\x01\x00\x00\x00\x00\x00\x00\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xff" * 256,
    ),
]


@pytest.mark.parametrize(("pieces", "expected"), PAE_VECTORS)
def test_pae_known_answers(pieces: tuple[bytes, ...], expected: bytes) -> None:
    assert pae(*pieces) == expected


def test_pae_is_unambiguous_where_concatenation_is_not() -> None:
    assert b"ab" + b"c" == b"a" + b"bc"
    assert pae(b"ab", b"c") != pae(b"a", b"bc")
    assert pae(b"abc") != pae(b"ab", b"c")
    assert pae(b"", b"x") != pae(b"x", b"")
    assert pae(b"x") != pae(b"x", b"")


def test_pae_length_is_eight_per_piece_plus_eight() -> None:
    pieces = (b"a" * 3, b"", b"b" * 1000)
    assert len(pae(*pieces)) == 8 + sum(8 + len(p) for p in pieces)


def test_domain_contexts_are_distinct_and_versioned() -> None:
    contexts = [
        CTX_ENVELOPE_OUTER,
        CTX_ENVELOPE_INNER,
        CTX_ENVELOPE_HPKE_INFO,
        CTX_ENVELOPE_DIGEST,
        CTX_RECEIPT,
        CTX_DIRECTORY,
        CTX_KEY_ID,
    ]
    assert len(set(contexts)) == len(contexts)
    assert all(c.startswith(b"mlax/v1/") for c in contexts)
    # No context is a prefix of another, so no PAE input of one purpose is one of another.
    assert not any(a != b and b.startswith(a) for a in contexts for b in contexts)


def test_key_id_known_answer() -> None:
    public = bytes(range(32))
    by_hand = hashlib.sha256(
        b"\x03\x00\x00\x00\x00\x00\x00\x00"
        + b"\x0e\x00\x00\x00\x00\x00\x00\x00mlax/v1/key-id"
        + b"\x07\x00\x00\x00\x00\x00\x00\x00ed25519"
        + b"\x20\x00\x00\x00\x00\x00\x00\x00"
        + public
    ).hexdigest()[:32]
    assert key_id("ed25519", public) == by_hand


@pytest.mark.parametrize("algorithm", ["ed25519", "x25519", "mlkem768-x25519"])
def test_key_id_is_32_lowercase_hex(algorithm: str) -> None:
    kid = key_id(algorithm, b"\x07" * 32)
    assert re.fullmatch(r"[0-9a-f]{32}", kid)


def test_key_id_depends_on_algorithm_and_key() -> None:
    assert key_id("ed25519", b"\0" * 32) != key_id("x25519", b"\0" * 32)
    assert key_id("ed25519", b"\0" * 32) != key_id("ed25519", b"\0" * 31 + b"\1")
    assert key_id("ed25519", b"\0" * 32) == key_id("ed25519", b"\0" * 32)


def test_uuid7_layout_known_answer() -> None:
    raw = uuid7(0x0123456789AB, rand=b"\xff" * 10)
    # 48-bit ms, then version 7 in the high nibble, variant 0b10 in the top bits of byte 8.
    assert raw.hex() == "0123456789ab" + "7fff" + "bfff" + "ffffffffffff"
    raw = uuid7(0x0123456789AB, rand=b"\x00" * 10)
    assert raw.hex() == "0123456789ab" + "7000" + "8000" + "000000000000"


def test_uuid7_version_variant_and_time() -> None:
    for _ in range(200):
        raw = uuid7(1_767_225_600_000)
        assert len(raw) == 16
        u = uuid.UUID(bytes=raw)
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert int.from_bytes(raw[:6], "big") == 1_767_225_600_000


def test_uuid7_random_bits_differ() -> None:
    ids = {uuid7(1_767_225_600_000) for _ in range(1000)}
    assert len(ids) == 1000


def test_uuid7_sorts_by_time() -> None:
    times = [1_767_225_600_000 + d for d in (0, 1, 2, 1000, 60_000, 10**9)]
    ids = [uuid7(t) for t in times]
    assert ids == sorted(ids)
    # Even with the random part working against it, a later millisecond sorts later.
    assert uuid7(times[0], rand=b"\xff" * 10) < uuid7(times[0] + 1, rand=b"\x00" * 10)


def test_uuid7_defaults_to_now() -> None:
    before = now_ms()
    raw = uuid7()
    after = now_ms()
    assert before <= int.from_bytes(raw[:6], "big") <= after


def test_now_ms_is_unix_milliseconds() -> None:
    # After 2025-01-01 and before 2100-01-01.
    assert 1_735_689_600_000 < now_ms() < 4_102_444_800_000


def test_uuid_text_round_trip() -> None:
    raw = uuid7(0x0123456789AB, rand=b"\x00" * 10)
    text = format_uuid(raw)
    assert text == "01234567-89ab-7000-8000-000000000000"
    assert parse_uuid(text) == raw
    with pytest.raises(ValueError, match="badly formed"):
        parse_uuid("not-a-uuid")


def test_sha256() -> None:
    assert (
        sha256(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


@pytest.mark.parametrize("rand", [b"\0" * 4, b"\0"])
def test_uuid7_refuses_too_little_randomness(rand: bytes) -> None:
    try:
        raw = uuid7(0x0123456789AB, rand=rand)
    except ValueError:
        return
    pytest.fail(f"uuid7 made a {len(raw)}-byte id from {len(rand)} random bytes")
