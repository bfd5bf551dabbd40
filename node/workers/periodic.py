"""Background work that runs every few seconds for the life of a node."""

from __future__ import annotations

import threading
import time

import structlog

from node import metrics
from node.logs import error_fields
from node.rpc.errors import is_storage_full

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
    """

    def __init__(self, name: str, every: float, event: str, run_first: bool = False) -> None:
        self.every = every
        self.health = TaskHealth(event)
        self._run_first = run_first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception as e:
            self.health.failed(e, self.every)
        else:
            self.health.ok()

    def _run(self) -> None:
        if self._run_first:
            self._safe_tick()
        while not self._stop.wait(self.health.wait(self.every)):
            self._safe_tick()
