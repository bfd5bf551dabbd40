"""The audit ledger in the node's database: append, tree nodes, proofs, checkpoints.

An entry is appended in the same transaction as the event it records, so either both
exist or neither does. The append locks the one head row (on PostgreSQL the conditional
UPDATE of `_PG_APPEND`, or FOR UPDATE; on SQLite the write transaction already holds the
lock), so indexes stay dense and ordered across replicas. The row exists from the
migrations on (0008), so replicas appending the very first entries lock it too. Every
complete subtree's hash is stored as it completes, so proofs read O(log n) nodes in one
query instead of rebuilding anything. `append_many` writes several entries with one
statement per table.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import cast

from nacl.signing import SigningKey
from sqlalchemy import Connection, Table, TextClause, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.encoding import now_ms
from exchange.ledger import (
    HASH_SIZE,
    Checkpoint,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    sign_checkpoint,
)
from exchange.ledger_entry import FieldValue, LedgerEntry, commitment, new_salt
from exchange.policy import OfficerId
from node.storage.db import Database
from node.storage.models import (
    CheckpointRow,
    CosignatureRow,
    LedgerEntryRow,
    LedgerHeadRow,
    LedgerNodeRow,
)

HEAD_ID = 1
# The redaction rule: the kinds a peer may read, each with the field that names the one
# other agency the event involved (it sent, received or was refused something, or asked
# this node for something). A peer reads an entry only if it is of one of these kinds and
# that field names it; every other entry, including any kind added later and not listed
# here, shows it the commitment only. Deliberately absent: `message.forward_refused` (its
# `recipient` was never sent anything) and `match.answer` (a holder must not learn what
# its blind evaluation matched).
PEER_READABLE: dict[str, str] = {
    "message.submitted": "recipient",
    "message.received": "sender",
    "message.rejected": "peer",
    "message.rejected_aggregate": "peer",
    "message.forwarded": "recipient",
    "receipt.stored": "receiver",
    "delivery.failed": "peer",
    "delivery.given_up": "peer",
    "case.transition": "peer",
    "case.overdue": "peer",
    "case.receipt_for_dropped_step": "peer",
    "attachment.received": "peer",
    "attachment.rejected": "peer",
    "attachment.chunk_refused": "peer",
    "attachment.delivered": "peer",
    "match.index_served": "peer",
    "match.evaluated": "peer",
    "match.quota_exceeded": "peer",
    "witness.split_view": "peer",
}


def _frontier(head: LedgerHeadRow) -> list[bytes]:
    return _split(head.frontier)


def _split(frontier: bytes) -> list[bytes]:
    return [frontier[i : i + 32] for i in range(0, len(frontier), 32)]


# The append path is SQLAlchemy Core on the tables, not the ORM: the ORM's flush cost
# about 1 ms per entry. Statements are module constants so they compile once.
_ENTRIES = cast(Table, LedgerEntryRow.__table__)
_NODES = cast(Table, LedgerNodeRow.__table__)
_HEAD = cast(Table, LedgerHeadRow.__table__)
_HEAD_READ = select(_HEAD.c.size, _HEAD.c.frontier).where(_HEAD.c.id == HEAD_ID)
_HEAD_LOCK = _HEAD_READ.with_for_update()
_HEAD_UPDATE = (
    update(_HEAD)
    .where(_HEAD.c.id == HEAD_ID)
    .values(size=bindparam("new_size"), frontier=bindparam("new_frontier"))
)
_ENTRY_INSERT = insert(_ENTRIES)
_NODE_INSERT = insert(_NODES)


def append(session: Session, entry: LedgerEntry) -> int:
    """Add `entry` as the next leaf inside the caller's transaction; returns its index."""
    return append_many(session, (entry,))[0]


