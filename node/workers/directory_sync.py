"""Directory sync: asks the peers now and then for a newer signed directory, and adopts
one that verifies against the installed directory, through the intermediate versions the
peer sends when the node missed some (docs/operators.md, "directory sync" and 8.3)."""

from __future__ import annotations

import grpc
import structlog

from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange.directory import Directory, verify_directory
from exchange.encoding import now_ms
from exchange.errors import MlaxError, OversizedError
from node import metrics
from node.peers.client import PeerClient
from node.services.messages import NodeCore
from node.services.trust import MAX_DIRECTORY_CHAIN
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
                current = self._adopt(resp, card.agency_id, current)
            except MlaxError as e:
                # Nothing changed (install and install_chain are all or none); the next
                # round asks the peers again.
                log.warning(
                    "directory_offer_refused",
                    source=card.agency_id,
                    reason=type(e).__name__,
                    chain=len(resp.chain),
                )

    def _adopt(self, resp: fpb.GetDirectoryResponse, source: str, current: Directory) -> Directory:
        """Install the peer's newest version: alone, verified against `current`, or after
        the intermediate versions it sent, each verified against the one before it (how a
        node that missed a change of administrators catches up). Returns the current one."""
        if not resp.chain:
            verify_directory(resp.signed_directory, current, now_ms())
            installed: tuple[Directory, ...] = (
                self.core.directory.install(resp.signed_directory, source),
            )
        else:
            if len(resp.chain) > MAX_DIRECTORY_CHAIN:
                raise OversizedError(
                    f"A directory chain carries at most {MAX_DIRECTORY_CHAIN} versions; "
                    f"this one has {len(resp.chain)}."
                )
            versions = [*resp.chain, resp.signed_directory]
            installed = self.core.directory.install_chain(versions, source)
        if not installed:
            return current
        metrics.DIRECTORY_VERSION.labels(source="peer").inc(len(installed))
        log.info(
            "directory_adopted",
            version=installed[-1].version,
            source=source,
            versions=len(installed),
        )
        return installed[-1]
