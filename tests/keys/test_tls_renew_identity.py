"""TLS renewal: the next certificate is published beside the current one, peers find the
agency by either pin, and retiring the old one leaves a single, loadable certificate."""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from exchange.agency import AgencyCard
from exchange.directory import AdminKey, Directory
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError, KeystoreError, PassphraseError
from keys.card_file import card_from_json, card_to_json
from keys.expiry import expiry_warnings
from keys.identity import DAY_MS, load_identity, read_card
from keys.identity_file import read_identity_record
from keys.material import Purpose
from keys.rotation import RotationKind, renew_tls, retire_tls, rotate_keys
from keys.tls import certificate_not_after_ms, spki_sha256

MakeIdentity = Callable[..., tuple[Path, AgencyCard]]


def _directory(*cards: AgencyCard) -> Directory:
    t = now_ms()
    admin = AdminKey("Administrator", bytes(32))
    return Directory("fed", 1, t, t + DAY_MS, 1, (admin,), tuple(cards))


def test_renewal_publishes_the_next_pin_and_retiring_makes_it_the_only_one(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, before = make_identity()

    card = renew_tls(directory, passphrase, validity_days=400)

    nxt = (directory / "tls-next.crt").read_bytes()
    assert card == read_card(directory)
    assert card.tls_certificate_pem == before.tls_certificate_pem
    assert card.next_tls_spki_sha256 == spki_sha256(nxt) != before.tls_spki_sha256
    assert card.tls_pins == (before.tls_spki_sha256, card.next_tls_spki_sha256)
    # The card the admins receive carries both, and reads back with its pins checked.
    assert card_from_json(card_to_json(card)) == card
    tls_keys = read_identity_record(directory).of_purpose(Purpose.TLS)
    assert len(tls_keys) == 2
    new_key_file = directory / tls_keys[-1].file
    assert stat.S_IMODE(new_key_file.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in new_key_file.read_bytes()  # encrypted at rest
    identity = load_identity(directory, passphrase)
    pair = identity.next_tls_pair()
    assert pair is not None
    assert pair[1] == nxt
    assert identity.next_tls_certificate_not_after == certificate_not_after_ms(nxt)
    # One renewal at a time; a wrong passphrase changes nothing.
    with pytest.raises(KeystoreError, match="already under way"):
        renew_tls(directory, passphrase)

    # Other rotations keep the renewal in the card.
    assert rotate_keys(directory, passphrase, RotationKind.SIGNING).card.next_tls_certificate_pem

    old_pin, retired = retire_tls(directory)

    assert old_pin == before.tls_spki_sha256
    assert retired == read_card(directory)
    assert (retired.tls_certificate_pem, retired.tls_pins) == (nxt, (spki_sha256(nxt),))
    assert not (directory / "tls-next.crt").exists()
    assert [p for p in directory.iterdir() if p.name.startswith("tls-ecdsa")] == [new_key_file]
    reloaded = load_identity(directory, passphrase)
    assert reloaded.next_tls_pair() is None
    assert reloaded.tls_certificate_pem() == nxt
    with pytest.raises(KeystoreError, match="No TLS renewal is under way"):
        retire_tls(directory)


def test_renewal_refuses_a_wrong_passphrase_and_writes_nothing(
    make_identity: MakeIdentity,
) -> None:
    directory, _ = make_identity()
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    with pytest.raises(PassphraseError):
        renew_tls(directory, b"wrong")
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == files


def test_the_directory_finds_an_agency_by_either_pin_and_refuses_a_shared_one(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    gb_dir, _ = make_identity("GB-NCA")
    _, fr = make_identity("FR-OCRTEH", endpoint="node.fr.example:7443")
    gb = renew_tls(gb_dir, passphrase)
    directory = _directory(gb, fr)

    assert directory.agency_by_tls_pin(gb.tls_spki_sha256) == gb
    assert directory.agency_by_tls_pin(gb.next_tls_spki_sha256) == gb
    assert directory.agency_by_tls_pin(fr.tls_spki_sha256) == fr
    # FR cannot claim GB's next key as its own next one.
    stolen = replace(
        fr,
        next_tls_spki_sha256=gb.next_tls_spki_sha256,
        next_tls_certificate_pem=gb.next_tls_certificate_pem,
    )
    with pytest.raises(InvalidFieldError, match="share one TLS key"):
        _directory(gb, stolen)
    # Wire round trip, and a directory without the fields reads as no renewal.
    assert AgencyCard.from_wire(gb.to_wire()) == gb
    assert AgencyCard.from_wire(fr.to_wire()).tls_pins == (fr.tls_spki_sha256,)


def test_a_card_whose_next_pin_is_not_its_next_certificate_is_refused(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, fr = make_identity()
    card = renew_tls(directory, passphrase)
    forged = replace(card, next_tls_spki_sha256=fr.tls_spki_sha256[::-1])
    with pytest.raises(InvalidFieldError, match="next TLS fingerprint"):
        card_from_json(card_to_json(forged))
    with pytest.raises(InvalidFieldError, match="go together"):
        replace(card, next_tls_certificate_pem=b"")
    with pytest.raises(InvalidFieldError, match="is the current one"):
        replace(card, next_tls_spki_sha256=card.tls_spki_sha256)


def test_tls_expiry_warns_with_the_renewal_command_until_a_renewal_covers_it(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, card = make_identity(validity_days=10)
    (warning,) = [w for w in expiry_warnings(card, now_ms()) if "TLS" in w]
    assert "TLS certificate of GB-NCA expires in" in warning
    assert "mlax keys renew-tls" in warning
    # Rotate the other keys so only the TLS certificate is in question.
    rotate_keys(directory, passphrase, RotationKind.ALL)
    renewed = renew_tls(directory, passphrase)
    assert expiry_warnings(renewed, now_ms()) == []
    expired = expiry_warnings(card, now_ms() + 11 * DAY_MS)
    assert any("has expired: renew it with `mlax keys renew-tls`" in w for w in expired)
