"""Which TLS certificate a node presents during a renewal: the current one until the
directory has listed the next pin for the switch delay (or made it current), never one the
directory does not list; outbound channels follow."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from exchange.agency import AgencyCard
from exchange.directory import AdminKey, Directory
from exchange.encoding import now_ms
from keys.identity import DAY_MS, create_identity, load_identity
from keys.keystore import KDF_PROFILE_ENV, TEST_KDF
from keys.rotation import renew_tls, retire_tls
from node.peers.channels import OwnCertificate, presents_next

PASSPHRASE = b"switch test"


def _directory(*cards: AgencyCard) -> Directory:
    t = now_ms()
    return Directory("fed", 1, t, t + DAY_MS, 1, (AdminKey("a", bytes(32)),), tuple(cards))


@pytest.fixture
def renewed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, AgencyCard, AgencyCard]:
    """GB's identity mid-renewal: the card before and the card with the next pin."""
    monkeypatch.setenv(KDF_PROFILE_ENV, "test")
    directory = tmp_path / "gb"
    before = create_identity(
        directory,
        agency_id="GB-NCA",
        name="NCA",
        endpoint="127.0.0.1:7443",
        passphrase=PASSPHRASE,
        kdf=TEST_KDF,
    )
    return directory, before, renew_tls(directory, PASSPHRASE)


def test_presents_next_only_once_the_directory_lists_it_long_enough(
    renewed: tuple[Path, AgencyCard, AgencyCard],
) -> None:
    _, before, during = renewed
    pin = during.next_tls_spki_sha256
    assert not presents_next(None, pin, None, 10)
    assert not presents_next(before, pin, 100, 10)  # not listed: peers would refuse it
    assert not presents_next(during, pin, 9.9, 10)
    assert presents_next(during, pin, 10, 10)
    after = replace(
        before, tls_spki_sha256=pin, tls_certificate_pem=during.next_tls_certificate_pem
    )
    assert presents_next(after, pin, None, 10)  # the old pin is retired: switch at once
    assert not presents_next(during, b"", 100, 10)


def test_own_certificate_switches_after_the_delay_and_back_if_the_pin_is_withdrawn(
    renewed: tuple[Path, AgencyCard, AgencyCard],
) -> None:
    directory, before, during = renewed
    identity = load_identity(directory, PASSPHRASE)
    published = [_directory(before)]
    clock = [1000.0]
    own = OwnCertificate(identity, lambda: published[0], delay=30, clock=lambda: clock[0])
    old, new = before.tls_certificate_pem, during.next_tls_certificate_pem

    assert own.certificate_pem() == old
    clock[0] += 100  # time alone does not switch: the pin must be listed
    assert own.certificate_pem() == old
    published[0] = _directory(during)
    assert own.certificate_pem() == old  # listed from now on
    clock[0] += 29
    assert own.certificate_pem() == old
    clock[0] += 1
    key_pem, cert_pem = own.pair()
    assert cert_pem == new
    assert (key_pem, cert_pem) == identity.next_tls_pair()
    published[0] = _directory(before)  # the admins withdrew the renewal
    assert own.certificate_pem() == old

    # After `--retire` and a restart the node holds one certificate and presents it.
    retire_tls(directory)
    retired = load_identity(directory, PASSPHRASE)
    assert OwnCertificate(retired, lambda: published[0], delay=30).certificate_pem() == new
