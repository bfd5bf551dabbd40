"""The directory this node trusts, kept in the database and cached per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.directory import (
    Directory,
    SignedDirectory,
    verify_directory,
    verify_directory_chain,
)
from exchange.encoding import now_ms
from exchange.errors import DirectoryError
from exchange.ledger_entry import LedgerEntry
from node.storage import ledger
from node.storage.db import Database
from node.storage.models import DirectoryRow

# How long a process trusts its cached copy before looking for a newer version that
# another replica or an operator command installed.
_CACHE_SECONDS = 1.0
# The most intermediate versions a GetDirectory answer carries, and a caller accepts
# (docs/protocol.md, GetDirectory).
MAX_DIRECTORY_CHAIN = 64


class NoDirectoryError(DirectoryError):
    """The node has no directory installed yet."""


class TrustedDirectory:
    """Newest verified directory; `install` verifies a candidate against it first."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._current: Directory | None = None
        self._signed: bytes = b""
        self._loaded_at = 0.0

    def _load(self) -> None:
        with self._db.read() as s:
            row = s.scalars(
                select(DirectoryRow).order_by(DirectoryRow.version.desc()).limit(1)
            ).first()
        if row is not None and (self._current is None or row.version != self._current.version):
            self._current = Directory.from_bytes(_inner(row.signed))
            self._signed = row.signed
        self._loaded_at = time.monotonic()

    def current(self) -> Directory:
        with self._lock:
            if self._current is None or time.monotonic() - self._loaded_at > _CACHE_SECONDS:
                self._load()
            if self._current is None:
                raise NoDirectoryError(
                    "No federation directory is installed; run `mlax node directory update FILE`."
                )
            return self._current

    def signed_bytes(self) -> bytes:
        self.current()
        return self._signed

    def stored_versions(self, first: int, last: int, max_bytes: int) -> list[bytes]:
        """The signed versions `first` .. `last` this node trusted, oldest first; none when
        one of them is missing or together they exceed `max_bytes`."""
        if last < first:
            return []
        with self._db.read() as s:
            rows = s.execute(
                select(DirectoryRow.version, DirectoryRow.signed)
                .where(DirectoryRow.version >= first, DirectoryRow.version <= last)
                .order_by(DirectoryRow.version)
            ).all()
        if [row.version for row in rows] != list(range(first, last + 1)):
            return []
        if sum(len(row.signed) for row in rows) > max_bytes:
            return []
        return [row.signed for row in rows]

    def install(self, signed: bytes, source: str) -> Directory:
        """Verify `signed` against the trusted directory and make it current; ledgered."""
        with self._db.write() as s:
            row = s.scalars(
                select(DirectoryRow).order_by(DirectoryRow.version.desc()).limit(1)
            ).first()
            trusted = Directory.from_bytes(_inner(row.signed)) if row is not None else None
            directory = verify_directory(signed, trusted, now_ms())
            _record(s, directory, signed, source)
        with self._lock:
            self._current, self._signed = directory, signed
            self._loaded_at = time.monotonic()
        return directory

    def install_chain(self, versions: Sequence[bytes], source: str) -> tuple[Directory, ...]:
        """Install consecutive versions, each verified against the one before it (from the
        trusted one, or the first of the chain on a node without a directory), all or none;
        each is ledgered. Returns those installed (none: the node had the newest)."""
        with self._db.write() as s:
            row = s.scalars(
                select(DirectoryRow).order_by(DirectoryRow.version.desc()).limit(1)
            ).first()
            trusted = Directory.from_bytes(_inner(row.signed)) if row is not None else None
            installed = verify_directory_chain(versions, trusted, now_ms())
            # The chain skips only the versions the node already trusts, at its start.
            new_bytes = list(versions)[len(versions) - len(installed) :]
            for directory, signed in zip(installed, new_bytes, strict=True):
                _record(s, directory, signed, source)
        if installed:
            with self._lock:
                self._current, self._signed = installed[-1], new_bytes[-1]
                self._loaded_at = time.monotonic()
        return installed


def _inner(signed: bytes) -> bytes:
    return SignedDirectory.from_bytes(signed).directory


def _record(s: Session, directory: Directory, signed: bytes, source: str) -> None:
    """Store a verified version as trusted and ledger its installation (one rule for a
    single version and for a chain)."""
    s.add(
        DirectoryRow(version=directory.version, signed=signed, installed_at=now_ms(), source=source)
    )
    ledger.append(
        s,
        LedgerEntry.of(
            "directory.installed",
            now_ms(),
            version=directory.version,
            federation=directory.federation_id,
            source=source,
            agencies=len(directory.agencies),
        ),
    )
