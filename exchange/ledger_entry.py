"""Audit ledger entries: canonical bytes and the salted commitment the Merkle leaf covers.

An entry is a flat map of identifiers and digests (never content), encoded as canonical
JSON: UTF-8, keys sorted, no insignificant whitespace. The tree commits to
SHA-256(PAE("mlax/v1/ledger/entry", salt, entry)) with a fresh 32-byte salt, so an
entry can be withheld from an auditor (redacted) without revealing anything about it by
guessing, and every proof still verifies.

Every entry is of a kind registered in `exchange.ledger_kinds`, with exactly its fields:
`LedgerEntry.of` refuses anything else with a `LedgerSchemaError` (a programming error).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from exchange.encoding import CTX_LEDGER_ENTRY, pae, sha256
from exchange.ledger_kinds import check

FieldValue = str | int | bool


@dataclass(frozen=True)
class LedgerEntry:
    kind: str
    at: int
    fields: tuple[tuple[str, FieldValue], ...]

    @classmethod
    def of(cls, kind: str, at: int, **fields: FieldValue) -> LedgerEntry:
        """An entry of a registered `kind` with exactly its fields (`ledger_kinds.check`)."""
        check(kind, fields)
        return cls(kind, at, tuple(sorted(fields.items())))

    def to_bytes(self) -> bytes:
        doc: dict[str, FieldValue] = dict(self.fields)
        doc["kind"] = self.kind
        doc["at"] = self.at
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def commitment(salt: bytes, entry: bytes) -> bytes:
    """What the Merkle leaf commits to for one entry."""
    return sha256(pae(CTX_LEDGER_ENTRY, salt, entry))


def new_salt() -> bytes:
    return os.urandom(32)
