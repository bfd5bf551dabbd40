"""Federation directory verification: k of n administrators, rollback, expiry, rotation."""

from __future__ import annotations

from dataclasses import replace

import pytest
from factories import (
    DAY,
    HOUR,
    T0,
    FederationSimulator,
    SimAdmin,
    ed25519_public,
    make_agency,
    sign_directory,
)
from nacl.signing import SigningKey

from exchange._proto.mlax.v1 import directory_pb2 as pb
from exchange.directory import (
    MAX_DIRECTORY_BYTES,
    AdminKey,
    Directory,
    SignedDirectory,
    verify_directory,
)
from exchange.encoding import CTX_DIRECTORY, key_id, pae
from exchange.errors import (
    BadSignatureError,
    DirectoryError,
    DuplicateSignatureError,
    ExpiredDirectoryError,
    FederationMismatchError,
    InvalidFieldError,
    MalformedError,
    MlaxError,
    OversizedError,
    RollbackError,
    ThresholdError,
    UnknownSignerError,
)


def _keys(fed: FederationSimulator, *indexes: int) -> list[SigningKey]:
    return [fed.admins[i].signing_key for i in indexes]


def _next(fed: FederationSimulator) -> Directory:
    fed.version += 1
    return fed.directory()


@pytest.fixture
def trusted(federation: FederationSimulator) -> Directory:
    """Version 1, as first installed (pinned out of band)."""
    return verify_directory(federation.publish(), None, T0)


# --- first install and k of n ----------------------------------------------------------------


def test_first_install_with_threshold_signatures_is_trusted(
    federation: FederationSimulator,
) -> None:
    directory = verify_directory(federation.publish(signers=_keys(federation, 0, 1)), None, T0)
    assert directory == federation.directory()
    assert directory.threshold == 2
    assert len(directory.admins) == 3
    assert {a.agency_id for a in directory.agencies} == set(federation.agencies)


def test_all_admins_signing_is_fine(federation: FederationSimulator) -> None:
    data = federation.publish(signers=_keys(federation, 0, 1, 2))
    assert verify_directory(data, None, T0).version == 1


def test_one_signature_of_two_required_is_short(federation: FederationSimulator) -> None:
    for i in range(3):
        with pytest.raises(ThresholdError):
            verify_directory(federation.publish(signers=_keys(federation, i)), None, T0)


def test_no_signatures_is_short(federation: FederationSimulator) -> None:
    with pytest.raises(ThresholdError):
        verify_directory(federation.publish(signers=[]), None, T0)


def test_duplicate_signature_entry_is_refused(federation: FederationSimulator) -> None:
    signed = SignedDirectory.from_bytes(federation.publish(signers=_keys(federation, 0)))
    doubled = replace(signed, signatures=signed.signatures * 2)
    with pytest.raises(DuplicateSignatureError):
        verify_directory(doubled.to_bytes(), None, T0)
    # Even alongside a genuine second signature, a duplicate is refused.
    signed = SignedDirectory.from_bytes(federation.publish(signers=_keys(federation, 0, 1)))
    tripled = replace(signed, signatures=(*signed.signatures, signed.signatures[0]))
    with pytest.raises(DuplicateSignatureError):
        verify_directory(tripled.to_bytes(), None, T0)


def test_re_signing_by_the_same_admin_replaces_the_signature(
    federation: FederationSimulator,
) -> None:
    d = SignedDirectory(federation.directory().to_bytes())
    key = federation.admins[0].signing_key
    assert len(d.signed_by(key).signed_by(key).signatures) == 1


def test_signature_by_a_non_admin_is_refused(federation: FederationSimulator) -> None:
    stranger = SigningKey.generate()
    data = federation.publish(signers=[*_keys(federation, 0, 1), stranger])
    with pytest.raises(UnknownSignerError):
        verify_directory(data, None, T0)


def test_agency_signing_key_is_not_an_admin_key(federation: FederationSimulator) -> None:
    member = next(iter(federation.agencies.values()))
    data = federation.publish(signers=[*_keys(federation, 0), member.signing_key])
    with pytest.raises(UnknownSignerError):
        verify_directory(data, None, T0)