# PostgreSQL: every row of an append in one statement, a round trip each costing more
# than the rest of the append. It moves the head from the state this connection last
# wrote or read (cached in the pooled connection's `info`) and writes nothing unless the
# head is still in that state; the UPDATE takes the row lock, and under READ COMMITTED
# re-checks its condition after waiting for a concurrent appender. The rows' columns
# travel as array literals (text) and as concatenated bytes cut apart by position:
# psycopg adapting Python lists to arrays cost a tenth of a one-entry append.
_PG_APPEND = text(
    """WITH h AS (
  UPDATE ledger_head SET size = :new_size, frontier = :new_frontier
  WHERE id = :head_id AND size = :old_size AND frontier = :old_frontier RETURNING id
), e AS (
  INSERT INTO ledger_entries (idx, kind, at, entry, salt, commitment)
  SELECT :old_size + k - 1, kind, at, substring(:e_entry FROM start FOR len),
    substring(:e_salt FROM o FOR 32), substring(:e_commitment FROM o FOR 32)
  FROM unnest(CAST(:e_kind AS varchar[]), CAST(:e_at AS bigint[]),
    CAST(:e_start AS integer[]), CAST(:e_len AS integer[])) WITH ORDINALITY
    AS x(kind, at, start, len, k), CAST(32 * k - 31 AS integer) AS o
  WHERE EXISTS (SELECT 1 FROM h)
), n AS (
  INSERT INTO ledger_nodes (level, idx, hash)
  SELECT level, idx, substring(:n_hash FROM o FOR 32)
  FROM unnest(CAST(:n_level AS integer[]), CAST(:n_idx AS bigint[])) WITH ORDINALITY
    AS x(level, idx, k), CAST(32 * k - 31 AS integer) AS o
  WHERE EXISTS (SELECT 1 FROM h)
)
SELECT count(*) FROM h"""
)


