"""The readiness check: every few seconds, which of node/health.py's causes hold.

Each round probes the database with a write (in a transaction that is rolled back),
reads the installed directory, looks at the free space of the disks the node writes to
and at the node's own keys. The outcome goes to the health service `mlax.v1.Readiness`
on both listeners, to the metrics (`mlax_ready`, `mlax_readiness_cause{cause}`) and,
when it changes, to the log (`readiness_changed`). Readiness comes back by itself when
the causes go away.

The database part runs on a thread of its own and is waited for at most
`probe_timeout_seconds`: a database that hangs makes the node not ready in bounded time
instead of stalling the check. While a probe hangs no second one is started.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import structlog
from grpc_health.v1 import health, health_pb2
from sqlalchemy import update

from exchange.agency import AgencyCard
from exchange.encoding import now_ms
from keys.identity import AgencyIdentity
from node import metrics
from node.config import HealthSection
from node.health import CAUSE_NAMES, READINESS_SERVICE, disk_low, existing, own_key_causes
from node.logs import error_fields
from node.services.trust import TrustedDirectory
from node.storage.db import Database
from node.storage.models import LedgerHeadRow
from node.workers.periodic import Periodic

log = structlog.get_logger("mlax.node")
T = TypeVar("T")


class _RollbackError(Exception):
    """Ends the probe's transaction without committing it."""


def probe_write(db: Database) -> None:
    """A write transaction that writes nothing: on SQLite it takes the write lock (BEGIN
    IMMEDIATE) and runs an UPDATE, on PostgreSQL an UPDATE; then it rolls back. It raises
    whatever a real write would meet: a lock held elsewhere, a read-only database or
    session, a database that is gone."""
    try:
        with db.write() as s:
            s.execute(update(LedgerHeadRow).where(LedgerHeadRow.id == -1).values(size=0))
            raise _RollbackError
    except _RollbackError:
        pass


class BoundedProbe:
    """Runs `fn` on a thread and waits at most `timeout` seconds for it.

    `run` returns what `fn` returned, or raises what it raised, or `TimeoutError` when
    it did not finish in time (or an earlier call still has not: then no new thread is
    started, so a hanging database costs one thread, not one per round).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pending: threading.Thread | None = None

    def run(self, fn: Callable[[], T]) -> T:
        if self._pending is not None and self._pending.is_alive():
            self._pending.join(self.timeout)
            if self._pending.is_alive():
                raise TimeoutError("an earlier database probe has not finished")
        box: dict[str, object] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as e:
                box["error"] = e

        thread = threading.Thread(target=target, name="mlax-readiness-probe", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            self._pending = thread
            raise TimeoutError(f"the database probe did not finish within {self.timeout:g} s")
        self._pending = None
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]


class ReadinessCheck(Periodic):
    """Evaluates readiness every `cfg.check_interval_seconds` (see module doc)."""

    def __init__(
        self,
        cfg: HealthSection,
        db: Database,
        trust: TrustedDirectory,
        identity: AgencyIdentity,
        paths: Iterable[Path],
        statuses: Iterable[health.HealthServicer] = (),
        statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
    ) -> None:
        super().__init__("mlax-readiness", cfg.check_interval_seconds, "readiness_check_failed")
        self.cfg = cfg
        self._db = db
        self._trust = trust
        self._identity = identity
        self._paths = tuple(paths)
        self._statuses = tuple(statuses)
        self._statvfs = statvfs
        self._probe = BoundedProbe(cfg.probe_timeout_seconds)
        self._directory_expires: int | None = None
        self._card: AgencyCard = identity.card
        self.causes: frozenset[str] | None = None  # None until the first round
        self._lock = threading.Lock()

    def _database(self) -> tuple[int, AgencyCard]:
        directory = self._trust.current()
        probe_write(self._db)
        return directory.expires_at, directory.agency(self._identity.agency_id) or self._card

    def _disk_low(self, path: Path) -> bool:
        try:
            st = self._statvfs(existing(path))
        except OSError:
            return True  # a file system that cannot even be asked takes no writes either
        return disk_low(st, self.cfg.min_free_mib, self.cfg.min_free_percent)

    def evaluate(self) -> tuple[set[str], BaseException | None]:
        """The causes that hold now, and the database's error if it is one of them."""
        causes: set[str] = set()
        error: BaseException | None = None
        try:
            self._directory_expires, self._card = self._probe.run(self._database)
        except Exception as e:
            # The directory and card stay as last read: the database cause covers this.
            causes.add("database")
            error = e
        if any(map(self._disk_low, self._paths)):
            causes.add("disk")
        now = now_ms()
        if self._directory_expires is not None and self._directory_expires <= now:
            causes.add("directory_expired")
        causes |= own_key_causes(
            self._card,
            self._identity.signing_keys,
            self._identity.decryption_keys,
            self._identity.tls_valid_until,
            now,
        )
        return causes, error

    def tick(self) -> None:
        causes, error = self.evaluate()
        with self._lock:
            self._publish(frozenset(causes), error)

    def _publish(self, causes: frozenset[str], error: BaseException | None) -> None:
        for name in CAUSE_NAMES:
            metrics.READINESS_CAUSE.labels(cause=name).set(1 if name in causes else 0)
        metrics.READY.set(0 if causes else 1)
        metrics.READINESS_CHECKED.set(time.time())
        before = self.causes
        self.causes = causes
        if before == causes:
            return
        # Only on a change: each `set` answers every open health Watch stream.
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING
            if causes
            else health_pb2.HealthCheckResponse.SERVING
        )
        for servicer in self._statuses:
            servicer.set(READINESS_SERVICE, status)
        fields: dict[str, object] = {
            "ready": not causes,
            "causes": sorted(causes),
            "added": sorted(causes - (before or frozenset())),
            "removed": sorted((before or frozenset()) - causes),
        }
        if error is not None:
            err = error_fields(error)
            fields["error_type"] = err["error_type"]
            if "error" in err:
                fields["error"] = err["error"]
            elif isinstance(error, TimeoutError):
                fields["error"] = str(error)
        if causes:
            log.warning("readiness_changed", **fields)
        elif before is not None:
            log.info("readiness_changed", **fields)
