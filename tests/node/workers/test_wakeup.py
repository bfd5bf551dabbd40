"""A `Periodic` task with a `Wakeup`: a ring runs a healthy task at once, `stop` ends it
without waiting out its interval, and `finish` runs last."""

from __future__ import annotations

import threading
import time

from sim_peer import wait_for

from node.workers.periodic import Periodic
from node.workers.wakeup import Wakeup


class Counter(Periodic):
    def __init__(self, wakeup: Wakeup) -> None:
        super().__init__("counter", 3600.0, "counter_tick_failed", run_first=True, wakeup=wakeup)
        self.ticks = 0
        self.finished = threading.Event()

    def tick(self) -> None:
        self.ticks += 1

    def finish(self) -> None:
        self.finished.set()


def test_a_ring_runs_the_task_at_once_and_stop_does_not_wait_out_the_interval() -> None:
    bell = Wakeup()
    task = Counter(bell)
    task.start()
    try:
        wait_for(lambda: task.ticks == 1)  # run_first
        for n in (2, 3):
            bell.notify()
            wait_for(lambda n=n: task.ticks == n)  # type: ignore[misc]
    finally:
        started = time.monotonic()
        task.stop()
    assert time.monotonic() - started < 5.0
    assert task.finished.is_set()
    assert task.ticks == 3
