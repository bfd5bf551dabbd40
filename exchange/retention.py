"""Retention: the kinds of data a node purges, their rule names, and how a purged item
reads. One place for the words every view shows ("purged on DATE under RULE"): the
node's errors, the SDK, the CLI and the console call `purged_text`."""

from __future__ import annotations

import datetime
from enum import StrEnum

from exchange.errors import ConflictError, Status


class Data(StrEnum):
    """A kind of data with a retention period ([retention] `<value>_seconds`)."""

    MESSAGE_CONTENT = "message_content"
    CASE_CONTENT = "case_content"
    EVIDENCE = "evidence"
    VICTIM_RECORDS = "victim_records"
    ABANDONED_UPLOADS = "abandoned_uploads"


class PurgedError(ConflictError):
    """Asked for content that was purged (its metadata and digests stay)."""

    status = Status.FAILED_PRECONDITION


def _span(seconds: float) -> str:
    """A period as its largest whole unit: 157680000 -> 1825d, 90 -> 90s."""
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s" if whole == seconds else f"{seconds}s"


def rule_name(data: Data, seconds: float) -> str:
    """The rule an item was purged under, as ledgered and shown: `case_content:30d`."""
    return f"{data.value}:{_span(seconds)}"


def purged_text(purged_at_ms: int, rule: str) -> str:
    """How a purged item reads everywhere: `purged on 2026-12-06 under case_content:30d`."""
    day = datetime.datetime.fromtimestamp(purged_at_ms / 1000, tz=datetime.UTC)
    return f"purged on {day:%Y-%m-%d} under retention rule {rule}"
