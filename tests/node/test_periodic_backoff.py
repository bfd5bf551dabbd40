"""Background work that keeps failing backs off and says so once, not four times a second:
the `Periodic` base (directory sync, clocks, matching sync) and the delivery worker's loop.

The failures are SQLite's real "database or disk is full" (a database capped with
PRAGMA max_page_count), as a node with a full disk meets it on every round. Waits are
checked as lower bounds only (a loaded machine makes them longer, never shorter).
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY

from node.config import DeliverySection
from node.workers.delivery import DeliveryWorker
from node.workers.periodic import MAX_FAILING_WAIT, Periodic, TaskHealth
from node.workers.wakeup import Wakeup

FAILURES = 5


def _disk_full(tmp_path: Path) -> sqlite3.OperationalError:
    conn = sqlite3.connect(tmp_path / "full.db")
    try:
        conn.execute("PRAGMA max_page_count = 4")
        conn.execute("CREATE TABLE t (b BLOB)")
        conn.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    except sqlite3.OperationalError as e:
        return e
    finally:
        conn.close()
    raise AssertionError("the capped database took the row")


def _wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _failures(task: str) -> float:
    return REGISTRY.get_sample_value("mlax_task_failures_total", {"task": task}) or 0.0


class Flaky(Periodic):
    """Fails its first FAILURES ticks with `error`, then succeeds; records when it ran."""

    def __init__(self, error: BaseException, every: float) -> None:
        super().__init__("flaky", every, "flaky_tick_failed")
        self.error = error
        self.times: list[float] = []

    def tick(self) -> None:
        self.times.append(time.monotonic())
        if len(self.times) <= FAILURES:
            raise self.error


def _check(
    times: list[float], logs: Sequence[MutableMapping[str, Any]], task: str, every: float
) -> None:
    failed = [e for e in logs if e["event"] == f"{task}_failed"]
    recovered = [e for e in logs if e["event"] == f"{task}_recovered"]
    assert len(failed) == 1, failed  # once when it starts failing, not once per round
    assert failed[0]["storage_full"] is True
    assert failed[0]["error"] == "sqlite: database or disk is full"
    assert failed[0]["error_type"] == "sqlite3.OperationalError"
    assert len(recovered) == 1, recovered
    assert recovered[0]["failed_rounds"] == FAILURES
    # After the n-th failure in a row the next round waits at least every * 2^n.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n in range(1, FAILURES + 1):
        assert gaps[n - 1] >= every * 2**n * 0.99, (n, gaps)


def test_a_failing_periodic_task_backs_off_and_logs_once_per_change(tmp_path: Path) -> None:
    every = 0.01
    task = Flaky(_disk_full(tmp_path), every)
    before = _failures("flaky_tick")
    with structlog.testing.capture_logs() as logs:
        task.start()
        try:
            _wait_for(lambda: len(task.times) >= FAILURES + 3)
        finally:
            task.stop()
    _check(task.times[: FAILURES + 2], logs, "flaky_tick", every)
    assert _failures("flaky_tick") == before + FAILURES
    # Healthy again: back to its own interval.
    assert task.health.wait(every) == every


class _FailingDb:
    """A database whose transactions fail FAILURES times with `error`, then find nothing due."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.times: list[float] = []

    @contextmanager
    def write(self) -> Iterator[Any]:
        self.times.append(time.monotonic())
        if len(self.times) <= FAILURES:
            raise self.error
        nothing_due = SimpleNamespace(execute=lambda q, p=None: SimpleNamespace(scalars=list))
        yield SimpleNamespace(connection=lambda: nothing_due)


def test_the_delivery_worker_backs_off_and_logs_once_per_change(tmp_path: Path) -> None:
    every = 0.01
    db = _FailingDb(_disk_full(tmp_path))
    core = SimpleNamespace(db=db, directory=SimpleNamespace(current=lambda: None))
    cfg = DeliverySection(poll_interval_seconds=every)
    outbox = Wakeup()  # what the core rings on each submission
    worker = DeliveryWorker(core, None, cfg, outbox)  # type: ignore[arg-type]
    before = _failures("delivery_tick")
    with structlog.testing.capture_logs() as logs:
        worker.start()
        try:
            # Submissions wake a healthy worker at once; a failing one keeps its backoff.
            stop_waking = threading.Event()

            def wake() -> None:
                while not stop_waking.wait(0.002):
                    outbox.notify()

            waker = threading.Thread(target=wake, daemon=True)
            waker.start()
            _wait_for(lambda: len(db.times) >= FAILURES + 2)
            stop_waking.set()
            waker.join()
        finally:
            worker.stop()
    _check(db.times[: FAILURES + 2], logs, "delivery_tick", every)
    assert _failures("delivery_tick") == before + FAILURES


@pytest.mark.parametrize(
    ("every", "failures", "wait"),
    [
        (0.5, 0, 0.5),
        (0.5, 1, 1.0),
        (0.5, 3, 4.0),
        (0.5, 50, MAX_FAILING_WAIT),  # capped
        (300.0, 1, 300.0),  # a task slower than the cap keeps its own interval
    ],
)
def test_the_wait_doubles_per_failure_up_to_the_cap(
    every: float, failures: int, wait: float
) -> None:
    health = TaskHealth("x_failed")
    health.failures = failures
    assert health.wait(every) == wait
