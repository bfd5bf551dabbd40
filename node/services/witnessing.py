"""Peer witnessing: this node as a witness of its peers' ledgers.

(As a log, the node signs a checkpoint of its ledger every few seconds when it grew, then
asks each peer to cosign it: node/workers/checkpoints.py.) As a witness, the
node cosigns a peer's checkpoint only if it is consistent with the last one it cosigned
for that peer; two validly signed, inconsistent checkpoints are a split view: the
evidence is kept, ledgered, logged as an alert and counted.

A split view leaves the witness's state where it was, so a peer can repeat one as often as
it likes, each time with another root. The evidence kept per origin is therefore bounded:
the first `MAX_SPLIT_VIEWS_PER_ORIGIN` distinct split views (and the first conclusive one,
should inconclusive ones have filled those places) are stored and ledgered as
`witness.split_view`; any further one is only counted, through the bounded-rate refusal
ledger (node.services.rejections: `message.rejected` with reason `SplitViewError`, then
one aggregate entry per window), so storage and ledger grow with windows, not with calls.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.encoding import now_ms
from exchange.errors import ConflictError, MissingError, MlaxError
from exchange.ledger import (
    Checkpoint,
    CheckpointConflictError,
    SplitViewError,
    Witness,
    WitnessedCheckpoint,
    unverified_origin,
)
from exchange.ledger.names import log_origin, log_verifiers, witness_name
from exchange.ledger_entry import LedgerEntry
from node import metrics
from node.services.messages import NodeCore
from node.storage import ledger
from node.storage.db import Database
from node.storage.models import SplitViewRow, WitnessStateRow

log = structlog.get_logger("mlax.ledger")

# Split views of one origin kept as evidence rows and `witness.split_view` entries; one
# proves the log dishonest, a few show its pattern; more only cost the witness storage.
MAX_SPLIT_VIEWS_PER_ORIGIN = 8


class WitnessDesk:
    """This node as a witness for its peers' ledgers."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core

    def add_checkpoint(self, req: lpb.AddCheckpointRequest, peer: str) -> lpb.AddCheckpointResponse:
        directory = self.core.directory.current()
        origin = log_origin(directory.federation_id, peer)
        if unverified_origin(req.note) != origin:
            raise MlaxError(f"{peer} may submit checkpoints of its own log {origin} only.")
        sender = self.core.identity.sender(published=directory.agency(self.core.agency))
        witness = Witness(
            witness_name(directory.federation_id, self.core.agency),
            sender.signing_key,
            # Live: a revoked or expired key of the peer cannot get a checkpoint cosigned.
            {origin: log_verifiers(directory, peer, now_ms())},
        )
        evidence: SplitViewError | None = None
        stored = False
        with self.core.db.write() as s:
            # FOR UPDATE: two concurrent submissions for one log must be decided one after
            # the other, or two inconsistent checkpoints could both be cosigned (PostgreSQL;
            # SQLite's write lock already serialises them).
            state = s.get(WitnessStateRow, origin, with_for_update=True)
            latest = WitnessedCheckpoint(checkpoint_of(state.note), state.note) if state else None
            try:
                cosigned = witness.add_checkpoint(
                    bytes(req.note),
                    req.old_size,
                    list(req.consistency_proof),
                    latest,
                    now_ms() // 1000,
                )
            except CheckpointConflictError as e:
                return lpb.AddCheckpointResponse(conflict=True, known_size=e.known_size)
            except SplitViewError as e:
                evidence = e
                stored = _keeps(s, origin, e)
                if stored:
                    _keep(s, peer, origin, e)
            else:
                if state is None:
                    s.add(
                        WitnessStateRow(
                            origin=origin,
                            size=cosigned.record.checkpoint.size,
                            note=cosigned.record.note,
                            updated_at=now_ms(),
                        )
                    )
                else:
                    state.size = cosigned.record.checkpoint.size
                    state.note = cosigned.record.note
                    state.updated_at = now_ms()
        if evidence is not None:
            metrics.SPLIT_VIEWS.labels(peer=peer).inc()
            if stored:
                log.error(
                    "split_view_detected", peer=peer, origin=origin, conclusive=evidence.conclusive
                )
            else:
                # Past the evidence this node keeps of `origin`: counted at a bounded rate
                # (its own transaction, so after ours; it logs once per window).
                self.core.rejections.record(peer, SplitViewError.__name__, evidence.status)
            raise evidence
        return lpb.AddCheckpointResponse(cosignature=cosigned.cosignature)


def _keeps(s: Session, origin: str, e: SplitViewError) -> bool:
    """Whether split view `e` of `origin` is stored and ledgered: it is not already kept,
    and fewer than MAX_SPLIT_VIEWS_PER_ORIGIN are, or it is the first conclusive one."""
    mine = SplitViewRow.origin == origin
    kept = s.scalars(select(SplitViewRow.conclusive).where(mine)).all()
    same = select(SplitViewRow.id).where(
        mine, SplitViewRow.known_note == e.known_note, SplitViewRow.new_note == e.new_note
    )
    if kept and s.scalars(same.limit(1)).first() is not None:
        return False
    if len(kept) < MAX_SPLIT_VIEWS_PER_ORIGIN:
        return True
    # Inconclusive split views (which a faulty prover can also cause) cannot crowd out
    # the one that proves the log dishonest by itself.
    return e.conclusive and not any(kept)


def _keep(s: Session, peer: str, origin: str, e: SplitViewError) -> None:
    s.add(
        SplitViewRow(
            origin=origin,
            known_note=e.known_note,
            new_note=e.new_note,
            proof=b"".join(e.proof),
            conclusive=e.conclusive,
            detected_at=now_ms(),
        )
    )
    ledger.append(
        s,
        LedgerEntry.of(
            "witness.split_view",
            now_ms(),
            peer=peer,
            origin=origin,
            conclusive=e.conclusive,
        ),
    )


def checkpoint_of(note: bytes) -> Checkpoint:
    """The checkpoint a signed note carries (its signatures are not checked here)."""
    body = note.split(b"\n\n", 1)[0] + b"\n"
    return Checkpoint.parse(body.decode())


def acknowledge_restore(db: Database, federation_id: str, peer: str, restored_from: int) -> int:
    """The operator's acknowledgement that `peer` was restored from a backup of
    `restored_from` entries (its `node.restored` index): the checkpoint this witness
    cosigned past that point goes into the ledger as evidence (`witness.restore_acknowledged`)
    and the witness state is cleared, so the next checkpoint of the peer is cosigned as a
    first one. Only a witness's own operator can do this; a peer cannot. Returns the
    size of the checkpoint kept."""
    origin = log_origin(federation_id, peer)
    with db.write() as s:
        state = s.get(WitnessStateRow, origin, with_for_update=True)
        if state is None:
            raise MissingError(f"This node holds no cosigned checkpoint of {peer}.")
        known = state.size
        if restored_from >= known:
            raise ConflictError(
                f"The checkpoint of {peer} this node cosigned (size {known}) is within the "
                f"restored ledger ({restored_from} entries): nothing it saw was lost, and "
                "the peer catches up by itself."
            )
        ledger.append(
            s,
            LedgerEntry.of(
                "witness.restore_acknowledged",
                now_ms(),
                peer=peer,
                origin=origin,
                restored_from=restored_from,
                known_size=known,
                known_note=state.note.decode("utf-8", errors="replace"),
            ),
        )
        s.delete(state)
    log.warning(
        "witness_restore_acknowledged", peer=peer, restored_from=restored_from, known_size=known
    )
    return known
