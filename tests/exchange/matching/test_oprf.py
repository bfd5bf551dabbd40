"""RFC 9497 OPRF(ristretto255, SHA-512), mode 0: the RFC's vectors, the protocol's
round trip, and refusal of elements and scalars a peer must not get us to use."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.errors import InvalidFieldError, OversizedError
from exchange.matching import oprf

# RFC 9497 Appendix A.1.1: OPRF(ristretto255, SHA-512), mode 0x00.
SEED = bytes.fromhex("a3" * 32)
KEY_INFO = bytes.fromhex("74657374206b6579")
SK_SM = bytes.fromhex("5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e")
BLIND = bytes.fromhex("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706")
VECTORS = [
    pytest.param(
        "00",
        "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
        "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
        "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
        id="A.1.1.1",
    ),
    pytest.param(
        "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
        "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
        "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4"
        "f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
        id="A.1.1.2",
    ),
]

# Encodings libsodium must refuse as blinded or evaluated elements.
NON_CANONICAL = [
    pytest.param(bytes([1]) + bytes(31), id="negative-field-element"),
    pytest.param(bytes.fromhex("ed" + "ff" * 30 + "7f"), id="p-itself"),
    pytest.param(b"\xff" * 32, id="high-bit-set"),
]


def test_derive_key_pair_matches_the_rfc() -> None:
    assert oprf.derive_key_pair(SEED, KEY_INFO) == SK_SM


@pytest.mark.parametrize(("input_hex", "blinded", "evaluated", "output"), VECTORS)
def test_rfc9497_vectors(input_hex: str, blinded: str, evaluated: str, output: str) -> None:
    data = bytes.fromhex(input_hex)
    blind, blinded_element = oprf.blind(data, BLIND)
    assert blind == BLIND
    assert blinded_element.hex() == blinded
    evaluated_element = oprf.blind_evaluate(SK_SM, blinded_element)
    assert evaluated_element.hex() == evaluated
    assert oprf.finalize(data, blind, evaluated_element).hex() == output
    assert oprf.evaluate(SK_SM, data).hex() == output


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=200))
def test_blind_round_trip_equals_direct_evaluation(data: bytes) -> None:
    sk = oprf.generate_key()
    blind, blinded = oprf.blind(data)
    assert oprf.finalize(data, blind, oprf.blind_evaluate(sk, blinded)) == oprf.evaluate(sk, data)


@settings(max_examples=20, deadline=None)
@given(data=st.binary(min_size=1, max_size=64))
def test_blinded_elements_are_fresh_and_outputs_keyed(data: bytes) -> None:
    sk, other = oprf.generate_key(), oprf.generate_key()
    (_, first), (_, second) = oprf.blind(data), oprf.blind(data)
    assert first != second  # the holder cannot link two queries for the same token
    assert oprf.evaluate(sk, data) != oprf.evaluate(other, data)
    assert len(oprf.evaluate(sk, data)) == oprf.OUTPUT_BYTES


def test_the_identity_is_refused_with_invalid_argument() -> None:
    with pytest.raises(InvalidFieldError, match="identity") as err:
        oprf.blind_evaluate(SK_SM, bytes(32))
    assert err.value.status == "INVALID_ARGUMENT"
    with pytest.raises(InvalidFieldError, match="identity"):
        oprf.finalize(b"x", BLIND, bytes(32))


@pytest.mark.parametrize("element", NON_CANONICAL)
def test_non_canonical_elements_are_refused(element: bytes) -> None:
    with pytest.raises(InvalidFieldError, match="canonical") as err:
        oprf.blind_evaluate(SK_SM, element)
    assert err.value.status == "INVALID_ARGUMENT"
    with pytest.raises(InvalidFieldError, match="canonical"):
        oprf.finalize(b"x", BLIND, element)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_elements_of_the_wrong_length_are_refused(size: int) -> None:
    with pytest.raises(InvalidFieldError, match="32-byte"):
        oprf.blind_evaluate(SK_SM, b"\x02" * size)


def test_scalars_must_be_canonical_and_non_zero() -> None:
    order = bytes.fromhex("edd3f55c1a631258d69cf7a2def9de14" + "00" * 15 + "10")
    for bad in (bytes(32), order, b"\xff" * 32):
        with pytest.raises(InvalidFieldError):
            oprf.evaluate(bad, b"x")
        with pytest.raises(InvalidFieldError):
            oprf.blind(b"x", bad)
    with pytest.raises(InvalidFieldError, match="32-byte"):
        oprf.evaluate(b"short", b"x")


def test_oversized_inputs_are_refused() -> None:
    with pytest.raises(OversizedError):
        oprf.evaluate(SK_SM, bytes(oprf.MAX_INPUT_BYTES + 1))
    with pytest.raises(OversizedError):
        oprf.blind(bytes(oprf.MAX_INPUT_BYTES + 1))


def test_expand_message_xmd_matches_rfc9380() -> None:
    # RFC 9380 K.3, expand_message_xmd(SHA-512), DST "QUUX-V01-CS02-with-expander-SHA512-256".
    dst = b"QUUX-V01-CS02-with-expander-SHA512-256"
    assert oprf.expand_message_xmd(b"", dst, 0x20).hex() == (
        "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"
    )
    assert oprf.expand_message_xmd(b"abc", dst, 0x20).hex() == (
        "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"
    )
