"""Victim matching speed: one query and a batch of 1,000 against a holder of 1,000,000
records, the holder's encoding rate, and the bare OPRF cost, all in the same run.

Issue 6 targets: a single query against 10 peers on loopback under 1 s; no step whose
cost grows linearly with the holder's records per query. Figures:

1. `oprf`: the bare RFC 9497 operations of `exchange.matching.oprf` per element, on
   real token inputs: Blind, BlindEvaluate, Finalize and their sum (one token of one
   query to one peer), and Evaluate (the holder's cost per published token).
2. `encoding`: the holder's encoding rate through the node's own code,
   `node.services.matching.MatchDesk.load` (CSV row checks, tokens, Evaluate, 8-byte
   truncation, padding to MAX_TOKENS, SQLite writes) on synthetic records
   (`bench/synthetic_people.py`), with its pure parts timed apart, and the time a
   1,000,000-record load would take at that rate. Records are not sealed here (the
   desk runs on a stand-in core); figure 5 loads through real nodes, sealing included.
3. `index` (one line per size: 1 %, 10 % and 100 % of `--records`): a holder and a
   querier in this process, each a `MatchDesk` over its own SQLite database with the
   node's schema (`Database.migrate`); the querier's federation stub calls the holder's
   desk directly instead of going over gRPC. The holder's tables are filled in bulk
   with N records and the querier's copy of its index through its own store
   (`node.services.match_replica.ReplicaStore`, the chunks of 2,000 records a sync
   applies, then the compaction that ends a first copy; `copy_store_seconds`): the
   records of interest (synthetic people, encoded through the OPRF under the holder's
   key) and N - H records of MAX_TOKENS random 8-byte values each, which is what
   truncated OPRF outputs are (encoding a million records through the OPRF would take
   about an hour here, figure 2). The copy's size: its tables and indexes in pages
   (SQLite's dbstat), per record. Timed at every size:
   - `lookup`: the querier's lookup as `_ask_peer` does it (`ReplicaStore.lookup`, then
     `score.band` per handle), on query values computed beforehand: one query (median,
     p95) and a batch of `--batch` queries.
   - `sync_noop`: the holder's `MatchDesk.index` for a querier already up to date, as
     the querier asks before every query (`_ask_peer` calls `sync`), with the node's
     SELECT alone and a SELECT walking the version index beside it (diagnostic).
   - `query`: the whole querier path, `MatchDesk._ask_peer` (sync, Blind, the holder's
     `evaluate` with its quota and ledger, Finalize, lookup, band), one query (median,
     p95) and a batch, against one holder.
   `index_growth`: each figure at the largest size over the smallest (100x the records).
4. `full_sync`: a fresh querier copying a holder's whole index of `--sync-records`
   records (100,000) with `MatchDesk.sync` (its first contact), records per second, the
   projection to `--records`, and the same copy cut off after half its chunks, then
   resumed by the next sync. With `--pg`, `pg_copy`: the querier's store on PostgreSQL
   (`$MLAX_TEST_PG_URL`) at 10 % and 100 % of `--records`: bytes a record on disk
   (tables, indexes, TOAST), copy rate and one query's lookup.
5. `federation_load`, `federation_query`, `federation_batch`: `--peers` + 1 real node
   processes (`node.devtools.federation.build_federation`, `mlax node serve`, SQLite) on
   loopback. Each of the `--peers` holders loads `--holder-records` synthetic records
   with `MatchClient.load`; the querier asks all of them with `MatchClient.query`: a
   warm-up query (its first sync of every index), then `--queries` single queries
   (latency from the call to the last answer: median, p95), then one batch of
   `--batch` people. Quotas are raised for the run (`evaluations_per_hour`).

Prints one JSON object per line on stdout and a table on stderr.
Run: .venv/bin/python bench/bench_matching_speed.py [--quick] [--records N] [--peers N]
     [--holder-records N] [--queries N] [--batch N] [--no-cache] [--parts LIST]
     [--sync-records N] [--pg]
"""

from __future__ import annotations

import argparse
import array
import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

import synthetic_people as sp  # bench/, first on sys.path when run
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

import node.services.matching as node_matching
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.matching import oprf
from exchange.matching.records import parse_csv_row, parse_query_row
from exchange.matching.score import Band, band
from exchange.matching.tokens import MAX_TOKENS, TOKEN_DOMAIN, Token, record_tokens
from node.client import OfficerClient
from node.client.matching import MatchClient
from node.config import MatchingSection
from node.devtools.databases import TEST_PG_ENV, pg_database
from node.devtools.federation import NodeProcess, build_federation
from node.peers.client import PeerClient
from node.services.cases import CaseDesk
from node.services.match_replica import Entry, ReplicaStore
from node.services.matching import MatchDesk, truncate
from node.services.messages import NodeCore, Officer
from node.storage.db import MIGRATIONS, Database
from node.storage.models import MatchCopyBlockRow, MatchRecordRow, MatchValuesRow

# Bump when the bulk builder or what it writes changes: cached indexes of other versions
# are ignored (the schema's Alembic head is part of the cache key too).
BUILD_VERSION = "v3"
SEED = 20261201
NOW = 1_767_225_600_000
HOLDER, QUERIER = "NG-NAPTIP", "GB-NCA"
VALUE_BYTES = node_matching.VALUE_BYTES
# What a stored record costs in the holder's table besides its values: the sealed record
# (an envelope sealed to the node's own key, 1,448 bytes on average at a real node for the
# synthetic records) is stood in for by random bytes of this size.
SEALED_BYTES = 1450
FILL_CHUNK = 20_000  # records per bulk transaction
PASSPHRASE, OFFICER_PASSPHRASE = b"bench-node-pass", b"bench-officer-pass"
# The querier first, then the holders. Agency ids follow exchange.agency.AGENCY_ID_RE.
AGENCIES = (
    ("GB-NCA", "National Crime Agency"),
    ("NG-NAPTIP", "National Agency for the Prohibition of Trafficking in Persons"),
    ("FR-OCRTEH", "Office central pour la repression de la traite des etres humains"),
    ("DE-BKA", "Bundeskriminalamt"),
    ("NL-KMAR", "Koninklijke Marechaussee"),
    ("RO-ANITP", "Agentia Nationala impotriva Traficului de Persoane"),
    ("UA-NPU", "National Police of Ukraine"),
    ("TH-DSI", "Department of Special Investigation"),
    ("VN-MPS", "Ministry of Public Security"),
    ("AL-ASP", "Albanian State Police"),
    ("ES-CNP", "Policia Nacional"),
)
QUOTA_CONFIG = (
    "[matching]\nevaluations_per_hour = 1000000\n"
    # No background sync during the run: every query syncs by itself, as it does anyway.
    "sync_interval_seconds = 3600\n"
)
SINGLE_TARGET_MS = 1000
PARTS = ("oprf", "encoding", "index", "full_sync", "federation")

# The raw statements name the models' tables and every column of them.
assert MatchRecordRow.__tablename__ == "match_records"
assert [c.name for c in MatchRecordRow.__table__.columns][:8] == [
    "id", "ref", "handle", "record_sealed", "fingerprint", "version", "removed", "updated_at",
]  # fmt: skip
assert MatchValuesRow.__tablename__ == "match_values"
assert [c.name for c in MatchValuesRow.__table__.columns] == ["key_id", "record_id", "values"]
INSERT_RECORD = (
    "INSERT INTO match_records (id, ref, handle, record_sealed, fingerprint, version, "
    "removed, updated_at) VALUES (?, ?, ?, ?, ?, 1, 0, ?)"
)
INSERT_VALUES = 'INSERT INTO match_values (key_id, record_id, "values") VALUES (?, ?, ?)'
# Records per chunk the querier's copy is filled with, as a holder's stream sends them.
COPY_CHUNK = node_matching._INDEX_CHUNK


