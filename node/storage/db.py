"""Engines and transactions: SQLite in WAL mode by default, PostgreSQL by URL."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred
        # and upgrades to a write lock mid-transaction, which deadlocks writers).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed delivery survives power loss, not only a process crash.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("mlax_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """One engine; `read()` and `write()` sessions that commit or roll back as a unit."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = create_engine(
                url, connect_args={"timeout": 30, "check_same_thread": False}
            )
            _sqlite_setup(self.engine)
        else:
            self.engine = create_engine(url, pool_size=pool_size, pool_pre_ping=True)
        self._writer = self.engine.execution_options(mlax_write=True)
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps
        # in steps of up to 100 ms before it retries. Queueing this process's writers on
        # a lock of our own hands the database over the moment it is free.
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction; on SQLite it takes the write lock at BEGIN."""
        with (
            self._write_lock,
            Session(self._writer, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    def close(self) -> None:
        self.engine.dispose()


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "lead", "result")

    def __init__(self, fn: Callable[[Session], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.lead = False
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Small write transactions that arrive together share one commit (one fsync).

    Each job runs in its own savepoint, so one that fails rolls back alone and its caller
    gets its exception; the others commit. A job returns only once its commit is durable.
    The first caller to find no commit under way leads: it commits everything queued,
    then hands the lead to the next waiter, so no caller waits for more than two commits.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._queue: list[_Job[Any]] = []
        self._leading = False

    def run(self, fn: Callable[[Session], T]) -> T:
        job: _Job[T] = _Job(fn)
        with self._lock:
            self._queue.append(job)
            job.lead = not self._leading
            self._leading = True
        while not job.done.is_set():
            if job.lead:
                self._commit_batch()
            else:
                job.done.wait()
                if job.lead:  # woken to lead the next commit, not because ours is done
                    job.done.clear()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _commit_batch(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            with self._db.write() as s:
                for job in batch:
                    try:
                        with s.begin_nested():
                            job.result = job.fn(s)
                    except Exception as e:  # this job alone rolls back
                        job.error = e
        except Exception as e:  # the commit itself failed: nothing in the batch happened
            for job in batch:
                job.error = job.error or e
        with self._lock:
            nxt = self._queue[0] if self._queue else None
            if nxt is None:
                self._leading = False
            else:
                nxt.lead = True
        for job in batch:
            job.lead = False
            job.done.set()
        if nxt is not None:
            nxt.done.set()  # wakes it to lead; it clears the flag and commits
