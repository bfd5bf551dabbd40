"""Which index copies a holder has ledgered, so that a peer calling `GetMatchIndex` in a
loop cannot grow the audit ledger without bound (`ServedCopies`)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

Copy = tuple[str, str, int, int]  # peer, key id, since, version


class ServedCopies:
    """Which index copies were ledgered in the last hour, so that `GetMatchIndex` in a loop
    cannot grow the audit ledger without bound (the bounded-rate pattern of
    node/services/rejections.py).

    A call is ledgered as `match.index_served` only if it serves something: a reset, or
    the changes since an older version (`since < version`); a call with `since` at the
    holder's version streams no records and reveals nothing the peer did not have, so it
    is not ledgered (it is counted in `mlax_match_index_syncs_total`). The
    same copy, (peer, key id, since, version), is ledgered at most once an hour. So a
    loop with identical arguments grows the ledger by at most one entry an hour, and a
    loop over distinct `since` values by at most version + 1 entries an hour and key
    generation (one per `since` below the version; a reset, and a `since` past the version, is the
    copy from 0). A new
    load (a new version) makes the next copy new, so it is ledgered again.

    Held in this process, as the rejections' windows are: with several replicas each
    ledgers its own first copy, and a restarted node ledgers afresh. Entries older than
    `hold_seconds` are pruned on every call: peers are directory agencies, so what is
    held is at most what the ledger got in the last hour.
    """

    def __init__(
        self, hold_seconds: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.hold_seconds = hold_seconds
        self.clock = clock
        self._seen: OrderedDict[Copy, float] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def first(self, copy: Copy) -> bool:
        """True (and remembered for the hour) when `copy` was not ledgered in the last
        hour, so is to be ledgered now."""
        with self._lock:
            now = self.clock()
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if now - at < self.hold_seconds:
                    break
                del self._seen[oldest]
            if copy in self._seen:
                return False
            self._seen[copy] = now
            return True

    def forget(self, copy: Copy) -> None:
        """Undo `first` for a copy whose entry could not be written."""
        with self._lock:
            self._seen.pop(copy, None)

    def __len__(self) -> int:
        return len(self._seen)
