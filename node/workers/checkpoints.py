"""Checkpoints and witnessing, as the log: the node signs a checkpoint of its ledger every
few seconds when it grew, then asks its witnesses to cosign it (C2SP tlog-witness
add-checkpoint over gRPC), proving with a consistency proof that it extends what each
cosigned before. Its witnesses are the `witnesses` peers exchange/ledger/witnesses.py
assigns to this log for the hour (ADR 0011), not every peer: the calls per checkpoint do
not grow with the federation. (The node as a witness of its peers:
node/services/witnessing.py.)
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import structlog

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.directory import Directory
from exchange.encoding import now_ms
from exchange.errors import MlaxError
from exchange.ledger import verify_cosignature
from exchange.ledger.names import witness_verifiers
from exchange.ledger.witnesses import assigned_witnesses, witness_epoch
from node.peers.client import PeerClient
from node.services.messages import NodeCore
from node.services.witnessing import checkpoint_of
from node.storage.backup import restored_index
from node.storage.ledger import LedgerStore
from node.workers.periodic import Periodic

log = structlog.get_logger("mlax.ledger")


class Checkpointer(Periodic):
    """Signs checkpoints and gathers its witnesses' cosignatures, on a timer.

    It looks every second (or every `interval`, if shorter) and signs when `every_entries`
    accumulated or `interval` passed with growth; every `witness_interval` it asks the
    `witnesses` peers assigned to it for the hour to cosign the latest checkpoint.
    Failing rounds back off (`Periodic`). `clock_ms` is the POSIX time in ms.
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
        witnesses: int = 3,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        # Looking costs a database read: once a second, not more, on an idle ledger (37
        # nodes on one machine spent 0.45 of a core looking four times a second).
        super().__init__("mlax-checkpoints", min(interval, 1.0), "checkpoint_tick_failed")
        self.core, self.store, self.peers = core, store, peers
        self.interval, self.witness_interval, self.timeout = interval, witness_interval, timeout
        self.every_entries, self.witnesses, self.clock_ms = every_entries, witnesses, clock_ms
        self._since_checkpoint = self._since_witness = 0.0
        self._restored: tuple[int | None] | None = None  # (index,) once looked up
        self._lost_logged: dict[str, int] = {}

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
        """Ask this hour's witnesses that have not cosigned it to cosign our latest checkpoint.

        A witness that is down is asked again next round; no other peer stands in for it,
        so the set stays the one every auditor recomputes.
        """
        latest = self.store.latest_checkpoint()
        if latest is None:
            return
        directory = self.core.directory.current()
        epoch = witness_epoch(self.clock_ms() // 1000)
        for peer in assigned_witnesses(directory, self.core.agency, epoch, self.witnesses):
            try:
                self._ask(peer, latest.size, latest.note, directory)
            except (grpc.RpcError, MlaxError, LookupError) as e:
                reason = e.code().name if isinstance(e, grpc.RpcError) else type(e).__name__
                log.info("witness_unavailable", witness=peer, reason=reason)

    def _restored_index(self) -> int | None:
        # Restores happen with the node stopped: look once per process (a ledger scan).
        if self._restored is None:
            self._restored = (restored_index(self.store.db),)
        return self._restored[0]

    def _ask(self, peer: str, size: int, note: bytes, directory: Directory) -> None:
        old = self.store.last_cosigned_size(peer)
        if old >= size:
            return  # this peer already cosigned this checkpoint (or a later one)
        for _ in range(2):  # a conflict tells us the witness's real size: retry once
            proof = self.store.consistency_proof(old, size) if 0 < old < size else []
            resp = self.peers.add_checkpoint(
                peer,
                lpb.AddCheckpointRequest(old_size=old, consistency_proof=proof, note=note),
                self.timeout,
            )
            if not resp.conflict:
                break
            restored = self._restored_index()
            if restored is not None and resp.known_size > max(restored, old):
                # The witness cosigned entries this node lost in a restore: no honest proof
                # from its checkpoint exists, and a proof from ours would be a split view.
                # Said once per witness and size, not every round.
                if self._lost_logged.get(peer) != resp.known_size:
                    self._lost_logged[peer] = resp.known_size
                    log.warning(
                        "witness_holds_lost_entries",
                        witness=peer,
                        known_size=resp.known_size,
                        restored_from=restored,
                    )
                return
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
