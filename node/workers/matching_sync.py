"""Keeps this node's copies of the peers' published victim-matching indexes fresh, so a
query finds little to fetch first (node/services/matching.py `MatchDesk.sync`)."""

from __future__ import annotations

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
        for card in directory.agencies:
            if card.agency_id == self.desk.core.agency or self.stopping:
                continue
            try:
                self.desk.sync(card.agency_id, self.timeout)
            except (grpc.RpcError, MlaxError):
                pass  # a peer that is down is tried again next round
            except Exception:
                log.exception("match_sync_failed", peer=card.agency_id)