def test_corrupted_signature_by_an_admin_is_refused(federation: FederationSimulator) -> None:
    signed = SignedDirectory.from_bytes(federation.publish(signers=_keys(federation, 0, 1, 2)))
    kid, sig = signed.signatures[2]
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    corrupted = replace(signed, signatures=(*signed.signatures[:2], (kid, bad)))
    # Two good signatures meet the threshold, but a bad one is never ignored.
    with pytest.raises(BadSignatureError):
        verify_directory(corrupted.to_bytes(), None, T0)
    for wrong in (b"", b"\0" * 64, sig[:63], sig + b"\0"):
        corrupted = replace(signed, signatures=(*signed.signatures[:2], (kid, wrong)))
        with pytest.raises(BadSignatureError):
            verify_directory(corrupted.to_bytes(), None, T0)


def test_signature_without_the_domain_context_is_refused(federation: FederationSimulator) -> None:
    body = federation.directory().to_bytes()
    signatures = []
    for key in _keys(federation, 0, 1):
        signatures.append((key_id("ed25519", ed25519_public(key)), key.sign(body).signature))
    data = SignedDirectory(body, tuple(signatures)).to_bytes()
    with pytest.raises(BadSignatureError):
        verify_directory(data, None, T0)
    # The same keys over the PAE with the directory context are accepted.
    good = tuple(
        (kid, key.sign(pae(CTX_DIRECTORY, body)).signature)
        for (kid, _), key in zip(signatures, _keys(federation, 0, 1), strict=True)
    )
    assert verify_directory(SignedDirectory(body, good).to_bytes(), None, T0).version == 1


def test_tampered_directory_bytes_are_refused(federation: FederationSimulator) -> None:
    signed = SignedDirectory.from_bytes(federation.publish())
    d = Directory.from_bytes(signed.directory)
    # A well-formed directory with one agency renamed, under the old signatures.
    renamed = replace(d.agencies[0], name="Somebody Else")
    tampered = replace(signed, directory=d.with_agency(renamed).to_bytes())
    with pytest.raises(BadSignatureError):
        verify_directory(tampered.to_bytes(), None, T0)
    # An extra agency slipped in.
    intruder = make_agency("XX-INTRUDER").card
    tampered = replace(signed, directory=d.with_agency(intruder).to_bytes())
    with pytest.raises(BadSignatureError):
        verify_directory(tampered.to_bytes(), None, T0)


def test_every_byte_of_the_signed_directory_is_protected(
    federation: FederationSimulator,
) -> None:
    data = federation.publish()
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x04
        with pytest.raises(MlaxError):
            verify_directory(bytes(tampered), None, T0)


# --- expiry ----------------------------------------------------------------------------------


def test_expired_directory_is_refused(federation: FederationSimulator) -> None:
    data = federation.publish()
    expires = federation.directory().expires_at
    assert verify_directory(data, None, expires - 1).version == 1
    with pytest.raises(ExpiredDirectoryError):
        verify_directory(data, None, expires)
    with pytest.raises(ExpiredDirectoryError):
        verify_directory(data, None, expires + DAY)


# --- updates against a trusted directory -----------------------------------------------------


def test_next_version_signed_by_threshold_is_accepted(
    federation: FederationSimulator, trusted: Directory
) -> None:
    federation.add_agency("ES-CNP")
    new = _next(federation)
    assert verify_directory(federation.publish(new), trusted, T0) == new


def test_version_gaps_are_allowed(federation: FederationSimulator, trusted: Directory) -> None:
    federation.version = 7
    assert verify_directory(federation.publish(), trusted, T0).version == 7


def test_same_version_is_a_rollback(federation: FederationSimulator, trusted: Directory) -> None:
    # Even a byte-identical re-send of the trusted directory.
    with pytest.raises(RollbackError):
        verify_directory(federation.publish(), trusted, T0)


def test_older_version_is_a_rollback(federation: FederationSimulator) -> None:
    federation.version = 5
    trusted = verify_directory(federation.publish(), None, T0)
    for version in (1, 4, 5):
        federation.version = version
        with pytest.raises(RollbackError):
            verify_directory(federation.publish(), trusted, T0)