def _numbers(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of integers."""
    return "{" + ",".join(map(str, values)) + "}"


def _strings(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of strings, each quoted."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


_HEAD_CACHE = "mlax_ledger_head"
_HEAD_LOCKED = "mlax_ledger_head_locked"
# (kind, at, entry bytes, salt, commitment, leaf hash) of one entry to append.
_Prepared = tuple[str, int, bytes, bytes, bytes, bytes]
_Node = tuple[int, int, bytes]


def _grow(size: int, frontier: bytes, leaves: Iterable[bytes]) -> tuple[list[_Node], bytes]:
    """The subtrees completed by appending `leaves` to a tree, and its new frontier."""
    tree = CompactRange(size, _split(frontier))
    nodes: list[_Node] = []
    for leaf in leaves:
        nodes.extend(tree.append(leaf))
    return nodes, b"".join(tree.frontier)


def append_many(session: Session, entries: Sequence[LedgerEntry]) -> list[int]:
    """Add `entries`, in order, as the next leaves inside the caller's transaction.

    The same rows as `append` called once per entry, written with one statement per
    table (on PostgreSQL one statement in all): leaf hashes and the newly completed
    subtrees are computed in memory from the head's frontier. Returns the indexes given,
    consecutive.
    """
    if not entries:
        return []
    prepared: list[_Prepared] = []
    for entry in entries:
        data = entry.to_bytes()
        salt = new_salt()
        digest = commitment(salt, data)
        prepared.append((entry.kind, entry.at, data, salt, digest, leaf_hash(digest)))
    # The caller's pending rows are written first, as when append flushed the session.
    session.flush()
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        cached = conn.info.get(_HEAD_CACHE)
        if cached is not None and _append_pg(conn, cached[0], cached[1], prepared):
            session.info[_HEAD_LOCKED] = True
            return list(range(cached[0], cached[0] + len(prepared)))
    # Lock the head row once per transaction (FOR UPDATE on PostgreSQL; SQLite's write
    # transaction already holds the lock). Later appends in it read it again without
    # the lock: cheap, and right even after a savepoint (GroupCommit) rolled back.
    locked = session.info.get(_HEAD_LOCKED, False)
    head = conn.execute(_HEAD_READ if locked else _HEAD_LOCK).first()
    if head is None:
        # Migration 0008 creates it, so even the very first appends lock one row.
        raise LookupError("The ledger has no head row: the database is not migrated.")
    session.info[_HEAD_LOCKED] = True
    size, frontier = head[0], head[1]
    if conn.dialect.name == "postgresql":
        # Locked: the conditional statement cannot miss.
        if not _append_pg(conn, size, frontier, prepared):
            raise RuntimeError("the ledger head changed under its row lock")
        return list(range(size, size + len(prepared)))
    nodes, new_frontier = _grow(size, frontier, (p[5] for p in prepared))
    conn.execute(
        _ENTRY_INSERT,
        [
            {"idx": size + k, "kind": kd, "at": at, "entry": d, "salt": sl, "commitment": c}
            for k, (kd, at, d, sl, c, _) in enumerate(prepared)
        ],
    )
    conn.execute(_NODE_INSERT, [{"level": lv, "idx": i, "hash": h} for lv, i, h in nodes])
    new_size = size + len(prepared)
    conn.execute(_HEAD_UPDATE, {"new_size": new_size, "new_frontier": new_frontier})
    conn.info[_HEAD_CACHE] = (new_size, new_frontier)
    return list(range(size, new_size))


def _append_pg(conn: Connection, size: int, frontier: bytes, prepared: list[_Prepared]) -> bool:
    """Append in one statement if the head is at (`size`, `frontier`); whether it was."""
    nodes, new_frontier = _grow(size, frontier, (p[5] for p in prepared))
    new_size = size + len(prepared)
    salts = b"".join(p[3] for p in prepared)
    if len(salts) != HASH_SIZE * len(prepared):  # the statement cuts them every 32 bytes
        raise ValueError("Ledger salts are 32 bytes.")
    starts = []
    start = 1
    for p in prepared:
        starts.append(start)
        start += len(p[2])
    hit = conn.execute(
        _PG_APPEND,
        {
            "head_id": HEAD_ID,
            "old_size": size,
            "old_frontier": frontier,
            "new_size": new_size,
            "new_frontier": new_frontier,
            "e_kind": _strings(p[0] for p in prepared),
            "e_at": _numbers(p[1] for p in prepared),
            "e_start": _numbers(starts),
            "e_len": _numbers(len(p[2]) for p in prepared),
            "e_entry": b"".join(p[2] for p in prepared),
            "e_salt": salts,
            "e_commitment": b"".join(p[4] for p in prepared),
            "n_level": _numbers(n[0] for n in nodes),
            "n_idx": _numbers(n[1] for n in nodes),
            "n_hash": b"".join(n[2] for n in nodes),
        },
    ).scalar_one()
    if hit:
        conn.info[_HEAD_CACHE] = (new_size, new_frontier)
    else:
        conn.info.pop(_HEAD_CACHE, None)
    return bool(hit)


def refusal(
    session: Session, kind: str, officer: OfficerId, reason: str, **subject: FieldValue
) -> int:
    """Ledger a refused access by one of this node's officers: `kind` (`*_refused`), the
    officer's account, the policy's reason code and the identifiers of what was refused."""
    return append(
        session, LedgerEntry.of(kind, now_ms(), officer=officer.account, reason=reason, **subject)
    )


def concerns(entry: bytes | None, agency: str) -> bool:
    """Whether `agency` may read a ledger entry (`PEER_READABLE`)."""
    if not entry:
        return False
    doc = json.loads(entry)
    field = PEER_READABLE.get(doc.get("kind", "")) if isinstance(doc, dict) else None
    return field is not None and doc.get(field) == agency


def _nodes_query(coords: list[tuple[int, int]]) -> tuple[TextClause, dict[str, int]]:
    """One primary-key lookup per node, OR-ed. Not `(level, idx) IN (...)`: SQLite plans
    that as a scan of every stored node, which made proofs grow with the ledger."""
    where = " OR ".join(f"(level = :l{n} AND idx = :i{n})" for n in range(len(coords)))
    params: dict[str, int] = {}
    for n, (level, idx) in enumerate(coords):
        params[f"l{n}"], params[f"i{n}"] = level, idx
    return _node_sql(where), params


@functools.lru_cache(maxsize=128)
def _node_sql(where: str) -> TextClause:
    return text(f"SELECT level, idx, hash FROM ledger_nodes WHERE {where}")  # noqa: S608


def _batched_proof(
    session: Session, build: Callable[[Callable[[int, int], bytes]], list[bytes]]
) -> list[bytes]:
    """Run a proof builder twice: once to learn which nodes it reads, then with them all
    fetched in one query (the coordinates never depend on the hash values)."""
    wanted: list[tuple[int, int]] = []
    build(lambda level, idx: wanted.append((level, idx)) or b"\0" * 32)  # type: ignore[func-returns-value]
    if not wanted:
        return []
    nodes = {(lv, i): h for lv, i, h in session.execute(*_nodes_query(sorted(set(wanted))))}
    missing = set(wanted) - nodes.keys()
    if missing:
        raise LookupError(f"stored tree lacks nodes {sorted(missing)[:3]}")
    return build(lambda level, idx: nodes[(level, idx)])


class LedgerStore:
    """Reads and checkpoints over one node's ledger."""

    def __init__(self, db: Database, origin: str) -> None:
        self.db = db
        self.origin = origin

    def size(self) -> int:
        with self.db.read() as s:
            head = s.get(LedgerHeadRow, HEAD_ID)
            return head.size if head else 0

    def inclusion_proof(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """(commitment of entry `index`, its audit path in the tree of `size` leaves)."""
        with self.db.read() as s:
            digest = s.scalar(select(LedgerEntryRow.commitment).where(LedgerEntryRow.idx == index))
            if digest is None:
                raise LookupError(f"no ledger entry {index}")
            proof = _batched_proof(s, lambda get: inclusion_proof(index, size, get))
            return digest, proof

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self.db.read() as s:
            return _batched_proof(s, lambda get: consistency_proof(old_size, new_size, get))

    def latest_checkpoint(self) -> CheckpointRow | None:
        with self.db.read() as s:
            return s.scalars(
                select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)
            ).first()

    def checkpoint(self, size: int) -> CheckpointRow | None:
        with self.db.read() as s:
            return s.get(CheckpointRow, size)

    def issue_checkpoint(self, signing_key: SigningKey, min_new_entries: int = 1) -> int | None:
        """Sign a checkpoint of the current tree if it grew by `min_new_entries`; its size."""
        # Look first without the write lock: most calls find nothing to do.
        with self.db.read() as s:
            head = s.get(LedgerHeadRow, HEAD_ID)
            last = s.scalars(
                select(CheckpointRow.size).order_by(CheckpointRow.size.desc()).limit(1)
            ).first()
        if head is None or head.size - (last or 0) < min_new_entries:
            return None
        with self.db.write() as s:
            head = s.get(LedgerHeadRow, HEAD_ID)
            if head is None or head.size == 0:
                return None
            last = s.scalars(
                select(CheckpointRow.size).order_by(CheckpointRow.size.desc()).limit(1)
            ).first()
            if last is not None and head.size - last < min_new_entries:
                return None
            root = CompactRange(head.size, _frontier(head)).root()
            note = sign_checkpoint(
                Checkpoint(self.origin, head.size, root), self.origin, signing_key
            )
            s.add(CheckpointRow(size=head.size, root=root, note=note, created_at=now_ms()))
            return head.size

    def cosignatures(self, size: int) -> list[str]:
        with self.db.read() as s:
            return list(
                s.scalars(
                    select(CosignatureRow.line)
                    .where(CosignatureRow.size == size)
                    .order_by(CosignatureRow.witness)
                ).all()
            )

    def last_cosigned_size(self, witness: str) -> int:
        with self.db.read() as s:
            return (
                s.scalars(
                    select(CosignatureRow.size)
                    .where(CosignatureRow.witness == witness)
                    .order_by(CosignatureRow.size.desc())
                    .limit(1)
                ).first()
                or 0
            )

    def add_cosignature(self, size: int, witness: str, line: str) -> None:
        with self.db.write() as s:
            if s.get(CosignatureRow, (size, witness)) is None:
                s.add(CosignatureRow(size=size, witness=witness, line=line, received_at=now_ms()))

    def record(self, row: CheckpointRow) -> lpb.CheckpointRecord:
        return lpb.CheckpointRecord(note=row.note, cosignatures=self.cosignatures(row.size))

    def entries(self, start: int, count: int) -> list[LedgerEntryRow]:
        with self.db.read() as s:
            return list(
                s.scalars(
                    select(LedgerEntryRow)
                    .where(LedgerEntryRow.idx >= start, LedgerEntryRow.idx < start + count)
                    .order_by(LedgerEntryRow.idx)
                ).all()
            )

    def export(
        self, header: lpb.LedgerExportHeader, start: int = 0, end: int = 0, batch: int = 5000
    ) -> Iterator[lpb.LedgerExportRecord]:
        """The export stream: header, entries with the stored tree's leaves, checkpoints."""
        end = end or self.size()
        header.entries = max(0, end - start)
        yield lpb.LedgerExportRecord(header=header)
        for lo in range(start, end, batch):
            hi = min(end, lo + batch)
            with self.db.read() as s:
                rows = s.scalars(
                    select(LedgerEntryRow)
                    .where(LedgerEntryRow.idx >= lo, LedgerEntryRow.idx < hi)
                    .order_by(LedgerEntryRow.idx)
                ).all()
                leaves = dict(
                    s.execute(
                        select(LedgerNodeRow.idx, LedgerNodeRow.hash).where(
                            LedgerNodeRow.level == 0,
                            LedgerNodeRow.idx >= lo,
                            LedgerNodeRow.idx < hi,
                        )
                    ).all()
                )
            for r in rows:
                yield lpb.LedgerExportRecord(
                    entry=lpb.LedgerEntry(
                        index=r.idx,
                        commitment=r.commitment,
                        salt=r.salt or b"",
                        entry=r.entry or b"",
                        tree_leaf=leaves.get(r.idx, b""),
                    )
                )
        with self.db.read() as s:
            # Only checkpoints the exported entries cover: one signed while exporting would
            # make a complete export look truncated.
            checkpoints: Iterable[CheckpointRow] = s.scalars(
                select(CheckpointRow).where(CheckpointRow.size <= end).order_by(CheckpointRow.size)
            ).all()
        for cp in checkpoints:
            yield lpb.LedgerExportRecord(checkpoint=self.record(cp))
