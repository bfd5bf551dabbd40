"""Legal clocks on a timer: overdue acknowledgements and responses are raised once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.workers.periodic import Periodic

if TYPE_CHECKING:
    from node.services.cases import CaseDesk


class ClockWatch(Periodic):
    """Background thread: looks for overdue legal clocks at start, then every `every` s."""

    def __init__(self, desk: CaseDesk, every: float) -> None:
        super().__init__("case-clocks", every, "case_clock_check_failed", run_first=True)
        self.desk = desk

    def tick(self) -> None:
        self.desk.check_clocks()