def test_directory_of_another_federation_is_refused(
    federation: FederationSimulator, trusted: Directory
) -> None:
    federation.federation_id = "another-federation"
    with pytest.raises(FederationMismatchError):
        verify_directory(federation.publish(_next(federation)), trusted, T0)


def test_new_version_short_of_signatures_is_refused(
    federation: FederationSimulator, trusted: Directory
) -> None:
    with pytest.raises(ThresholdError):
        verify_directory(federation.publish(_next(federation), _keys(federation, 2)), trusted, T0)


def test_admin_set_replaced_needs_the_old_admins_too(
    federation: FederationSimulator, trusted: Directory
) -> None:
    old = _keys(federation, 0, 1, 2)
    federation.admins = [SimAdmin(f"new-admin-{i}") for i in range(3)]
    new_directory = _next(federation)
    new = [a.signing_key for a in federation.admins]
    # Signed by every new admin: enough for the new set, not for the set trusted until now.
    with pytest.raises(ThresholdError):
        verify_directory(federation.publish(new_directory, new), trusted, T0)
    # Signed by the old admins only: the new set's own threshold is not met.
    with pytest.raises(ThresholdError):
        verify_directory(federation.publish(new_directory, old), trusted, T0)
    # A threshold of old and a threshold of new: the hand-over is accepted.
    accepted = verify_directory(
        federation.publish(new_directory, [*old[:2], *new[:2]]), trusted, T0
    )
    assert {a.public_key for a in accepted.admins} == {ed25519_public(k) for k in new}
    # From then on, the old admins carry no weight.
    federation.version += 1
    with pytest.raises(UnknownSignerError):
        verify_directory(federation.publish(signers=[*new[:2], old[0]]), accepted, T0)
    assert verify_directory(federation.publish(signers=new[:2]), accepted, T0).version == 3


def test_adding_an_admin_needs_the_threshold_of_the_trusted_set(
    federation: FederationSimulator, trusted: Directory
) -> None:
    newcomer = SimAdmin("admin-3")
    federation.admins.append(newcomer)
    new_directory = _next(federation)
    # The newcomer plus one old admin meet 2 of 4 in the new set, but only 1 of 2 old.
    with pytest.raises(ThresholdError):
        verify_directory(
            federation.publish(new_directory, [newcomer.signing_key, *_keys(federation, 0)]),
            trusted,
            T0,
        )
    data = federation.publish(new_directory, _keys(federation, 0, 1))
    assert len(verify_directory(data, trusted, T0).admins) == 4


def test_raising_the_threshold_needs_the_new_threshold(
    federation: FederationSimulator, trusted: Directory
) -> None:
    federation.threshold = 3
    new_directory = _next(federation)
    with pytest.raises(ThresholdError):
        verify_directory(federation.publish(new_directory, _keys(federation, 0, 1)), trusted, T0)
    data = federation.publish(new_directory, _keys(federation, 0, 1, 2))
    assert verify_directory(data, trusted, T0).threshold == 3


def test_lowering_the_threshold_needs_the_old_threshold(
    federation: FederationSimulator, trusted: Directory
) -> None:
    federation.threshold = 1
    new_directory = _next(federation)
    with pytest.raises(ThresholdError):
        verify_directory(federation.publish(new_directory, _keys(federation, 0)), trusted, T0)
    data = federation.publish(new_directory, _keys(federation, 0, 1))
    lowered = verify_directory(data, trusted, T0)
    assert lowered.threshold == 1
    federation.version += 1
    assert verify_directory(federation.publish(signers=_keys(federation, 2)), lowered, T0)


def test_signature_checks_come_before_rollback_and_expiry(
    federation: FederationSimulator, trusted: Directory
) -> None:
    # Old, expired and short of signatures: the missing signatures are reported.
    federation.expires_at = T0 - 1
    federation.issued_at = T0 - DAY
    with pytest.raises(ThresholdError):
        verify_directory(federation.publish(signers=_keys(federation, 0)), trusted, T0)
    with pytest.raises(RollbackError):
        verify_directory(federation.publish(), trusted, T0)


