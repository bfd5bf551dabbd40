"""The encrypted key file: round trip, permissions, and every way a file can be wrong."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from exchange.errors import KeystoreError, PassphraseError
from keys.atomic import ensure_private_dir
from keys.keystore import (
    KDF_PROFILE_ENV,
    STRONG_KDF,
    TEST_KDF,
    KdfParams,
    kdf_params_from_env,
    read_key_file,
    read_key_header,
    write_key_file,
)
from keys.material import Algorithm, KeyMaterial, Purpose


def _write(path: Path, passphrase: bytes, algorithm: Algorithm = Algorithm.ED25519) -> KeyMaterial:
    material = KeyMaterial.generate(algorithm)
    write_key_file(path, material, Purpose.SIGNING, "GB-NCA", passphrase, TEST_KDF)
    return material


def _edit(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_round_trip_every_algorithm(
    tmp_path: Path, passphrase: bytes, algorithm: Algorithm
) -> None:
    path = tmp_path / "k.key"
    material = KeyMaterial.generate(algorithm)
    header = write_key_file(path, material, Purpose.ENCRYPTION, "GB-NCA", passphrase, TEST_KDF)

    read_header, read_material = read_key_file(path, passphrase)

    assert read_header == header == read_key_header(path)
    assert read_header.key_id == material.key_id
    assert read_header.purpose is Purpose.ENCRYPTION
    assert read_header.label == "GB-NCA"
    assert read_material.secret == material.secret
    assert read_material.public_key == material.public_key


def test_key_file_is_0600_in_a_0700_directory_and_leaves_no_temporary_file(
    tmp_path: Path, passphrase: bytes
) -> None:
    directory = tmp_path / "keys"
    ensure_private_dir(directory)
    _write(directory / "k.key", passphrase)

    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "k.key").stat().st_mode) == 0o600
    assert [p.name for p in directory.iterdir()] == ["k.key"]


def test_wrong_passphrase_is_a_passphrase_error_naming_the_file(
    tmp_path: Path, passphrase: bytes
) -> None:
    path = tmp_path / "k.key"
    _write(path, passphrase)

    with pytest.raises(PassphraseError) as e:
        read_key_file(path, b"not the passphrase")

    assert e.value.message == f"The passphrase does not decrypt {path}."


def test_no_plaintext_key_bytes_in_the_file(tmp_path: Path, passphrase: bytes) -> None:
    path = tmp_path / "k.key"
    material = _write(path, passphrase)
    data = path.read_bytes()

    for form in (
        material.secret,
        material.secret.hex().encode(),
        base64.b64encode(material.secret),
    ):
        assert form not in data
    assert passphrase not in data


def test_repr_of_key_material_does_not_show_the_secret() -> None:
    material = KeyMaterial.generate(Algorithm.X25519)
    assert material.secret.hex() not in repr(material)
    assert material.key_id in repr(material)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("ciphertext", lambda d: d.update(ciphertext=_flip(d["ciphertext"]))),
        ("nonce", lambda d: d["aead"].update(nonce=_flip(d["aead"]["nonce"]))),
        ("salt", lambda d: d["kdf"].update(salt=_flip(d["kdf"]["salt"]))),
        ("purpose", lambda d: d.update(purpose="admin")),
        ("label", lambda d: d.update(label="FR-OCRTEH")),
        ("iterations", lambda d: d["kdf"].update(iterations=2)),
        ("algorithm", lambda d: d.update(algorithm="x25519")),
        ("public key", lambda d: d.update(public_key=_flip(d["public_key"]))),
    ],
)
def test_tampered_file_does_not_open(
    tmp_path: Path, passphrase: bytes, field: str, change: Any
) -> None:
    path = tmp_path / "k.key"
    _write(path, passphrase)
    _edit(path, change)

    with pytest.raises(KeystoreError):
        read_key_file(path, passphrase)


def test_swapped_metadata_of_another_key_does_not_open(tmp_path: Path, passphrase: bytes) -> None:
    """A header copied from another key file (same passphrase) breaks the AEAD binding."""
    _write(tmp_path / "a.key", passphrase)
    _write(tmp_path / "b.key", passphrase)
    other = json.loads((tmp_path / "b.key").read_text())

    def take_header(doc: dict[str, Any]) -> None:
        doc.update(key_id=other["key_id"], public_key=other["public_key"])

    _edit(tmp_path / "a.key", take_header)

    with pytest.raises(PassphraseError):
        read_key_file(tmp_path / "a.key", passphrase)


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_missing_file_is_one_clear_keystore_error(tmp_path: Path, passphrase: bytes) -> None:
    with pytest.raises(KeystoreError) as e:
        read_key_file(tmp_path / "absent.key", passphrase)
    assert e.value.message == f"There is no key file at {tmp_path / 'absent.key'}."


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b'{"format": "something-else"}', b"\xff\xfe"],
)
def test_not_a_key_file(tmp_path: Path, passphrase: bytes, content: bytes) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(content)
    with pytest.raises(KeystoreError) as e:
        read_key_file(path, passphrase)
    assert e.value.message == f"{path} is not a readable MLAX key file."


def test_kdf_parameters_out_of_range_are_refused_before_deriving(
    tmp_path: Path, passphrase: bytes
) -> None:
    """A file asking for a terabyte of Argon2 memory must not be obeyed."""
    path = tmp_path / "k.key"
    _write(path, passphrase)
    _edit(path, lambda d: d["kdf"].update(memory_kib=2**40))

    with pytest.raises(KeystoreError, match="outside the accepted range"):
        read_key_file(path, passphrase)


def test_purpose_is_checked(tmp_path: Path, passphrase: bytes) -> None:
    path = tmp_path / "k.key"
    _write(path, passphrase)
    with pytest.raises(
        KeystoreError, match="holds a signing key, not a federation administrator key"
    ):
        read_key_file(path, passphrase, Purpose.ADMIN)


def test_never_overwrites_an_existing_key_file(tmp_path: Path, passphrase: bytes) -> None:
    path = tmp_path / "k.key"
    first = _write(path, passphrase)
    with pytest.raises(KeystoreError, match="already exists"):
        _write(path, passphrase)
    assert read_key_file(path, passphrase)[1].secret == first.secret
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="must not be empty"):
        _write(tmp_path / "k.key", b"")


def test_default_profile_is_strong_and_recorded_in_the_file(
    tmp_path: Path, passphrase: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KDF_PROFILE_ENV)
    assert kdf_params_from_env() == STRONG_KDF == KdfParams(64 * 1024, 3, 1)
    path = tmp_path / "k.key"
    material = KeyMaterial.generate(Algorithm.ED25519)
    write_key_file(path, material, Purpose.SIGNING, "GB-NCA", passphrase)

    kdf = json.loads(path.read_text())["kdf"]
    assert (kdf["name"], kdf["memory_kib"], kdf["iterations"], kdf["lanes"]) == (
        "argon2id",
        65536,
        3,
        1,
    )
    assert read_key_file(path, passphrase)[1].secret == material.secret


def test_test_profile_and_unknown_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KDF_PROFILE_ENV, "test")
    assert kdf_params_from_env() == TEST_KDF
    monkeypatch.setenv(KDF_PROFILE_ENV, "fast")
    with pytest.raises(KeystoreError, match="is not a KDF profile"):
        kdf_params_from_env()
