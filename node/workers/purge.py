"""The retention purge on a timer (node/services/retention.py): content past its period
goes, and what an interrupted run left is finished first."""

from __future__ import annotations

from node.services.retention import RetentionDesk
from node.workers.periodic import Periodic


class PurgeJob(Periodic):
    """Background thread: purges at start, then every `every` seconds."""

    def __init__(self, desk: RetentionDesk, every: float) -> None:
        super().__init__("retention-purge", every, "retention_purge_failed", run_first=True)
        self.desk = desk

    def tick(self) -> None:
        self.desk.purge()
