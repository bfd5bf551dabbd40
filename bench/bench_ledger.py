"""Audit ledger: durable appends, proofs at a million entries, and verifying an export.

Figures, each against a baseline measured in the same run:

1. `append`: entries per second through `node.storage.ledger.append` (one call per entry)
   and `append_many` (one call per commit) inside `Database.write()` transactions (SQLite
   WAL, synchronous=FULL), 1, 10 and 100 entries per commit.
   Baseline: the raw `sqlite3` module inserting the same number of rows of the same size
   into a plain table with the same columns, same pragmas and the same commit batching.
   Also measured: the ORM adding only the entry row (no tree), to split ORM from tree.
2. `build`: a ledger of `--entries` (default 1,000,000) built on the bulk path
   (`CompactRange.extend` and executemany of the very rows `append` writes), checked
   row for row against an `append`-built ledger first, cached under /tmp.
3. `inclusion_proof` / `consistency_proof`: median generation (`LedgerStore`, from the
   stored tree) and verification (`verify_inclusion` / `verify_consistency`) times, and
   as a diagnostic the same proofs with the nodes read by one fixed-shape indexed query.
4. `audit`: `verify_export(iter_records(f.read))` over an export of the whole ledger
   (`LedgerStore.export`, `encode_record`, one signed and cosigned checkpoint).
   Baseline: a bare loop computing the hashes verification cannot avoid (per entry the
   commitment SHA-256(PAE(ctx, salt, entry)) and the leaf hash, and the n-1 node
   hashes of the tree), on entries already in memory.

Ratios are time measured / time of the baseline: how many times slower than the floor.

Prints one JSON object per line on stdout and a table on stderr (`--profile` adds
cProfile reports of the hot paths there).
Run: .venv/bin/python bench/bench_ledger.py [--quick] [--entries N] [--pg URL] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from nacl.signing import SigningKey
from sqlalchemy import bindparam, event, select, text
from sqlalchemy.orm import Session

import node.storage.ledger as node_ledger
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.agency import AgencyCard, KeyAlgorithm, PublicKey
from exchange.directory import AdminKey, Directory, SignedDirectory
from exchange.encoding import CTX_LEDGER_ENTRY
from exchange.ledger import (
    Checkpoint,
    CompactRange,
    GetNode,
    consistency_proof,
    cosign,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from exchange.ledger.audit import verify_export
from exchange.ledger.export import EXPORT_FORMAT, encode_record, iter_records
from exchange.ledger.names import log_origin
from exchange.ledger_entry import LedgerEntry, commitment, new_salt
from node.devtools.databases import TEST_PG_ENV, pg_databases
from node.storage.db import MIGRATIONS, Database
from node.storage.ledger import LedgerStore, append, append_many
from node.storage.models import LedgerEntryRow, LedgerHeadRow, LedgerNodeRow

# Bump when the bulk builder or the entries change: cached ledgers of other versions are
# ignored (the schema's Alembic head is part of the cache key too).
BUILD_VERSION = "v1"
NOW = 1_767_225_600_000  # a fixed clock: the benchmark must not depend on the date
YEAR_MS = 365 * 24 * 3600 * 1000
FEDERATION_ID = "mlax-bench"
AGENCY = "GB-NCA"
PEER = "FR-OCRTEH"
ORIGIN = log_origin(FEDERATION_ID, AGENCY)
BATCHES = (1, 10, 100)
BUILD_CHUNK = 50_000
MIN_PROOF_SAMPLES = 5
ZERO_HASH = bytes(32)
# The parts `--only` can pick.
SECTIONS = ("sqlite", "pg", "proofs", "audit")
CHECK_ENTRIES = 1_337  # ledger size of the bulk-versus-append check (not a power of two)

# The raw statements name the models' tables and every column of them.
assert LedgerEntryRow.__tablename__ == "ledger_entries"
assert [c.name for c in LedgerEntryRow.__table__.columns] == [
    "idx", "kind", "at", "entry", "salt", "commitment"
]  # fmt: skip
assert LedgerNodeRow.__tablename__ == "ledger_nodes"
assert [c.name for c in LedgerNodeRow.__table__.columns] == ["level", "idx", "hash"]
assert LedgerHeadRow.__tablename__ == "ledger_head"
assert [c.name for c in LedgerHeadRow.__table__.columns] == ["id", "size", "frontier"]
INSERT_ENTRY = (
    "INSERT INTO ledger_entries (idx, kind, at, entry, salt, commitment) VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_NODE = "INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)"
UPSERT_HEAD = "INSERT OR REPLACE INTO ledger_head (id, size, frontier) VALUES (?, ?, ?)"
# The baseline's plain table: the columns and types of ledger_entries, nothing else.
PLAIN_DDL = (
    "CREATE TABLE plain (idx BIGINT NOT NULL PRIMARY KEY, kind VARCHAR(64) NOT NULL, "
    "at BIGINT NOT NULL, entry BLOB, salt BLOB, commitment BLOB NOT NULL)"
)
PLAIN_DDL_PG = PLAIN_DDL.replace("BLOB", "BYTEA")


@dataclass(frozen=True)
class Settings:
    quick: bool
    entries: int
    append_seconds: float  # wall time of each append window
    rounds: int  # append windows per batch size (median taken)
    proofs: int  # random proofs of each kind
    proof_budget_s: float  # at most this long per kind (at least MIN_PROOF_SAMPLES proofs)
    audit_repeats: int  # runs of verify and of the baselines (minimum taken)
    cache: Path | None
    rebuild: bool
    profile: bool


def bench_entry(i: int) -> LedgerEntry:
    """The i-th benchmark entry: what a node records for one delivered envelope.

    Of its own kind, so built without `LedgerEntry.of`'s check of registered kinds: the
    figures stay comparable with those measured before the check (docs/benchmarks.md).
    """
    fields: dict[str, str] = {
        "message_id": hashlib.sha256(b"message %d" % i).digest()[:16].hex(),
        "peer": PEER,
        "envelope_digest": hashlib.sha256(b"envelope %d" % i).hexdigest(),
    }
    return LedgerEntry("bench.event", NOW + i, tuple(sorted(fields.items())))


_ENTRY_JSON = (
    '{"at":%d,"envelope_digest":"%s","kind":"bench.event","message_id":"%s","peer":"' + PEER + '"}'
)


def bench_entry_bytes(i: int) -> bytes:
    """`bench_entry(i).to_bytes()`, formatted directly (4x faster) for the bulk build."""
    sha = hashlib.sha256
    return (
        _ENTRY_JSON
        % (NOW + i, sha(b"envelope %d" % i).hexdigest(), sha(b"message %d" % i).digest()[:16].hex())
    ).encode()


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def fresh_sqlite(path: Path) -> Database:
    _remove_db(path)
    db = Database(f"sqlite:///{path}")
    db.migrate()
    return db


def _raw_sqlite(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    return con


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _profiled(enabled: bool, title: str, top: int = 30) -> Iterator[None]:
    if not enabled:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        _log(f"--- profile: {title} ---\n{out.getvalue()}")


# --- 1. appends --------------------------------------------------------------------------


def _append_window(
    db: Database, batch: int, seconds: float, start: int, many: bool = False
) -> tuple[int, float]:
    """Append in commits of `batch` for about `seconds`; (entries, seconds inside writes).

    `many`: one `append_many` per commit instead of one `append` per entry."""
    done = 0
    spent = 0.0
    while spent < seconds:
        entries = [bench_entry(start + done + k) for k in range(batch)]
        t0 = time.perf_counter()
        with db.write() as s:
            if many:
                append_many(s, entries)
            else:
                for e in entries:
                    append(s, e)
        spent += time.perf_counter() - t0
        done += batch
    return done, spent


def _orm_row_only(db: Database, batch: int, count: int, start: int) -> float:
    """The same transactions adding only the entry row through the ORM: no head, no tree."""
    spent = 0.0
    for lo in range(0, count, batch):
        rows = []
        for i in range(start + lo, start + lo + batch):
            data = bench_entry(i).to_bytes()
            salt = new_salt()
            rows.append((i, data, salt, commitment(salt, data)))
        t0 = time.perf_counter()
        with db.write() as s:
            for i, data, salt, digest in rows:
                s.add(
                    LedgerEntryRow(
                        idx=i,
                        kind="bench.event",
                        at=NOW + i,
                        entry=data,
                        salt=salt,
                        commitment=digest,
                    )
                )
                s.flush()
        spent += time.perf_counter() - t0
    return spent


def _plain_rows(count: int, start: int) -> list[tuple[int, str, int, bytes, bytes, bytes]]:
    return [
        (i, "bench.event", NOW + i, bench_entry(i).to_bytes(), os.urandom(32), os.urandom(32))
        for i in range(start, start + count)
    ]


def _plain_sqlite(con: sqlite3.Connection, batch: int, count: int, start: int) -> float:
    """Bare INSERTs of `count` rows with the raw sqlite3 module, `batch` rows per commit."""
    rows = _plain_rows(count, start)
    t0 = time.perf_counter()
    for lo in range(0, count, batch):
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO plain VALUES (?, ?, ?, ?, ?, ?)", rows[lo : lo + batch])
        con.execute("COMMIT")
    return time.perf_counter() - t0


def _plain_pg(conn: Any, batch: int, count: int, start: int) -> float:
    """Bare INSERTs with psycopg (autocommit off), `batch` rows per commit."""
    rows = _plain_rows(count, start)
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        for lo in range(0, count, batch):
            cur.executemany(
                "INSERT INTO plain VALUES (%s, %s, %s, %s, %s, %s)", rows[lo : lo + batch]
            )
            conn.commit()
    return time.perf_counter() - t0


def append_figures(
    settings: Settings,
    db: Database,
    orm_db: Database,
    baseline: Callable[[int, int, int], float],
    backend: str,
    baseline_what: str,
) -> list[dict[str, Any]]:
    next_index = 0  # the ledger grows across windows; the baselines use their own indexes
    plain_index = 0
    orm_index = 0
    # Warm-up: engine connections, compiled statement caches, the first WAL frames.
    _append_window(db, 10, 0.2, next_index)
    next_index = LedgerStore(db, ORIGIN).size()
    rates: dict[int, list[float]] = {batch: [] for batch in BATCHES}
    many_rates: dict[int, list[float]] = {batch: [] for batch in BATCHES}
    base_rates: dict[int, list[float]] = {batch: [] for batch in BATCHES}
    orm_rates: dict[int, list[float]] = {batch: [] for batch in BATCHES}
    totals = dict.fromkeys(BATCHES, 0)
    # Rounds outside, batch sizes inside: drift of the machine hits every size alike.
    for _ in range(settings.rounds):
        for batch in BATCHES:
            n, spent = _append_window(db, batch, settings.append_seconds, next_index)
            next_index += n
            totals[batch] += n
            rates[batch].append(n / spent)
            n, spent = _append_window(db, batch, settings.append_seconds, next_index, many=True)
            next_index += n
            many_rates[batch].append(n / spent)
            base_rates[batch].append(n / baseline(batch, n, plain_index))
            plain_index += n
            orm_rates[batch].append(n / _orm_row_only(orm_db, batch, n, orm_index))
            orm_index += n
    results = []
    for batch in BATCHES:
        rate = statistics.median(rates[batch])
        many = statistics.median(many_rates[batch])
        base = statistics.median(base_rates[batch])
        orm = statistics.median(orm_rates[batch])
        results.append(
            {
                "bench": "ledger",
                "figure": "append",
                "backend": backend,
                "batch": batch,
                "entries": totals[batch],
                "rounds": settings.rounds,
                "appends_per_s": round(rate, 1),
                "us_per_append": round(1e6 / rate, 1),
                "baseline_rows_per_s": round(base, 1),
                "baseline_what": baseline_what,
                "ratio": round(base / rate, 2),
                "orm_row_only_per_s": round(orm, 1),
                "append_many_per_s": round(many, 1),
                "us_per_append_many_entry": round(1e6 / many, 1),
                "ratio_append_many": round(base / many, 2),
                "ledger_size_after": next_index,
                "statistic": "median",
            }
        )
    if settings.profile:
        with _profiled(True, f"append, {backend}, batch 1"):
            n, _ = _append_window(db, 1, settings.append_seconds, next_index)
        with _profiled(True, f"append_many, {backend}, batch 100"):
            _append_window(db, 100, settings.append_seconds, next_index + n, many=True)
    return results


def sqlite_appends(settings: Settings, workdir: Path) -> list[dict[str, Any]]:
    db = fresh_sqlite(workdir / "append.db")
    orm_db = fresh_sqlite(workdir / "orm-row-only.db")
    plain_path = workdir / "plain.db"
    _remove_db(plain_path)
    con = _raw_sqlite(plain_path)
    con.execute(PLAIN_DDL)
    try:
        with db.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
        assert (mode, sync) == ("wal", 2), f"expected WAL and synchronous=FULL, got {mode} {sync}"
        return append_figures(
            settings,
            db,
            orm_db,
            lambda batch, n, start: _plain_sqlite(con, batch, n, start),
            "sqlite",
            "raw sqlite3 executemany INSERT into a plain table (same columns, WAL, "
            "synchronous=FULL), same rows per commit",
        )
    finally:
        con.close()
        db.close()
        orm_db.close()


def _round_trips(db: Database, commits: int, write: Callable[[int], None]) -> float:
    """Protocol round trips per commit of `write(i)` for i in range(commits), on every
    connection `db` hands out meanwhile: each request cycle ends with one ReadyForQuery
    from the server (counted in libpq's trace)."""
    import psycopg

    traced: list[Any] = []
    with tempfile.TemporaryFile("w+") as trace:

        def on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            dbapi_conn.pgconn.trace(trace.fileno())
            dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
            traced.append(dbapi_conn)

        event.listen(db.engine, "checkout", on_checkout)
        try:
            for i in range(commits):
                write(i)
        finally:
            event.remove(db.engine, "checkout", on_checkout)
            for conn in traced:
                conn.pgconn.untrace()  # flushes the trace
        trace.seek(0)
        return sum("\tReadyForQuery\t" in line for line in trace) / commits


def _trivial_write(db: Database, i: int) -> None:
    with db.write() as s:
        s.execute(text("INSERT INTO floor VALUES (:i)"), {"i": i})


def pg_session_figures(
    settings: Settings, db: Database, conn: Any, start: int
) -> list[dict[str, Any]]:
    """What one commit costs around the append on PostgreSQL.

    Round trips per commit (from libpq's trace, so the load of the machine cannot move
    them) of one `append` per commit, of a `Database.write()` holding one trivial INSERT
    (the session's floor) and of the bare psycopg baseline; and the rates of the last
    two, interleaved like the append windows (median of `rounds`)."""
    commits = 50

    def one_append(i: int) -> None:
        with db.write() as s:
            append(s, bench_entry(start + i))

    append_trips = _round_trips(db, commits, one_append)
    floor_trips = _round_trips(db, commits, lambda i: _trivial_write(db, i))
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        _plain_pg(conn, 1, commits, 10_000_000)
        conn.pgconn.untrace()  # flushes the trace
        trace.seek(0)
        bare_trips = sum("\tReadyForQuery\t" in line for line in trace) / commits
    # This process's CPU per commit, which the disk's flush time does not include.
    cpu: dict[str, float] = {}

    def bare(i: int) -> None:
        _plain_pg(conn, 1, 1, 30_000_000 + i)

    for what, write in (
        ("append", one_append),
        ("write_session_trivial_insert", lambda i: _trivial_write(db, i)),
        ("bare_psycopg_insert", bare),
    ):
        started = time.process_time()
        for i in range(commits, 5 * commits):
            write(i)
        cpu[what] = round((time.process_time() - started) / (4 * commits) * 1e6, 1)
    floor_rates: list[float] = []
    bare_rates: list[float] = []
    i = 5 * commits
    bare_index = 20_000_000  # past the indexes of the plain table's earlier rows
    for _ in range(settings.rounds):
        done = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < settings.append_seconds:
            _trivial_write(db, i + done)
            done += 1
        floor_rates.append(done / (time.perf_counter() - t0))
        i += done
        bare_rates.append(done / _plain_pg(conn, 1, done, bare_index))
        bare_index += done
    return [
        {
            "bench": "ledger",
            "figure": "pg_commit",
            "backend": "postgresql",
            "round_trips_per_commit": {
                "append": append_trips,
                "write_session_trivial_insert": floor_trips,
                "bare_psycopg_insert": bare_trips,
            },
            "client_cpu_us_per_commit": cpu,
            "write_session_trivial_insert_per_s": round(statistics.median(floor_rates), 1),
            "bare_psycopg_insert_per_s": round(statistics.median(bare_rates), 1),
            "what": "one commit each; round trips are ReadyForQuery messages in libpq's "
            "trace; the session floor is Database.write() holding one INSERT of an "
            "integer, the bare figure psycopg executemany of one ledger-sized row",
            "rounds": settings.rounds,
            "statistic": "median",
        }
    ]


def pg_appends(settings: Settings, base_url: str) -> list[dict[str, Any]]:
    """The append figure on PostgreSQL, in databases of our own, dropped afterwards."""
    import psycopg

    stem = f"mlax_bench_ledger_{uuid.uuid4().hex[:8]}"
    names = (stem, f"{stem}_orm")
    with pg_databases(base_url, names) as urls:
        db, orm_db = Database(urls[names[0]]), Database(urls[names[1]])
        try:
            db.migrate()
            orm_db.migrate()
            plain = urls[names[0]].replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(plain) as conn:
                conn.execute(PLAIN_DDL_PG)
                conn.execute("CREATE TABLE floor (n bigint)")
                conn.commit()
                results = append_figures(
                    settings,
                    db,
                    orm_db,
                    lambda batch, n, start: _plain_pg(conn, batch, n, start),
                    "postgresql",
                    "psycopg executemany INSERT into a plain table (same columns), same "
                    "rows per commit",
                )
                start = max(r["ledger_size_after"] for r in results)
                return results + pg_session_figures(settings, db, conn, start)
        finally:
            db.close()
            orm_db.close()


# --- 2. the bulk build -------------------------------------------------------------------


def bulk_build(
    path: Path, n: int, salt: Callable[[int], bytes] = lambda _i: new_salt()
) -> dict[str, float]:
    """A ledger of `n` entries holding exactly the rows `append` would write, fast.

    Migrated with Alembic like a node's database, then filled with the raw sqlite3 module
    (executemany, no journal while building, 50,000 entries per transaction);
    `CompactRange.extend` yields every node `append` stores. The file is left in WAL mode.
    """
    fresh_sqlite(path).close()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-262144")  # 256 MiB
    tree = CompactRange()
    t_rows = t_tree = t_db = 0.0
    kind = "bench.event"
    try:
        for lo in range(0, n, BUILD_CHUNK):
            assert bench_entry_bytes(lo) == bench_entry(lo).to_bytes()
            t0 = time.perf_counter()
            rows = []
            leaves = []
            for i in range(lo, min(n, lo + BUILD_CHUNK)):
                data = bench_entry_bytes(i)
                s = salt(i)
                digest = commitment(s, data)
                rows.append((i, kind, NOW + i, data, s, digest))
                leaves.append(leaf_hash(digest))
            t1 = time.perf_counter()
            nodes = tree.extend(leaves)
            t2 = time.perf_counter()
            con.execute("BEGIN IMMEDIATE")
            con.executemany(INSERT_ENTRY, rows)
            con.executemany(INSERT_NODE, nodes)
            con.execute(UPSERT_HEAD, (node_ledger.HEAD_ID, tree.size, b"".join(tree.frontier)))
            con.execute("COMMIT")
            t3 = time.perf_counter()
            t_rows += t1 - t0
            t_tree += t2 - t1
            t_db += t3 - t2
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
    return {"entries_s": t_rows, "tree_s": t_tree, "insert_s": t_db}


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = sqlite3.connect(path)
    try:
        return {
            "entries": con.execute(
                "SELECT idx, kind, at, entry, salt, commitment FROM ledger_entries ORDER BY idx"
            ).fetchall(),
            "nodes": con.execute(
                "SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx"
            ).fetchall(),
            "head": con.execute("SELECT id, size, frontier FROM ledger_head").fetchall(),
        }
    finally:
        con.close()


def check_bulk_matches_append(workdir: Path, n: int = CHECK_ENTRIES) -> None:
    """Build `n` entries both ways with the same salts; every row must be identical."""

    def salt(i: int) -> bytes:
        return hashlib.sha256(b"salt %d" % i).digest()

    bulk = workdir / "check-bulk.db"
    bulk_build(bulk, n, salt)
    appended = workdir / "check-append.db"
    db = fresh_sqlite(appended)
    counter = iter(range(n))
    # `new_salt` is append's only source of randomness.
    real_salt = node_ledger.new_salt  # type: ignore[attr-defined]
    node_ledger.new_salt = lambda: salt(next(counter))  # type: ignore[attr-defined]
    try:
        i = batch = 0
        while i < n:
            batch = batch % 7 + 1  # commits of 1..7 entries: the head is resumed each time
            with db.write() as s:
                if batch % 2:
                    for j in range(i, min(n, i + batch)):
                        assert append(s, bench_entry(j)) == j
                else:  # and append_many for the even-sized commits
                    js = range(i, min(n, i + batch))
                    assert append_many(s, [bench_entry(j) for j in js]) == list(js)
            i += batch
    finally:
        node_ledger.new_salt = real_salt  # type: ignore[attr-defined]
        db.close()
    a, b = _dump(bulk), _dump(appended)
    for table in a:
        if a[table] != b[table]:
            pairs = zip(a[table], b[table], strict=False)
            diff = next((k for k, (x, y) in enumerate(pairs) if x != y), "the last")
            raise AssertionError(f"bulk-built {table} differ from append's at row {diff}")
    assert len(a["entries"]) == n
    assert a["head"][0][1] == n
    for path in (bulk, appended):
        _remove_db(path)


def _schema_head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head() or "none"


def ledger_for(settings: Settings, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """The path of a ledger of `settings.entries`, built now or taken from the cache."""
    n = settings.entries
    if settings.cache is None:
        path = workdir / f"ledger-{n}.db"
    else:
        settings.cache.mkdir(parents=True, exist_ok=True)
        path = settings.cache / f"mlax-bench-ledger-{BUILD_VERSION}-{_schema_head()}-{n}.db"
    meta_path = Path(f"{path}.json")
    if settings.cache is not None and not settings.rebuild and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return path, {**meta, "cached": True}
    building = path.with_name(path.name + ".building")
    t0 = time.perf_counter()
    parts = bulk_build(building, n)
    seconds = time.perf_counter() - t0
    _remove_db(path)
    building.rename(path)
    meta = {
        "bench": "ledger",
        "figure": "build",
        "entries": n,
        "seconds": round(seconds, 2),
        "entries_per_s": round(n / seconds, 1),
        "parts_s": {k: round(v, 2) for k, v in parts.items()},
        "db_bytes": path.stat().st_size,
        "method": "raw sqlite3 executemany of append's rows, CompactRange.extend, "
        f"{BUILD_CHUNK} entries per transaction, synchronous=OFF",
    }
    if settings.cache is not None:
        meta_path.write_text(json.dumps(meta))
    return path, {**meta, "cached": False}


# --- 3. proofs ---------------------------------------------------------------------------


def _roots(path: Path, sizes: set[int]) -> dict[int, bytes]:
    """Root of the tree at each size, folded from the stored complete subtrees."""
    con = sqlite3.connect(path)
    try:

        def get(level: int, idx: int) -> bytes:
            row = con.execute(
                "SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?", (level, idx)
            ).fetchone()
            return bytes(row[0])

        return {size: CompactRange.from_nodes(size, get).root() for size in sizes}
    finally:
        con.close()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _proof_result(
    figure: str, n: int, gen: list[float], ver: list[float], **extra: Any
) -> dict[str, Any]:
    total = [g + v for g, v in zip(gen, ver, strict=True)]
    return {
        "bench": "ledger",
        "figure": figure,
        "entries": n,
        "samples": len(gen),
        "median_ms": round(statistics.median(total) * 1e3, 4),
        "p99_ms": round(_percentile(total, 0.99) * 1e3, 4),
        "generate_median_ms": round(statistics.median(gen) * 1e3, 4),
        "verify_median_ms": round(statistics.median(ver) * 1e3, 4),
        "target_ms": 1.0,
        "statistic": "median",
        **extra,
    }


# One statement of a fixed shape for every proof: SQLite answers an OR of equalities on
# the primary key by one index lookup per term, and SQLAlchemy compiles it only once.
FIXED_TERMS = 64
FIXED_NODES_SQL = text(
    "SELECT level, idx, hash FROM ledger_nodes WHERE "  # noqa: S608 (no outside input)
    + " OR ".join(f"(level = :l{k} AND idx = :i{k})" for k in range(FIXED_TERMS))
)
COMMITMENT_SQL = select(LedgerEntryRow.commitment).where(LedgerEntryRow.idx == bindparam("i"))


def _fixed_query_nodes(session: Session, build: Callable[[GetNode], list[bytes]]) -> list[bytes]:
    """`node.storage.ledger._batched_proof` with the nodes fetched by FIXED_NODES_SQL (terms
    padded by repeating the first) instead of `(level, idx) IN (VALUES ...)`, which SQLite
    3.40 answers by scanning all of ledger_nodes. A diagnostic of the fix, not the node's
    code path."""
    wanted: list[tuple[int, int]] = []
    build(lambda level, idx: wanted.append((level, idx)) or ZERO_HASH)  # type: ignore[func-returns-value]
    unique = list(dict.fromkeys(wanted))
    nodes: dict[tuple[int, int], bytes] = {}
    for lo in range(0, len(unique), FIXED_TERMS):
        part = unique[lo : lo + FIXED_TERMS]
        part += [part[0]] * (FIXED_TERMS - len(part))
        params: dict[str, int] = {}
        for k, (level, idx) in enumerate(part):
            params[f"l{k}"] = level
            params[f"i{k}"] = idx
        nodes.update(((lv, i), h) for lv, i, h in session.execute(FIXED_NODES_SQL, params))
    return build(lambda level, idx: nodes[(level, idx)])


def _timed_samples(
    pairs: Sequence[tuple[int, int]],
    generate: Callable[[int, int], Any],
    verify: Callable[[int, int, Any], None],
    budget_s: float,
) -> tuple[list[float], list[float], list[Any]]:
    """Generate and verify a proof for each pair until done or `budget_s` has passed."""
    for a, b in pairs[:3]:  # warm-up: connections, statement caches, pages
        generate(a, b)
    gen: list[float] = []
    ver: list[float] = []
    proofs: list[Any] = []
    started = time.perf_counter()
    for a, b in pairs:
        t0 = time.perf_counter()
        proof = generate(a, b)
        t1 = time.perf_counter()
        verify(a, b, proof)
        t2 = time.perf_counter()
        gen.append(t1 - t0)
        ver.append(t2 - t1)
        proofs.append(proof)
        if t2 - started > budget_s and len(gen) >= MIN_PROOF_SAMPLES:
            break
    return gen, ver, proofs


def proof_figures(settings: Settings, path: Path) -> list[dict[str, Any]]:
    n = settings.entries
    rng = random.Random(9162)
    incl = []
    for _ in range(settings.proofs):
        index = rng.randrange(n)
        incl.append((index, rng.randint(index + 1, n)))
    cons = []
    for _ in range(settings.proofs):
        old = rng.randint(1, n - 1)
        cons.append((old, rng.randint(old + 1, n)))
    roots = _roots(path, {n} | {s for _, s in incl} | {s for pair in cons for s in pair})
    db = Database(f"sqlite:///{path}")
    store = LedgerStore(db, ORIGIN)
    budget = settings.proof_budget_s
    try:
        with db.read() as s:
            head = s.get(LedgerHeadRow, node_ledger.HEAD_ID)
            assert head is not None
            assert head.size == n
            frontier = [head.frontier[i : i + 32] for i in range(0, len(head.frontier), 32)]
            assert CompactRange(n, frontier).root() == roots[n], "head and nodes disagree"

        def verify_incl(index: int, size: int, got: tuple[bytes, list[bytes]]) -> None:
            verify_inclusion(leaf_hash(got[0]), index, size, got[1], roots[size])

        def verify_cons(old: int, new: int, proof: list[bytes]) -> None:
            verify_consistency(old, new, roots[old], roots[new], proof)

        def fixed_incl(index: int, size: int) -> tuple[bytes, list[bytes]]:
            with db.read() as s:
                digest = s.execute(COMMITMENT_SQL, {"i": index}).scalar_one()
                proof = _fixed_query_nodes(s, lambda get: inclusion_proof(index, size, get))
                return digest, proof

        def fixed_cons(old: int, new: int) -> list[bytes]:
            with db.read() as s:
                return _fixed_query_nodes(s, lambda get: consistency_proof(old, new, get))

        results = []
        for figure, pairs, generate, fixed, verify, what in (
            (
                "inclusion_proof",
                incl,
                store.inclusion_proof,
                fixed_incl,
                verify_incl,
                "LedgerStore.inclusion_proof(index, size) + leaf_hash + verify_inclusion; "
                "index uniform in [0, n), size uniform in [index+1, n]",
            ),
            (
                "consistency_proof",
                cons,
                store.consistency_proof,
                fixed_cons,
                verify_cons,
                "LedgerStore.consistency_proof(old, new) + verify_consistency; old uniform "
                "in [1, n), new uniform in [old+1, n]",
            ),
        ):
            gen, ver, proofs = _timed_samples(pairs, generate, verify, budget)
            igen, iver, iproofs = _timed_samples(pairs, fixed, verify, budget)
            same = min(len(proofs), len(iproofs))
            assert proofs[:same] == iproofs[:same], "the fixed query changed a proof"
            hashes = [len(p[1]) if isinstance(p, tuple) else len(p) for p in proofs]
            results.append(
                _proof_result(
                    figure,
                    n,
                    gen,
                    ver,
                    capped=len(gen) < len(pairs),
                    proof_hashes_median=statistics.median(hashes),
                    what=what,
                    fixed_query_median_ms=round(
                        statistics.median(g + v for g, v in zip(igen, iver, strict=True)) * 1e3,
                        4,
                    ),
                    fixed_query_generate_median_ms=round(statistics.median(igen) * 1e3, 4),
                    fixed_query_samples=len(igen),
                    fixed_query_what="diagnostic: the same proofs with the commitment read by a "
                    "Core select and the nodes by one fixed-shape text statement, an OR of 64 "
                    "(level = ? AND idx = ?) terms, instead of the ORM get and (level, idx) IN "
                    "(VALUES ...), which SQLite 3.40 answers by a full scan of ledger_nodes",
                )
            )
        if settings.profile:
            with _profiled(True, "inclusion proofs"):
                for index, size in incl[:MIN_PROOF_SAMPLES]:
                    store.inclusion_proof(index, size)
        return results
    finally:
        db.close()


# --- 4. auditing an export ---------------------------------------------------------------


@dataclass(frozen=True)
class Federation:
    signed_directory: bytes
    directory: Directory
    log_key: SigningKey
    witness_key: SigningKey


def _card(agency_id: str, key: SigningKey) -> AgencyCard:
    return AgencyCard(
        agency_id=agency_id,
        name=f"{agency_id} benchmark agency",
        country=agency_id[:2],
        endpoint="localhost:7443",
        tls_spki_sha256=os.urandom(32),
        tls_certificate_pem=b"",
        signing_keys=(
            PublicKey(KeyAlgorithm.ED25519, bytes(key.verify_key), NOW - YEAR_MS, NOW + YEAR_MS),
        ),
        encryption_keys=(),
    )


def make_federation() -> Federation:
    """Two agencies with throwaway keys: the log (GB-NCA) and one witness (FR-OCRTEH)."""
    log_key, witness_key, admin = (
        SigningKey.generate(),
        SigningKey.generate(),
        SigningKey.generate(),
    )
    directory = Directory(
        federation_id=FEDERATION_ID,
        version=1,
        issued_at=NOW - YEAR_MS,
        expires_at=NOW + YEAR_MS,
        threshold=1,
        admins=(AdminKey("admin", bytes(admin.verify_key)),),
        agencies=(_card(PEER, witness_key), _card(AGENCY, log_key)),
    )
    signed = SignedDirectory(directory.to_bytes()).signed_by(admin).to_bytes()
    return Federation(signed, directory, log_key, witness_key)


def write_export(db: Database, fed: Federation, out: Path) -> tuple[int, float]:
    """Checkpoint and cosign the ledger, then export it to `out`; (its size, seconds)."""
    with db.write() as s:  # this benchmark's own database: forget earlier runs' checkpoints
        s.execute(text("DELETE FROM ledger_cosignatures"))
        s.execute(text("DELETE FROM ledger_checkpoints"))
    store = LedgerStore(db, ORIGIN)
    size = store.issue_checkpoint(fed.log_key)
    assert size is not None
    row = store.checkpoint(size)
    assert row is not None
    line = cosign(
        Checkpoint(ORIGIN, size, row.root),
        f"mlax.{FEDERATION_ID}/{PEER}/witness",
        fed.witness_key,
        NOW // 1000,
    )
    store.add_cosignature(size, PEER, line)
    header = lpb.LedgerExportHeader(
        format=EXPORT_FORMAT,
        origin=ORIGIN,
        agency=AGENCY,
        signed_directory=fed.signed_directory,
        exported_at=NOW,
    )
    t0 = time.perf_counter()
    with out.open("wb") as f:
        write = f.write
        for rec in store.export(header):
            write(encode_record(rec))
        f.flush()
        os.fsync(f.fileno())
    return size, time.perf_counter() - t0


_LE64 = struct.Struct("<Q").pack
_PREFIX = _LE64(3) + _LE64(len(CTX_LEDGER_ENTRY)) + CTX_LEDGER_ENTRY


def _clock() -> tuple[float, float]:
    """(wall, this process's CPU) seconds: on a shared VM the CPU time is the steadier."""
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def baseline_hashes(path: Path, n: int) -> tuple[tuple[float, float], bytes]:
    """(wall, CPU) seconds of the bare hashing an audit needs, and the root it gives.

    Per entry SHA-256(PAE(ctx, salt, entry)) with PAE's fixed prefix precomputed, then
    SHA-256(0x00 || commitment); then the n-1 node hashes SHA-256(0x01 || left || right)
    of the RFC 9162 tree. The entries are read from the database outside the timing.
    """
    sha = hashlib.sha256
    pack = _LE64
    prefix = _PREFIX
    leaf_prefix = b"\x00"
    node_prefix = b"\x01"
    leaves: list[bytes] = []
    add = leaves.append
    wall = cpu = 0.0
    con = sqlite3.connect(path)
    try:
        for lo in range(0, n, BUILD_CHUNK):
            chunk = con.execute(
                "SELECT salt, entry FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                (lo, lo + BUILD_CHUNK),
            ).fetchall()
            start = _clock()
            for salt, entry in chunk:
                digest = sha(prefix + pack(len(salt)) + salt + pack(len(entry)) + entry).digest()
                add(sha(leaf_prefix + digest).digest())
            w, c = _since(start)
            wall += w
            cpu += c
    finally:
        con.close()
    start = _clock()
    level = leaves
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        pairs = iter(level)
        level = [sha(node_prefix + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
        if odd is not None:
            level.append(odd)
    w, c = _since(start)
    return (wall + w, cpu + c), level[0]


def _decode_only(path: Path) -> tuple[float, float]:
    start = _clock()
    with path.open("rb") as f:
        for _ in iter_records(f.read):
            pass
    return _since(start)


def audit_figure(settings: Settings, path: Path, workdir: Path) -> dict[str, Any]:
    n = settings.entries
    fed = make_federation()
    db = Database(f"sqlite:///{path}")
    out = workdir / "ledger.export"
    try:
        size, export_s = write_export(db, fed, out)
        checkpoint = LedgerStore(db, ORIGIN).checkpoint(size)
        assert checkpoint is not None
        signed_root = checkpoint.root
    finally:
        db.close()
    assert size == n
    calls = [0]

    def progress(done: int, total: int) -> None:
        calls[0] += 1

    verify_t: list[tuple[float, float]] = []
    base_t: list[tuple[float, float]] = []
    decode_t: list[tuple[float, float]] = []
    report = None
    for _ in range(settings.audit_repeats):
        spent, root = baseline_hashes(path, n)
        assert root == signed_root, "the bare loop's root is not the checkpoint's"
        base_t.append(spent)
        decode_t.append(_decode_only(out))
        with _profiled(settings.profile and not verify_t, "verify_export"):
            start = _clock()
            with out.open("rb") as f:
                report = verify_export(
                    iter_records(f.read), trusted_directory=fed.directory, progress=progress
                )
            verify_t.append(_since(start))
    assert report is not None
    if not report.ok:
        raise AssertionError(f"the export does not verify: {report.problems[:3]}")
    verify_s, base_s, decode_s = (min(w for w, _ in t) for t in (verify_t, base_t, decode_t))
    verify_cpu, base_cpu, decode_cpu = (min(c for _, c in t) for t in (verify_t, base_t, decode_t))
    return {
        "bench": "ledger",
        "figure": "audit",
        "entries": n,
        "export_seconds": round(export_s, 2),
        "export_bytes": out.stat().st_size,
        "verify_seconds": round(verify_s, 3),
        "entries_per_s": round(n / verify_s, 1),
        "baseline_seconds": round(base_s, 3),
        "baseline_what": "bare loop: SHA-256(PAE(ctx, salt, entry)) + SHA-256(0x00||c) per "
        "entry, n-1 SHA-256(0x01||l||r); entries already in memory",
        "ratio": round(verify_s / base_s, 2),
        "target_ratio": 1.5,
        "verify_cpu_seconds": round(verify_cpu, 3),
        "baseline_cpu_seconds": round(base_cpu, 3),
        "ratio_cpu": round(verify_cpu / base_cpu, 2),
        "ratio_per_repeat": [round(v[0] / b[0], 2) for v, b in zip(verify_t, base_t, strict=True)],
        "decode_seconds": round(decode_s, 3),
        "decode_cpu_seconds": round(decode_cpu, 3),
        "ratio_cpu_to_decode_plus_baseline": round(verify_cpu / (decode_cpu + base_cpu), 2),
        "repeats": settings.audit_repeats,
        "statistic": "min",
        "report_ok": report.ok,
        "report_warnings": report.warnings,
        "cosigned_by": report.cosigned_by,
        "progress_calls": calls[0],
    }


# --- the run -----------------------------------------------------------------------------


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def _table(results: list[dict[str, Any]]) -> None:
    lines = ["", "figure                      measured                 baseline        ratio"]
    lines.append("-" * len(lines[-1]))
    for r in results:
        fig = r["figure"]
        if fig == "append":
            lines.append(
                f"append {r['backend']:<10} x{r['batch']:<4} {r['appends_per_s']:>9,.0f} "
                f"entries/s  {r['baseline_rows_per_s']:>9,.0f} rows/s  {r['ratio']:>6.2f}"
                f"   (append_many {r['append_many_per_s']:,.0f}/s,"
                f" ratio {r['ratio_append_many']:.2f}; ORM row only"
                f" {r['orm_row_only_per_s']:,.0f}/s)"
            )
        elif fig == "pg_commit":
            trips = r["round_trips_per_commit"]
            cpu = r["client_cpu_us_per_commit"]
            lines.append(
                f"pg commit: round trips append {trips['append']:g}, write() + INSERT "
                f"{trips['write_session_trivial_insert']:g}, bare psycopg "
                f"{trips['bare_psycopg_insert']:g};  write() + INSERT "
                f"{r['write_session_trivial_insert_per_s']:,.0f}/s, bare "
                f"{r['bare_psycopg_insert_per_s']:,.0f}/s;  client CPU per commit: append "
                f"{cpu['append']:g} us, write() + INSERT "
                f"{cpu['write_session_trivial_insert']:g} us, bare "
                f"{cpu['bare_psycopg_insert']:g} us"
            )
        elif fig == "build":
            cached = " (cached)" if r["cached"] else ""
            lines.append(
                f"build {r['entries']:>12,}       {r['seconds']:>9,.1f} s"
                f"   {r['entries_per_s']:>9,.0f} entries/s{cached}"
            )
        elif fig.endswith("_proof"):
            lines.append(
                f"{fig:<20} {r['entries']:>7,} {r['median_ms']:>9.3f} ms median"
                f" (generate {r['generate_median_ms']:.3f} + verify {r['verify_median_ms']:.3f})"
                f"  p99 {r['p99_ms']:.3f} ms  target < 1 ms;"
                f" fixed-shape query {r['fixed_query_median_ms']:.3f} ms"
            )
        elif fig == "audit":
            lines.append(
                f"audit {r['entries']:>14,}  {r['verify_seconds']:>9.2f} s verify  "
                f"{r['baseline_seconds']:>9.2f} s bare  {r['ratio']:>6.2f}   (target <= 1.5; "
                f"CPU {r['verify_cpu_seconds']:.2f} / {r['baseline_cpu_seconds']:.2f} s = "
                f"{r['ratio_cpu']:.2f}; decode only {r['decode_cpu_seconds']:.2f} s CPU; "
                f"export {r['export_seconds']:.1f} s)"
            )
    _log("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a run under 30 s, for smoke tests")
    parser.add_argument("--entries", type=int, help="ledger size for proofs and audit")
    parser.add_argument(
        "--pg",
        metavar="URL",
        default=os.environ.get(TEST_PG_ENV),
        help="also measure appends on PostgreSQL (default: $MLAX_TEST_PG_URL)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()), help="built ledgers"
    )
    parser.add_argument("--no-cache", action="store_true", help="build in a temporary folder")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached ledger")
    parser.add_argument("--profile", action="store_true", help="cProfile the hot paths")
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only these parts (repeatable; default: all): SQLite appends, PostgreSQL "
        "appends (needs --pg), proofs, audit",
    )
    args = parser.parse_args(argv)
    only = set(args.only or SECTIONS)
    if "pg" in only and not args.pg:
        if args.only:
            parser.error("--only pg needs --pg URL or $MLAX_TEST_PG_URL")
        only.discard("pg")
    settings = Settings(
        quick=args.quick,
        entries=args.entries or (100_000 if args.quick else 1_000_000),
        append_seconds=0.3 if args.quick else 2.5,
        rounds=1 if args.quick else 3,
        proofs=200 if args.quick else 1_000,
        proof_budget_s=1.5 if args.quick else 10.0,
        audit_repeats=1 if args.quick else 3,
        cache=None if args.no_cache else args.cache_dir,
        rebuild=args.rebuild,
        profile=args.profile,
    )
    if settings.entries < 2:
        parser.error("--entries must be at least 2")
    _log(
        f"audit ledger benchmark; python {platform.python_version()}, {os.cpu_count()} cpus, "
        f"sqlite {sqlite3.sqlite_version}, {settings.entries:,} entries"
    )
    results: list[dict[str, Any]] = []

    def emit(result: dict[str, Any]) -> None:
        results.append(result)
        _emit(result)

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="mlax-bench-ledger-"))
    try:
        if "sqlite" in only:
            _log("1. appends (SQLite)")
            for r in sqlite_appends(settings, workdir):
                emit(r)
        if "pg" in only:
            _log("1. appends (PostgreSQL)")
            for r in pg_appends(settings, args.pg):
                emit(r)
        if only & {"proofs", "audit"}:
            _log("2. bulk build (checked against append first)")
            check_bulk_matches_append(workdir)
            path, build = ledger_for(settings, workdir)
            emit({**build, "matches_append": True, "checked_entries": CHECK_ENTRIES})
        if "proofs" in only:
            _log("3. proofs")
            for r in proof_figures(settings, path):
                emit(r)
        if "audit" in only:
            _log("4. export and audit")
            emit(audit_figure(settings, path, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _table(results)
    _log(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
