"""Checkpoints and peer witnessing.

As a log, the node signs a checkpoint of its ledger every few seconds when it grew, then
asks each peer to cosign it (C2SP tlog-witness add-checkpoint over gRPC), proving with a
consistency proof that it extends what that peer cosigned before. As a witness, the
node cosigns a peer's checkpoint only if it is consistent with the last one it cosigned
for that peer; two validly signed, inconsistent checkpoints are a split view: the
evidence is kept, ledgered, logged as an alert and counted.
"""

from __future__ import annotations

import threading

import grpc
import structlog

from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.directory import Directory
from exchange.encoding import now_ms
from exchange.errors import MlaxError
from exchange.ledger import (
    Checkpoint,
    CheckpointConflictError,
    SplitViewError,
    Witness,
    WitnessedCheckpoint,
    unverified_origin,
    verify_cosignature,
)
from exchange.ledger.names import log_origin, log_verifiers, witness_name, witness_verifiers
from exchange.ledger_entry import LedgerEntry
from node import metrics
from node.peers.channels import PeerChannels
from node.services.messages import NodeCore
from node.storage import ledger
from node.storage.ledger import LedgerStore
from node.storage.models import SplitViewRow, WitnessStateRow
from node.workers.periodic import TaskHealth

log = structlog.get_logger("mlax.ledger")


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
        with self.core.db.write() as s:
            # FOR UPDATE: two concurrent submissions for one log must be decided one after
            # the other, or two inconsistent checkpoints could both be cosigned (PostgreSQL;
            # SQLite's write lock already serialises them).
            state = s.get(WitnessStateRow, origin, with_for_update=True)
            latest = WitnessedCheckpoint(_parse_body(state.note), state.note) if state else None
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
            log.error(
                "split_view_detected", peer=peer, origin=origin, conclusive=evidence.conclusive
            )
            raise evidence
        return lpb.AddCheckpointResponse(cosignature=cosigned.cosignature)


def _parse_body(note: bytes) -> Checkpoint:
    body = note.split(b"\n\n", 1)[0] + b"\n"
    return Checkpoint.parse(body.decode())


class Checkpointer:
    """Signs checkpoints and gathers peers' cosignatures, on a timer."""

    def __init__(
        self,
        core: NodeCore,
        store: LedgerStore,
        peers: PeerChannels,
        *,
        interval: float,
        every_entries: int,
        witness_interval: float,
        timeout: float,
    ) -> None:
        self.core, self.store, self.peers = core, store, peers
        self.interval, self.witness_interval, self.timeout = interval, witness_interval, timeout
        self.every_entries = every_entries
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlax-checkpoints", daemon=True)
        self._last_witness = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def checkpoint_now(self, min_new_entries: int = 1) -> int | None:
        directory = self.core.directory.current()
        sender = self.core.identity.sender(published=directory.agency(self.core.agency))
        return self.store.issue_checkpoint(sender.signing_key, min_new_entries)

    def witness_round(self) -> None:
        """Ask every peer to cosign our latest checkpoint."""
        latest = self.store.latest_checkpoint()
        if latest is None:
            return
        directory = self.core.directory.current()
        for card in directory.agencies:
            if card.agency_id == self.core.agency:
                continue
            try:
                self._ask(card.agency_id, latest.size, latest.note, directory)
            except (grpc.RpcError, MlaxError, LookupError) as e:
                reason = e.code().name if isinstance(e, grpc.RpcError) else type(e).__name__
                log.info("witness_unavailable", witness=card.agency_id, reason=reason)

    def _ask(self, peer: str, size: int, note: bytes, directory: Directory) -> None:
        if self.store.last_cosigned_size(peer) >= size:
            return  # this peer already cosigned this checkpoint (or a later one)
        stub = fgrpc.FederationStub(self.peers.channel(peer))
        old = self.store.last_cosigned_size(peer)
        for _ in range(2):  # a conflict tells us the witness's real size: retry once
            proof = self.store.consistency_proof(old, size) if 0 < old < size else []
            resp = stub.AddCheckpoint(
                lpb.AddCheckpointRequest(old_size=old, consistency_proof=proof, note=note),
                timeout=self.timeout,
            )
            if not resp.conflict:
                break
            if resp.known_size > size:
                log.warning("witness_ahead", witness=peer, known_size=resp.known_size, size=size)
                return
            old = resp.known_size
        else:
            return
        line = resp.cosignature
        verifiers = witness_verifiers(directory, self.core.agency).get(peer, [])
        checkpoint = _parse_body(note)
        for v in verifiers:
            try:
                verify_cosignature(checkpoint, line, v)
            except MlaxError:
                continue
            self.store.add_cosignature(size, peer, line)
            return
        log.warning("cosignature_invalid", witness=peer, size=size)

    def _run(self) -> None:
        # Look often; sign when `every_entries` accumulated or `interval` passed with growth.
        tick = min(self.interval, 0.25)
        health = TaskHealth("checkpoint_tick_failed")  # backs off while failing
        since_checkpoint = since_witness = 0.0
        while not self._stop.wait(wait := health.wait(tick)):
            since_checkpoint += wait
            since_witness += wait
            try:
                if since_checkpoint >= self.interval:
                    if self.checkpoint_now() is not None:
                        since_checkpoint = 0.0
                elif self.checkpoint_now(self.every_entries) is not None:
                    since_checkpoint = 0.0
                if since_witness >= self.witness_interval:
                    since_witness = 0.0
                    self.witness_round()
            except Exception as e:
                health.failed(e, tick)
            else:
                health.ok()
