"""Engines and transactions: SQLite in WAL mode by default, PostgreSQL by URL."""

from __future__ import annotations

import contextlib
import os
import select
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# Tests only: cap an SQLite database at this many pages, so that a node meets "database
# or disk is full" as on a full disk, without filling one.
TEST_MAX_PAGES_ENV = "MLAX_TEST_SQLITE_MAX_PAGES"

# The PostgreSQL advisory lock that serialises migrations ("MLAXMIGR" as an integer).
_MIGRATE_LOCK = int.from_bytes(b"MLAXMIGR", "big") - 2**63

# The database and the files SQLite keeps beside it hold every message and case.
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path) -> bool | None:
    """Create `path` as 0700, or take group and other access away from an existing one.
    True if it had to be tightened, None if it is open to others and not ours to change."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return False
    try:
        path.chmod(mode & 0o700)
    except PermissionError:
        return None
    return True


def _private_sqlite_files(url: str) -> tuple[list[Path], list[Path]]:
    """Create a missing SQLite database file 0600 (SQLite gives its -wal and -shm the
    main file's mode, whatever the umask), and tighten existing ones to 0600. The files
    that had to be tightened, and those open to others that are not ours to change."""
    name = make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return [], []
    path = Path(name)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return [], []  # no such directory, or not ours: SQLite's own error says which
    tightened, foreign = [], []
    for suffix in _SQLITE_COMPANIONS:
        file = path.with_name(path.name + suffix)
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(mode & 0o600)
                tightened.append(file)
        except FileNotFoundError:
            continue
        except PermissionError:
            foreign.append(file)
    return tightened, foreign


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
        if max_pages := os.environ.get(TEST_MAX_PAGES_ENV):
            cur.execute(f"PRAGMA max_page_count={int(max_pages)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("mlax_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def postgres_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine on PostgreSQL whose pool hands out only live connections, without a
    round trip per checkout.

    `pool_pre_ping` sent an empty query on every checkout: a round trip that cost about a
    fifth of a one-statement write transaction. A server that restarts, or ends a
    session (`pg_terminate_backend`, `idle_session_timeout`), sends its last message and
    closes the socket, so the pooled connection's socket turns readable while nobody
    waits on it; nothing else writes to an idle connection (no LISTEN here). Such a
    connection is dropped at checkout and the pool opens a new one in its place. A
    connection that breaks in use is invalidated by SQLAlchemy's own disconnect
    detection, as before: that transaction fails and the next one reconnects.
    """
    engine = create_engine(url, pool_size=pool_size, hide_parameters=True)  # as in Database

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_conn.closed or dbapi_conn.broken:
            raise exc.DisconnectionError("the pooled connection is closed")
        poller = select.poll()
        poller.register(dbapi_conn.pgconn.socket, select.POLLIN | select.POLLPRI)
        if poller.poll(0):  # any event: data (the server's goodbye), EOF, error or hang-up
            raise exc.DisconnectionError("the server closed the pooled connection")

    return engine


class Database:
    """One engine; `read()` and `write()` sessions that commit or roll back as a unit."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # Files whose group or other access this process took away, and files open to
        # others that it may not change (the node logs both).
        self.tightened: list[Path] = []
        self.too_open: list[Path] = []
        # Statement parameters (message content, names) never appear in an error's text,
        # which may reach a log.
        if self.is_sqlite:
            self.tightened, self.too_open = _private_sqlite_files(url)
            self.engine = create_engine(
                url,
                connect_args={"timeout": 30, "check_same_thread": False},
                hide_parameters=True,
            )
            _sqlite_setup(self.engine)
        else:
            self.engine = postgres_engine(url, pool_size)
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
            if not self.is_sqlite:
                # Replicas starting together on one database: one migrates, the others
                # wait here, then find the schema current (SQLite's write lock does this).
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK})
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


class _JobFailedError(Exception):
    """A job of a shared transaction raised: the batch runs again, a savepoint per job."""


class GroupCommit:
    """Small write transactions that arrive together share one commit (one fsync).

    The jobs run in one transaction. If one raises, that transaction rolls back and the
    batch runs again with each job in its own savepoint, so the failing job rolls back
    alone and its caller gets its exception; the others commit. (A savepoint per job in
    every batch cost two statements per job on the hot path; failures are rare.) A job may
    therefore run twice: it must only write through the session it is given. A job
    returns only once its commit is durable. The first caller to find no commit under way
    leads: it commits everything queued, then hands the lead to the next waiter, so no
    caller waits for more than two commits.
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

    def _all_or_nothing(self, batch: list[_Job[Any]]) -> None:
        with self._db.write() as s:
            for job in batch:
                try:
                    job.result = job.fn(s)
                except Exception as e:
                    raise _JobFailedError from e  # rolls the whole transaction back

    def _one_by_one(self, batch: list[_Job[Any]]) -> None:
        with self._db.write() as s:
            for job in batch:
                job.result = None
                try:
                    with s.begin_nested():
                        job.result = job.fn(s)
                except Exception as e:  # this job alone rolls back
                    job.error = e

    def _commit_batch(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            try:
                self._all_or_nothing(batch)
            except _JobFailedError as failed:
                if len(batch) == 1:  # alone: the rollback was its own
                    batch[0].error = cast(Exception, failed.__cause__)
                else:
                    self._one_by_one(batch)
        except Exception as e:  # a commit itself failed: nothing in the batch happened
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
