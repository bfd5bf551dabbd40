"""Online backup and restore of one node: `mlax node backup` and `mlax node restore`.

A backup is a directory:

    manifest.json       what is in it: every file's size and SHA-256, the ledger head,
                        sealed with a key derived from the node passphrase
    node.toml           the node's configuration as it was
    database/node.db    SQLite: a consistent snapshot (sqlite3's online backup API)
    database/node.pgdump  PostgreSQL: `pg_dump --format=custom`, if pg_dump is installed
    data/...            the rest of the data dir (the officer CA, its key encrypted)
    attachments/...     the blob store's files (evidence ciphertext), copied after the
                        database snapshot so that every blob it references is complete
    identity/...        the node's key files, still encrypted under the node passphrase

The database is copied first, then the blobs: a blob only grows (append, then the
database records how much counts), so a blob copied after the snapshot holds at least
what the snapshot confirms; bytes written later are cut back by `open_append` when a
resumed transfer continues. Blobs created after the snapshot are copied too and are
harmless: nothing in the restored database names them.

The manifest is sealed: an HMAC-SHA256 over its canonical JSON under a key that
Argon2id derives from the node passphrase and a random salt (both the salt and the cost
are in the manifest). Whoever holds a backup but not the passphrase cannot alter a file
and its recorded SHA-256 together, so a restore, which asks for the passphrase and
checks the seal first, detects tampering as well as damage. A backup made before the
seal (`mlax-node-backup/1`) is refused: nothing can tell it from a forged one.

Restoring checks every file against the manifest before writing anything (opening each
path inside the backup without following a symbolic link at any level), copies each file
while hashing it, renames it into place only once the copy matches, then records
`node.restored` in the restored ledger (the backup's ledger size and root), so that
whatever happens to the ledger after the restore is attributable to it. Nothing is
read or written beyond the node's own files and the backup directory (and, on
PostgreSQL, what pg_dump reads).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from sqlalchemy import select
from sqlalchemy.engine import make_url

from exchange.attachment import TAG_SIZE
from exchange.encoding import CTX_BACKUP_MANIFEST, pae
from exchange.errors import ConflictError, KeystoreError, PassphraseError
from exchange.ledger import CompactRange
from exchange.ledger_entry import LedgerEntry
from keys.identity import load_identity
from keys.keystore import KdfParams, derive_key, kdf_params_from_env
from node.config import NodeConfig
from node.storage import ledger
from node.storage.db import Database, private_dir
from node.storage.models import AttachmentRow, CheckpointRow, LedgerEntryRow, LedgerHeadRow

FORMAT = "mlax-node-backup/2"
UNSEALED_FORMAT = "mlax-node-backup/1"
SEAL = "seal"
_HEX64 = re.compile(r"[0-9a-f]{64}")
MANIFEST = "manifest.json"
# A manifest lists files, never content: a larger one is not ours.
MAX_MANIFEST_BYTES = 16 << 20
_SQLITE_FILES = ("", "-wal", "-shm", "-journal")


class BackupError(ConflictError):
    """A backup that cannot be made, or a damaged or unusable one at restore."""


@dataclass(frozen=True)
class BackupResult:
    out: Path
    files: int
    bytes: int
    ledger_size: int
    ledger_root: str


@dataclass(frozen=True)
class RestoreResult:
    data_dir: Path
    files: int
    ledger_size: int
    restored_index: int


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    """Regular files under `root`, sorted; symlinks are not followed."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                yield p


