"""Directory sync: asks the peers now and then for a newer signed directory, and adopts
one that verifies against the installed directory (docs/operators.md, "directory sync")."""

from __future__ import annotations

import grpc
import structlog

from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange.directory import verify_directory
from exchange.encoding import now_ms
from exchange.errors import MlaxError
from node import metrics
from node.peers.client import PeerClient
from node.services.messages import NodeCore
from node.workers.periodic import Periodic

log = structlog.get_logger("mlax.node")


class DirectorySync(Periodic):
    """Asks peers for their directory now and then; adopts a newer one that verifies."""

    def __init__(self, core: NodeCore, peers: PeerClient, every: float, timeout: float) -> None:
        super().__init__("mlax-dirsync", every, "directory_sync_failed")
        self.core, self.peers, self.timeout = core, peers, timeout

    def tick(self) -> None:
        self.sync_once()

    def sync_once(self) -> None:
        current = self.core.directory.current()
        for card in current.agencies:
            if card.agency_id == self.core.agency:
                continue
            try:
                resp = self.peers.get_directory(
                    card.agency_id,
                    fpb.GetDirectoryRequest(have_version=current.version),
                    self.timeout,
                )
            except (grpc.RpcError, MlaxError):
                continue
            if not resp.signed_directory:
                continue
            try:
                verify_directory(resp.signed_directory, current, now_ms())
                current = self.core.directory.install(resp.signed_directory, card.agency_id)
                metrics.DIRECTORY_VERSION.labels(source="peer").inc()
                log.info("directory_adopted", version=current.version, source=card.agency_id)
            except MlaxError as e:
                log.warning(
                    "directory_offer_refused", source=card.agency_id, reason=type(e).__name__
                )
