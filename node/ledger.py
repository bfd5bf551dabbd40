"""Appending to the audit ledger inside the caller's transaction.

The entry is written in the same transaction as the event it records, so either both
exist or neither does. Indexes are dense and ordered; on PostgreSQL an advisory lock
serialises appenders across replicas (SQLite's write lock already does).
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from exchange.ledger_entry import LedgerEntry, commitment, new_salt
from node.storage.models import LedgerEntryRow

# Arbitrary constant naming the ledger's advisory lock on PostgreSQL.
_PG_LEDGER_LOCK = 0x4D4C4158


def append(session: Session, entry: LedgerEntry) -> int:
    """Add `entry` as the next leaf; returns its index."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LEDGER_LOCK})
    last = session.scalar(select(func.max(LedgerEntryRow.idx)))
    idx = 0 if last is None else last + 1
    data = entry.to_bytes()
    salt = new_salt()
    session.add(
        LedgerEntryRow(
            idx=idx,
            kind=entry.kind,
            at=entry.at,
            entry=data,
            salt=salt,
            commitment=commitment(salt, data),
        )
    )
    session.flush()
    return idx
