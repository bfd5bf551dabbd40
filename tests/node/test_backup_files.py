"""`node.storage.backup` without a running node: what a backup holds, and the backups a
restore refuses (each with one sentence, before writing anything)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from node.config import load_config
from node.devtools.federation import DEMO_AGENCIES, build_federation
from node.storage.backup import BackupError, backup, restore, restored_index, seal_manifest
from node.storage.db import Database

PASS = b"node-pass"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a stopped node's config, a backup of it) with one evidence file in its blob store."""
    root = tmp_path_factory.mktemp("backup")
    fed = build_federation(root, PASS, b"officer-pass", agencies=DEMO_AGENCIES[:1])
    config = fed.nodes["GB-NCA"].config
    cfg = load_config(config)
    blob = cfg.attachments_dir / "ab" / ("ab" * 32)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"ciphertext")
    out = root / "out"
    done = backup(cfg, config, out, PASS)
    assert done.ledger_size > 0
    return config, out


def test_a_backup_holds_the_database_blobs_keys_and_config(made: tuple[Path, Path]) -> None:
    config, out = made
    manifest = json.loads((out / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert {"database/node.db", "node.toml", "data/officer-ca.key"} <= paths
    assert f"attachments/ab/{'ab' * 32}" in paths
    assert not any(p.startswith(("data/node.db", "data/attachments")) for p in paths)
    keys = [p for p in paths if p.startswith("identity/")]
    assert keys
    # Key files travel as the node holds them: encrypted, byte for byte.
    for p in keys:
        name = p.removeprefix("identity/")
        assert (out / p).read_bytes() == (config.parent / "keys" / name).read_bytes()
    with pytest.raises(BackupError, match="not empty"):
        backup(load_config(config), config, out, PASS)


def test_restore_writes_node_restored_at_the_backups_size(
    made: tuple[Path, Path], tmp_path: Path
) -> None:
    _, out = made
    size = json.loads((out / "manifest.json").read_text())["ledger"]["size"]
    done = restore(out, tmp_path / "data", tmp_path / "keys", passphrase=PASS)
    assert done.restored_index == size
    assert (tmp_path / "data" / "attachments" / "ab" / ("ab" * 32)).read_bytes() == b"ciphertext"
    assert (tmp_path / "data" / "officer-ca.key").exists()
    assert any((tmp_path / "keys").iterdir())
    db = Database(f"sqlite:///{tmp_path / 'data' / 'node.db'}")
    try:
        assert restored_index(db) == size
    finally:
        db.close()
    with pytest.raises(BackupError, match="is not empty: restore into a new directory"):
        restore(out, tmp_path / "data", passphrase=PASS)


def _damaged(out: Path, tmp_path: Path, edit: str) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = copy / "manifest.json"
    doc = json.loads(manifest.read_text())
    if edit == "missing":
        (copy / "node.toml").unlink()
    elif edit == "outside":
        doc["files"][0]["path"] = "../../etc/passwd"
    elif edit == "size":
        with (copy / "node.toml").open("a") as f:
            f.write("\n")
    elif edit == "json":
        manifest.write_text("{not json")
        return copy
    elif edit == "format":
        doc["format"] = "something-else/9"
    elif edit == "absolute":  # "data/" + "/x" once made data_dir / "/x", i.e. /x
        doc["files"][0]["path"] = "data//tmp/x"
    elif edit == "symlinked-dir":  # same bytes, but read through a link out of the backup
        shutil.rmtree(copy / "identity")
        (copy / "identity").symlink_to(out / "identity", target_is_directory=True)
    elif edit == "symlinked-file":
        (copy / "node.toml").unlink()
        (copy / "node.toml").symlink_to(out / "node.toml")
    elif edit == "twice":
        doc["files"] += [f for f in doc["files"] if f["path"] == "database/node.db"]
    elif edit == "alias":  # data/node.db and database/node.db both restore as node.db
        shutil.copy(copy / "database" / "node.db", copy / "data" / "node.db")
        (entry,) = [f for f in doc["files"] if f["path"] == "database/node.db"]
        doc["files"].append(dict(entry, path="data/node.db"))
    elif (
        edit == "unsealed"
    ):  # a file and its recorded SHA-256 changed by someone without the passphrase
        (copy / "node.toml").write_text("[node]\n")
        (entry,) = [f for f in doc["files"] if f["path"] == "node.toml"]
        entry["size"] = len("[node]\n")
        entry["sha256"] = hashlib.sha256(b"[node]\n").hexdigest()
        manifest.write_text(json.dumps(doc))
        return copy
    elif edit == "seal-text":  # a seal whose MAC is not hex (was a TypeError, not a sentence)
        doc["seal"]["hmac_sha256"] = "\u00e9" * 64
        manifest.write_text(json.dumps(doc))
        return copy
    elif edit == "unsealed-format":  # the seal taken off and the format set back
        doc.pop("seal")
        doc["format"] = "mlax-node-backup/1"
        manifest.write_text(json.dumps(doc))
        return copy
    # Sealed again, as by someone who knows the passphrase: the checks below the seal
    # still refuse what would write outside the node's directories.
    manifest.write_text(json.dumps(seal_manifest(doc, PASS)))
    return copy


@pytest.mark.parametrize(
    ("edit", "sentence"),
    [
        ("missing", "The backup is damaged: node.toml is missing."),
        ("outside", "The backup's manifest names a file outside it: '../../etc/passwd'."),
        ("size", "The backup is damaged: node.toml does not have its recorded size."),
        ("json", "The backup's manifest.json is not valid JSON: it is damaged."),
        ("format", "The backup's format is not mlax-node-backup/2."),
        (
            "unsealed",
            "The backup's manifest does not match its seal: it was altered, or the node "
            "passphrase given is not the one it was made with.",
        ),
        ("seal-text", "The backup's manifest has an unusable seal: it is damaged."),
        (
            "unsealed-format",
            "The backup is mlax-node-backup/1, made before backups were sealed: its files "
            "cannot be told from forged ones, so it is not restored.",
        ),
        ("absolute", "The backup's manifest names a file outside it: 'data//tmp/x'."),
        (
            "symlinked-dir",
            "The backup is refused: identity/"
            + "{key} is a symbolic link, under one, or not a regular file.",
        ),
        (
            "symlinked-file",
            "The backup is refused: node.toml is a symbolic link, under one, "
            "or not a regular file.",
        ),
        ("twice", "The backup's manifest restores two files to the same place."),
        ("alias", "The backup's manifest restores two files to the same place."),
    ],
)
def test_a_damaged_backup_is_refused_before_anything_is_written(
    made: tuple[Path, Path], tmp_path: Path, edit: str, sentence: str
) -> None:
    copy = _damaged(made[1], tmp_path, edit)
    keys = sorted(p.name for p in (made[1] / "identity").iterdir())
    with pytest.raises(BackupError) as exc:
        restore(copy, tmp_path / "data", tmp_path / "keys", passphrase=PASS)
    assert str(exc.value) == sentence.format(key=keys[0])
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "keys").exists()


def test_a_file_changed_after_the_check_is_caught_by_the_copy_and_nothing_stays(
    made: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy is hashed as it is written: a file swapped between `read_manifest` and
    the copy (same size, other bytes) is refused and what was restored is removed."""
    from node.storage import backup as module

    copy = tmp_path / "copy"
    shutil.copytree(made[1], copy)
    checked = module.read_manifest

    def check_then_swap(src: Path, passphrase: bytes) -> dict[str, object]:
        doc = checked(src, passphrase)
        key = copy / "data" / "officer-ca.key"
        key.write_bytes(bytes(len(key.read_bytes())))
        return doc

    monkeypatch.setattr(module, "read_manifest", check_then_swap)
    with pytest.raises(BackupError) as exc:
        restore(copy, tmp_path / "data", tmp_path / "keys", passphrase=PASS)
    assert str(exc.value) == (
        "The backup changed during the restore: data/officer-ca.key no longer matches."
    )
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "keys").exists()


def test_a_backup_under_a_passphrase_that_does_not_open_the_keys_is_not_made(
    made: tuple[Path, Path], tmp_path: Path
) -> None:
    config, _ = made
    with pytest.raises(BackupError, match="does not open this node's keys: no backup was made"):
        backup(load_config(config), config, tmp_path / "typo", b"node-pasz")
    assert not (tmp_path / "typo").exists()


def test_the_wrong_passphrase_restores_nothing(made: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="does not match its seal"):
        restore(made[1], tmp_path / "data", tmp_path / "keys", passphrase=b"not-the-node-pass")
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "keys").exists()


def test_a_directory_without_a_manifest_is_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="is not an MLAX node backup"):
        restore(tmp_path, tmp_path / "data", passphrase=PASS)


def test_a_blob_the_database_counts_but_the_store_lacks_fails_the_backup(
    made: tuple[Path, Path], tmp_path: Path
) -> None:
    config, _ = made
    copy = tmp_path / "node"
    shutil.copytree(config.parent, copy)
    conn = sqlite3.connect(copy / "data" / "node.db")
    with conn:
        conn.execute(
            "INSERT INTO attachments (attachment_id, direction, peer, case_ref, state, size,"
            " chunk_size, total_chunks, confirmed_chunks, key_sealed, sha256, message_id,"
            " handling_codes, restricted_to, created_at, completed_at, attempts,"
            " next_attempt_at, lease_until, last_error, touched_at, purged_at, purge_rule,"
            " blob_purged) VALUES (?, 'in', 'FR-OCRTEH', 'C-1', 'available', 100, 64, 2, 2,"
            " x'00', x'', x'', '', '', 0, 0, 0, 0, 0, '', 0, 0, '', 0)",
            (b"\x01" * 16,),
        )
    conn.close()
    with pytest.raises(BackupError, match="missing or short in the blob store"):
        backup(load_config(copy / "node.toml"), copy / "node.toml", tmp_path / "out", PASS)


def test_a_witness_acknowledges_only_a_restore_it_saw(made: tuple[Path, Path]) -> None:
    from exchange.errors import MissingError
    from node.services.witnessing import acknowledge_restore

    config, _ = made
    db = Database(load_config(config).database_url)
    try:
        with pytest.raises(MissingError) as exc:
            acknowledge_restore(db, "call-to-action", "FR-OCRTEH", 10)
        assert exc.value.message == "This node holds no cosigned checkpoint of FR-OCRTEH."
    finally:
        db.close()


def test_a_backup_inside_the_nodes_own_directories_is_refused(made: tuple[Path, Path]) -> None:
    config, _ = made
    cfg = load_config(config)
    with pytest.raises(BackupError, match="inside the node's own directories"):
        backup(cfg, config, cfg.node.data_dir / "backups" / "today", PASS)


def test_pg_dump_is_not_given_the_nodes_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_dump gets its password, not the node passphrase the backup command was given
    in its environment (a child's environment is readable in /proc)."""
    from node.storage import backup as module

    seen = tmp_path / "env.txt"
    fake = tmp_path / "bin" / "pg_dump"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nenv > "{seen}"\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("MLAX_KEY_PASSPHRASE", "s3cret-node-pass")
    monkeypatch.setenv("MLAX_OFFICER_PASSPHRASE", "s3cret-officer")
    out = tmp_path / "out" / "db.pgdump"
    out.parent.mkdir()
    out.write_bytes(b"")  # what the fake would have written
    module._pg_dump("postgresql+psycopg://mlax:dbpw@127.0.0.1:5432/mlax_gb", out)
    env = seen.read_text()
    assert "PGPASSWORD=dbpw" in env
    assert "s3cret" not in env
    assert "MLAX_" not in env