def test_rollback_comes_before_expiry(federation: FederationSimulator) -> None:
    federation.version = 3
    trusted = verify_directory(federation.publish(), None, T0)
    federation.version = 2
    data = federation.publish()
    with pytest.raises(RollbackError):
        verify_directory(data, trusted, federation.expires_at + 1)


def test_rogue_federation_signed_by_its_own_admins_is_a_mismatch(
    trusted: Directory,
) -> None:
    other = FederationSimulator(federation_id="rogue-federation")
    other.version = 2
    with pytest.raises(FederationMismatchError):
        verify_directory(other.publish(), trusted, T0)


# --- structure -------------------------------------------------------------------------------


def _signed_wire(fed: FederationSimulator, msg: pb.Directory) -> bytes:
    return sign_directory(msg.SerializeToString(deterministic=True), fed.signing_admins())


@pytest.mark.parametrize("threshold", [0, 4, 100])
def test_threshold_outside_one_to_n_is_invalid(
    federation: FederationSimulator, threshold: int
) -> None:
    with pytest.raises(InvalidFieldError):
        federation.directory(threshold=threshold)
    msg = federation.directory().to_wire()
    msg.threshold = threshold
    with pytest.raises(InvalidFieldError):
        verify_directory(_signed_wire(federation, msg), None, T0)


def test_duplicate_agency_is_invalid(federation: FederationSimulator) -> None:
    cards = federation.directory().agencies
    with pytest.raises(InvalidFieldError):
        federation.directory(agencies=(*cards, cards[0]))
    msg = federation.directory().to_wire()
    msg.agencies.append(msg.agencies[0])
    with pytest.raises(InvalidFieldError):
        verify_directory(_signed_wire(federation, msg), None, T0)


def test_same_agency_id_with_other_keys_is_invalid(federation: FederationSimulator) -> None:
    cards = federation.directory().agencies
    twin = make_agency(cards[0].agency_id).card
    with pytest.raises(InvalidFieldError):
        federation.directory(agencies=(*cards, twin))


def test_two_agencies_sharing_a_tls_key_are_invalid(federation: FederationSimulator) -> None:
    cards = federation.directory().agencies
    clone = replace(make_agency("ES-CNP").card, tls_spki_sha256=cards[0].tls_spki_sha256)
    with pytest.raises(InvalidFieldError):
        federation.directory(agencies=(*cards, clone))


def test_duplicate_admin_is_invalid(federation: FederationSimulator) -> None:
    admins = federation.directory().admins
    with pytest.raises(InvalidFieldError):
        federation.directory(admins=(*admins, admins[0]))
    msg = federation.directory().to_wire()
    msg.admins.append(msg.admins[0])
    with pytest.raises(InvalidFieldError):
        verify_directory(_signed_wire(federation, msg), None, T0)


def test_admin_key_id_that_does_not_match_its_key_is_invalid(
    federation: FederationSimulator,
) -> None:
    msg = federation.directory().to_wire()
    msg.admins[0].key_id = msg.admins[1].key_id
    with pytest.raises(InvalidFieldError):
        verify_directory(_signed_wire(federation, msg), None, T0)
    msg = federation.directory().to_wire()
    msg.admins[0].public_key = b"\0" * 31
    with pytest.raises(InvalidFieldError):
        verify_directory(_signed_wire(federation, msg), None, T0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("federation_id", ""),
        ("version", 0),
        ("expires_at", T0 - HOUR),  # equals issued_at
        ("expires_at", T0 - 2 * HOUR),
    ],
)
def test_invalid_directory_fields(
    federation: FederationSimulator, field: str, value: object
) -> None:
    with pytest.raises(InvalidFieldError):
        federation.directory(**{field: value})
    msg = federation.directory().to_wire()
    setattr(msg, field, value)
    with pytest.raises(InvalidFieldError):
        verify_directory(_signed_wire(federation, msg), None, T0)


