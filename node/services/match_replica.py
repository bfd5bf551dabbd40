"""The querier's copies of the peers' published victim-matching indexes (docs/matching.md,
"Index sync"; docs/protocol-matching.md 4.3).

A copy is one peer's index under one key generation (peer, key_id). Each record is a row
(`match_copy_records`: a small record number, its 16-byte handle, the version that last
changed it); its 48 values live in sorted packed blocks (`match_copy_blocks`), each
entry 12 bytes: the value as on the wire (8 bytes, big-endian) and the record number
(4 bytes). The value space is cut into 256 parts by the value's first byte; each part
holds

- base blocks (`match_copy_blocks`): the part's entries cut on the next `bits` bits of
  the value, about `BLOCK_ENTRIES` entries each; a value's block number is computed
  from the value (part * 65536 + those bits), so a lookup reads one block per value;
- delta blobs (`match_copy_deltas`): the entries one applied chunk brought to the
  part, sorted, until the part is compacted (`MAX_DELTAS`): then base and deltas are
  merged into new base blocks.

A record that changes gets a new record number; the entries of the old one stay in the
blocks until their part is compacted, and a lookup drops them (their number has no row).
650-730 bytes a record on SQLite, indexes included (790-870 on PostgreSQL), against
5 KB for a row per value (docs/benchmarks.md).

A first copy, or a reset (a new key generation, a holder restored from a backup), is
staged: a `building` copy filled chunk by chunk, each chunk one transaction that also
records how far the copy got (`version`: every entry up to it is in; and the last record
it took, `position`), so that an interrupted copy resumes right after that record. When
the stream ends its parts are compacted and, in one transaction, it becomes the peer's
`complete` copy and the old one is dropped.
Queries read only the complete copy. One process at a time updates a peer's copies
(`match_peers` holds the lease), whatever the number of node processes on the database.
"""

from __future__ import annotations

import bisect
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Table, bindparam, delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError, MlaxError
from exchange.matching.tokens import MAX_TOKENS
from node.storage.db import Database
from node.storage.models import (
    Base,
    MatchCopyBlockRow,
    MatchCopyDeltaRow,
    MatchCopyPartRow,
    MatchCopyRecordRow,
    MatchCopyRow,
    MatchPeerRow,
)

T = TypeVar("T")

ENTRY = 12  # u64 value + u32 record number
VALUE_BYTES = 8
HANDLE_BYTES = 16
# Values one record may bring: a holder publishes exactly MAX_TOKENS (48) a record (padded);
# a token rule that published more would be a new token domain and protocol text.
MAX_VALUES = MAX_TOKENS
PARTS = 256
BLOCK_ENTRIES = 1024  # about 12 KB: large blobs fill SQLite's pages and PostgreSQL's TOAST
MAX_BLOCK_BITS = 16
MAX_DELTAS = 8  # delta blobs a part may hold before it is compacted
COMPACT_ENTRIES = 2_000_000  # entries (24 MB) compacted in one transaction at most
# A copy holds at most this many records: everything from a peer is bounded.
MAX_RECORDS = 20_000_000
# Entries of replaced or removed records a copy may carry beyond its live records before
# it is compacted whole (a holder re-sending its records cannot fill the disk).
DEAD_SLACK = 100_000
# A part may hold at most twice its share of the copy's entries, plus this: OPRF outputs
# are uniform, so an honest index is far below it; a skewed one would make one part (read
# whole at compaction) as large as the index.
PART_SLACK = 65_536
# A value carried by more records than this says nothing about a person (an honest
# token is shared by a few namesakes): it is dropped at compaction and never looked up.
MAX_VALUE_RECORDS = 10_000
# How many rows one transaction deletes when an old copy is dropped.
_DROP_BATCH = 20_000
_IN = 500

BUILDING, COMPLETE, DROPPING = "building", "complete", "dropping"


class CopyPendingError(MlaxError):
    """The peer's index has no complete copy here yet: the peer counts as unavailable."""


