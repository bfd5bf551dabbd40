"""Directory edits of the administrators and the expiry, and chain files of versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from exchange.directory import AdminKey, Directory, SignedDirectory
from exchange.errors import InvalidFieldError, MalformedError
from keys.directory_edit import (
    DAY_MS,
    add_admin,
    extend_expiry,
    new_directory,
    remove_admin,
    set_threshold,
)
from keys.directory_file import read_versions, write_chain_file, write_directory_file

T = 1_800_000_000_000
KEYS = [SigningKey.generate() for _ in range(4)]
ADMINS = [AdminKey(f"admin-{i}", bytes(k.verify_key)) for i, k in enumerate(KEYS)]


def _signed_v1() -> SignedDirectory:
    v1 = new_directory("fed", 2, ADMINS[:3], validity_days=100, at_ms=T)
    return v1.signed_by(KEYS[0]).signed_by(KEYS[1])


def test_extend_starts_the_next_version_with_the_later_expiry() -> None:
    edit = extend_expiry(_signed_v1(), T + 200 * DAY_MS, at_ms=T + DAY_MS)
    assert (edit.after.version, edit.after.issued_at) == (2, T + DAY_MS)
    assert edit.after.expires_at == T + 200 * DAY_MS
    assert edit.cleared_signatures == 2
    # Only the expiry and the issue time changed.
    assert edit.after.admins == edit.before.admins
    assert edit.after.agencies == edit.before.agencies


@pytest.mark.parametrize(
    ("until", "message"),
    [
        (T + DAY_MS - 1, "is in the past"),
        (T + 100 * DAY_MS, "would not extend it"),
        (T + 50 * DAY_MS, "would not extend it"),
    ],
)
def test_extend_refuses_the_past_and_an_earlier_expiry(until: int, message: str) -> None:
    with pytest.raises(InvalidFieldError, match=message):
        extend_expiry(_signed_v1(), until, at_ms=T + DAY_MS)


def test_admin_edits_stay_on_one_unsigned_version() -> None:
    edit = add_admin(_signed_v1(), ADMINS[3], at_ms=T)
    edit = remove_admin(edit.signed, ADMINS[0].key_id, at_ms=T)
    edit = set_threshold(edit.signed, 3, at_ms=T)
    after = Directory.from_bytes(edit.signed.directory)
    assert after.version == 2
    assert [a.name for a in after.admins] == ["admin-1", "admin-2", "admin-3"]
    assert after.threshold == 3
    assert set_threshold(edit.signed, 3, at_ms=T).changes == ()
    with pytest.raises(InvalidFieldError, match="lower the threshold first"):
        remove_admin(edit.signed, ADMINS[1].key_id, at_ms=T)
    with pytest.raises(InvalidFieldError, match="already listed"):
        add_admin(edit.signed, ADMINS[1], at_ms=T)
    with pytest.raises(InvalidFieldError, match="is not an administrator"):
        remove_admin(edit.signed, ADMINS[0].key_id, at_ms=T)
    with pytest.raises(InvalidFieldError, match="Threshold 4 must be between 1 and"):
        set_threshold(edit.signed, 4, at_ms=T)


def test_chain_files_round_trip_in_version_order(tmp_path: Path) -> None:
    v1 = _signed_v1()
    v2 = extend_expiry(v1, T + 300 * DAY_MS, at_ms=T).signed.signed_by(KEYS[0])
    write_chain_file(tmp_path / "chain.json", [v1, v2])
    write_directory_file(tmp_path / "v2.pb", v2, binary=True)
    # A version met twice is kept once; files may come in any order.
    assert read_versions([tmp_path / "v2.pb", tmp_path / "chain.json"]) == [v1, v2]


def test_two_different_directories_of_one_version_are_refused(tmp_path: Path) -> None:
    v1 = _signed_v1()
    other = new_directory("fed", 1, ADMINS[:1], at_ms=T)
    write_chain_file(tmp_path / "chain.json", [v1])
    write_directory_file(tmp_path / "other.json", other)
    with pytest.raises(InvalidFieldError, match="Two different directories claim version 1"):
        read_versions([tmp_path / "chain.json", tmp_path / "other.json"])


def test_a_malformed_chain_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain.json"
    path.write_text(json.dumps({"format": "mlax-directory-chain/v1", "versions": [{"x": 1}]}))
    with pytest.raises(MalformedError, match=r"^Entry 1 of "):
        read_versions([path])
    path.write_text(json.dumps({"format": "mlax-directory-chain/v1", "versions": "no"}))
    with pytest.raises(MalformedError, match="is not an mlax-directory-chain/v1 JSON document"):
        read_versions([path])
