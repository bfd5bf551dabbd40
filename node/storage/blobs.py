"""Where evidence bytes live: one storage interface, two backends chosen in config.

A blob is an attachment's ciphertext chunk stream, written strictly by appending and
made durable with `BlobWriter.sync` before the database records how much of it counts.
Nothing here decides visibility: the attachment's row does, so a blob cut short by a
crash is simply resumed (truncated back to its last confirmed chunk by `open_append`) or
never shown. Every read and write is of one range, so a blob of any size is streamed in
constant memory.

- `LocalBlobStore`: files under a directory, for one process or a volume that every
  replica mounts. A writer holds an exclusive `flock` on its file.
- `PgBlobStore`: rows of `blob_chunks` in the node's PostgreSQL database, one row per
  write, inserted by a writer thread at most a few chunks behind; `sync` is a commit.
  Every replica of the node reaches every blob.

An S3-compatible store fits the same interface (a multipart upload per run of chunks).
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    delete,
    func,
    insert,
    select,
)

from exchange.errors import RetryLaterError
from node.storage.db import postgres_engine
from node.storage.models import BlobChunkRow

FILESYSTEM, POSTGRESQL = "filesystem", "postgresql"
BACKENDS = (FILESYSTEM, POSTGRESQL)
# PostgreSQL rows hold at most this many bytes (a write of more becomes several rows),
# so a range read needs only the rows that start less than this before it.
MAX_ROW_BYTES = 4 << 20
# A PostgreSQL writer queues at most this many writes (chunks) ahead of the server.
WRITE_AHEAD = 4
BUSY = "Another transfer is writing this file; try again shortly."
# Bytes to keep: a number, or a function of no arguments called while the blob is held.
Keep = int | Callable[[], int]


class BlobWriter(Protocol):
    """Appends to one blob. Bytes written count only once `sync` returns."""

    def write(self, data: bytes) -> None: ...

    def sync(self) -> None:
        """Make everything written so far durable (survives a crash or power loss)."""
        ...

    def close(self) -> None:
        """Release the writer; bytes written since the last `sync` may be lost."""
        ...


class BlobStore(Protocol):
    """Append-only blobs named by a lower-case hex id."""

    def open_append(self, blob_id: str, keep: Keep) -> BlobWriter:
        """Become the blob's only writer (BlobBusyError while another one, in this or
        any process or replica, has it open), cut it back to its first `keep` bytes
        (creating it if absent) and append after them. `keep` is at most what was last
        synced (ValueError otherwise); given as a function, it is called once the blob
        is held and before anything is cut, so it may read state that only the blob's
        writer changes (an exception from it leaves the blob untouched and free)."""
        ...

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length) (fewer at the end of the blob)."""
        ...

    def size(self, blob_id: str) -> int:
        """The blob's length as stored now (0 if absent); durable only up to the last sync."""
        ...

    def delete(self, blob_id: str) -> None: ...


class BlobBusyError(RetryLaterError):
    """Another stream is appending to the same blob (on this or another replica)."""


# How long a new writer waits for the blob's previous one to go before BlobBusyError: a
# client whose connection broke resumes at once, and the node notices the dead stream (and
# closes its writer) a moment later. A second live stream waits, then finds the file done.
LOCK_WAIT_SECONDS = 10.0
_LOCK_POLL_SECONDS = 0.05


def _acquire(try_lock: Callable[[], bool], wait: float) -> None:
    """Take a lock with `try_lock` (non-blocking), polling for at most `wait` seconds."""
    deadline = time.monotonic() + wait
    while not try_lock():
        if time.monotonic() >= deadline:
            raise BlobBusyError(BUSY)
        time.sleep(_LOCK_POLL_SECONDS)


def _wait(configured: float | None) -> float:
    return LOCK_WAIT_SECONDS if configured is None else configured


def _flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _resolve(keep: Keep) -> int:
    return keep if isinstance(keep, int) else keep()


def _check_id(blob_id: str) -> str:
    if not 3 <= len(blob_id) <= 64 or not all(c in "0123456789abcdef" for c in blob_id):
        raise ValueError("A blob id is 3 to 64 lower-case hex digits.")
    return blob_id


