"""Atomic, permission-exact file writes for key material and the public files beside it.

A key file must never be seen half-written or, even for an instant, with wider
permissions than intended: it is written to a temporary file created 0600 with
O_EXCL in the same directory, fsynced, then moved into place (and the directory fsynced
so the rename itself survives a crash).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from exchange.errors import KeystoreError

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) if missing and make it 0700: it holds private keys."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    # mkdir's mode is filtered by the umask, and an existing directory keeps its mode.
    os.chmod(path, PRIVATE_DIR_MODE)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int, overwrite: bool) -> None:
    """Write `data` to `path` atomically with exactly `mode`.

    With `overwrite` false an existing `path` is never replaced (KeystoreError instead),
    checked atomically by hard-linking the finished temporary file into place.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        try:
            # The umask may have narrowed the mode; public files must still be readable.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeystoreError(f"{path} already exists; it was not overwritten.") from None
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