@dataclass(frozen=True)
class Copy:
    copy_no: int
    peer: str
    key_id: str
    state: str
    # complete: the holder's version the copy is at; building: every entry up to this
    # version is in (where an interrupted copy resumes).
    version: int
    target: int  # the holder's version the current stream brings the copy to
    records: int  # live records held
    expected: int  # live records the holder announced for the target (0: not known)

    def progress(self) -> str:
        if self.expected:
            return f"{self.records:,} of {self.expected:,} records"
        return f"{self.records:,} record{'' if self.records == 1 else 's'} so far"


@dataclass(frozen=True)
class Entry:
    handle: bytes
    removed: bool
    values: bytes  # 8-byte big-endian signed values, concatenated
    version: int


def _copy(row: MatchCopyRow) -> Copy:
    return Copy(
        row.copy_no,
        row.peer,
        row.key_id,
        row.state,
        row.version,
        row.target,
        row.records,
        row.expected,
    )


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def value_key(value: int) -> bytes:
    """A signed 64-bit value as stored: its 8 bytes as on the wire (big-endian two's
    complement). Blocks are sorted by these bytes, not by the numbers: only equality and
    one order shared by writer and reader matter."""
    return value.to_bytes(VALUE_BYTES, "big", signed=True)


def _block_of(key: bytes, bits: int) -> int:
    if not bits:
        return 0
    return int.from_bytes(key[1:4], "big") >> (24 - bits)


def _find(blob: bytes, key: bytes) -> Iterator[int]:
    """Record numbers of the entries of a sorted blob whose value is `key`."""
    count = len(blob) // ENTRY
    i = bisect.bisect_left(range(count), key, key=lambda n: blob[n * ENTRY : n * ENTRY + 8])
    while i < count and blob[i * ENTRY : i * ENTRY + 8] == key:
        yield int.from_bytes(blob[i * ENTRY + 8 : (i + 1) * ENTRY], "big")
        i += 1


def _block_no(part: int, block: int) -> int:
    return (part << 16) | block


def _delete_part(s: Session, copy_no: int, part: int) -> None:
    s.execute(
        delete(MatchCopyBlockRow).where(
            MatchCopyBlockRow.copy_no == copy_no,
            MatchCopyBlockRow.block.between(_block_no(part, 0), _block_no(part, 0xFFFF)),
        )
    )
    s.execute(
        delete(MatchCopyDeltaRow).where(
            MatchCopyDeltaRow.copy_no == copy_no, MatchCopyDeltaRow.part == part
        )
    )


def _search(blob: bytes, keys: list[bytes], found: dict[bytes, list[int]]) -> None:
    for k in keys:
        for rec in _find(blob, k):
            found.setdefault(k, []).append(rec)