def _check_keep(keep: int, size: int) -> None:
    if not 0 <= keep <= size:
        raise ValueError(f"Cannot keep {keep} bytes of a blob of {size}.")


# -- the local filesystem -------------------------------------------------------------------


class _FileWriter:
    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def write(self, data: bytes) -> None:
        self._handle.write(data)

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


class LocalBlobStore:
    """Blobs as files under `root/<first two hex digits>/<id>`, mode 0600."""

    def __init__(self, root: Path, lock_wait: float | None = None) -> None:
        self.root = root
        self.lock_wait = lock_wait
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, blob_id: str) -> Path:
        return self.root / _check_id(blob_id)[:2] / blob_id

    def open_append(self, blob_id: str, keep: Keep) -> BlobWriter:
        path = self._path(blob_id)
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            _sync_dir(self.root)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if created:
            _sync_dir(path.parent)
        handle = os.fdopen(fd, "r+b")
        try:
            # One writer per file across processes: the lock belongs to this open file
            # (so a second open in the same process is refused too) and goes when it is
            # closed, a crash included. Taken before anything is cut.
            _acquire(lambda: _flock(fd), _wait(self.lock_wait))
            kept = _resolve(keep)
            _check_keep(kept, os.fstat(fd).st_size)
            handle.truncate(kept)
            handle.seek(kept)
        except BaseException:
            handle.close()
            raise
        return _FileWriter(handle)

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        with self._path(blob_id).open("rb") as f:
            f.seek(offset)
            return f.read(length)

    def size(self, blob_id: str) -> int:
        path = self._path(blob_id)
        return path.stat().st_size if path.exists() else 0

    def delete(self, blob_id: str) -> None:
        self._path(blob_id).unlink(missing_ok=True)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- PostgreSQL -----------------------------------------------------------------------------

_T = cast(Table, BlobChunkRow.__table__)
# One writer per blob across every replica: a session lock, released by close() or by
# the connection's end (a crash included).
_LOCK = "SELECT pg_try_advisory_lock(hashtext('mlax.blob'), hashtext(%(b)s))"
# `pos > offset - MAX_ROW_BYTES` bounds the index range; `pos + length > offset` keeps
# only the rows that reach into the range.
_READ = (
    "SELECT pos, data FROM blob_chunks WHERE blob_id = %s AND pos > %s AND pos < %s"
    " AND pos + length > %s ORDER BY pos"
)
_UNLOCK = "SELECT pg_advisory_unlock(hashtext('mlax.blob'), hashtext(%(b)s))"


