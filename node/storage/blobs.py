"""Where evidence bytes live: one storage interface, the local filesystem for now.

A blob is an attachment's ciphertext chunk stream, written strictly by appending and
made durable with `sync` before the database records how much of it counts. Nothing
here decides visibility: the attachment's row does, so a blob cut short by a crash is
simply resumed (truncated back to its last confirmed chunk) or never shown.
S3-compatible object storage fits the same interface (multipart uploads per run of
chunks); only the local store exists today.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Protocol


class BlobStore(Protocol):
    """Append-only blobs named by a hex id."""

    def open_append(self, blob_id: str, keep: int) -> BinaryIO:
        """Open for appending after truncating to `keep` bytes (creating it if absent)."""
        ...

    def sync(self, handle: BinaryIO) -> None:
        """Make everything written through `handle` durable."""
        ...

    def read(self, blob_id: str, offset: int, length: int) -> bytes: ...

    def size(self, blob_id: str) -> int: ...

    def delete(self, blob_id: str) -> None: ...


class LocalBlobStore:
    """Blobs as files under `root/<first two hex digits>/<id>`, mode 0600."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, blob_id: str) -> Path:
        if len(blob_id) < 3 or not all(c in "0123456789abcdef" for c in blob_id):
            raise ValueError("A blob id is lower-case hex.")
        return self.root / blob_id[:2] / blob_id

    def open_append(self, blob_id: str, keep: int) -> BinaryIO:
        path = self._path(blob_id)
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            _sync_dir(self.root)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if created:
            _sync_dir(path.parent)
        handle = os.fdopen(fd, "r+b")
        handle.truncate(keep)
        handle.seek(keep)
        return handle

    def sync(self, handle: BinaryIO) -> None:
        handle.flush()
        os.fsync(handle.fileno())

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
