"""A doorbell between the parts of a node: producers ring it, one background loop waits.

`run()` makes one per loop that can be woken and hands it to both sides: the loop waits
on it between rounds (`Periodic(..., wakeup=...)`), the producers get its `notify` (the
core rings the delivery worker's on each submission; the attachment desk rings the
evidence pusher when an evidence envelope is receipted). No service reaches into
another's attributes to be woken.
"""

from __future__ import annotations

import threading


class Wakeup:
    """Ring with `notify()` from any thread; the loop `wait`s for a ring or its timeout,
    then `clear`s it and runs a round, which sees whatever the rings announced."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """True if rung (now or since the last `clear`), False on the timeout."""
        return self._event.wait(timeout)

    def clear(self) -> None:
        self._event.clear()