class _PgWriter:
    """One connection with an open transaction, used by a thread of its own: each write
    is queued (at most WRITE_AHEAD chunks, so memory stays bounded) and sent as an INSERT
    while the caller goes on receiving the next chunk; `sync` waits for the queue, then
    COMMITs (durable: PostgreSQL flushes its WAL before COMMIT returns). A crash rolls
    back what was not committed."""

    def __init__(self, conn: Connection, blob_id: str, pos: int) -> None:
        self._conn = conn
        self._blob_id = blob_id
        self._pos = pos
        self._queue: queue.Queue[tuple[int, bytes] | threading.Event | None] = queue.Queue(
            WRITE_AHEAD
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlax-blob-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                if isinstance(item, threading.Event):
                    item.set()
                continue  # drain: the caller sees the error at its next call
            try:
                if isinstance(item, threading.Event):
                    self._conn.commit()
                    item.set()
                else:
                    pos, data = item
                    self._conn.execute(
                        insert(_T),
                        {"blob_id": self._blob_id, "pos": pos, "length": len(data), "data": data},
                    )
            except BaseException as e:
                self._error = e
                if isinstance(item, threading.Event):
                    item.set()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> None:
        self._check()
        view = memoryview(data)
        for start in range(0, len(view), MAX_ROW_BYTES):
            piece = (
                bytes(view[start : start + MAX_ROW_BYTES]) if len(view) > MAX_ROW_BYTES else data
            )
            self._queue.put((self._pos, piece))
            self._pos += len(piece)

    def sync(self) -> None:
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        self._check()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            self._conn.rollback()
            self._conn.exec_driver_sql(_UNLOCK, {"b": self._blob_id})
            self._conn.commit()
        except Exception:
            self._conn.invalidate()  # the lock goes with the connection
        finally:
            self._conn.close()


class PgBlobStore:
    """Blobs as rows of `blob_chunks` (blob id, byte position, length, bytes).

    Its own engine on the node's PostgreSQL URL: a writer holds one connection for as
    long as its stream lasts, so long uploads do not take the node's pool from short
    calls. Column `data` is stored uncompressed (ciphertext does not compress).
    """

    def __init__(self, url: str, pool_size: int = 10, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.lock_wait = lock_wait
        if not url.startswith("postgresql"):
            raise ValueError("The postgresql blob backend needs a PostgreSQL storage.url.")
        # The node's rule for live pooled connections (no round trip per checkout).
        self.engine: Engine = postgres_engine(url, pool_size)

    def _size(self, conn: Connection, blob_id: str) -> int:
        end = conn.execute(
            select(func.max(_T.c.pos + _T.c.length)).where(_T.c.blob_id == blob_id)
        ).scalar()
        return int(end or 0)

    def open_append(self, blob_id: str, keep: Keep) -> BlobWriter:
        _check_id(blob_id)
        conn = self.engine.connect()
        try:
            _acquire(
                lambda: bool(conn.exec_driver_sql(_LOCK, {"b": blob_id}).scalar()),
                _wait(self.lock_wait),
            )
            kept = _resolve(keep)
            _check_keep(kept, self._size(conn, blob_id))
            straddling = conn.execute(
                select(_T.c.pos, _T.c.data).where(
                    _T.c.blob_id == blob_id, _T.c.pos < kept, _T.c.pos + _T.c.length > kept
                )
            ).first()
            conn.execute(delete(_T).where(_T.c.blob_id == blob_id, _T.c.pos >= kept))
            if straddling is not None:
                pos, data = straddling
                conn.execute(delete(_T).where(_T.c.blob_id == blob_id, _T.c.pos == pos))
                cut = bytes(data)[: kept - pos]
                conn.execute(
                    insert(_T), {"blob_id": blob_id, "pos": pos, "length": len(cut), "data": cut}
                )
            conn.commit()
        except BaseException:
            # Dropping the connection releases the session lock whatever state it is in.
            conn.invalidate()
            conn.close()
            raise
        return _PgWriter(conn, blob_id, kept)

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        end = offset + length
        with self.engine.connect() as conn:
            # psycopg directly, with binary results: through SQLAlchemy a 1 MiB bytea
            # comes back as hex text and costs about 30 times the CPU.
            raw: Any = conn.connection.driver_connection
            rows = raw.execute(
                _READ, (_check_id(blob_id), offset - MAX_ROW_BYTES, end, offset), binary=True
            ).fetchall()
            conn.rollback()
        if len(rows) == 1 and rows[0][0] == offset and len(rows[0][1]) <= length:
            return bytes(rows[0][1])  # the common case: one chunk, one row
        out = bytearray()
        for pos, data in rows:
            lo, hi = max(offset - pos, 0), min(end - pos, len(data))
            if lo < hi:
                out += memoryview(data)[lo:hi]
        return bytes(out)

    def size(self, blob_id: str) -> int:
        with self.engine.connect() as conn:
            return self._size(conn, _check_id(blob_id))

    def delete(self, blob_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(_T).where(_T.c.blob_id == _check_id(blob_id)))

    def close(self) -> None:
        self.engine.dispose()


def open_blob_store(backend: str, root: Path, url: str, pool_size: int = 10) -> BlobStore:
    """The store a node's config names: `root` for files, `url` for PostgreSQL."""
    if backend == FILESYSTEM:
        return LocalBlobStore(root)
    if backend == POSTGRESQL:
        return PgBlobStore(url, pool_size)
    raise ValueError(f"Unknown blob backend {backend!r}: one of {', '.join(BACKENDS)}.")
