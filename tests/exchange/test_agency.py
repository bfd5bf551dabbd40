"""Agency cards: what a directory may list about a member, and the key checks verifiers rely on."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from factories import DAY, HOUR, MINUTE, T0, YEAR, SimAgency, make_agency

from exchange._proto.mlax.v1 import directory_pb2 as pb
from exchange.agency import AgencyCard, KeyAlgorithm, PublicKey, RevokedKey
from exchange.encoding import key_id
from exchange.envelope import Header, MessageType, Suite
from exchange.errors import (
    InvalidFieldError,
    KeyNotValidError,
    RevokedKeyError,
    UnknownKeyError,
)


@pytest.fixture
def agency() -> SimAgency:
    return make_agency("FR-OCRTEH", hybrid=True, x25519_too=True)


def _ed25519(not_before: int = T0 - DAY, not_after: int = T0 + YEAR) -> PublicKey:
    return PublicKey(KeyAlgorithm.ED25519, os.urandom(32), not_before, not_after)


# --- card validation -------------------------------------------------------------------------


def test_card_round_trips_through_the_wire(agency: SimAgency) -> None:
    agency.revoke(agency.signing_public.key_id, T0 + DAY, "rotated")
    card = agency.card
    wire = pb.AgencyCard.FromString(card.to_wire().SerializeToString())
    assert AgencyCard.from_wire(wire) == card


@pytest.mark.parametrize(
    "agency_id",
    ["", "FR", "FR-", "fr-police", "FRA-POLICE", "FR_POLICE", "FR--", "FR-" + "A" * 32, "FR-É"],
)
def test_malformed_agency_id_is_invalid(agency: SimAgency, agency_id: str) -> None:
    with pytest.raises(InvalidFieldError):
        replace(agency.card, agency_id=agency_id)


@pytest.mark.parametrize("agency_id", ["FR-P", "FR-OCRTEH", "DE-BKA-2", "NL-" + "A" * 31])
def test_well_formed_agency_ids(agency: SimAgency, agency_id: str) -> None:
    assert replace(agency.card, agency_id=agency_id).agency_id == agency_id


@pytest.mark.parametrize(("field", "value"), [("agency_id", "FR-OCRTEH\n"), ("country", "FR\n")])
def test_trailing_newline_in_agency_id_or_country_is_invalid(
    agency: SimAgency, field: str, value: str
) -> None:
    with pytest.raises(InvalidFieldError):
        replace(agency.card, **{field: value})


def test_header_with_a_trailing_newline_in_the_sender_is_invalid(agency: SimAgency) -> None:
    header = Header(
        message_id=bytes.fromhex("019b7a3c2f0070008000000000000000"),
        sender="FR-OCRTEH\n",
        recipient="DE-BKA",
        message_type=MessageType.NOTE,
        created_at=T0,
        expires_at=T0 + DAY,
        sender_key_id=agency.signing_public.key_id,
        recipient_key_id="0" * 32,
        suite=Suite.X25519_SHA256_CHACHA20POLY1305,
    )
    with pytest.raises(InvalidFieldError):
        Header.from_bytes(header.to_bytes())


@pytest.mark.parametrize("country", ["", "F", "FRA", "fr", "12"])
def test_country_must_be_alpha_2(agency: SimAgency, country: str) -> None:
    with pytest.raises(InvalidFieldError):
        replace(agency.card, country=country)


@pytest.mark.parametrize("name", ["", "x" * 201])
def test_name_must_be_1_to_200_characters(agency: SimAgency, name: str) -> None:
    with pytest.raises(InvalidFieldError):
        replace(agency.card, name=name)
    assert replace(agency.card, name="x" * 200).name == "x" * 200


@pytest.mark.parametrize("pin", [b"", b"\0" * 31, b"\0" * 33])
def test_tls_pin_must_be_32_bytes(agency: SimAgency, pin: bytes) -> None:
    with pytest.raises(InvalidFieldError):
        replace(agency.card, tls_spki_sha256=pin)


@pytest.mark.parametrize(
    "endpoint",
    ["", "host", "host:", ":7443", "host:0", "host:65536", "host:port", "host:-1", "host:+1"],
)
def test_endpoint_must_be_host_and_port(agency: SimAgency, endpoint: str) -> None:
    with pytest.raises(InvalidFieldError):
        replace(agency.card, endpoint=endpoint)


@pytest.mark.parametrize("endpoint", ["host:1", "host:65535", "10.0.0.1:443", "[::1]:7443"])
def test_valid_endpoints(agency: SimAgency, endpoint: str) -> None:
    assert replace(agency.card, endpoint=endpoint).endpoint == endpoint


def test_superscript_digit_in_the_port_is_invalid(agency: SimAgency) -> None:
    with pytest.raises(InvalidFieldError):
        replace(agency.card, endpoint="host:²")


def test_non_ascii_decimal_digits_in_the_port_are_invalid(agency: SimAgency) -> None:
    with pytest.raises(InvalidFieldError):
        replace(agency.card, endpoint="host:٣")


def test_signing_keys_must_be_ed25519(agency: SimAgency) -> None:
    card = agency.card
    with pytest.raises(InvalidFieldError):
        replace(card, signing_keys=(*card.signing_keys, card.encryption_keys[0]))


def test_encryption_keys_must_not_be_ed25519(agency: SimAgency) -> None:
    card = agency.card
    with pytest.raises(InvalidFieldError):
        replace(card, encryption_keys=(*card.encryption_keys, _ed25519()))


def test_same_key_listed_twice_is_invalid(agency: SimAgency) -> None:
    card = agency.card
    with pytest.raises(InvalidFieldError):
        replace(card, signing_keys=(*card.signing_keys, card.signing_keys[0]))
    with pytest.raises(InvalidFieldError):
        replace(card, encryption_keys=(*card.encryption_keys, card.encryption_keys[0]))


# --- published keys --------------------------------------------------------------------------


def test_key_id_is_derived_from_algorithm_and_key(agency: SimAgency) -> None:
    key = agency.signing_public
    assert key.key_id == key_id("ed25519", key.public_key)
    x = next(k for k in agency.card.encryption_keys if k.algorithm is KeyAlgorithm.X25519)
    assert x.key_id == key_id("x25519", x.public_key)
    # The same 32 bytes as another algorithm have another id.
    assert key_id("x25519", key.public_key) != key.key_id


def test_key_sizes() -> None:
    assert KeyAlgorithm.ED25519.public_key_size == 32
    assert KeyAlgorithm.X25519.public_key_size == 32
    assert KeyAlgorithm.MLKEM768_X25519.public_key_size == 1216
    assert KeyAlgorithm.ED25519.signs
    assert not KeyAlgorithm.X25519.signs
    assert not KeyAlgorithm.MLKEM768_X25519.signs


def _wire(key: PublicKey, **changes: object) -> pb.PublicKey:
    msg = key.to_wire()
    for name, value in changes.items():
        setattr(msg, name, value)
    return msg


def test_public_key_round_trips(agency: SimAgency) -> None:
    for key in (*agency.card.signing_keys, *agency.card.encryption_keys):
        assert PublicKey.from_wire(key.to_wire()) == key


@pytest.mark.parametrize("algorithm", [0, 4, 99])
def test_unknown_key_algorithm_is_invalid(agency: SimAgency, algorithm: int) -> None:
    with pytest.raises(InvalidFieldError):
        PublicKey.from_wire(_wire(agency.signing_public, algorithm=algorithm))


def test_public_key_of_the_wrong_size_is_invalid(agency: SimAgency) -> None:
    key = agency.signing_public
    for size in (0, 31, 33, 1216):
        with pytest.raises(InvalidFieldError):
            PublicKey.from_wire(_wire(key, public_key=b"\1" * size))
    # An X25519 key labelled as hybrid is too short.
    with pytest.raises(InvalidFieldError):
        PublicKey.from_wire(_wire(key, algorithm=pb.KEY_ALGORITHM_MLKEM768_X25519))


def test_key_id_that_does_not_match_the_key_is_invalid(agency: SimAgency) -> None:
    key = agency.signing_public
    for kid in ("", "0" * 32, key.key_id.upper(), key.key_id + "00"):
        with pytest.raises(InvalidFieldError):
            PublicKey.from_wire(_wire(key, key_id=kid))
    # Relabelling an Ed25519 key as X25519 changes its id, so the old id no longer matches.
    with pytest.raises(InvalidFieldError):
        PublicKey.from_wire(_wire(key, algorithm=pb.KEY_ALGORITHM_X25519))


@pytest.mark.parametrize(("not_before", "not_after"), [(T0, T0), (T0, T0 - 1)])
def test_key_that_expires_before_it_starts_is_invalid(
    agency: SimAgency, not_before: int, not_after: int
) -> None:
    key = replace(agency.signing_public, not_before=not_before, not_after=not_after)
    with pytest.raises(InvalidFieldError):
        PublicKey.from_wire(key.to_wire())


def test_validity_window_is_half_open() -> None:
    key = _ed25519(T0, T0 + HOUR)
    assert not key.valid_at(T0 - 1)
    assert key.valid_at(T0)
    assert key.valid_at(T0 + HOUR - 1)
    assert not key.valid_at(T0 + HOUR)


# --- key lookup ------------------------------------------------------------------------------


def test_signing_key_lookup(agency: SimAgency) -> None:
    kid = agency.signing_public.key_id
    assert agency.card.signing_key(kid, T0) == agency.signing_public
    with pytest.raises(UnknownKeyError):
        agency.card.signing_key("0" * 32, T0)
    # An encryption key id is not a signing key.
    with pytest.raises(UnknownKeyError):
        agency.card.signing_key(agency.card.encryption_keys[0].key_id, T0)
    with pytest.raises(KeyNotValidError):
        agency.card.signing_key(kid, T0 + 2 * YEAR)
    with pytest.raises(KeyNotValidError):
        agency.card.signing_key(kid, T0 - 2 * DAY)


def test_revoked_signing_key_live_and_historical(agency: SimAgency) -> None:
    kid = agency.signing_public.key_id
    agency.revoke(kid, T0, "compromised")
    card = agency.card
    # Live traffic: refused whatever the time.
    for t in (T0 - HOUR, T0, T0 + HOUR):
        with pytest.raises(RevokedKeyError):
            card.signing_key(kid, t)
    # Historical proof: valid before revoked_at, refused from revoked_at on.
    assert card.signing_key(kid, T0 - 1, historical=True).key_id == kid
    with pytest.raises(RevokedKeyError):
        card.signing_key(kid, T0, historical=True)
    with pytest.raises(RevokedKeyError):
        card.signing_key(kid, T0 + HOUR, historical=True)
    assert card.revocation(kid) == RevokedKey(kid, T0, "compromised")
    assert card.revocation("0" * 32) is None


def test_revoked_key_message_gives_the_reason(agency: SimAgency) -> None:
    kid = agency.signing_public.key_id
    agency.revoke(kid, T0, "laptop stolen")
    with pytest.raises(RevokedKeyError, match="laptop stolen"):
        agency.card.signing_key(kid, T0)


def test_encryption_key_lookup(agency: SimAgency) -> None:
    key = agency.card.encryption_keys[0]
    assert agency.card.encryption_key(key.key_id, T0) == key
    with pytest.raises(UnknownKeyError):
        agency.card.encryption_key(agency.signing_public.key_id, T0)
    with pytest.raises(KeyNotValidError):
        agency.card.encryption_key(key.key_id, T0 + 2 * YEAR)
    agency.revoke(key.key_id, T0 + DAY)
    with pytest.raises(RevokedKeyError):
        agency.card.encryption_key(key.key_id, T0)


def test_current_encryption_key_prefers_hybrid_then_newest() -> None:
    agency = make_agency("DE-BKA")
    _, first = agency.encryption[0]
    assert agency.card.current_encryption_key(T0) == first
    _, newer = agency.add_encryption_key(not_before=T0 - HOUR)
    assert agency.card.current_encryption_key(T0) == newer
    _, hybrid = agency.add_encryption_key(hybrid=True, not_before=T0 - 2 * HOUR)
    assert agency.card.current_encryption_key(T0) == hybrid
    _, newer_hybrid = agency.add_encryption_key(hybrid=True, not_before=T0 - MINUTE)
    assert agency.card.current_encryption_key(T0) == newer_hybrid
    # Revoked or not yet valid keys are skipped.
    agency.revoke(newer_hybrid.key_id, T0)
    agency.revoke(hybrid.key_id, T0)
    assert agency.card.current_encryption_key(T0) == newer
    _, future = agency.add_encryption_key(hybrid=True, not_before=T0 + HOUR)
    assert agency.card.current_encryption_key(T0) == newer
    assert agency.card.current_encryption_key(T0 + HOUR) == future


def test_no_valid_encryption_key_is_key_not_valid() -> None:
    agency = make_agency("DE-BKA")
    with pytest.raises(KeyNotValidError):
        agency.card.current_encryption_key(T0 + 2 * YEAR)
    agency.revoke(agency.encryption[0][1].key_id, T0)
    with pytest.raises(KeyNotValidError):
        agency.card.current_encryption_key(T0)


def test_current_signing_key_is_the_newest_valid_one(agency: SimAgency) -> None:
    first = agency.signing_public
    assert agency.card.current_signing_key(T0) == first
    _, second = agency.add_signing_key(T0 - HOUR, T0 + YEAR)
    assert agency.card.current_signing_key(T0) == second
    agency.revoke(second.key_id, T0)
    assert agency.card.current_signing_key(T0) == first
    with pytest.raises(KeyNotValidError):
        agency.card.current_signing_key(T0 + 2 * YEAR)
