"""Keeps this node's copies of the peers' published victim-matching indexes fresh, so a
query finds little to fetch first (node/services/match_querier.py `MatchQuerier.sync`).

The syncs run on the desk's own threads (`MatchDesk.sync_soon`) under
`sync_timeout_seconds`, never a query's deadline: a first copy of a large index takes
minutes, and an interrupted one resumes where it stopped at the next round."""

from __future__ import annotations

from concurrent.futures import CancelledError, wait

import grpc
import structlog

from exchange.errors import MlaxError
from node.services.matching import MatchDesk
from node.workers.periodic import Periodic

log = structlog.get_logger("mlax.matching")


class MatchSync(Periodic):
    """Background thread: keeps our copies of the peers' published indexes fresh."""

    def __init__(self, desk: MatchDesk, every: float, timeout: float) -> None:
        super().__init__("match-sync", every, "match_sync_failed")
        self.desk, self.timeout = desk, timeout

    def tick(self) -> None:
        directory = self.desk.core.directory.current()
        running = [
            (card.agency_id, self.desk.sync_soon(card.agency_id, self.timeout))
            for card in directory.agencies
            if card.agency_id != self.desk.core.agency
        ]
        pending = {f for _, f in running}
        while pending and not self.stopping:
            _, pending = wait(pending, timeout=1.0)
        for peer, future in running:
            if not future.done():
                continue
            try:
                future.result()
            except (grpc.RpcError, MlaxError, CancelledError):
                pass  # a peer that is down is tried again next round
            except Exception:
                log.exception("match_sync_failed", peer=peer)

    def finish(self) -> None:
        self.desk.stop_syncs()
