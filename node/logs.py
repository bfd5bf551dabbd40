"""Structured JSON logs. Events carry ids, agencies and reasons; never content or names
of persons. Officers are named by their account name, which is not personal data of a
victim or suspect.

Every line the node writes is one JSON object: structlog's events, and the records of
libraries that log through Python's `logging` (gRPC, Alembic, ...), which pass through
the same renderer. An exception is logged as fields (`error_type`, `error`, `traceback`)
of its event, never as plain-text lines, and without the application's message, which
could quote input (see `error_fields`).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger


class LogBudget:
    """At most `per_window` lines per key and window (`window` seconds) for an event a
    caller can provoke at will (a peer's refused calls, a full disk failing every call):
    `allow` says whether to log this one, and how many of the key's lines it suppressed
    since the last one it allowed, for that line's `suppressed` field. Held in this
    process; keys are bounded by the caller (peers of the directory, a few reasons)."""

    def __init__(self, per_window: int = 10, window: float = 60.0) -> None:
        self.per_window = per_window
        self.window = window
        self._lock = threading.Lock()
        self._state: dict[object, list[float]] = {}  # key: [window start, logged, suppressed]

    def allow(self, key: object, now: float | None = None) -> tuple[bool, int]:
        at = time.monotonic() if now is None else now
        with self._lock:
            state = self._state.get(key)
            if state is None or at - state[0] >= self.window:
                suppressed = int(state[2]) if state is not None else 0
                self._state[key] = [at, 1, 0]
                return True, suppressed
            if state[1] < self.per_window:
                state[1] += 1
                suppressed, state[2] = int(state[2]), 0
                return True, suppressed
            state[2] += 1
            return False, 0


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the driver error a SQLAlchemy error wraps (`orig`), its causes and contexts."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [
            x
            for x in (getattr(e, "orig", None), e.__cause__, e.__context__)
            if isinstance(x, BaseException)
        ]


def _technical_words(e: BaseException) -> str | None:
    """What an exception says, when that is a database's or the OS's own technical words.

    SQLite's messages name tables and constraints only; an OS error is reduced to its
    errno and strerror (no file name); PostgreSQL's can quote row values (`DETAIL: Key
    (...)=(...)`), so only its SQLSTATE is kept. Anything else (an application's message
    can quote its input) is left out: the type and the traceback locate the fault.
    """
    if isinstance(e, sqlite3.Error):
        return f"sqlite: {e}"[:300]
    if isinstance(e, OSError) and e.errno is not None:
        return f"{errno.errorcode.get(e.errno, e.errno)}: {e.strerror}"
    sqlstate = getattr(e, "sqlstate", None)
    if isinstance(sqlstate, str):
        return f"sqlstate {sqlstate}"
    return None


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The fields a log event carries about an unexpected exception: its type (with the
    types it was raised from), the technical words of a database or OS error, and where it
    was raised (file, line, function and code of each frame)."""
    chain = list(exception_chain(exc))
    words = [w for w in map(_technical_words, chain) if w]
    fields: dict[str, Any] = {
        "error_type": " <- ".join(f"{type(e).__module__}.{type(e).__qualname__}" for e in chain),
        "traceback": "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__))),
    }
    if words:
        fields["error"] = "; ".join(dict.fromkeys(words))
    return fields


def _exception_fields(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """structlog processor: `exc_info` (from `log.exception` or a library's record)
    becomes `error_fields`."""
    info = event.pop("exc_info", None)
    exc: BaseException | None = None
    if info is True:
        exc = sys.exc_info()[1]
    elif isinstance(info, BaseException):
        exc = info
    elif isinstance(info, tuple) and len(info) == 3:
        exc = info[1]
    if exc is not None:
        for key, value in error_fields(exc).items():
            event.setdefault(key, value)
    return event


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    structlog.get_logger("mlax.node").error(
        "thread_crashed",
        thread=args.thread.name if args.thread else None,
        **error_fields(args.exc_value),
    )


def configure(level: str = "info") -> None:
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    # One handler renders everything, under one lock, one line per write: our events and
    # the records of libraries (gRPC's "Exception calling application", Alembic, ...),
    # the latter with `logger` naming where they come from.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                timestamper,
                _exception_fields,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            _exception_fields,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    # Alembic announces every migration step; only its warnings are worth a line.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # An exception that escapes a thread is an event too, not a traceback on stderr.
    threading.excepthook = _thread_crashed