@dataclass(frozen=True)
class Settings:
    quick: bool
    records: int  # largest index size
    held: int  # records of interest (people) in every index
    batch: int  # queries in a batch
    singles: int  # single lookups timed per size
    single_queries: int  # single `_ask_peer` queries timed per size
    sync_repeats: int
    oprf_elements: int
    encode_records: int
    encode_large: int  # records of the large pool-only load (0: none)
    full_sync_records: int
    peers: int
    holder_records: int
    fed_queries: int
    fed_batch: int
    cache: Path | None
    parts: tuple[str, ...]

    @property
    def sizes(self) -> list[int]:
        return [self.records // 100, self.records // 10, self.records]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _pad_tokens(tokens: list[Token]) -> list[Token]:
    """A query's tokens as the node sends them (padded to MAX_TOKENS if it pads)."""
    pad = getattr(node_matching, "pad_tokens", None)
    return list(pad(tokens)) if pad is not None else tokens


def _pad_values(values: Iterable[int]) -> list[int]:
    """A record's published values as the node publishes them (padded if it pads)."""
    pad = getattr(node_matching, "pad_values", None)
    return sorted(pad(values)) if pad is not None else sorted(set(values))


PADDED = hasattr(node_matching, "pad_tokens") and hasattr(node_matching, "pad_values")
PAD_KIND = getattr(node_matching, "PAD_KIND", None)


def _pack(values: Iterable[int]) -> bytes:
    return b"".join(v.to_bytes(VALUE_BYTES, "big", signed=True) for v in sorted(set(values)))


def _random_values(count: int) -> array.array[int]:
    return array.array("q", os.urandom(VALUE_BYTES * count))


def cpu_seconds(pid: int | str) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the stand-in node around a MatchDesk ------------------------------------------------


class _Core:
    """What MatchDesk uses of NodeCore for load, index, evaluate and sync: the database.

    Sealing to self is the identity here: the figures in this process are about the
    matching work, not about the envelope that keeps a record encrypted at rest.
    """

    def __init__(self, db: Database, agency: str) -> None:
        self.db = db
        self.agency = agency

    def seal_to_self(self, body: bytes) -> bytes:
        return body

    def open_from_self(self, data: bytes) -> bytes:
        return data


class _LoopbackPeers:
    """The querier's matching calls to its holders (`PeerClient`): their desks called
    directly, no gRPC."""

    def __init__(self, holders: dict[str, MatchDesk], caller: str) -> None:
        self.holders = holders
        self.caller = caller

    def get_match_index(
        self, peer: str, request: mpb.MatchIndexRequest, timeout: float
    ) -> Iterator[mpb.MatchIndexChunk]:
        return self.holders[peer].index(self.caller, request)

    def match_evaluate(
        self, peer: str, request: mpb.MatchEvaluateRequest, timeout: float
    ) -> mpb.MatchEvaluateResponse:
        # Through bytes, as over the wire: each side gets what the other would send.
        wire = mpb.MatchEvaluateRequest.FromString(request.SerializeToString())
        resp = self.holders[peer].evaluate(self.caller, wire)
        return mpb.MatchEvaluateResponse.FromString(resp.SerializeToString())


class LoopbackDesk(MatchDesk):
    """A querier's MatchDesk whose peers are other desks in this process."""

    def __init__(self, db: Database, agency: str, holders: dict[str, MatchDesk]) -> None:
        super().__init__(
            cast(NodeCore, _Core(db, agency)),
            _matching_config(),
            cast(PeerClient, _LoopbackPeers(holders, agency)),
            cast(CaseDesk, None),
        )
        self.holders = holders


def _matching_config() -> MatchingSection:
    return MatchingSection(evaluations_per_hour=10**12, query_timeout_seconds=600.0)


def holder_desk(db: Database, agency: str = HOLDER, processes: int = 1) -> MatchDesk:
    return MatchDesk(
        cast(NodeCore, _Core(db, agency)),
        dataclasses.replace(_matching_config(), encode_processes=processes),
        cast(PeerClient, None),
        cast(CaseDesk, None),
    )


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def fresh_db(path: Path) -> Database:
    _remove_db(path)
    db = Database(f"sqlite:///{path}")
    db.migrate()
    return db


def _schema_head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head() or "none"


# --- synthetic people --------------------------------------------------------------------


def people_rows(seed: int, count: int, relatives: float = 0.0) -> list[sp.Row]:
    pop = sp.Generator(seed).population(count, relatives=relatives, namesakes=relatives / 2)
    return list(pop.holder.values())[:count]


def _record(row: sp.Row, ref: str) -> Any:
    return parse_csv_row(row.as_dict() | {"ref": ref}, 2)


# --- 1. bare OPRF ------------------------------------------------------------------------


def oprf_figure(settings: Settings) -> dict[str, Any]:
    rows = people_rows(SEED, max(4, settings.oprf_elements // 30))
    inputs = [t.value for i, row in enumerate(rows) for t in record_tokens(_record(row, f"R{i}"))]
    inputs = inputs * (1 + settings.oprf_elements // max(1, len(inputs)))
    inputs = inputs[: settings.oprf_elements]
    sk = oprf.generate_key()
    best: dict[str, float] = {}
    rounds = 3
    for _ in range(rounds):
        t0 = time.perf_counter()
        blinded = [oprf.blind(x) for x in inputs]
        t1 = time.perf_counter()
        evaluated = [oprf.blind_evaluate(sk, b) for _, b in blinded]
        t2 = time.perf_counter()
        outputs = [
            oprf.finalize(x, r, e) for x, (r, _), e in zip(inputs, blinded, evaluated, strict=True)
        ]
        t3 = time.perf_counter()
        direct = [oprf.evaluate(sk, x) for x in inputs]
        t4 = time.perf_counter()
        if outputs != direct:
            raise RuntimeError("a blind round trip differs from Evaluate")
        for name, seconds in (
            ("blind", t1 - t0),
            ("blind_evaluate", t2 - t1),
            ("finalize", t3 - t2),
            ("evaluate", t4 - t3),
        ):
            best[name] = min(best.get(name, math.inf), seconds)
    n = len(inputs)
    per = {k: round(v / n * 1e6, 1) for k, v in best.items()}
    round_trip = per["blind"] + per["blind_evaluate"] + per["finalize"]
    return {
        "bench": "matching_speed",
        "figure": "oprf",
        "elements": n,
        "rounds": rounds,
        "statistic": "fastest round, per element",
        "blind_us": per["blind"],
        "blind_evaluate_us": per["blind_evaluate"],
        "finalize_us": per["finalize"],
        "round_trip_us": round(round_trip, 1),
        "evaluate_us": per["evaluate"],
        "ratio_round_trip_to_evaluate": round(round_trip / per["evaluate"], 2),
        "query_to_10_peers_ms": round(10 * MAX_TOKENS * round_trip / 1000, 1),
        "input_bytes_mean": round(sum(map(len, inputs)) / n, 1),
    }


# --- 2. encoding -------------------------------------------------------------------------


def encoding_figure(settings: Settings, workdir: Path, evaluate_us: float) -> dict[str, Any]:
    n = settings.encode_records
    rows = people_rows(SEED + 2, n)
    key = oprf.generate_key()
    # The pure parts, phase by phase over all records.
    t0 = time.perf_counter()
    records = [_record(row, f"R{i}") for i, row in enumerate(rows)]
    t1 = time.perf_counter()
    tokens = [record_tokens(r) for r in records]
    t2 = time.perf_counter()
    outputs = [[oprf.evaluate(key, t.value) for t in ts] for ts in tokens]
    t3 = time.perf_counter()
    packed = [_pack(_pad_values(truncate(o) for o in outs)) for outs in outputs]
    t4 = time.perf_counter()
    token_count = sum(map(len, tokens))
    # The node's own load, MatchDesk.load on a fresh database: the single-process baseline
    # and the worker pool (one process per CPU) on the same records, one after the other.
    base = _timed_load(workdir, rows, n, processes=1)
    pooled = _timed_load(workdir, rows, n, processes=0)
    large = _timed_load(workdir, rows, settings.encode_large, 0) if settings.encode_large else None
    rate = n / pooled["seconds"]
    floor_ms = token_count / n * evaluate_us / 1000
    out: dict[str, Any] = {
        "bench": "matching_speed",
        "figure": "encoding",
        "records": n,
        "tokens_per_record": round(token_count / n, 2),
        "published_bytes_per_record": pooled["published_bytes_per_record"],
        "padded": PADDED,
        "processes": pooled["processes"],
        "pool_start_seconds": pooled["pool_start_seconds"],
        "seconds": pooled["seconds"],
        "records_per_s": round(rate, 1),
        "ms_per_record": round(1000 / rate, 3),
        "cores_used": pooled["cores_used"],
        "cpu_ms_per_record": pooled["cpu_ms_per_record"],
        "main_cpu_ms_per_record": pooled["main_cpu_ms_per_record"],
        "baseline_cpu_ms_per_record": base["cpu_ms_per_record"],
        "baseline_seconds": base["seconds"],
        "baseline_records_per_s": round(n / base["seconds"], 1),
        "baseline_cores_used": base["cores_used"],
        "ratio_pool_to_baseline": round(base["seconds"] / pooled["seconds"], 2),
        "pure_ms_per_record": {
            "parse": round((t1 - t0) / n * 1000, 3),
            "tokens": round((t2 - t1) / n * 1000, 3),
            "evaluate": round((t3 - t2) / n * 1000, 3),
            "truncate_pad_pack": round((t4 - t3) / n * 1000, 3),
        },
        "evaluate_floor_ms_per_record": round(floor_ms, 3),
        "ratio": round(1000 / rate / floor_ms, 2),
        "projected_1m_seconds": round(1_000_000 / rate),
        "projected_1m_hours": round(1_000_000 / rate / 3600, 2),
        "sealing": "not included (stand-in core); see federation_load",
        "packed_check": len(packed) == n,
        "load_average": round(os.getloadavg()[0], 2),
    }
    if large is not None:
        large_rate = settings.encode_large / large["seconds"]
        out |= {
            "large_records": settings.encode_large,
            "large_seconds": large["seconds"],
            "large_records_per_s": round(large_rate, 1),
            "large_cores_used": large["cores_used"],
            "large_cpu_ms_per_record": large["cpu_ms_per_record"],
            "large_main_cpu_ms_per_record": large["main_cpu_ms_per_record"],
            # What the same CPU work takes with both cores to itself (an idle machine).
            "large_projected_1m_minutes_two_idle_cores": round(
                large["cpu_ms_per_record"] * 1_000_000 / 1000 / 2 / 60, 1
            ),
            "large_peak_rss_mib": large["peak_rss_mib"],
            # Linear: every record costs the same, and the load streams in bounded chunks.
            "large_projected_1m_minutes": round(1_000_000 / large_rate / 60, 1),
        }
    return out


def _timed_load(workdir: Path, rows: list[sp.Row], n: int, processes: int) -> dict[str, Any]:
    """`n` records (the rows over and over, each under its own ref) streamed through
    MatchDesk.load in parts of 1,000, as `mlax match load` sends them; the CPU time of this
    process and of the worker processes (counted once they have ended) over the wall time
    is the number of cores used."""
    db = fresh_db(workdir / "encoding.db")
    desk = holder_desk(db, processes=processes)
    try:
        desk.key()  # created once, before the clock starts, as on a node already running

        def requests() -> Iterator[mpb.LoadRecordsRequest]:
            for lo in range(0, n, 1000):
                yield mpb.LoadRecordsRequest(
                    rows=[
                        mpb.MatchRecordRow(
                            ref=f"R{i}",
                            person=mpb.MatchPerson(**rows[i % len(rows)].as_dict()),
                            line=i + 2,
                        )
                        for i in range(lo, min(n, lo + 1000))
                    ]
                )

        # The workers too, as on a node that has loaded records since it started (they
        # start with its first load and live as long as the node): timed apart.
        t0 = time.perf_counter()
        desk.pool.start()
        pool_start = time.perf_counter() - t0
        # The workers are the fork server's children, not ours: their CPU time is read
        # from /proc.
        pids = desk.pool.pids()

        def workers_cpu() -> float:
            return sum(cpu_seconds(pid) or 0.0 for pid in pids)

        before, workers_before = _cpu_now(), workers_cpu()
        t0 = time.perf_counter()
        resp = desk.load(Officer("bench-officer", "officer"), requests())
        seconds = time.perf_counter() - t0
        main_cpu = _cpu_now() - before
        processes = desk.pool.processes
        cpu = main_cpu + workers_cpu() - workers_before
        if resp.added != n:
            raise RuntimeError(f"MatchDesk.load added {resp.added} of {n} records")
        with db.read() as s:
            stored = s.execute(text('SELECT avg(length("values")) FROM match_values')).scalar()
    finally:
        desk.close()
        db.close()
    return {
        "seconds": round(seconds, 2),
        "processes": processes,
        "pool_start_seconds": round(pool_start, 2),
        "cores_used": round(cpu / seconds, 2),
        "cpu_ms_per_record": round(cpu / n * 1000, 3),
        "main_cpu_ms_per_record": round(main_cpu / n * 1000, 3),
        "published_bytes_per_record": round(float(stored or 0), 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _cpu_now() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


# --- 3. the index at three sizes ---------------------------------------------------------


@dataclass
class Interest:
    """The records of interest, encoded under the holder's key, and the queries."""

    key: bytes
    key_id: str
    records: list[tuple[str, bytes, bytes]]  # (ref, handle, packed values)
    truth: list[bytes | None]  # per query, the handle of the true record (None: not held)
    tokens: list[list[Token]]  # per query, as the node sends them (padded)
    values: list[list[int]]  # per query, the truncated outputs of `tokens`
    tokens_digest: bytes  # SHA-256 over the records' token inputs


def interest_for(settings: Settings) -> Interest:
    """H synthetic people (with relatives and namesakes) and `batch` queries about them."""
    key = oprf.derive_key_pair(hashlib.sha256(b"mlax-bench-matching-key").digest(), b"bench")
    key_id = hashlib.sha256(key).hexdigest()[:32]
    gen = sp.Generator(SEED + 1)
    pop = gen.population(settings.held, relatives=0.15, namesakes=0.1)
    handles = {
        pid: hashlib.sha256(b"mlax-bench-handle|%d" % pid).digest()[:16] for pid in pop.holder
    }
    records = []
    digest = hashlib.sha256()
    for pid, row in pop.holder.items():
        held_tokens = record_tokens(_record(row, "R"))
        digest.update(b"".join(hashlib.sha256(t.value).digest() for t in held_tokens))
        outs = (truncate(oprf.evaluate(key, t.value)) for t in held_tokens)
        records.append((f"H{pid}", handles[pid], _pack(_pad_values(outs))))
    queries = gen.queries(pop, settings.batch, "easy")
    tokens = [_pad_tokens(record_tokens(parse_query_row(q.row.as_dict(), 1))) for q in queries]
    values = [[truncate(oprf.evaluate(key, t.value)) for t in ts] for ts in tokens]
    truth = [handles[q.truth] if q.truth is not None else None for q in queries]
    return Interest(key, key_id, records, truth, tokens, values, digest.digest())


def _interest_digest(interest: Interest) -> str:
    """Names the records of interest and their tokens (padding aside, which is random)."""
    h = hashlib.sha256(interest.key + interest.tokens_digest)
    for ref, handle, _ in interest.records:
        h.update(ref.encode() + handle)
    return h.hexdigest()[:12]


def index_paths(settings: Settings, workdir: Path, n: int, interest: Interest) -> tuple[Path, Path]:
    tag = f"{BUILD_VERSION}-{_schema_head()}-{'pad' if PADDED else 'nopad'}"
    tag += f"-{_interest_digest(interest)}-{n}"
    base = settings.cache if settings.cache is not None else workdir
    base.mkdir(parents=True, exist_ok=True)
    return base / f"mlax-bench-match-holder-{tag}.db", base / f"mlax-bench-match-replica-{tag}.db"


def build_index(holder_path: Path, replica_path: Path, n: int, interest: Interest) -> float:
    """Fill a holder's tables and a querier's copy of its index with the same N records:
    the holder's rows in bulk, the copy through the querier's own store (`ReplicaStore`,
    the chunks of 2,000 records a first sync applies, without the holder's stream).
    Returns the seconds the copy took (its store's share of a first sync)."""
    for path in (holder_path, replica_path):
        fresh_db(path).close()
    hcon = sqlite3.connect(holder_path, isolation_level=None)
    qdb = Database(f"sqlite:///{replica_path}")
    store = ReplicaStore(qdb)
    copy = store.stage(HOLDER, interest.key_id, target=1)
    copy_seconds = 0.0
    try:
        hcon.execute("PRAGMA journal_mode=DELETE")
        hcon.execute("PRAGMA synchronous=OFF")
        hcon.execute("PRAGMA cache_size=-1000000")
        held = interest.records
        spacing = max(1, n // max(1, len(held)))
        next_held = 0
        filled = 0
        sealed = os.urandom(SEALED_BYTES)
        while filled < n:
            m = min(FILL_CHUNK, n - filled)
            recs: list[tuple[int, str, bytes, bytes, bytes, int]] = []
            published: list[tuple[str, int, bytes]] = []
            entries: list[Entry] = []
            values = _random_values(m * MAX_TOKENS)
            for i in range(m):
                pos = filled + i
                if next_held < len(held) and pos == next_held * spacing:
                    ref, handle, packed = held[next_held]
                    next_held += 1
                    vals = node_matching._unpack(packed)
                else:
                    ref, handle = f"F{pos}", os.urandom(16)
                    vals = sorted(values[i * MAX_TOKENS : (i + 1) * MAX_TOKENS])
                    packed = b"".join(v.to_bytes(VALUE_BYTES, "big", signed=True) for v in vals)
                recs.append((pos + 1, ref, handle, sealed, os.urandom(32), NOW))
                published.append((interest.key_id, pos + 1, packed))
                entries.append(Entry(handle, False, packed, 1))
            hcon.execute("BEGIN")
            hcon.executemany(INSERT_RECORD, recs)
            hcon.executemany(INSERT_VALUES, published)
            hcon.execute("COMMIT")
            t0 = time.perf_counter()
            for start in range(0, m, COPY_CHUNK):
                store.apply(copy.copy_no, entries[start : start + COPY_CHUNK], 1)
            copy_seconds += time.perf_counter() - t0
            filled += m
        if next_held != len(held):
            raise RuntimeError(f"placed {next_held} of {len(held)} records of interest")
        t0 = time.perf_counter()
        store.finish(copy.copy_no, 1)
        copy_seconds += time.perf_counter() - t0
        hcon.execute(
            "INSERT INTO match_keys (key_id, key_sealed, created_at, active, token_domain, ready) "
            "VALUES (?, ?, ?, 1, ?, 1)",
            (interest.key_id, interest.key, NOW, TOKEN_DOMAIN),
        )
        hcon.execute("INSERT INTO match_state (id, version) VALUES (1, 1)")
        hcon.execute("PRAGMA journal_mode=WAL")
    finally:
        hcon.close()
        qdb.close()
    return copy_seconds


@dataclass
class Answer:
    band: str
    handle: bytes


def lookup(
    db: Database, peer: str, values: Sequence[Sequence[int]], tokens: Sequence[Sequence[Token]]
) -> list[Answer | None]:
    """The querier's lookup and grading as `_ask_peer` does them (`ReplicaStore.lookup`)."""
    store = ReplicaStore(db)
    copy, _ = store.copies(peer)
    if copy is None:
        raise RuntimeError(f"no complete copy of {peer}'s index")
    found = store.lookup(copy.copy_no, [v for vs in values for v in vs])
    answers: list[Answer | None] = []
    rank = {Band.STRONG: 2, Band.POSSIBLE: 1}
    for vs, ts in zip(values, tokens, strict=True):
        kinds: dict[bytes, set[str]] = {}
        for v, t in zip(vs, ts, strict=True):
            if t.kind == PAD_KIND:
                continue
            for handle in found.get(v, ()):
                kinds.setdefault(handle, set()).add(t.kind)
        best: tuple[Band, bytes] | None = None
        for handle, matched in sorted(kinds.items()):
            b = band(matched)
            if b is not None and (best is None or rank[b] > rank[best[0]]):
                best = (b, handle)
        answers.append(None if best is None else Answer(best[0].value, best[1]))
    return answers


def copy_bytes(path: Path) -> dict[str, int]:
    """Pages the querier's copy takes in an SQLite file: its four tables and their
    indexes (dbstat), and the whole file without its free pages."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables = dict(
            con.execute(
                "SELECT name, sum(pgsize) FROM dbstat WHERE name IN (SELECT name FROM "
                "sqlite_master WHERE tbl_name LIKE 'match_cop%' OR tbl_name = 'match_peers') "
                "GROUP BY name"
            ).fetchall()
        )
        page = con.execute("PRAGMA page_size").fetchone()[0]
        used = con.execute("PRAGMA page_count").fetchone()[0]
        used -= con.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        con.close()
    return {"copy": sum(tables.values()), "file_used": used * page, **tables}


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _plan(db: Database, statement: Any) -> str:
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    sql = str(
        statement.compile(dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True})
    )
    with db.engine.connect() as conn:
        return "; ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))


def _node_index_select(since: int, version: int) -> Any:
    """The SELECT `MatchDesk.index` runs for a querier at `since` (first page)."""
    return (
        select(
            MatchRecordRow.id,
            MatchRecordRow.handle,
            MatchRecordRow.removed,
            MatchRecordRow.version,
        )
        .where(
            MatchRecordRow.version > since,
            MatchRecordRow.version <= version,
            MatchRecordRow.id > 0,
        )
        .order_by(MatchRecordRow.id)
        .limit(node_matching._INDEX_CHUNK)
    )


def _by_version_select(since: int, version: int) -> Any:
    """Diagnostic: the same rows paged along the version index, (version, id)."""
    return (
        select(
            MatchRecordRow.id,
            MatchRecordRow.handle,
            MatchRecordRow.removed,
            MatchRecordRow.version,
        )
        .where(MatchRecordRow.version > since, MatchRecordRow.version <= version)
        .order_by(MatchRecordRow.version, MatchRecordRow.id)
        .limit(node_matching._INDEX_CHUNK)
    )


def _timed(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def index_figure(
    settings: Settings, workdir: Path, n: int, interest: Interest
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    holder_cached, replica_path = index_paths(settings, workdir, n, interest)
    meta_path = Path(f"{replica_path}.json")
    cached = (
        settings.cache is not None
        and holder_cached.exists()
        and replica_path.exists()
        and meta_path.exists()
    )
    if cached:
        build_seconds = json.loads(meta_path.read_text())["build_seconds"]
    else:
        _log(f"building an index of {n:,} records ...")
        meta_path.unlink(missing_ok=True)
        build_seconds = round(build_index(holder_cached, replica_path, n, interest), 1)
        meta_path.write_text(json.dumps({"build_seconds": round(build_seconds, 1)}))
    # The holder's database gets ledger entries and quota rows: work on a copy of it.
    holder_path = workdir / f"holder-{n}.db"
    _remove_db(holder_path)
    shutil.copyfile(holder_cached, holder_path)
    hdb = Database(f"sqlite:///{holder_path}")
    qdb = Database(f"sqlite:///{replica_path}")
    try:
        holder = holder_desk(hdb)
        querier = LoopbackDesk(qdb, QUERIER, {HOLDER: holder})
        copy, _ = querier.replicas.copies(HOLDER)
        if copy is None:
            raise RuntimeError("the querier holds no complete copy")
        rows = copy.records
        # Warm the caches the way a running node would have them warm.
        lookup(qdb, HOLDER, interest.values[:20], interest.tokens[:20])
        list(
            holder.index(
                QUERIER,
                mpb.MatchIndexRequest(
                    key_id=interest.key_id, since_version=1, token_domain=TOKEN_DOMAIN
                ),
            )
        )

        singles = min(settings.singles, len(interest.values))
        single_s = []
        for i in range(singles):
            t0 = time.perf_counter()
            lookup(qdb, HOLDER, interest.values[i : i + 1], interest.tokens[i : i + 1])
            single_s.append(time.perf_counter() - t0)
        batch_s = _timed(lambda: lookup(qdb, HOLDER, interest.values, interest.tokens), 3)
        answers = lookup(qdb, HOLDER, interest.values, interest.tokens)

        noop = mpb.MatchIndexRequest(
            key_id=interest.key_id, since_version=1, token_domain=TOKEN_DOMAIN
        )
        chunks = list(holder.index(QUERIER, noop))
        if len(chunks) != 1 or chunks[0].entries or chunks[0].reset:
            raise RuntimeError("a no-op sync sent entries")
        sync_s = _timed(lambda: list(holder.index(QUERIER, noop)), settings.sync_repeats)

        def run_select(statement: Any) -> None:
            with hdb.read() as s:
                s.execute(statement).all()

        node_select_s = _timed(lambda: run_select(_node_index_select(1, 1)), settings.sync_repeats)
        by_version_s = _timed(lambda: run_select(_by_version_select(1, 1)), settings.sync_repeats)

        q_single = []
        for i in range(min(settings.single_queries, len(interest.tokens))):
            t0 = time.perf_counter()
            querier._ask_peer(HOLDER, os.urandom(16), [interest.tokens[i]], 600.0)
            q_single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        full = querier._ask_peer(HOLDER, os.urandom(16), interest.tokens, 600.0)
        q_batch = time.perf_counter() - t0
        querier.stop_syncs()
        db_bytes = replica_path.stat().st_size
        sizes = copy_bytes(replica_path)
        holder_bytes = holder_path.stat().st_size
        plans = {
            "lookup": _plan(
                qdb,
                select(MatchCopyBlockRow.data).where(
                    MatchCopyBlockRow.copy_no == copy.copy_no,
                    MatchCopyBlockRow.block.in_([65538, 131075]),
                ),
            ),
            "index_node": _plan(hdb, _node_index_select(1, 1)),
            "index_by_version": _plan(hdb, _by_version_select(1, 1)),
        }
    finally:
        hdb.close()
        qdb.close()
        _remove_db(holder_path)
    # What the querier's own path answered, and whether the true record was found.
    summary = [(a.result, a.band, a.reference) for a in full]
    for mine, theirs in zip(answers, full, strict=True):
        if (mine is None) != (theirs.result == "no-hit"):
            raise RuntimeError("the lookup and _ask_peer disagree")
    held_queries = [i for i, t in enumerate(interest.truth) if t is not None]
    found_true = sum(
        1
        for i in held_queries
        if full[i].result == "hit"
        and node_matching.parse_reference(full[i].reference)[1] == interest.truth[i]
    )
    b = len(interest.values)
    record = {
        "bench": "matching_speed",
        "figure": "index",
        "index_records": n,
        "copy_records": rows,
        "records_of_interest": len(interest.records),
        "replica_db_mib": round(db_bytes / 2**20, 1),
        "copy_bytes_per_record": round(sizes["copy"] / n),
        "copy_file_bytes_per_record": round(sizes["file_used"] / n),
        "copy_tables_bytes": sizes,
        "holder_db_mib": round(holder_bytes / 2**20, 1),
        "copy_store_seconds": build_seconds,
        "copy_store_records_per_s": round(n / build_seconds) if build_seconds else None,
        "cached": cached,
        "padded": PADDED,
        "lookup_single_ms_median": _ms(statistics.median(single_s)),
        "lookup_single_ms_p95": _ms(_p95(single_s)),
        "lookup_single_samples": singles,
        "lookup_batch_queries": b,
        "lookup_batch_ms": _ms(statistics.median(batch_s)),
        "lookup_batch_ms_per_query": round(statistics.median(batch_s) * 1000 / b, 3),
        "sync_noop_ms_median": _ms(statistics.median(sync_s)),
        "sync_noop_node_select_ms": _ms(statistics.median(node_select_s)),
        "sync_noop_by_version_select_ms": _ms(statistics.median(by_version_s)),
        "query_single_ms_median": _ms(statistics.median(q_single)),
        "query_single_ms_p95": _ms(_p95(q_single)),
        "query_single_samples": len(q_single),
        "query_batch_queries": b,
        "query_batch_seconds": round(q_batch, 2),
        "query_batch_ms_per_query": round(q_batch * 1000 / b, 2),
        "hits": sum(1 for a in full if a.result == "hit"),
        "held_queries": len(held_queries),
        "held_found": found_true,
        "plans": plans,
    }
    return record, summary


def growth_figure(records: list[dict[str, Any]], same: bool) -> dict[str, Any]:
    small, large = records[0], records[-1]
    keys = (
        "lookup_single_ms_median",
        "lookup_batch_ms",
        "sync_noop_ms_median",
        "sync_noop_node_select_ms",
        "sync_noop_by_version_select_ms",
        "query_single_ms_median",
        "query_batch_seconds",
    )
    return {
        "bench": "matching_speed",
        "figure": "index_growth",
        "sizes": [r["index_records"] for r in records],
        "records_ratio": round(large["index_records"] / small["index_records"], 1),
        **{k: [r[k] for r in records] for k in keys},
        "ratio": {k: round(large[k] / small[k], 2) if small[k] else None for k in keys},
        "same_answers_at_every_size": same,
    }


# --- 4. a first sync ---------------------------------------------------------------------


def full_sync_figure(settings: Settings, workdir: Path, interest: Interest) -> dict[str, Any]:
    n = settings.full_sync_records
    holder_cached, replica_cached = index_paths(settings, workdir, n, interest)
    if not (holder_cached.exists() and replica_cached.exists()):
        build_index(holder_cached, replica_cached, n, interest)
        Path(f"{replica_cached}.json").unlink(missing_ok=True)  # not a timed build
    holder_path = workdir / f"sync-holder-{n}.db"
    _remove_db(holder_path)
    shutil.copyfile(holder_cached, holder_path)
    hdb = Database(f"sqlite:///{holder_path}")
    querier_path = workdir / "sync-querier.db"
    qdb = fresh_db(querier_path)
    try:
        querier = LoopbackDesk(qdb, QUERIER, {HOLDER: holder_desk(hdb)})
        t0 = time.perf_counter()
        copy = querier.sync(HOLDER, 600.0)
        seconds = time.perf_counter() - t0
        querier.stop_syncs()
        # The same copy again, cut off after half its chunks, then resumed.
        resume = _resumed_copy(hdb, workdir, n)
    finally:
        hdb.close()
        qdb.close()
        _remove_db(holder_path)
    sizes = copy_bytes(querier_path)
    if copy.records != n:
        raise RuntimeError(f"the first sync copied {copy.records} records, not {n}")
    rate = n / seconds
    return {
        "bench": "matching_speed",
        "figure": "full_sync",
        "records": n,
        "copy_records": copy.records,
        "version": copy.version,
        "seconds": round(seconds, 2),
        "records_per_s": round(rate, 1),
        "copy_bytes_per_record": round(sizes["copy"] / n),
        "projected_records": settings.records,
        "projected_seconds": round(settings.records / rate),
        **resume,
        "method": "MatchDesk.sync of an empty querier from a holder's MatchDesk.index, "
        "in process (no gRPC, no TLS)",
    }


def _resumed_copy(hdb: Database, workdir: Path, n: int) -> dict[str, Any]:
    """A first copy whose stream breaks after half its chunks, then the next sync: what
    the resumed stream sent (and, of it, what the copy held already), whether it resumed
    from a position, the "of M records" it announced, and what the copy holds in the end."""
    qdb = fresh_db(workdir / "sync-resumed.db")
    holder = holder_desk(hdb)
    sent = [0]
    calls = [0]
    requests: list[mpb.MatchIndexRequest] = []
    announced: list[int] = []

    class _Breaking(_LoopbackPeers):
        def get_match_index(
            self, peer: str, request: mpb.MatchIndexRequest, timeout: float
        ) -> Iterator[mpb.MatchIndexChunk]:
            calls[0] += 1
            requests.append(request)
            for i, chunk in enumerate(holder.index(self.caller, request)):
                if calls[0] == 1 and i >= max(1, n // COPY_CHUNK // 2):
                    raise RuntimeError("the stream broke")
                if i == 0:
                    announced.append(chunk.records)
                sent[0] += len(chunk.entries)
                yield chunk

    try:
        querier = LoopbackDesk(qdb, QUERIER, {HOLDER: holder})
        querier.peers = cast(PeerClient, _Breaking({HOLDER: holder}, QUERIER))
        with contextlib.suppress(RuntimeError):
            querier.sync(HOLDER, 600.0)
        _, making = querier.replicas.copies(HOLDER)
        before = making.records if making is not None else 0
        sent[0] = 0
        t0 = time.perf_counter()
        copy = querier.sync(HOLDER, 600.0)
        seconds = time.perf_counter() - t0
        querier.stop_syncs()
    finally:
        qdb.close()
    return {
        "resume_records_before": before,
        "resume_entries_sent_again": sent[0],
        # Entries of the resumed stream the copy held already (0: an exact resume).
        "resume_entries_resent": sent[0] - (copy.records - before),
        "resume_from_position": bool(requests[-1].after_handle),
        "resume_announced_records": announced[-1] if announced else 0,
        "resume_seconds": round(seconds, 2),
        "resume_copy_records": copy.records,
    }


def pg_copy_figure(base_url: str, n: int) -> dict[str, Any]:
    """The same store on PostgreSQL (a fresh database on the server of MLAX_TEST_PG_URL):
    N records of 48 random values copied in chunks of 2,000, the tables' size on disk with
    their indexes and TOAST, and a lookup of one query's 48 values (half of them held)."""
    with pg_database(base_url, "mlax_bench_copy") as url:
        db = Database(url)
        try:
            db.migrate()
            store = ReplicaStore(db)
            copy = store.stage(HOLDER, "bench", target=1)
            probes: list[int] = []
            t0 = time.perf_counter()
            for start in range(0, n, COPY_CHUNK):
                m = min(COPY_CHUNK, n - start)
                raw = _random_values(m * MAX_TOKENS)
                entries = []
                for i in range(m):
                    vals = sorted(raw[i * MAX_TOKENS : (i + 1) * MAX_TOKENS])
                    entries.append(Entry(os.urandom(16), False, _pack(vals), 1))
                    if len(probes) < 24 * 200 and i % 50 == 0:
                        probes.append(vals[0])
                store.apply(copy.copy_no, entries, 1)
            copy = store.finish(copy.copy_no, 1)
            seconds = time.perf_counter() - t0
            sizes = "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE "
            sizes += "c.relkind = 'r' AND c.relname LIKE 'match_cop%'"
            with db.engine.connect() as conn:
                size = conn.execute(text(sizes)).scalar()
            # The deltas a compaction deleted stay as dead rows until (auto)vacuum makes
            # their space reusable: the size a copy keeps is the one after it.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM match_copy_deltas, match_copy_blocks"))
                vacuumed = conn.execute(text(sizes)).scalar()
            rng = array.array("q", os.urandom(VALUE_BYTES * 24 * 200))
            single = []
            for q in range(200):
                asked = probes[q * 24 % len(probes) :][:24] + list(rng[q * 24 : (q + 1) * 24])
                t = time.perf_counter()
                found = store.lookup(copy.copy_no, asked)
                single.append(time.perf_counter() - t)
                if not found:
                    raise RuntimeError("a held value was not found")
        finally:
            db.close()
    return {
        "bench": "matching_speed",
        "figure": "pg_copy",
        "records": n,
        "copy_records": copy.records,
        "copy_bytes_per_record_before_vacuum": round(int(size or 0) / n),
        "copy_bytes_per_record": round(int(vacuumed or 0) / n),
        "copy_seconds": round(seconds, 1),
        "copy_records_per_s": round(n / seconds),
        "lookup_single_ms_median": _ms(statistics.median(single)),
        "lookup_single_ms_p95": _ms(_p95(single)),
    }


# --- 5. real nodes -----------------------------------------------------------------------


def _write_csv(path: Path, rows: Sequence[sp.Row], prefix: str) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["ref", "given_name", "family_name", "sex", "date_of_birth", "nationality",
             "place_of_birth"]
        )  # fmt: skip
        for i, row in enumerate(rows):
            d = row.as_dict()
            writer.writerow([f"{prefix}-{i:06d}", *d.values()])


def _cpu(nodes: dict[str, NodeProcess]) -> dict[str, float]:
    out = {}
    for agency, node in nodes.items():
        if node.proc is not None:
            value = cpu_seconds(node.proc.pid)
            if value is not None:
                out[agency] = value
    return out


def _cpu_split(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    querier = after.get(QUERIER, 0.0) - before.get(QUERIER, 0.0)
    holders = sum(after[a] - before.get(a, 0.0) for a in after if a != QUERIER)
    return {"querier": round(querier, 2), "holders_total": round(holders, 2)}


def federation_figures(settings: Settings, workdir: Path) -> list[dict[str, Any]]:
    agencies = AGENCIES[: settings.peers + 1]
    if len(agencies) != settings.peers + 1:
        raise SystemExit(f"at most {len(AGENCIES) - 1} peers")
    holders = [a for a, _ in agencies[1:]]
    env = dict(
        os.environ,
        MLAX_KEY_PASSPHRASE=PASSPHRASE.decode(),
        MLAX_OFFICER_PASSPHRASE=OFFICER_PASSPHRASE.decode(),
    )
    t0 = time.perf_counter()
    fed = build_federation(
        workdir / "federation", PASSPHRASE, OFFICER_PASSPHRASE, agencies,
        extra_config=QUOTA_CONFIG,
    )  # fmt: skip
    build_s = time.perf_counter() - t0
    nodes = {a: NodeProcess(fed.nodes[a], env) for a, _ in agencies}
    clients: list[OfficerClient] = []
    records: list[dict[str, Any]] = []

    def client(agency: str, timeout: float) -> MatchClient:
        c = OfficerClient.from_bundle(
            fed.nodes[agency].credentials["officer"], OFFICER_PASSPHRASE, timeout
        )
        clients.append(c)
        return MatchClient(c)

    try:
        t0 = time.perf_counter()
        for node in nodes.values():
            node.start(wait=0)
        for node in nodes.values():
            node.wait_ready(300)
        start_s = time.perf_counter() - t0
        _log(f"{len(nodes)} nodes up in {start_s:.1f} s")

        # Each holder's records: distinct synthetic people, full dates for the queries.
        held: dict[str, list[sp.Row]] = {}
        load_s: dict[str, float] = {}
        for i, agency in enumerate(holders):
            rows = people_rows(SEED + 100 + i, settings.holder_records)
            held[agency] = rows
            path = workdir / f"records-{agency}.csv"
            _write_csv(path, rows, agency)
            loader = client(agency, 600)
            t1 = time.perf_counter()
            resp = loader.load(path)
            load_s[agency] = time.perf_counter() - t1
            if resp.added != len(rows):
                raise RuntimeError(f"{agency} loaded {resp.added} of {len(rows)}")
        rates = [settings.holder_records / s for s in load_s.values()]
        sealed = _stored_sizes(fed.nodes[holders[0]].root / "data" / "node.db")
        records.append(
            {
                "bench": "matching_speed",
                "figure": "federation_load",
                "nodes": len(nodes),
                "holders": len(holders),
                "records_per_holder": settings.holder_records,
                "build_seconds": round(build_s, 1),
                "startup_seconds": round(start_s, 1),
                "load_seconds": {a: round(s, 2) for a, s in load_s.items()},
                "records_per_s_median": round(statistics.median(rates), 1),
                "ms_per_record_median": round(1000 / statistics.median(rates), 2),
                "stored_bytes_per_record": sealed,
                "method": "MatchClient.load of a CSV, one holder after the other",
            }
        )

        querier = client(QUERIER, 3600)
        # Single queries: a held person each (their holder's own spelling and date), the
        # holders in turn; the first one is the warm-up (it syncs all the indexes).
        picks: list[tuple[str, sp.Row]] = []
        for i in range(settings.fed_queries + 1):
            agency = holders[i % len(holders)]
            full = [r for r in held[agency] if len(r.date_of_birth) == 10]
            picks.append((agency, full[(i // len(holders)) % len(full)]))

        def ask(row: sp.Row) -> tuple[float, float, dict[str, mpb.MatchAnswer]]:
            t1 = time.perf_counter()
            first = 0.0
            answers: dict[str, mpb.MatchAnswer] = {}
            for a in querier.query([row.as_dict()], timeout_ms=60_000):
                if not answers:
                    first = time.perf_counter() - t1
                answers[a.peer] = a
            return time.perf_counter() - t1, first, answers

        warm_s, _, warm = ask(picks[0][1])
        cpu0 = _cpu(nodes)
        lat, firsts = [], []
        expected_hits = other_hits = failures = 0
        for agency, row in picks[1:]:
            seconds, first, answers = ask(row)
            lat.append(seconds)
            firsts.append(first)
            expected_hits += answers[agency].result == "hit"
            other_hits += sum(1 for p, a in answers.items() if p != agency and a.result == "hit")
            failures += sum(1 for a in answers.values() if a.result not in ("hit", "no-hit"))
            if len(answers) != len(holders):
                raise RuntimeError(f"{len(answers)} peers answered of {len(holders)}")
        cpu1 = _cpu(nodes)
        n = len(lat)
        records.append(
            {
                "bench": "matching_speed",
                "figure": "federation_query",
                "peers": len(holders),
                "records_per_holder": settings.holder_records,
                "warmup_ms": _ms(warm_s),
                "warmup_results": sorted({a.result for a in warm.values()}),
                "queries": n,
                "median_ms": _ms(statistics.median(lat)),
                "p95_ms": _ms(_p95(lat)),
                "max_ms": _ms(max(lat)),
                "first_answer_median_ms": _ms(statistics.median(firsts)),
                "target_ms": SINGLE_TARGET_MS,
                "target_met": _p95(lat) * 1000 < SINGLE_TARGET_MS,
                "expected_hits": expected_hits,
                "other_hits": other_hits,
                "failed_answers": failures,
                "cpu_s_per_query": {k: round(v / n, 3) for k, v in _cpu_split(cpu0, cpu1).items()},
            }
        )

        # The batch: three in five held people (their holder's spelling), two not held.
        gen = sp.Generator(SEED + 200)
        batch: list[dict[str, str]] = []
        for i in range(settings.fed_batch):
            if i % 5 < 3:
                agency = holders[i % len(holders)]
                rows = held[agency]
                row = rows[(i * 7919) % len(rows)]
                batch.append(row.as_dict())
            else:
                batch.append(gen.holder_row(gen.person()).as_dict())
        cpu0 = _cpu(nodes)
        t1 = time.perf_counter()
        batch_answers = list(querier.query(batch, timeout_ms=3_600_000))
        batch_s = time.perf_counter() - t1
        cpu1 = _cpu(nodes)
        results: dict[str, int] = {}
        for a in batch_answers:
            results[a.result] = results.get(a.result, 0) + 1
        if len(batch_answers) != len(batch) * len(holders):
            raise RuntimeError(f"{len(batch_answers)} answers for {len(batch)} x {len(holders)}")
        records.append(
            {
                "bench": "matching_speed",
                "figure": "federation_batch",
                "peers": len(holders),
                "records_per_holder": settings.holder_records,
                "queries": len(batch),
                "seconds": round(batch_s, 2),
                "ms_per_query": round(batch_s * 1000 / len(batch), 2),
                "ms_per_query_per_peer": round(batch_s * 1000 / len(batch) / len(holders), 3),
                "results": results,
                "cpu_s": _cpu_split(cpu0, cpu1),
            }
        )
    finally:
        for c in clients:
            c.close()
        codes = {a: n.stop() for a, n in nodes.items()}
    if any(codes.values()):
        raise RuntimeError(f"a node exited badly: {codes}")
    return records


def _stored_sizes(path: Path) -> dict[str, float]:
    con = sqlite3.connect(path)
    try:
        sealed, values = con.execute(
            "SELECT (SELECT avg(length(record_sealed)) FROM match_records), "
            '(SELECT avg(length("values")) FROM match_values)'
        ).fetchone()
    finally:
        con.close()
    return {"record_sealed": round(sealed or 0, 1), "values": round(values or 0, 1)}


# --- report ------------------------------------------------------------------------------


def _table(records: list[dict[str, Any]]) -> None:
    for r in records:
        fig = r["figure"]
        if fig == "oprf":
            _log(
                f"oprf per element: blind {r['blind_us']} us, blind_evaluate "
                f"{r['blind_evaluate_us']} us, finalize {r['finalize_us']} us, round trip "
                f"{r['round_trip_us']} us; evaluate {r['evaluate_us']} us (ratio "
                f"{r['ratio_round_trip_to_evaluate']})"
            )
        elif fig == "encoding":
            _log(
                f"encoding: {r['records_per_s']} records/s through MatchDesk.load "
                f"({r['ms_per_record']} ms/record, {r['tokens_per_record']} tokens; floor "
                f"{r['evaluate_floor_ms_per_record']} ms, ratio {r['ratio']}) with "
                f"{r['processes']} processes, {r['cores_used']} cores used; single process "
                f"{r['baseline_records_per_s']} records/s: pool/baseline "
                f"{r['ratio_pool_to_baseline']}; 1,000,000 records: {r['projected_1m_hours']} h"
            )
            if "large_records" in r:
                _log(
                    f"encoding, large: {r['large_records']:,} records in {r['large_seconds']} s "
                    f"({r['large_records_per_s']} records/s, {r['large_cores_used']} cores, peak "
                    f"RSS {r['large_peak_rss_mib']} MiB, CPU {r['large_cpu_ms_per_record']} "
                    f"ms/record, {r['large_main_cpu_ms_per_record']} of it in the node's "
                    f"process); 1,000,000 records, extrapolated: "
                    f"{r['large_projected_1m_minutes']} min here, "
                    f"{r['large_projected_1m_minutes_two_idle_cores']} min on two idle cores"
                )
        elif fig == "index":
            _log(
                f"index {r['index_records']:>9,}: lookup 1 query {r['lookup_single_ms_median']} "
                f"ms, {r['lookup_batch_queries']} queries {r['lookup_batch_ms']} ms; sync no-op "
                f"{r['sync_noop_ms_median']} ms (node select {r['sync_noop_node_select_ms']}, "
                f"by version {r['sync_noop_by_version_select_ms']}); _ask_peer 1 query "
                f"{r['query_single_ms_median']} ms, batch {r['query_batch_seconds']} s; "
                f"found {r['held_found']}/{r['held_queries']}; copy "
                f"{r['copy_bytes_per_record']} bytes/record"
            )
        elif fig == "index_growth":
            _log(f"growth x{r['records_ratio']} records: ratio {r['ratio']}, same answers "
                 f"{r['same_answers_at_every_size']}")  # fmt: skip
        elif fig == "full_sync":
            _log(
                f"first sync: {r['records']:,} records in {r['seconds']} s "
                f"({r['records_per_s']}/s; {r['projected_records']:,}: "
                f"{r['projected_seconds']} s), "
                f"{r['copy_bytes_per_record']} bytes/record; cut off at "
                f"{r['resume_records_before']:,}, resumed in {r['resume_seconds']} s with "
                f"{r['resume_entries_sent_again']:,} entries sent, "
                f"{r['resume_entries_resent']:,} of them already held"
            )
        elif fig == "pg_copy":
            _log(
                f"PostgreSQL copy of {r['records']:,} records: {r['copy_bytes_per_record']} "
                f"bytes/record, {r['copy_records_per_s']} records/s, lookup 1 query "
                f"{r['lookup_single_ms_median']} ms (p95 {r['lookup_single_ms_p95']})"
            )
        elif fig == "federation_load":
            _log(
                f"federation: {r['nodes']} nodes up in {r['startup_seconds']} s; load "
                f"{r['records_per_s_median']} records/s per holder"
            )
        elif fig == "federation_query":
            _log(
                f"query to {r['peers']} peers: median {r['median_ms']} ms, p95 {r['p95_ms']} "
                f"ms (warm-up {r['warmup_ms']} ms), target {r['target_ms']} ms met: "
                f"{r['target_met']}; hits at the holder {r['expected_hits']}/{r['queries']}"
            )
        elif fig == "federation_batch":
            _log(
                f"batch of {r['queries']} to {r['peers']} peers: {r['seconds']} s "
                f"({r['ms_per_query']} ms/query), {r['results']}, cpu {r['cpu_s']}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke tests")
    parser.add_argument("--records", type=int, help="largest index (default 1,000,000)")
    parser.add_argument(
        "--sync-records", type=int, help="records of the first-sync figure (default 100,000)"
    )
    parser.add_argument("--peers", type=int, help="holders in the federation (default 10)")
    parser.add_argument("--holder-records", type=int, help="records per holder (default 300)")
    parser.add_argument("--queries", type=int, help="single federation queries (default 20)")
    parser.add_argument("--batch", type=int, help="queries in a batch (default 1000)")
    parser.add_argument("--no-cache", action="store_true", help="build the indexes afresh")
    parser.add_argument(
        "--encode-large", type=int, help="records of the large load (default 100,000; 0: none)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "mlax-bench-matching"
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    parser.add_argument("--tmp", type=Path, help="where the run's files go (default: temp)")
    parser.add_argument(
        "--pg",
        action="store_true",
        help=f"with the index part, also the querier's copy on PostgreSQL (${TEST_PG_ENV})",
    )
    args = parser.parse_args(argv)
    parts = tuple(p for p in args.parts.split(",") if p)
    if not set(parts) <= set(PARTS):
        parser.error(f"--parts takes {', '.join(PARTS)}")
    q = args.quick
    batch = args.batch or (40 if q else 1000)
    settings = Settings(
        quick=q,
        records=args.records or (10_000 if q else 1_000_000),
        held=30 if q else 200,
        batch=batch,
        singles=20 if q else 200,
        single_queries=5 if q else 30,
        sync_repeats=3 if q else 7,
        oprf_elements=200 if q else 2000,
        encode_records=60 if q else 2000,
        encode_large=0 if q else (args.encode_large if args.encode_large is not None else 100_000),
        full_sync_records=args.sync_records or (10_000 if q else 100_000),
        peers=args.peers or (2 if q else 10),
        holder_records=args.holder_records or (20 if q else 300),
        fed_queries=args.queries or (5 if q else 20),
        fed_batch=batch,
        cache=None if (args.no_cache or q) else args.cache_dir,
        parts=parts,
    )
    if settings.records // 100 < 2 * settings.held:
        # The smallest index (1 %) must hold the records of interest and their relatives.
        parser.error(f"--records must be at least {200 * settings.held:,}")

    def terminate(_sig: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signal.SIGTERM)  # unwinds through the finally blocks

    signal.signal(signal.SIGTERM, terminate)
    os.environ["MLAX_KDF_PROFILE"] = "test"  # key files: fast KDF, as in the tests
    _log(
        f"matching speed: python {platform.python_version()}, sqlite "
        f"{sqlite3.sqlite_version}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; padded {PADDED}"
    )
    started = time.perf_counter()
    records: list[dict[str, Any]] = []

    def emit(record: dict[str, Any]) -> None:
        records.append(record)
        print(json.dumps(record), flush=True)

    with tempfile.TemporaryDirectory(prefix="mlax-bench-match-", dir=args.tmp) as tmp_name:
        workdir = Path(tmp_name)
        evaluate_us = None
        if "oprf" in parts:
            fig = oprf_figure(settings)
            evaluate_us = fig["evaluate_us"]
            emit(fig)
        if "encoding" in parts:
            if evaluate_us is None:
                small = dataclasses.replace(settings, oprf_elements=200)
                evaluate_us = oprf_figure(small)["evaluate_us"]
            emit(encoding_figure(settings, workdir, evaluate_us))
        if "index" in parts or "full_sync" in parts:
            interest = interest_for(settings)
            if "index" in parts:
                index_records = []
                summaries = []
                for n in settings.sizes:
                    record, summary = index_figure(settings, workdir, n, interest)
                    emit(record)
                    index_records.append(record)
                    summaries.append(summary)
                same = all(s == summaries[0] for s in summaries)
                emit(growth_figure(index_records, same))
            if "full_sync" in parts:
                emit(full_sync_figure(settings, workdir, interest))
            if args.pg:
                if not os.environ.get(TEST_PG_ENV):
                    raise SystemExit(f"--pg needs {TEST_PG_ENV}")
                for n in settings.sizes[1:]:
                    emit(pg_copy_figure(os.environ[TEST_PG_ENV], n))
        if "federation" in parts:
            for record in federation_figures(settings, workdir):
                emit(record)
    _table(records)
    _log(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