class ReplicaStore:
    """The copies of the peers' indexes in the node's database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Who holds a peer's lease: this store, in this process.
        self.owner = os.urandom(8).hex()
        self._analyzed = 1000

    def _analyze(self, records: int) -> None:
        """On PostgreSQL, refresh the planner's statistics of the record table each time a
        copy doubles: it grows from empty within minutes, before autovacuum samples it,
        and with the statistics of an empty table the planner finds a chunk's 500
        handles by reading every record of the copy (the cost of a chunk then grows
        with the copy)."""
        if self.db.is_sqlite or records < 2 * self._analyzed:
            return
        with self.db.write() as s:
            s.execute(text("ANALYZE match_copy_records"))
        self._analyzed = records

    # -- state ----------------------------------------------------------------------------

    def copies(self, peer: str) -> tuple[Copy | None, Copy | None]:
        """(the complete copy queries read, the copy being made), either may be None."""
        with self.db.read() as s:
            rows = s.scalars(
                select(MatchCopyRow).where(
                    MatchCopyRow.peer == peer, MatchCopyRow.state.in_((BUILDING, COMPLETE))
                )
            ).all()
            done = next((_copy(r) for r in rows if r.state == COMPLETE), None)
            making = next((_copy(r) for r in rows if r.state == BUILDING), None)
            return done, making

    def lease(self, peer: str, seconds: float) -> bool:
        """Take or renew the right to update `peer`'s copies; False if another process
        holds it (that process is syncing the peer: there is nothing to do here)."""
        now = now_ms()
        with self.db.write() as s:
            row = s.get(MatchPeerRow, peer, with_for_update=True)
            if row is None:
                row = MatchPeerRow(peer=peer, lease_owner="", lease_until=0, synced_at=0)
                s.add(row)
            elif row.lease_owner not in ("", self.owner) and row.lease_until > now:
                return False
            row.lease_owner, row.lease_until = self.owner, now + int(seconds * 1000)
            return True

    def release(self, peer: str, synced: bool) -> None:
        with self.db.write() as s:
            row = s.get(MatchPeerRow, peer, with_for_update=True)
            if row is not None and row.lease_owner == self.owner:
                row.lease_owner, row.lease_until = "", 0
                if synced:
                    row.synced_at = now_ms()

    def position(self, copy_no: int) -> tuple[int, bytes] | None:
        """Where a copy being made resumes: (version, handle) of the last record it took
        from the holder's stream, or None if it holds none. Records are numbered in the
        order the stream brings them, each chunk in its own transaction, so the record
        with the highest number is the last one in; every entry the stream sent before
        it is in too (an entry skipped as already held, or a removal, only makes the
        position earlier than it could be, never later)."""
        with self.db.read() as s:
            row = s.execute(
                select(MatchCopyRecordRow.version, MatchCopyRecordRow.handle)
                .where(MatchCopyRecordRow.copy_no == copy_no)
                .order_by(MatchCopyRecordRow.rec_no.desc())
                .limit(1)
            ).first()
        return (row.version, bytes(row.handle)) if row is not None else None

    # -- writing --------------------------------------------------------------------------

    def stage(self, peer: str, key_id: str, target: int, expected: int = 0) -> Copy:
        """A new, empty copy being made for (peer, key_id); an unfinished one is dropped."""
        with self.db.write() as s:
            s.execute(
                update(MatchCopyRow)
                .where(MatchCopyRow.peer == peer, MatchCopyRow.state == BUILDING)
                .values(state=DROPPING)
            )
            row = MatchCopyRow(
                peer=peer,
                key_id=key_id,
                state=BUILDING,
                version=0,
                target=target,
                records=0,
                expected=expected,
                next_rec=1,
                seq=0,
                dead=0,
                created_at=now_ms(),
            )
            s.add(row)
            s.flush()
            s.execute(
                insert(_table(MatchCopyPartRow)),
                [
                    {
                        "copy_no": row.copy_no,
                        "part": p,
                        "bits": 0,
                        "base_entries": 0,
                        "delta_entries": 0,
                        "delta_blobs": 0,
                    }
                    for p in range(PARTS)
                ],
            )
            staged = _copy(row)
        # An unfinished copy (a stream cut off, then a reset) is deleted now, not when some
        # copy is next finished: copies abandoned one after another cannot pile up.
        self.drop_old()
        return staged

    def apply(self, copy_no: int, entries: Sequence[Entry], target: int, expected: int = 0) -> Copy:
        """Apply one chunk of the holder's stream, in one transaction: add or replace the
        records, drop the removed ones, and note how far the copy got."""
        for e in entries:
            if len(e.handle) != HANDLE_BYTES:
                raise InvalidFieldError("Field entries.handle: 16 bytes.")
            if not e.removed and not _well_formed(e.values):
                raise InvalidFieldError(
                    f"Field entries.values: {MAX_VALUES} distinct values of 8 bytes in "
                    "ascending order."
                )
        with self.db.write() as s:
            copy = s.get(MatchCopyRow, copy_no, with_for_update=True)
            if copy is None or copy.state == DROPPING:
                raise MlaxError("The copy being updated was dropped.")
            # The last entry of a handle wins (a stream sends each handle once).
            latest = {bytes(e.handle): e for e in entries}
            known: dict[bytes, tuple[int, int]] = {}
            for part in _chunks(list(latest), _IN):
                for handle, rec_no, version in s.execute(
                    select(
                        MatchCopyRecordRow.handle,
                        MatchCopyRecordRow.rec_no,
                        MatchCopyRecordRow.version,
                    ).where(
                        MatchCopyRecordRow.copy_no == copy_no,
                        MatchCopyRecordRow.handle.in_(part),
                    )
                ):
                    known[bytes(handle)] = (rec_no, version)
            gone: list[int] = []
            added: list[dict[str, object]] = []
            fresh: list[tuple[bytes, bytes]] = []  # (values, record number as 4 bytes)
            next_rec = copy.next_rec
            for handle, e in latest.items():
                old = known.get(handle)
                if old is not None and not e.removed and old[1] == e.version:
                    continue  # already applied (a resumed or repeated stream)
                if old is not None:
                    gone.append(old[0])
                if e.removed:
                    continue
                rec = next_rec
                next_rec += 1
                added.append(
                    {"copy_no": copy_no, "rec_no": rec, "handle": handle, "version": e.version}
                )
                fresh.append((e.values, rec.to_bytes(4, "big")))
            if copy.records + len(added) - len(gone) > MAX_RECORDS:
                raise MlaxError(
                    f"Agency {copy.peer} publishes more than {MAX_RECORDS:,} records: "
                    "its index is not copied."
                )
            if next_rec >= 1 << 32:
                raise MlaxError(f"The copy of {copy.peer}'s index needs rebuilding.")
            for part_nos in _chunks(gone, _IN):
                s.execute(
                    delete(MatchCopyRecordRow).where(
                        MatchCopyRecordRow.copy_no == copy_no,
                        MatchCopyRecordRow.rec_no.in_(part_nos),
                    )
                )
            if added:
                s.execute(insert(_table(MatchCopyRecordRow)), added)
            seq = copy.seq + 1
            # One sorted run of the chunk's entries, cut by part (the first byte).
            run = [
                values[i : i + VALUE_BYTES] + tail
                for values, tail in fresh
                for i in range(0, len(values), VALUE_BYTES)
            ]
            run.sort()
            blobs: list[dict[str, object]] = []
            counts: list[tuple[int, int]] = []
            start = 0
            for p in range(PARTS):
                end = bisect.bisect_left(run, bytes((p + 1,)), lo=start) if p < 255 else len(run)
                if end > start:
                    blobs.append(
                        {
                            "copy_no": copy_no,
                            "part": p,
                            "seq": seq,
                            "data": b"".join(run[start:end]),
                        }
                    )
                    counts.append((p, end - start))
                start = end
            if blobs:
                s.execute(insert(_table(MatchCopyDeltaRow)), blobs)
                _bump_parts(s, copy_no, counts)
                _check_spread(s, copy_no, copy.peer)
            copy.seq, copy.next_rec = seq, next_rec
            copy.records += len(added) - len(gone)
            copy.dead += len(gone)
            copy.target = max(copy.target, target)
            if expected:
                copy.expected = expected
            if entries:
                # The stream runs in (version, id) order: every entry below the last one's
                # version is in. A resumed stream starts after it.
                done = max(entries[-1].version - 1, 0)
                copy.version = max(copy.version, min(done, copy.target))
            result = _copy(copy)
            garbage = copy.dead > result.records + DEAD_SLACK
        if garbage:
            # More entries of replaced records than live ones: rewritten now, not at the
            # stream's end (a stream cut off before its end never gets there).
            self.compact(copy_no, everything=True)
        self._analyze(result.records)
        return result

    def finish(self, copy_no: int, version: int) -> Copy:
        """The stream reached the holder's `version`: compact what needs it and, for a
        copy being made, make it the peer's complete copy (the old one is dropped)."""
        with self.db.read() as s:
            row = s.get(MatchCopyRow, copy_no)
            if row is None or row.state == DROPPING:
                raise MlaxError("The copy being updated was dropped.")
            building = row.state == BUILDING
        self.compact(copy_no, everything=building)
        with self.db.write() as s:
            copy = s.get(MatchCopyRow, copy_no, with_for_update=True)
            if copy is None or copy.state == DROPPING:
                raise MlaxError("The copy being updated was dropped.")
            copy.version = copy.target = version
            if copy.state == BUILDING:
                s.execute(
                    update(MatchCopyRow)
                    .where(MatchCopyRow.peer == copy.peer, MatchCopyRow.state == COMPLETE)
                    .values(state=DROPPING)
                )
                copy.state = COMPLETE
            copy.synced_at = now_ms()
            result = _copy(copy)
        self.drop_old()
        return result

    def compact(self, copy_no: int, everything: bool = False) -> int:
        """Merge the delta blobs of the parts that hold too many into new base blocks, or,
        with `everything`, rewrite every part so that no delta and no entry of a replaced
        or removed record is left; one transaction per part. Returns the parts done."""
        with self.db.read() as s:
            dead = s.scalar(select(MatchCopyRow.dead).where(MatchCopyRow.copy_no == copy_no))
            q = select(MatchCopyPartRow.part).where(MatchCopyPartRow.copy_no == copy_no)
            if not everything:
                q = q.where(MatchCopyPartRow.delta_blobs > MAX_DELTAS)
            elif dead:  # every part, so that no replaced entry is left anywhere
                q = q.where(
                    (MatchCopyPartRow.delta_blobs > 0) | (MatchCopyPartRow.base_entries > 0)
                )
            else:
                q = q.where(MatchCopyPartRow.delta_blobs > 0)
            todo = list(s.scalars(q))
        live: bytearray | None = None
        pending = list(todo)
        while pending:
            # Parts are grouped into transactions of about COMPACT_ENTRIES entries: a
            # commit each would cost more than the work (a sync to disk each).
            with self.db.write() as s:
                copy = s.get(MatchCopyRow, copy_no, with_for_update=True)
                if copy is None:
                    return 0
                if copy.dead and live is None:
                    live = _live_map(s, copy_no, copy.next_rec)
                done = 0
                while pending and done < COMPACT_ENTRIES:
                    done += _compact_part(s, copy_no, pending.pop(0), live if copy.dead else None)
        if everything:
            with self.db.write() as s:
                copy = s.get(MatchCopyRow, copy_no, with_for_update=True)
                if copy is not None:
                    copy.dead = 0
        return len(todo)

    def drop_old(self) -> None:
        """Delete the copies marked dropped, a part or a batch of records per transaction
        (a million-record copy never holds the write lock for long)."""
        with self.db.read() as s:
            old = s.execute(
                select(MatchCopyRow.copy_no, MatchCopyRow.next_rec).where(
                    MatchCopyRow.state == DROPPING
                )
            ).all()
        for copy_no, next_rec in old:
            for part in range(PARTS):
                with self.db.write() as s:
                    _delete_part(s, copy_no, part)
            for start in range(0, next_rec, _DROP_BATCH):
                with self.db.write() as s:
                    s.execute(
                        delete(MatchCopyRecordRow).where(
                            MatchCopyRecordRow.copy_no == copy_no,
                            MatchCopyRecordRow.rec_no < start + _DROP_BATCH,
                        )
                    )
            with self.db.write() as s:
                s.execute(delete(MatchCopyPartRow).where(MatchCopyPartRow.copy_no == copy_no))
                s.execute(delete(MatchCopyRow).where(MatchCopyRow.copy_no == copy_no))

    # -- reading --------------------------------------------------------------------------

    def lookup(self, copy_no: int, values: Iterable[int]) -> dict[int, list[bytes]]:
        """For each value, the handles of the copy's live records that publish it."""
        keys = {value_key(v): v for v in set(values)}
        if not keys:
            return {}
        by_part: dict[int, list[bytes]] = {}
        for k in keys:
            by_part.setdefault(k[0], []).append(k)
        found: dict[bytes, list[int]] = {}
        with self.db.read() as s:
            bits = {
                part: (n, blobs > 0)
                for part, n, blobs in s.execute(
                    select(
                        MatchCopyPartRow.part, MatchCopyPartRow.bits, MatchCopyPartRow.delta_blobs
                    ).where(
                        MatchCopyPartRow.copy_no == copy_no,
                        MatchCopyPartRow.part.in_(list(by_part)),
                    )
                )
            }
            # Each value is looked for in the one base block it falls in, and in its part's
            # delta blobs (parts compacted since their last change have none).
            by_block: dict[int, list[bytes]] = {}
            deltas: list[int] = []
            for p, ks in by_part.items():
                n, has_deltas = bits.get(p, (0, False))
                if has_deltas:
                    deltas.append(p)
                for k in ks:
                    by_block.setdefault(_block_no(p, _block_of(k, n)), []).append(k)
            for block_nos in _chunks(sorted(by_block), _IN):
                for block, data in s.execute(
                    select(MatchCopyBlockRow.block, MatchCopyBlockRow.data).where(
                        MatchCopyBlockRow.copy_no == copy_no,
                        MatchCopyBlockRow.block.in_(block_nos),
                    )
                ):
                    _search(bytes(data), by_block[block], found)
            for part_nos in _chunks(deltas, _IN):
                for p, data in s.execute(
                    select(MatchCopyDeltaRow.part, MatchCopyDeltaRow.data).where(
                        MatchCopyDeltaRow.copy_no == copy_no,
                        MatchCopyDeltaRow.part.in_(part_nos),
                    )
                ):
                    _search(bytes(data), by_part[p], found)
            recs = sorted({r for rs in found.values() for r in rs})
            handles: dict[int, bytes] = {}
            for part_nos in _chunks(recs, _IN):
                for rec, handle in s.execute(
                    select(MatchCopyRecordRow.rec_no, MatchCopyRecordRow.handle).where(
                        MatchCopyRecordRow.copy_no == copy_no,
                        MatchCopyRecordRow.rec_no.in_(part_nos),
                    )
                ):
                    handles[rec] = bytes(handle)
        out: dict[int, list[bytes]] = {}
        for k, rs in found.items():
            hs = sorted({handles[r] for r in rs if r in handles})
            if hs and len(hs) <= MAX_VALUE_RECORDS:  # a crowded value says nothing
                out[keys[k]] = hs
        return out

    def size(self, copy_no: int) -> dict[str, int]:
        """Records, entries and bytes of packed values a copy holds (for benchmarks)."""
        with self.db.read() as s:
            records = s.scalar(
                select(func.count())
                .select_from(MatchCopyRecordRow)
                .where(MatchCopyRecordRow.copy_no == copy_no)
            )
            blocks, data = s.execute(
                select(
                    func.count(), func.coalesce(func.sum(func.length(MatchCopyBlockRow.data)), 0)
                ).where(MatchCopyBlockRow.copy_no == copy_no)
            ).one()
            deltas, delta_data = s.execute(
                select(
                    func.count(), func.coalesce(func.sum(func.length(MatchCopyDeltaRow.data)), 0)
                ).where(MatchCopyDeltaRow.copy_no == copy_no)
            ).one()
        return {
            "records": records or 0,
            "blocks": blocks,
            "deltas": deltas,
            "entry_bytes": int(data) + int(delta_data),
        }


