"""A chain of directory versions verified step by step: how a node that trusts an old
version reaches the newest across changes of administrators (TUF root rotation)."""

from __future__ import annotations

import pytest
from factories import DAY, T0, FederationSimulator, SimAdmin, flip_bit
from nacl.signing import SigningKey

from exchange.directory import Directory, SignedDirectory, verify_directory, verify_directory_chain
from exchange.errors import (
    BadSignatureError,
    ChainGapError,
    ExpiredDirectoryError,
    FederationMismatchError,
    MalformedError,
    RollbackError,
    ThresholdError,
)


class Rotation:
    """v1 by admins A; v2 hands over to admins B (A and B sign); v3 by B only."""

    def __init__(self) -> None:
        self.fed = FederationSimulator()
        self.fed.add_agency("GB-NCA")
        self.old = [a.signing_key for a in self.fed.admins]
        self.v1 = self.fed.publish()
        self.fed.admins = [SimAdmin(f"new-admin-{i}") for i in range(3)]
        self.new = [a.signing_key for a in self.fed.admins]
        self.fed.version = 2
        self.v2 = self.fed.publish(signers=[*self.old[:2], *self.new[:2]])
        self.fed.version = 3
        self.v3 = self.fed.publish(signers=self.new[1:])

    def version(self, n: int, signers: list[SigningKey], **overrides: int) -> bytes:
        self.fed.version = n
        return self.fed.publish(self.fed.directory(**overrides), signers)

    @property
    def trusted_v1(self) -> Directory:
        return verify_directory(self.v1, None, T0)


@pytest.fixture
def rot() -> Rotation:
    return Rotation()


def test_a_node_trusting_v1_reaches_v3_through_v2(rot: Rotation) -> None:
    # v3 alone does not verify against v1: none of v1's administrators signed it.
    with pytest.raises(ThresholdError):
        verify_directory(rot.v3, rot.trusted_v1, T0)
    v2, v3 = verify_directory_chain([rot.v2, rot.v3], rot.trusted_v1, T0)
    assert (v2.version, v3.version) == (2, 3)
    assert {a.name for a in v3.admins} == {"new-admin-0", "new-admin-1", "new-admin-2"}


def test_versions_already_trusted_are_skipped(rot: Rotation) -> None:
    chain = [rot.v1, rot.v2, rot.v3]
    assert [d.version for d in verify_directory_chain(chain, rot.trusted_v1, T0)] == [2, 3]
    v3 = verify_directory(rot.v3, verify_directory(rot.v2, rot.trusted_v1, T0), T0)
    assert verify_directory_chain(chain, v3, T0) == ()


def test_without_a_trusted_directory_the_first_version_is_the_anchor(rot: Rotation) -> None:
    chain = verify_directory_chain([rot.v1, rot.v2, rot.v3], None, T0)
    assert [d.version for d in chain] == [1, 2, 3]


def test_a_gap_is_refused_naming_the_missing_version(rot: Rotation) -> None:
    with pytest.raises(ChainGapError) as e:
        verify_directory_chain([rot.v1, rot.v3], None, T0)
    assert (
        e.value.message
        == "Directory version 3 follows version 1: version 2 is missing from the chain."
    )
    with pytest.raises(ChainGapError, match="version 2 is missing"):
        verify_directory_chain([rot.v3], rot.trusted_v1, T0)


def test_versions_out_of_order_are_refused(rot: Rotation) -> None:
    with pytest.raises(RollbackError, match="Directory version 1 follows version 2"):
        verify_directory_chain([rot.v1, rot.v2, rot.v1], None, T0)


def test_a_version_signed_by_the_new_admins_only_is_refused_naming_it(rot: Rotation) -> None:
    v2 = rot.version(2, rot.new)
    with pytest.raises(ThresholdError) as e:
        verify_directory_chain([v2, rot.v3], rot.trusted_v1, T0)
    assert e.value.message == (
        "Directory version 2 is refused: the directory has 0 signatures of the "
        "administrators trusted until now; they require 2."
    )


def test_a_bad_signature_is_refused_naming_the_version(rot: Rotation) -> None:
    signed = SignedDirectory.from_bytes(rot.v3)
    kid, sig = signed.signatures[0]
    broken = SignedDirectory(signed.directory, ((kid, flip_bit(sig, 5)), *signed.signatures[1:]))
    with pytest.raises(BadSignatureError) as e:
        verify_directory_chain([rot.v2, broken.to_bytes()], rot.trusted_v1, T0)
    assert e.value.message == (
        f"Directory version 3 is refused: the signature of administrator {kid} does not verify."
    )


def test_an_entry_that_is_no_directory_is_refused_naming_its_place(rot: Rotation) -> None:
    with pytest.raises(MalformedError, match=r"^Entry 2 of the directory chain is refused: "):
        verify_directory_chain([rot.v2, b"\xff garbage"], rot.trusted_v1, T0)


def test_another_federation_is_refused(rot: Rotation) -> None:
    rot.fed.federation_id = "another-federation"
    other = rot.version(2, rot.old[:2])
    with pytest.raises(FederationMismatchError, match=r"^Directory version 2 is refused: "):
        verify_directory_chain([other], rot.trusted_v1, T0)


def test_only_the_last_version_must_be_unexpired(rot: Rotation) -> None:
    later = T0 + 200 * DAY  # v1 to v3 expire after 90 days
    v4 = rot.version(4, rot.new[:2], issued_at=T0 + 100 * DAY, expires_at=T0 + 300 * DAY)
    chain = verify_directory_chain([rot.v2, rot.v3, v4], rot.trusted_v1, later)
    assert chain[-1].version == 4
    with pytest.raises(ExpiredDirectoryError) as e:
        verify_directory_chain([rot.v2, rot.v3], rot.trusted_v1, later)
    assert e.value.message == "Directory version 3, the last of the chain, has expired."
