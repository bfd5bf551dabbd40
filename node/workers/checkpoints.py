"""Checkpoints and witnessing, as the log: the node signs a checkpoint of its ledger every
few seconds when it grew, then asks each peer to cosign it (C2SP tlog-witness
add-checkpoint over gRPC), proving with a consistency proof that it extends what that
peer cosigned before. (The node as a witness of its peers: node/services/witnessing.py.)
"""

from __future__ import annotations

import grpc
import structlog

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.directory import Directory
from exchange.errors import MlaxError
from exchange.ledger import verify_cosignature
from exchange.ledger.names import witness_verifiers
from node.peers.client import PeerClient
from node.services.messages import NodeCore
from node.services.witnessing import checkpoint_of
from node.storage.ledger import LedgerStore
from node.workers.periodic import Periodic

log = structlog.get_logger("mlax.ledger")


class Checkpointer(Periodic):
    """Signs checkpoints and gathers peers' cosignatures, on a timer.

    It looks every 0.25 s (or `interval`, if shorter) and signs when `every_entries`
    accumulated or `interval` passed with growth; it asks for cosignatures every
    `witness_interval`. Failing rounds back off (`Periodic`).
    """

    def __init__(
        self,
        core: NodeCore,
        store: LedgerStore,
        peers: PeerClient,
        *,
        interval: float,
        every_entries: int,
        witness_interval: float,
        timeout: float,
    ) -> None:
        super().__init__("mlax-checkpoints", min(interval, 0.25), "checkpoint_tick_failed")
        self.core, self.store, self.peers = core, store, peers
        self.interval, self.witness_interval, self.timeout = interval, witness_interval, timeout
        self.every_entries = every_entries
        self._since_checkpoint = self._since_witness = 0.0

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)

    def tick(self) -> None:
        self._since_checkpoint += self.waited
        self._since_witness += self.waited
        if self._since_checkpoint >= self.interval:
            if self.checkpoint_now() is not None:
                self._since_checkpoint = 0.0
        elif self.checkpoint_now(self.every_entries) is not None:
            self._since_checkpoint = 0.0
        if self._since_witness >= self.witness_interval:
            self._since_witness = 0.0
            self.witness_round()

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
        old = self.store.last_cosigned_size(peer)
        for _ in range(2):  # a conflict tells us the witness's real size: retry once
            proof = self.store.consistency_proof(old, size) if 0 < old < size else []
            resp = self.peers.add_checkpoint(
                peer,
                lpb.AddCheckpointRequest(old_size=old, consistency_proof=proof, note=note),
                self.timeout,
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
        checkpoint = checkpoint_of(note)
        for v in verifiers:
            try:
                verify_cosignature(checkpoint, line, v)
            except MlaxError:
                continue
            self.store.add_cosignature(size, peer, line)
            return
        log.warning("cosignature_invalid", witness=peer, size=size)
