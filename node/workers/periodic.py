"""Background work that runs every few seconds for the life of a node."""

from __future__ import annotations

import threading
import time

import structlog

from node import metrics
from node.logs import error_fields
from node.rpc.errors import is_storage_full
from node.workers.wakeup import Wakeup

log = structlog.get_logger("mlax.node")

# A failing task waits at most this long between rounds (or its own interval, if longer).
MAX_FAILING_WAIT = 60.0


class TaskHealth:
    """Whether the rounds of a background task fail, and how long to wait for the next.

    A round that raises counts in `mlax_task_failures_total{task}`. The task then backs
    off: the wait doubles with each failed round in a row, from the task's interval up
    to `MAX_FAILING_WAIT`. The log says so once per change of state, not once per round:
    `<task>_failed` (error, with the exception's fields and `storage_full`) when the
    task starts failing or fails differently, `<task>_recovered` (info) at the first
    round that succeeds again.
    """

    def __init__(self, event: str) -> None:
        self.event = event
        self.task = event.removesuffix("_failed")
        self.failures = 0
        self._kind = ""
        self._since = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def wait(self, every: float) -> float:
        """Seconds until the next round of a task that runs every `every` seconds."""
        if not self.failures:
            return every
        return float(min(max(every, MAX_FAILING_WAIT), every * 2.0 ** min(self.failures, 32)))

    def ok(self) -> None:
        if self.failures:
            log.info(
                f"{self.task}_recovered",
                failed_rounds=self.failures,
                failing_seconds=round(time.monotonic() - self._since, 1),
            )
        self.failures, self._kind = 0, ""

    def failed(self, exc: BaseException, every: float) -> None:
        metrics.TASK_FAILURES.labels(task=self.task).inc()
        full = is_storage_full(exc)
        kind = "storage_full" if full else f"{type(exc).__module__}.{type(exc).__qualname__}"
        if not self.failures:
            self._since = time.monotonic()
        self.failures += 1
        if kind != self._kind:
            self._kind = kind
            log.error(
                self.event,
                storage_full=full,
                retry_in_seconds=round(self.wait(every), 3),
                **error_fields(exc),
            )


class Periodic:
    """A daemon thread calling `tick` every `every` seconds until `stop`.

    A tick that raises does not end the thread: background work must outlive any one
    bad round. Failing ticks back off and are logged as `<event>` once (`TaskHealth`).

    With a `wakeup`, a healthy task also runs as soon as it is rung (a backing-off one
    waits its backoff out). `waited` is how long the loop waited before the current
    tick (0 for the first one of a `run_first` task). After `stop`, `finish` runs once
    on the thread.
    """

    def __init__(
        self,
        name: str,
        every: float,
        event: str,
        run_first: bool = False,
        *,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.every = every
        self.health = TaskHealth(event)
        self.wakeup = wakeup
        self.waited = 0.0
        self._run_first = run_first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Last work after the loop stopped (nothing by default)."""

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.wakeup is not None:
            self.wakeup.notify()
        self._thread.join(timeout)

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception as e:
            self.health.failed(e, self.every)
        else:
            self.health.ok()

    def _pause(self) -> bool:
        """Wait for the next round; True once stopping."""
        self.waited = self.health.wait(self.every)
        if self.wakeup is None:
            return self._stop.wait(self.waited)
        if self.health.failing:  # backing off: a ring does not cut the wait short
            self._stop.wait(self.waited)
        else:
            self.wakeup.wait(self.waited)
        self.wakeup.clear()
        return self._stop.is_set()

    def _run(self) -> None:
        if self._run_first:
            self._safe_tick()
        while not self._pause():
            self._safe_tick()
        self.finish()