def _table(model: type[Base]) -> Table:
    """The model's Core table: bulk inserts without the ORM's bookkeeping."""
    t = model.__table__
    assert isinstance(t, Table)
    return t


def _well_formed(values: bytes) -> bool:
    """MAX_VALUES values of 8 bytes, strictly ascending as signed integers (so distinct):
    what every live record publishes (docs/protocol-matching.md 4.1)."""
    if len(values) != MAX_VALUES * VALUE_BYTES:
        return False
    ints = [
        int.from_bytes(values[i : i + VALUE_BYTES], "big", signed=True)
        for i in range(0, len(values), VALUE_BYTES)
    ]
    return all(a < b for a, b in itertools.pairwise(ints))


def _check_spread(s: Session, copy_no: int, peer: str) -> None:
    """Refuse a chunk that leaves one part with more than twice its share of the copy's
    entries (plus `PART_SLACK`): truncated OPRF outputs are uniform, and a part is read
    whole when it is compacted."""
    rows = s.execute(
        select(
            MatchCopyPartRow.base_entries + MatchCopyPartRow.delta_entries,
        ).where(MatchCopyPartRow.copy_no == copy_no)
    ).all()
    sizes = [n for (n,) in rows]
    if sizes and max(sizes) > 2 * sum(sizes) // PARTS + PART_SLACK:
        raise MlaxError(
            f"Agency {peer} publishes index values that are not spread as OPRF outputs "
            "are: its index is not copied."
        )