def test_invalid_agency_card_in_a_signed_directory_is_invalid(
    federation: FederationSimulator,
) -> None:
    msg = federation.directory().to_wire()
    msg.agencies[0].country = "France"
    with pytest.raises(InvalidFieldError):
        verify_directory(_signed_wire(federation, msg), None, T0)


def test_unknown_fields_in_the_signed_directory_are_malformed(
    federation: FederationSimulator,
) -> None:
    body = federation.directory().to_bytes() + b"\xf8\x01\x01"  # field 31, varint 1
    with pytest.raises(MalformedError):
        verify_directory(sign_directory(body, federation.signing_admins()), None, T0)
    signed = federation.publish() + b"\x18\x01"  # field 3 of SignedDirectory
    with pytest.raises(MalformedError):
        verify_directory(signed, None, T0)


def test_unsigned_directory_with_a_superscript_port_is_refused_with_a_protocol_error(
    federation: FederationSimulator,
) -> None:
    msg = federation.directory().to_wire()
    msg.agencies[0].endpoint = "node.example.test:²"
    unsigned = pb.SignedDirectory(directory=msg.SerializeToString()).SerializeToString()
    with pytest.raises(MlaxError):
        verify_directory(unsigned, None, T0)


def test_garbage_is_malformed(federation: FederationSimulator) -> None:
    for data in (b"\xff", b"\x0a\x05abc", b"\x0a\x02\xff\xff"):
        with pytest.raises(MalformedError):
            verify_directory(data, None, T0)


def test_oversized_directory_is_refused() -> None:
    with pytest.raises(OversizedError):
        verify_directory(b"\0" * (MAX_DIRECTORY_BYTES + 1), None, T0)


def test_directory_errors_share_one_base_and_status() -> None:
    for error in (
        ThresholdError,
        DuplicateSignatureError,
        UnknownSignerError,
        BadSignatureError,
        ExpiredDirectoryError,
        RollbackError,
        FederationMismatchError,
    ):
        assert issubclass(error, DirectoryError)
        assert error.status == "FAILED_PRECONDITION"


# --- the Directory object --------------------------------------------------------------------


def test_directory_round_trips_through_bytes(federation: FederationSimulator) -> None:
    d = federation.directory()
    assert Directory.from_bytes(d.to_bytes()) == d
    assert d.to_bytes() == Directory.from_bytes(d.to_bytes()).to_bytes()
    signed = SignedDirectory.from_bytes(federation.publish())
    assert SignedDirectory.from_bytes(signed.to_bytes()) == signed


def test_lookups(federation: FederationSimulator) -> None:
    d = federation.directory()
    card = d.agencies[0]
    assert d.agency(card.agency_id) == card
    assert d.agency("ZZ-NOBODY") is None
    assert d.agency_by_tls_pin(card.tls_spki_sha256) == card
    assert d.agency_by_tls_pin(b"\0" * 32) is None
    admin = d.admins[0]
    assert d.admin(admin.key_id) == admin
    assert d.admin("0" * 32) is None


def test_with_and_without_agency(federation: FederationSimulator) -> None:
    d = federation.directory()
    new = make_agency("AT-BK").card
    added = d.with_agency(new)
    assert added.agency("AT-BK") == new
    assert [a.agency_id for a in added.agencies] == sorted(a.agency_id for a in added.agencies)
    replaced = added.with_agency(replace(new, name="Bundeskriminalamt"))
    card = replaced.agency("AT-BK")
    assert card is not None
    assert card.name == "Bundeskriminalamt"
    assert len(replaced.agencies) == len(added.agencies)
    assert added.without_agency("AT-BK").agencies == d.agencies
    with pytest.raises(InvalidFieldError):
        d.without_agency("AT-BK")


def test_admin_key_verify() -> None:
    key = SigningKey.generate()
    admin = AdminKey("a", ed25519_public(key))
    sig = key.sign(b"m").signature
    assert admin.verify(b"m", sig)
    assert not admin.verify(b"n", sig)
    assert not admin.verify(b"m", sig[:10])
    assert not AdminKey("short", b"\0" * 5).verify(b"m", sig)
