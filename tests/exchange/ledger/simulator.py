"""An in-memory ledger as a node stores it, for audit tests (no mocks, real keys).

Entry rows and the stored tree's leaves are kept apart, as in the node's database, and
the export joins them by index the way `node.storage.ledger.LedgerStore.export` does. Tampering
helpers change the entry rows only, like an attacker editing that table; the stored tree
and the signed checkpoints then tell the auditor what changed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from factories import T0, FederationSimulator, SimAgency
from nacl.signing import SigningKey

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.ledger.checkpoint import Checkpoint, cosign, sign_checkpoint
from exchange.ledger.export import EXPORT_FORMAT, encode_record
from exchange.ledger.merkle import leaf_hash, root_from_leaf_hashes
from exchange.ledger.names import log_origin, witness_name
from exchange.ledger.note import parse_note
from exchange.ledger_entry import LedgerEntry, commitment

FEDERATION_ID = "call-to-action"
LOG_AGENCY = "GB-NCA"
WITNESS_AGENCIES = ("FR-OCRTEH", "DE-BKA")
COSIGN_TIME = T0 // 1000


def build_federation() -> FederationSimulator:
    """Three agencies, the log's and two witnesses', signed 2 of 3 by three administrators."""
    federation = FederationSimulator(federation_id=FEDERATION_ID)
    for agency_id in (LOG_AGENCY, *WITNESS_AGENCIES):
        federation.add_agency(agency_id)
    return federation


@dataclass
class EntryRow:
    """One row of the node's entry table."""

    index: int
    commitment: bytes
    salt: bytes
    entry: bytes


@dataclass
class CheckpointRow:
    note: bytes
    cosignatures: list[str] = field(default_factory=list)


class LedgerSimulator:
    """One agency's ledger: entry rows, stored tree leaves, signed and cosigned checkpoints."""

    def __init__(
        self, federation: FederationSimulator, agency_id: str = LOG_AGENCY, seed: int = 0
    ) -> None:
        self.federation = federation
        self.agency: SimAgency = federation.agencies[agency_id]
        self.origin = log_origin(federation.federation_id, agency_id)
        self.rows: list[EntryRow] = []
        self.tree_leaves: dict[int, bytes] = {}
        self.checkpoints: list[CheckpointRow] = []
        self.signed_directory = federation.publish()
        self._rng = random.Random(seed)

    # -- the honest node ---------------------------------------------------------------------

    def make_entry(self, n: int) -> bytes:
        return LedgerEntry.of(
            "message.received",
            T0 + n,
            message_id=f"{n:032x}",
            sender=WITNESS_AGENCIES[0],
            envelope_digest=f"{n:064x}",
            message_type="NOTE",
        ).to_bytes()

    def append(self, count: int = 1) -> None:
        for _ in range(count):
            index = len(self.tree_leaves)
            salt = self._rng.randbytes(32)
            entry = self.make_entry(index)
            digest = commitment(salt, entry)
            leaf = leaf_hash(digest)
            self.rows.append(EntryRow(index, digest, salt, entry))
            self.tree_leaves[index] = leaf

    def sign(self, size: int, root: bytes | None = None, key: SigningKey | None = None) -> bytes:
        """A checkpoint note of `size` (by default the honest root, by the log's key)."""
        if root is None:
            root = root_from_leaf_hashes([self.tree_leaves[i] for i in range(size)])
        checkpoint = Checkpoint(self.origin, size, root)
        return sign_checkpoint(checkpoint, self.origin, key or self.agency.signing_key)

    def cosignature(self, note: bytes, witness_id: str) -> str:
        size, root = _size_and_root(note)
        witness = self.federation.agencies[witness_id]
        return cosign(
            Checkpoint(self.origin, size, root),
            witness_name(self.federation.federation_id, witness_id),
            witness.signing_key,
            COSIGN_TIME,
        )

    def checkpoint(self, witnesses: tuple[str, ...] = WITNESS_AGENCIES) -> CheckpointRow:
        note = self.sign(len(self.tree_leaves))
        row = CheckpointRow(note, [self.cosignature(note, w) for w in witnesses])
        self.checkpoints.append(row)
        return row

    def grow(self, entries: int, every: int) -> LedgerSimulator:
        """Append `entries`, checkpointing every `every` entries and once at the end."""
        for start in range(0, entries, every):
            self.append(min(every, entries - start))
            self.checkpoint()
        return self

    # -- the export ------------------------------------------------------------------------

    def export(self) -> list[lpb.LedgerExportRecord]:
        header = lpb.LedgerExportHeader(
            format=EXPORT_FORMAT,
            origin=self.origin,
            agency=self.agency.agency_id,
            signed_directory=self.signed_directory,
            entries=len(self.tree_leaves),
            exported_at=T0,
        )
        records = [lpb.LedgerExportRecord(header=header)]
        for row in self.rows:
            entry = lpb.LedgerEntry(
                index=row.index,
                commitment=row.commitment,
                salt=row.salt,
                entry=row.entry,
                tree_leaf=self.tree_leaves.get(row.index, b""),
            )
            records.append(lpb.LedgerExportRecord(entry=entry))
        for cp in self.checkpoints:
            record = lpb.CheckpointRecord(note=cp.note, cosignatures=cp.cosignatures)
            records.append(lpb.LedgerExportRecord(checkpoint=record))
        return records

    def export_bytes(self) -> bytes:
        return b"".join(encode_record(record) for record in self.export())

    # -- tampering with the entry table ----------------------------------------------------

    def modify(self, index: int, *, recommit: bool = False) -> None:
        """Change an entry's content; with `recommit`, its commitment too."""
        row = self.rows[index]
        row.entry = row.entry.replace(b"message.received", b"message.rejected")
        if recommit:
            row.commitment = commitment(row.salt, row.entry)

    def delete(self, index: int, *, renumber: bool = True) -> None:
        del self.rows[index]
        if renumber:
            for row in self.rows[index:]:
                row.index -= 1

    def insert(self, index: int) -> None:
        """A forged entry at `index`, the later ones renumbered up by one."""
        for row in self.rows[index:]:
            row.index += 1
        salt = self._rng.randbytes(32)
        entry = self.make_entry(10**6 + index)
        self.rows.insert(index, EntryRow(index, commitment(salt, entry), salt, entry))

    def swap(self, i: int, j: int) -> None:
        a, b = self.rows[i], self.rows[j]
        a.index, b.index = b.index, a.index
        self.rows[i], self.rows[j] = b, a

    def truncate(self, count: int) -> None:
        del self.rows[count:]

    def redact(self, index: int) -> None:
        self.rows[index].salt = b""
        self.rows[index].entry = b""


def _size_and_root(note: bytes) -> tuple[int, bytes]:
    checkpoint = Checkpoint.parse(parse_note(note).text)
    return checkpoint.size, checkpoint.root_hash
