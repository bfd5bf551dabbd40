"""What a node shows of its ledger: checkpoints, proofs, the entries a peer may read, exports.

Peers ask for these to witness the ledger and to check that a delivery was ledgered;
auditors export it. Which entries a peer may read in full is the redaction rule of
`node.storage.ledger.concerns`; of the others it sees the commitments only.
"""

from __future__ import annotations

from collections.abc import Iterator

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError, NotYetError, OutOfRangeError
from exchange.ledger.export import EXPORT_FORMAT
from exchange.ledger_entry import LedgerEntry
from node.services.messages import NodeCore, NotFoundError, Officer
from node.storage import ledger
from node.storage.ledger import LedgerStore, concerns

# Entries answered per GetEntries call at most (the peer pages on).
MAX_ENTRIES = 1000


class LedgerView:
    """Read access to the node's ledger for peers and auditors."""

    def __init__(self, core: NodeCore, store: LedgerStore) -> None:
        self.core = core
        self.store = store

    def latest_checkpoint(self) -> lpb.CheckpointRecord:
        latest = self.store.latest_checkpoint()
        if latest is None:
            raise NotFoundError("This node has not signed a checkpoint yet.")
        return self.store.record(latest)

    def inclusion_proof(self, index: int, tree_size: int) -> lpb.InclusionProofResponse:
        """Entry `index` in the signed checkpoint of `tree_size` entries (0: the latest)."""
        row = self.store.checkpoint(tree_size) if tree_size else self.store.latest_checkpoint()
        if row is None:
            raise NotFoundError("No checkpoint of that size.")
        if index >= row.size:
            raise NotYetError(
                f"Entry {index} is not in a signed checkpoint yet (latest size {row.size})."
            )
        try:
            digest, proof = self.store.inclusion_proof(index, row.size)
        except LookupError:
            raise NotFoundError(f"No ledger entry {index}.") from None
        return lpb.InclusionProofResponse(
            index=index,
            tree_size=row.size,
            commitment=digest,
            proof=proof,
            checkpoint=self.store.record(row),
        )

    def consistency_proof(self, old_size: int, new_size: int) -> lpb.ConsistencyProofResponse:
        size = self.store.size()
        if not 0 < old_size <= new_size <= size:
            raise InvalidFieldError(f"Sizes must satisfy 0 < old <= new <= {size}.")
        return lpb.ConsistencyProofResponse(proof=self.store.consistency_proof(old_size, new_size))

    def entries_for(self, peer: str, start: int, count: int) -> lpb.GetEntriesResponse:
        """Entries from `start`: in full those that concern `peer`, else commitments only."""
        # Past the end the list is empty; no index beyond the ledger reaches the database.
        rows = (
            self.store.entries(start, min(count or 100, MAX_ENTRIES))
            if start < self.store.size()
            else []
        )
        return lpb.GetEntriesResponse(
            entries=[
                lpb.LedgerEntry(
                    index=r.idx,
                    commitment=r.commitment,
                    salt=(r.salt or b"") if concerns(r.entry, peer) else b"",
                    entry=(r.entry or b"") if concerns(r.entry, peer) else b"",
                )
                for r in rows
            ]
        )

    def export(self, officer: Officer, start: int, end: int) -> Iterator[lpb.LedgerExportRecord]:
        """The ledger from `start` to `end` (0: to the end) as an export stream; ledgered."""
        size = self.store.size()
        if end > size or start > (end or size):
            raise OutOfRangeError(
                f"The export range must satisfy start <= end <= {size} (end 0 = to the end)."
            )
        with self.core.db.write() as s:
            ledger.append(
                s,
                LedgerEntry.of(
                    "ledger.exported", now_ms(), officer=officer.name, start=start, end=end
                ),
            )
        header = lpb.LedgerExportHeader(
            format=EXPORT_FORMAT,
            origin=self.store.origin,
            agency=self.core.agency,
            signed_directory=self.core.directory.signed_bytes(),
            exported_at=now_ms(),
        )
        return self.store.export(header, start, end)
