"""Background work that runs every few seconds for the life of a node."""

from __future__ import annotations

import threading

import structlog

log = structlog.get_logger("mlax.node")


class Periodic:
    """A daemon thread calling `tick` every `every` seconds until `stop`.

    A tick that raises is logged as `<event>` with its traceback and the next tick runs
    as usual: background work must outlive any one bad round.
    """

    def __init__(self, name: str, every: float, event: str, run_first: bool = False) -> None:
        self.every = every
        self._event = event
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
        except Exception:
            log.exception(self._event)

    def _run(self) -> None:
        if self._run_first:
            self._safe_tick()
        while not self._stop.wait(self.every):
            self._safe_tick()
