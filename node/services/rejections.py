"""Refusals of a peer's calls in the audit ledger at a bounded rate.

Each refusal of a peer's `Deliver` after admission (and each refused evidence chunk, each
blind evaluation over quota) is evidence an auditor may want, but a
peer (or whoever holds its TLS key) can send junk as fast as the network allows, and one
entry per refusal would let it grow the ledger without bound. So refusals are ledgered
per window and per (peer, reason, status): the first `per_window` of a window each as a
`message.rejected` entry, the rest counted and ledgered together as one
`message.rejected_aggregate` entry (`count`, `first_at`, `last_at`) when the window ends.
Nothing is hidden: every refusal is in one entry or the other (and in the metrics), but
the ledger grows with the number of windows, not with the junk.

The windows are held in this process: with several replicas behind one address the bound
holds per replica (each ledgers at most `per_window` + 1 entries per key and window).
A process that dies loses the counts of its open windows; the metrics and the
`rejections_aggregated` log line still show the flood.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from exchange.encoding import now_ms
from exchange.ledger_entry import LedgerEntry
from node.config import LedgerSection
from node.storage import ledger
from node.storage.db import Database
from node.workers.periodic import Periodic

log = structlog.get_logger("mlax.node")

REJECTED = "message.rejected"
REJECTED_AGGREGATE = "message.rejected_aggregate"
_DEFAULTS = LedgerSection()

Key = tuple[str, str, str]  # peer, reason (error class name), status (gRPC status name)


@dataclass
class _Window:
    started: float  # monotonic seconds
    ledgered: int = 0
    folded: int = 0  # refusals counted for the aggregate entry
    first_at: int = 0  # unix ms of the first and last folded refusal
    last_at: int = 0


def _aggregate(key: Key, w: _Window) -> LedgerEntry:
    peer, reason, status = key
    return LedgerEntry.of(
        REJECTED_AGGREGATE,
        now_ms(),
        peer=peer,
        reason=reason,
        status=status,
        count=w.folded,
        first_at=w.first_at,
        last_at=w.last_at,
    )


class RejectionLedger(Periodic):
    """Ledgers refusals individually up to `per_window` per key and window, then as one
    aggregate entry per window; its thread writes the aggregates of ended windows."""

    def __init__(
        self,
        db: Database,
        per_window: int = _DEFAULTS.rejections_per_window,
        window_seconds: float = _DEFAULTS.rejection_window_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # An ended window's aggregate is written within 5 s (sooner for short windows).
        super().__init__("mlax-rejections", min(window_seconds, 5.0), "rejections_flush_failed")
        self.db = db
        self.per_window = per_window
        self.window_seconds = window_seconds
        self._clock = clock
        self._windows: dict[Key, _Window] = {}
        # Held while writing too: a window's entries reach the ledger in order.
        self._lock = threading.Lock()

    def record(self, peer: str, reason: str, status: str, entry: LedgerEntry | None = None) -> bool:
        """Account for one refusal; True when it got a ledger entry of its own.

        That entry is `entry` when the caller has a more specific one (a refused evidence
        chunk, a blind evaluation over quota), else a `message.rejected`; past the
        window's budget the refusal is counted in the window's aggregate instead.
        """
        key = (peer, reason, status)
        at = now_ms()
        with self._lock:
            now = self._clock()
            entries: list[LedgerEntry] = []
            w = self._windows.get(key)
            if w is not None and now - w.started >= self.window_seconds:
                if w.folded:
                    entries.append(_aggregate(key, w))
                w = None
            if w is None:
                w = self._windows[key] = _Window(now)
            individual = w.ledgered < self.per_window
            if individual:
                w.ledgered += 1
                entries.append(
                    entry or LedgerEntry.of(REJECTED, at, peer=peer, reason=reason, status=status)
                )
            else:
                w.folded += 1
                w.first_at = w.first_at or at
                w.last_at = at
                if w.folded == 1:
                    log.warning(
                        "rejections_aggregated",
                        peer=peer,
                        reason=reason,
                        status=status,
                        ledgered=w.ledgered,
                        window_seconds=self.window_seconds,
                    )
            self._write(entries)
        return individual

    def flush(self, everything: bool = False) -> int:
        """Write the aggregate entries of ended windows (of all, with `everything`) and
        forget those windows; returns the number of entries written."""
        with self._lock:
            now = self._clock()
            ended = [
                (k, w)
                for k, w in self._windows.items()
                if everything or now - w.started >= self.window_seconds
            ]
            for k, _ in ended:
                del self._windows[k]
            entries = [_aggregate(k, w) for k, w in ended if w.folded]
            self._write(entries)
        return len(entries)

    def tick(self) -> None:
        self.flush()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then ledger what open windows counted (at shutdown)."""
        super().stop(timeout)
        self.flush(everything=True)

    def _write(self, entries: list[LedgerEntry]) -> None:
        if not entries:
            return
        try:
            with self.db.write() as s:
                for entry in entries:
                    ledger.append(s, entry)
        except Exception:
            for e in entries:
                f = dict(e.fields)
                log.error(
                    "rejections_not_ledgered",
                    kind=e.kind,
                    peer=f.get("peer"),
                    reason=f.get("reason"),
                    count=f.get("count", 1),
                )
            raise