def _bump_parts(s: Session, copy_no: int, counts: list[tuple[int, int]]) -> None:
    t = _table(MatchCopyPartRow)
    s.execute(
        update(t)
        .where(t.c.copy_no == bindparam("b_copy"), t.c.part == bindparam("b_part"))
        .values(
            delta_entries=t.c.delta_entries + bindparam("b_n"), delta_blobs=t.c.delta_blobs + 1
        ),
        [{"b_copy": copy_no, "b_part": p, "b_n": n} for p, n in counts],
    )


def _live_map(s: Session, copy_no: int, next_rec: int) -> bytearray:
    live = bytearray((next_rec >> 3) + 1)
    for (rec,) in s.execute(
        select(MatchCopyRecordRow.rec_no).where(MatchCopyRecordRow.copy_no == copy_no)
    ):
        live[rec >> 3] |= 1 << (rec & 7)
    return live


def _without_crowded(entries: list[bytes]) -> list[bytes]:
    """Sorted entries without the values that more than `MAX_VALUE_RECORDS` records carry."""
    out: list[bytes] = []
    for _, run in itertools.groupby(entries, key=lambda e: e[:VALUE_BYTES]):
        same = list(run)
        if len(same) <= MAX_VALUE_RECORDS:
            out.extend(same)
    return out


