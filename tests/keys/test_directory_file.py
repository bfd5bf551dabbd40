"""Directory files (JSON and binary) and the edit rules: signatures cleared, versions bumped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from exchange.agency import AgencyCard
from exchange.directory import AdminKey, Directory, SignedDirectory, verify_directory
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError, MalformedError, ThresholdError
from keys.admin import create_admin, decode_public_key, load_admin
from keys.directory_edit import (
    DAY_MS,
    add_agencies,
    new_directory,
    remove_agency,
    set_statistics_coordinators,
)
from keys.directory_file import (
    parse_signed_directory,
    read_directory_file,
    signed_directory_from_json,
    signed_directory_to_json,
    write_directory_file,
)
from keys.rotation import RotationKind, rotate_keys

MakeIdentity = Callable[..., tuple[Path, AgencyCard]]
ADMINS = [SigningKey.generate() for _ in range(3)]


def _admin_keys() -> list[AdminKey]:
    return [AdminKey(f"admin-{i}", bytes(k.verify_key)) for i, k in enumerate(ADMINS)]


def _signed(signed: SignedDirectory, *keys: SigningKey) -> SignedDirectory:
    for key in keys:
        signed = signed.signed_by(key)
    return signed


def test_new_directory_is_version_1_unsigned_with_its_validity() -> None:
    t = now_ms()
    signed = new_directory("fed", 2, _admin_keys(), validity_days=180, at_ms=t)

    directory = Directory.from_bytes(signed.directory)
    assert signed.signatures == ()
    assert (directory.version, directory.threshold, directory.agencies) == (1, 2, ())
    assert (directory.issued_at, directory.expires_at) == (t, t + 180 * DAY_MS)


def test_json_and_binary_forms_carry_the_same_signed_bytes(tmp_path: Path) -> None:
    signed = _signed(new_directory("fed", 2, _admin_keys()), *ADMINS[:2])

    write_directory_file(tmp_path / "d.json", signed)
    write_directory_file(tmp_path / "d.pb", signed, binary=True)

    as_json, as_pb = (
        read_directory_file(tmp_path / "d.json"),
        read_directory_file(tmp_path / "d.pb"),
    )
    assert as_json.signed == as_pb.signed == signed
    assert (as_json.binary, as_pb.binary) == (False, True)
    assert json.loads((tmp_path / "d.json").read_text())["format"] == "mlax-directory/v1"
    verify_directory(as_json.signed.to_bytes(), None, now_ms())


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        '{"format": "mlax-directory/v1", "directory": "!!", "signatures": []}',
        '{"format": "mlax-directory/v1", "directory": "", "signatures": [{"key_id": 1}]}',
        '{"format": "mlax-directory/v1", "directory": "", "signatures": [], "extra": 1}',
        "{not json",
    ],
)
def test_malformed_json_is_refused(text: str) -> None:
    with pytest.raises(MalformedError, match="is not an mlax-directory/v1 JSON document"):
        parse_signed_directory(text.encode(), "d.json")


def test_json_round_trip() -> None:
    signed = _signed(new_directory("fed", 1, _admin_keys()), ADMINS[0])
    assert signed_directory_from_json(signed_directory_to_json(signed)) == signed


def test_adding_to_an_unsigned_directory_keeps_its_version(make_identity: MakeIdentity) -> None:
    _, gb = make_identity("GB-NCA")
    _, fr = make_identity("FR-OCRTEH", endpoint="node.fr.example:7443")
    signed = new_directory("fed", 2, _admin_keys())

    edit = add_agencies(signed, [gb, fr])

    assert edit.after.version == 1
    assert edit.cleared_signatures == 0
    assert [a.agency_id for a in edit.after.agencies] == ["FR-OCRTEH", "GB-NCA"]
    assert edit.changes == (
        "added GB-NCA (Agency GB-NCA, GB, node.gb.example:7443)",
        "added FR-OCRTEH (Agency FR-OCRTEH, FR, node.fr.example:7443)",
    )


def test_editing_a_signed_directory_clears_signatures_and_bumps_the_version_once(
    make_identity: MakeIdentity,
) -> None:
    _, gb = make_identity("GB-NCA")
    _, fr = make_identity("FR-OCRTEH", endpoint="node.fr.example:7443")
    t = now_ms()
    v1 = _signed(add_agencies(new_directory("fed", 2, _admin_keys(), at_ms=t), [gb, fr]).signed)
    v1 = _signed(v1, *ADMINS[:2])
    before = Directory.from_bytes(v1.directory)

    first = remove_agency(v1, "FR-OCRTEH", at_ms=t + 1000)
    second = add_agencies(first.signed, [fr], at_ms=t + 2000)

    assert first.signed.signatures == ()
    assert first.cleared_signatures == 2
    assert first.after.version == 2
    assert second.after.version == 2  # still the same unsigned draft
    assert second.after.issued_at == t + 2000
    assert second.after.expires_at - second.after.issued_at == before.expires_at - before.issued_at
    with pytest.raises(ThresholdError):
        verify_directory(second.signed.to_bytes(), before, t + 3000)
    v2 = _signed(second.signed, *ADMINS[1:])
    assert verify_directory(v2.to_bytes(), before, t + 3000).version == 2


def test_replacing_a_card_reports_what_changed(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, gb = make_identity("GB-NCA")
    signed = add_agencies(new_directory("fed", 1, _admin_keys()), [gb]).signed
    rotation = rotate_keys(directory, passphrase, RotationKind.SIGNING)

    edit = add_agencies(signed, [rotation.card])

    new_id = rotation.added[0].key_id
    old_id = gb.signing_keys[0].key_id
    assert edit.changes == (
        f"GB-NCA: signing key {new_id} added",
        f"GB-NCA: signing key {old_id} validity changed",
    )


def test_adding_an_identical_card_changes_nothing(make_identity: MakeIdentity) -> None:
    _, gb = make_identity("GB-NCA")
    signed = _signed(add_agencies(new_directory("fed", 1, _admin_keys()), [gb]).signed, ADMINS[0])

    edit = add_agencies(signed, [gb])

    assert not edit.changed
    assert edit.signed == signed


def test_removing_an_unlisted_agency_is_refused() -> None:
    with pytest.raises(InvalidFieldError, match="DE-BKA is not in the directory"):
        remove_agency(new_directory("fed", 1, _admin_keys()), "DE-BKA")


def test_admin_key_create_load_and_public_file(tmp_path: Path, passphrase: bytes) -> None:
    admin = create_admin(tmp_path / "a1", "Admin One", passphrase)

    signer = load_admin(tmp_path / "a1", passphrase)

    assert signer.public == admin
    assert decode_public_key((tmp_path / "a1" / "admin.pub").read_text()) == admin.public_key
    with pytest.raises(InvalidFieldError, match="is not an administrator public key"):
        decode_public_key("bm90IDMyIGJ5dGVz")


def test_statistics_coordinators_are_listed_agencies_and_travel_in_the_signed_bytes(
    make_identity: MakeIdentity,
) -> None:
    _, gb = make_identity("GB-NCA")
    _, un = make_identity("AT-UNODC", endpoint="node.unodc.example:7443")
    signed = add_agencies(new_directory("fed", 1, _admin_keys()), [gb, un]).signed

    edit = set_statistics_coordinators(signed, ["AT-UNODC"])

    assert edit.changes == ("statistics coordinators: AT-UNODC",)
    assert Directory.from_bytes(edit.signed.directory).statistics_coordinators == ("AT-UNODC",)
    assert not set_statistics_coordinators(edit.signed, ["AT-UNODC"]).changed
    with pytest.raises(InvalidFieldError, match="DE-BKA is not an agency of the directory"):
        set_statistics_coordinators(signed, ["DE-BKA"])
    # Removing the coordinator's agency removes it as coordinator; none: every member.
    removed = remove_agency(edit.signed, "AT-UNODC")
    assert Directory.from_bytes(removed.signed.directory).statistics_coordinators == ()