def _copy(src: Path, dst: Path) -> None:
    """Copy one file, 0600, durably (a backup that vanishes with the page cache is none)."""
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as out, src.open("rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())


def _sqlite_path(url: str) -> Path:
    name = make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        raise BackupError(f"The database {url} is not a file that can be backed up.")
    return Path(name)


def _snapshot_sqlite(src: Path, dst: Path) -> None:
    """Copy the live database through SQLite's online backup API: one step, under one
    read transaction, so the copy is one consistent state while the node keeps writing
    (WAL: the node's writers do not wait for it)."""
    if not src.is_file():
        raise BackupError(f"The node's database {src} does not exist.")
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.execute("PRAGMA busy_timeout=30000")
        source.backup(target)
        # A self-contained file: no -wal beside it.
        target.execute("PRAGMA journal_mode=DELETE")
        ok = target.execute("PRAGMA integrity_check").fetchone()
        if ok is None or ok[0] != "ok":
            raise BackupError("The database snapshot failed SQLite's integrity check.")
    finally:
        target.close()
        source.close()


def _ledger_head(db: Database) -> tuple[int, str, int]:
    """(size, root hex, latest checkpoint size) of a database's ledger."""
    with db.read() as s:
        head = s.get(LedgerHeadRow, ledger.HEAD_ID)
        checkpoint = s.scalars(
            select(CheckpointRow.size).order_by(CheckpointRow.size.desc()).limit(1)
        ).first()
    if head is None or head.size == 0:
        return 0, "", checkpoint or 0
    frontier = [head.frontier[i : i + 32] for i in range(0, len(head.frontier), 32)]
    return head.size, CompactRange(head.size, frontier).root().hex(), checkpoint or 0


def _referenced_blobs(db: Database) -> dict[str, int]:
    """Blob id -> the bytes the database counts as durable, for every unpurged blob."""
    from node.services.evidence_files import _blob_id

    out: dict[str, int] = {}
    with db.read() as s:
        for row in s.scalars(select(AttachmentRow).where(AttachmentRow.blob_purged.is_(False))):
            if row.confirmed_chunks > 0:
                whole = row.size + row.total_chunks * TAG_SIZE
                out[_blob_id(row)] = min(row.confirmed_chunks * (row.chunk_size + TAG_SIZE), whole)
    return out


def _pg_dump(url: str, dst: Path) -> None:
    if shutil.which("pg_dump") is None:
        raise BackupError(
            "The node's database is PostgreSQL and pg_dump is not installed: install the "
            "PostgreSQL client of the server's version, or run `pg_dump --format=custom` "
            "yourself before copying the rest (docs/operators.md, Backups)."
        )
    u = make_url(url)
    # Not the node's own secrets (MLAX_KEY_PASSPHRASE and the like): pg_dump needs only
    # its own variables, and a child's environment is readable in /proc and core dumps.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAX_")}
    if u.password:
        env["PGPASSWORD"] = u.password
    args = ["pg_dump", "--format=custom", "--no-owner", f"--file={dst}"]
    if u.host:
        args.append(f"--host={u.host}")
    if u.port:
        args.append(f"--port={u.port}")
    if u.username:
        args.append(f"--username={u.username}")
    args.append(str(u.database))
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = subprocess.run(args, env=env, capture_output=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed with exit status {done.returncode}.")
    dst.chmod(0o600)


def _sealed_bytes(doc: dict[str, Any]) -> bytes:
    """What the seal covers: the manifest without its seal, as canonical JSON."""
    body = {k: v for k, v in doc.items() if k != SEAL}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return pae(CTX_BACKUP_MANIFEST, canonical)


def seal_manifest(doc: dict[str, Any], passphrase: bytes) -> dict[str, Any]:
    """`doc` with its seal (module docstring), under a fresh salt."""
    kdf = kdf_params_from_env()
    salt = os.urandom(16)
    mac = hmac.new(derive_key(passphrase, salt, kdf), _sealed_bytes(doc), hashlib.sha256)
    seal = {
        "kdf": "argon2id",
        "salt": base64.b64encode(salt).decode("ascii"),
        "memory_kib": kdf.memory_kib,
        "iterations": kdf.iterations,
        "lanes": kdf.lanes,
        "hmac_sha256": mac.hexdigest(),
    }
    return {k: v for k, v in doc.items() if k != SEAL} | {SEAL: seal}


def _check_seal(doc: dict[str, Any], passphrase: bytes) -> None:
    seal = _field(doc, SEAL, dict)
    if _field(seal, "kdf", str) != "argon2id":
        raise BackupError("The backup's manifest is sealed with an unknown method.")
    kdf = KdfParams(
        memory_kib=_field(seal, "memory_kib", int),
        iterations=_field(seal, "iterations", int),
        lanes=_field(seal, "lanes", int),
    )
    try:
        kdf.check("The backup's manifest")
        salt = base64.b64decode(_field(seal, "salt", str), validate=True)
    except (KeystoreError, ValueError):
        raise BackupError("The backup's manifest has an unusable seal: it is damaged.") from None
    if not 8 <= len(salt) <= 64:
        raise BackupError("The backup's manifest has an unusable seal: it is damaged.")
    stored = _field(seal, "hmac_sha256", str)
    if not _HEX64.fullmatch(stored):
        raise BackupError("The backup's manifest has an unusable seal: it is damaged.")
    mac = hmac.new(derive_key(passphrase, salt, kdf), _sealed_bytes(doc), hashlib.sha256)
    if not hmac.compare_digest(mac.hexdigest(), stored):
        raise BackupError(
            "The backup's manifest does not match its seal: it was altered, or the node "
            "passphrase given is not the one it was made with."
        )


def backup(cfg: NodeConfig, config_file: Path, out: Path, passphrase: bytes) -> BackupResult:
    """Back up the node `cfg` describes (running or not) into the new directory `out`,
    its manifest sealed under `passphrase` (the node passphrase)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupError(f"{out} already exists and is not empty: back up into a new directory.")
    mine = (cfg.node.data_dir, cfg.node.identity_dir, cfg.attachments_dir)
    if any(d.resolve() in (out.resolve(), *out.resolve().parents) for d in mine):
        raise BackupError(f"{out} is inside the node's own directories: back up elsewhere.")
    # The seal must be under the passphrase the restore will be given: the one that opens
    # the node's keys (a mistyped one would make a backup nothing can restore).
    try:
        load_identity(cfg.node.identity_dir, passphrase)
    except PassphraseError:
        raise BackupError(
            "The passphrase given does not open this node's keys: no backup was made."
        ) from None
    private_dir(out)
    files: dict[str, Path] = {}
    sqlite = cfg.database_url.startswith("sqlite")
    live_db: set[Path] = set()
    # 1. The database, as one consistent state.
    if sqlite:
        snapshot = out / "database" / "node.db"
        source = _sqlite_path(cfg.database_url)
        live_db = {source.with_name(source.name + x).resolve() for x in _SQLITE_FILES}
        _snapshot_sqlite(source, snapshot)
        files["database/node.db"] = snapshot
        db = Database(f"sqlite:///{snapshot}")
    else:
        dump = out / "database" / "node.pgdump"
        _pg_dump(cfg.database_url, dump)
        files["database/node.pgdump"] = dump
        db = Database(cfg.database_url)  # heads read after the dump: at least its size
    try:
        size, root, checkpoint = _ledger_head(db)
        needed = _referenced_blobs(db) if sqlite else {}
    finally:
        db.close()
    # 2. The blobs, after the snapshot (see the module's docstring).
    blob_root = cfg.attachments_dir
    if cfg.storage.blob_backend == "filesystem":
        for src in _walk(blob_root):
            rel = "attachments/" + src.relative_to(blob_root).as_posix()
            _copy(src, out / rel)
            files[rel] = out / rel
        for blob_id, durable in needed.items():
            rel = f"attachments/{blob_id[:2]}/{blob_id}"
            if rel not in files or files[rel].stat().st_size < durable:
                raise BackupError(
                    f"Blob {blob_id} that the database counts as durable is missing or "
                    "short in the blob store: the backup would be incomplete."
                )
    # 3. The rest of the data dir, the key files (encrypted as they are) and the config.
    data_dir = cfg.node.data_dir
    for src in _walk(data_dir):
        if src.resolve() in live_db:
            continue  # the snapshot stands for it
        if blob_root in src.parents:
            continue
        rel = "data/" + src.relative_to(data_dir).as_posix()
        _copy(src, out / rel)
        files[rel] = out / rel
    for src in _walk(cfg.node.identity_dir):
        rel = "identity/" + src.relative_to(cfg.node.identity_dir).as_posix()
        _copy(src, out / rel)
        files[rel] = out / rel
    _copy(config_file, out / "node.toml")
    files["node.toml"] = out / "node.toml"
    listed: list[dict[str, Any]] = [
        {"path": rel, "size": p.stat().st_size, "sha256": _sha256(p)}
        for rel, p in sorted(files.items())
    ]
    manifest = {
        "format": FORMAT,
        "agency": cfg.node.agency,
        "created_at": int(time.time() * 1000),
        "database": "sqlite" if sqlite else "postgresql",
        "blob_backend": cfg.storage.blob_backend,
        "ledger": {"size": size, "root": root, "checkpoint": checkpoint},
        "files": listed,
    }
    manifest = seal_manifest(manifest, passphrase)
    tmp = out / (MANIFEST + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    # Written last and renamed into place: a backup cut short has no manifest.
    tmp.replace(out / MANIFEST)
    return BackupResult(out, len(listed), sum(f["size"] for f in listed), size, root)


def restored_index(db: Database) -> int | None:
    """The index of the latest `node.restored` entry (the backup's ledger size), if any."""
    with db.read() as s:
        return s.scalars(
            select(LedgerEntryRow.idx)
            .where(LedgerEntryRow.kind == "node.restored")
            .order_by(LedgerEntryRow.idx.desc())
            .limit(1)
        ).first()


def _field(doc: Any, key: str, kind: type) -> Any:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise BackupError(f"The backup's manifest has no valid {key!r}: it is damaged.")
    return value


class _NotInsideError(Exception):
    """A path of the backup that is a symbolic link, or under one, or not a regular file."""


def _open_inside(src: Path, rel: str) -> IO[bytes]:
    """The regular file `rel` of the backup `src`, opened for reading without following a
    symbolic link at any level below `src`: a crafted backup cannot make a restore read
    (or reveal the size of) a file outside it. _NotInsideError if a component is a link or the
    file is not a regular one (a FIFO would block the read); OSError if absent."""
    *dirs, name = rel.split("/")
    dir_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in dirs:
            fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = fd
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _NotInsideError(rel) from None
        raise
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _NotInsideError(rel)
    return open(fd, "rb")


def _member(src: Path, rel: str) -> IO[bytes]:
    """`_open_inside`, its failures as the one-sentence BackupError a restore shows."""
    try:
        return _open_inside(src, rel)
    except FileNotFoundError:
        raise BackupError(f"The backup is damaged: {rel} is missing.") from None
    except _NotInsideError:
        raise BackupError(
            f"The backup is refused: {rel} is a symbolic link, under one, or not a regular file."
        ) from None
    except OSError:
        raise BackupError(f"The backup cannot be read: {rel} is not readable.") from None


def _read_bounded(f: IO[bytes], size: int, sink: IO[bytes] | None = None) -> str:
    """Hash `f` (copying it into `sink`, if given), reading at most `size` + 1 bytes: the
    SHA-256 hex of what was read, or "" if the file is not `size` bytes long."""
    h = hashlib.sha256()
    left = size + 1
    while left > 0 and (block := f.read(min(left, 1 << 20))):
        left -= len(block)
        h.update(block)
        if sink is not None and left > 0:
            sink.write(block)
    return h.hexdigest() if left == 1 else ""


def _relative(rel: str) -> tuple[str, ...]:
    """The parts of a manifest path, which must be relative, canonical and inside."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or pure.as_posix() != rel or ".." in pure.parts or not pure.parts:
        raise BackupError(f"The backup's manifest names a file outside it: {rel!r}.")
    return pure.parts


def read_manifest(src: Path, passphrase: bytes) -> dict[str, Any]:
    """The manifest of the backup in `src`, once its seal is checked under `passphrase`
    and every file it lists is present with its size and SHA-256; BackupError names the
    first problem."""
    try:
        with _open_inside(src, MANIFEST) as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except (OSError, _NotInsideError):
        raise BackupError(f"{src} is not an MLAX node backup: it has no {MANIFEST}.") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BackupError(f"The backup's {MANIFEST} is too large to be a manifest.")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise BackupError(f"The backup's {MANIFEST} is not valid JSON: it is damaged.") from None
    found = _field(doc, "format", str)
    if found == UNSEALED_FORMAT:
        raise BackupError(
            f"The backup is {UNSEALED_FORMAT}, made before backups were sealed: its files "
            "cannot be told from forged ones, so it is not restored."
        )
    if found != FORMAT:
        raise BackupError(f"The backup's format is not {FORMAT}.")
    # Before any path it names is opened: a manifest not sealed by this node is not read.
    _check_seal(doc, passphrase)
    _field(doc, "agency", str)
    led = _field(doc, "ledger", dict)
    _field(led, "size", int)
    _field(led, "root", str)
    for entry in _field(doc, "files", list):
        rel = _field(entry, "path", str)
        _relative(rel)
        size = _field(entry, "size", int)
        digest = _field(entry, "sha256", str)
        with _member(src, rel) as f:
            if os.fstat(f.fileno()).st_size != size:
                raise BackupError(f"The backup is damaged: {rel} does not have its recorded size.")
            if _read_bounded(f, size) != digest:
                raise BackupError(f"The backup is damaged: {rel} does not match its SHA-256.")
    return cast(dict[str, Any], doc)


def _destinations(
    doc: dict[str, Any], data_dir: Path, identity_dir: Path | None
) -> list[tuple[dict[str, Any], Path]]:
    """(manifest entry, where a restore writes it) for each file it restores; a manifest
    that sends two files to one place (or one file under another) is refused."""
    out: list[tuple[dict[str, Any], Path]] = []
    for entry in doc["files"]:
        rel: str = entry["path"]
        top, *rest = _relative(rel)
        if rel == "database/node.db":
            dst = data_dir / "node.db"
        elif top == "attachments" and rest:
            dst = data_dir.joinpath(top, *rest)
        elif top == "data" and rest:
            dst = data_dir.joinpath(*rest)
        elif top == "identity" and rest and identity_dir is not None:
            dst = identity_dir.joinpath(*rest)
        else:
            continue
        out.append((entry, dst))
    seen = {dst for _, dst in out}
    if len(seen) != len(out):
        raise BackupError("The backup's manifest restores two files to the same place.")
    if any(p in seen for _, dst in out for p in dst.parents):
        raise BackupError("The backup's manifest restores a file where a directory goes.")
    return out


def _restore_file(src: Path, entry: dict[str, Any], dst: Path, made: list[Path]) -> None:
    """Copy one verified file: hash the bytes as they are copied into a temporary name,
    and rename it into place only if they are the manifest's (the file may have changed
    since `read_manifest` read it)."""
    rel: str = entry["path"]
    for parent in reversed(dst.parents):
        if not parent.exists():
            parent.mkdir(mode=0o700)
            made.append(parent)
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=".", suffix=".restoring")
    tmp = Path(name)
    made.append(tmp)
    with open(fd, "wb") as out, _member(src, rel) as f:
        digest = _read_bounded(f, entry["size"], out)
        out.flush()
        os.fsync(out.fileno())
    if digest != entry["sha256"]:
        raise BackupError(f"The backup changed during the restore: {rel} no longer matches.")
    tmp.replace(dst)
    made[-1] = dst


def _undo(made: list[Path]) -> None:
    """Remove what a failed restore wrote (files, then the directories it created)."""
    for path in reversed(made):
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


def restore(
    src: Path, data_dir: Path, identity_dir: Path | None = None, *, passphrase: bytes
) -> RestoreResult:
    """Restore the SQLite backup in `src` into the new data dir `data_dir` (and its key
    files into `identity_dir`, if given), its seal checked under `passphrase`, then record
    `node.restored` in its ledger."""
    doc = read_manifest(src, passphrase)
    if doc.get("database") != "sqlite":
        raise BackupError(
            "This backup holds a PostgreSQL dump: restore it with pg_restore "
            "(docs/operators.md, Backups), not with `mlax node restore`."
        )
    plan = _destinations(doc, data_dir, identity_dir)
    for target in (data_dir, identity_dir):
        if target is not None and target.exists() and any(target.iterdir()):
            raise BackupError(f"{target} is not empty: restore into a new directory.")
    made: list[Path] = []
    for target in (data_dir, identity_dir):
        if target is not None:
            missing = [p for p in (target, *target.parents) if not p.exists()]
            private_dir(target)
            made.extend(reversed(missing))
    try:
        for entry, dst in plan:
            _restore_file(src, entry, dst, made)
        count = len(plan)
        made.extend(data_dir / f"node.db{x}" for x in _SQLITE_FILES)
        db = Database(f"sqlite:///{data_dir / 'node.db'}")
        try:
            db.migrate()
            size, root, _ = _ledger_head(db)
            if size != doc["ledger"]["size"] or root != doc["ledger"]["root"]:
                raise BackupError("The restored ledger's head is not the one the manifest records.")
            with db.write() as s:
                index = ledger.append(
                    s,
                    LedgerEntry.of(
                        "node.restored",
                        int(time.time() * 1000),
                        backup_size=size,
                        backup_root=root,
                        backup_created_at=int(doc.get("created_at", 0)),
                    ),
                )
        finally:
            db.close()
    except BaseException:
        _undo(made)
        raise
    return RestoreResult(data_dir, count, size, index)