def _compact_part(s: Session, copy_no: int, part: int, live: bytearray | None) -> int:
    entries: list[bytes] = []
    for (data,) in [
        *s.execute(
            select(MatchCopyBlockRow.data).where(
                MatchCopyBlockRow.copy_no == copy_no,
                MatchCopyBlockRow.block.between(_block_no(part, 0), _block_no(part, 0xFFFF)),
            )
        ),
        *s.execute(
            select(MatchCopyDeltaRow.data).where(
                MatchCopyDeltaRow.copy_no == copy_no, MatchCopyDeltaRow.part == part
            )
        ),
    ]:
        blob = bytes(data)
        entries.extend(blob[i : i + ENTRY] for i in range(0, len(blob), ENTRY))
    if live is not None:
        entries = [
            e for e in entries if live[(r := int.from_bytes(e[8:], "big")) >> 3] & (1 << (r & 7))
        ]
    entries.sort()
    entries = _without_crowded(entries)
    n = len(entries)
    bits = min((n // BLOCK_ENTRIES).bit_length(), MAX_BLOCK_BITS)
    _delete_part(s, copy_no, part)
    rows = []
    start = 0
    for block in range(1 << bits):
        if block + 1 < 1 << bits:
            bound = bytes((part,)) + ((block + 1) << (24 - bits)).to_bytes(3, "big")
            end = bisect.bisect_left(entries, bound, lo=start)
        else:
            end = n
        if end > start:
            rows.append(
                {
                    "copy_no": copy_no,
                    "block": _block_no(part, block),
                    "data": b"".join(entries[start:end]),
                }
            )
        start = end
    if rows:
        s.execute(insert(_table(MatchCopyBlockRow)), rows)
    s.execute(
        update(MatchCopyPartRow)
        .where(MatchCopyPartRow.copy_no == copy_no, MatchCopyPartRow.part == part)
        .values(bits=bits, base_entries=n, delta_entries=0, delta_blobs=0)
    )
    return max(n, 1)
