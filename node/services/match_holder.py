"""Victim identification, the holder's side: the node's key generations, loading and
rotating its records, and answering peers (`MatchEvaluate`, `GetMatchIndex`).

The node keeps each victim record sealed to its own key and publishes only a random
handle and the record's match tokens run through its OPRF key, truncated to 8 bytes
(`index`). It evaluates blinded elements for peers (`evaluate`) within a per-peer hourly
quota, and ledgers every call (docs/matching.md, docs/protocol-matching.md 4-5).
`MatchDesk` (node/services/matching.py) combines this with the querier's side.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.encoding import now_ms
from exchange.errors import (
    ConflictError,
    InputError,
    InvalidFieldError,
    MlaxError,
    OversizedError,
    Status,
)
from exchange.forms.base import format_instant
from exchange.ledger_entry import LedgerEntry
from exchange.matching import oprf
from exchange.matching.records import QUERY_COLUMNS, VictimRecord, parse_csv_row
from exchange.matching.tokens import MAX_TOKENS, TOKEN_DOMAIN
from node import metrics
from node.config import MatchingSection
from node.services.match_disclosure import record_fields, record_text
from node.services.match_pool import VALUE_BYTES, EncodePool
from node.services.match_served import ServedCopies
from node.services.messages import NodeCore, Officer
from node.storage import ledger
from node.storage.models import (
    MatchKeyRow,
    MatchQuotaRow,
    MatchRecordRow,
    MatchStateRow,
    MatchValuesRow,
)

log = structlog.get_logger("mlax.matching")
T = TypeVar("T")

ELEMENT_BYTES = 32
HOUR_MS = 3_600_000
# A querier or holder that sends no token domain predates the field: its tokens are domain 1.
DOMAIN_BEFORE_FIELD = 1
# Records per unit of pool work and per write transaction of a load or rotation.
_LOAD_CHUNK = 500
# A load's or rotation's lease not renewed for this long is taken over (a crashed writer).
LEASE_STALE_MS = 120_000
MAX_OVERLAP_HOURS = 24 * 366
AUTO_ROTATE_RETRY_SECONDS = 30.0
_INDEX_CHUNK = 2000
HANDLE_BYTES = 16
_FIELDS = QUERY_COLUMNS


class QuotaExceededError(InputError):
    """A peer that used up its blind evaluations for this hour."""

    status = Status.RESOURCE_EXHAUSTED


class KeyRetiredError(ConflictError):
    """A peer asked for a key generation this holder no longer serves."""


class DomainMismatchError(ConflictError):
    """A peer's token domain is not one this holder publishes."""


class HolderBusyError(ConflictError):
    """Another load or key rotation holds the records."""


@dataclass(frozen=True)
class Generation:
    """A key generation the holder serves: its key, the token domain of its values."""

    key_id: str
    secret: bytes
    token_domain: int
    current: bool
    retire_at: int | None


@dataclass
class Rotation:
    """A key rotation's progress (MatchDesk.rotate)."""

    old_key_id: str
    new_key_id: str
    token_domain: int
    total: int
    encoded: int = 0
    done: bool = False
    retire_at: int = 0
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def progress(self) -> mpb.RotateMatchKeyProgress:
        return mpb.RotateMatchKeyProgress(
            old_key_id=self.old_key_id,
            new_key_id=self.new_key_id,
            token_domain=self.token_domain,
            encoded=self.encoded,
            total=max(self.total, self.encoded),
            done=self.done,
            retire_at_ms=self.retire_at,
        )


@dataclass(frozen=True)
class _Prepared:
    record: VictimRecord
    text: bytes
    fingerprint: bytes
    row_id: int | None


def _unpack(data: bytes) -> list[int]:
    return [
        int.from_bytes(data[i : i + VALUE_BYTES], "big", signed=True)
        for i in range(0, len(data), VALUE_BYTES)
    ]


def _person_row(person: mpb.MatchPerson) -> dict[str, str]:
    return {f: getattr(person, f) for f in _FIELDS}


class MatchHolder:
    """The holder's operations over the node's database and identity (mixed into
    `MatchDesk`)."""

    core: NodeCore
    cfg: MatchingSection

    def __init__(self, core: NodeCore, cfg: MatchingSection) -> None:
        self.core = core
        self.cfg = cfg
        self._key_lock = threading.Lock()
        self._secrets: dict[str, bytes] = {}
        self._retiring = threading.Lock()
        self._rotation_lock = threading.Lock()
        self._rotation: Rotation | None = None
        self._closing = threading.Event()
        self.pool = EncodePool(cfg.encode_processes)
        self._served = ServedCopies()

    # -- the holder's key generations ----------------------------------------------------

    def key(self) -> tuple[str, bytes]:
        """(key id, OPRF key) of the current generation: the first is made on first use;
        every key is kept sealed to the node's own key."""
        gen = self._current()
        return gen.key_id, gen.secret

    def _current(self) -> Generation:
        gens = self._generations()
        if gens and gens[0].current:
            return gens[0]
        with self._key_lock, self.core.db.write() as s:
            row = s.scalars(select(MatchKeyRow).where(MatchKeyRow.active.is_(True))).first()
            if row is None:
                row = MatchKeyRow(
                    key_id=os.urandom(16).hex(),
                    key_sealed=self.core.seal_to_self(oprf.generate_key()),
                    created_at=now_ms(),
                    active=True,
                    token_domain=TOKEN_DOMAIN,
                    ready=True,
                    retire_at=None,
                )
                s.add(row)
                ledger.append(s, LedgerEntry.of("match.key_created", now_ms(), key_id=row.key_id))
        return self._generations()[0]

    def _generations(self) -> list[Generation]:
        """The key generations served now, the current one first: it, and the previous
        one until the end of its overlap (`retire_at`)."""
        now = now_ms()
        with self.core.db.read() as s:
            rows = s.scalars(select(MatchKeyRow).where(MatchKeyRow.ready.is_(True))).all()
            found = [(r.key_id, r.key_sealed, r.token_domain, r.active, r.retire_at) for r in rows]
        gens = []
        for key_id, sealed, domain, active, retire_at in found:
            if not active and (retire_at is None or retire_at <= now):
                self._retire_due_later()
                continue
            secret = self._secrets.get(key_id)
            if secret is None:
                secret = self._secrets[key_id] = self.core.open_from_self(sealed)
            gens.append(Generation(key_id, secret, domain, active, retire_at))
        return sorted(gens, key=lambda g: not g.current)

    def _pick(self, key_id: str, domain: int, strict: bool) -> tuple[Generation, bool]:
        """The generation to serve a peer asking with `key_id` (empty: the current one) in
        token `domain`, and whether it is the one it named. Not `strict` (an index sync), a
        key that is not served gets the current generation of the peer's domain instead."""
        gens = self._generations() or [self._current()]
        current = gens[0]
        if key_id:
            named = next((g for g in gens if g.key_id == key_id), None)
            if named is not None and named.token_domain == domain:
                return named, True
            if strict and named is None:
                raise KeyRetiredError(
                    f"{self.core.agency} no longer serves matching key {key_id[:64]}: its "
                    f"current key is {current.key_id}, so sync its index again."
                )
        same = [g for g in gens if g.token_domain == domain]
        if not same:
            raise DomainMismatchError(
                f"{self.core.agency} publishes token domain {current.token_domain}; this "
                f"query uses domain {domain}: the two agencies run different versions of "
                "the matching rules."
            )
        return same[0], False

    def _retire_due_later(self) -> None:
        if self._retiring.acquire(blocking=False):
            threading.Thread(target=self._retire_locked, name="match-retire", daemon=True).start()

    def _retire_locked(self) -> None:
        try:
            self._retire_due_now()
        except Exception:
            log.exception("match_key_retire_failed")
        finally:
            self._retiring.release()

    def retire_due(self) -> int:
        """Delete every old key generation whose overlap has ended, with its values."""
        with self._retiring:
            return self._retire_due_now()

    def _retire_due_now(self) -> int:
        now = now_ms()
        with self.core.db.read() as s:
            due = s.scalars(
                select(MatchKeyRow.key_id).where(
                    MatchKeyRow.active.is_(False),
                    MatchKeyRow.ready.is_(True),
                    MatchKeyRow.retire_at <= now,
                )
            ).all()
        for key_id in due:
            with self.core.db.write() as s:
                row = s.get(MatchKeyRow, key_id, with_for_update=True)
                if row is None:
                    continue  # another replica retired it
                s.execute(delete(MatchValuesRow).where(MatchValuesRow.key_id == key_id))
                s.delete(row)
                ledger.append(s, LedgerEntry.of("match.key_retired", now_ms(), key_id=key_id))
            self._secrets.pop(key_id, None)
            log.info("match_key_retired", key_id=key_id)
        return len(due)

    # -- one writer of records at a time (a load or a rotation, on any replica) ----------

    def _take_lease(self, kind: str) -> str:
        token = f"{kind}:{os.urandom(4).hex()}"
        now = now_ms()
        with self.core.db.write() as s:
            state = self._state(s)
            if state.lease and now - state.lease_at < LEASE_STALE_MS:
                what = "A key rotation" if state.lease.startswith("rotate") else "A load"
                raise HolderBusyError(
                    f"{what} of victim records is under way at this node; try again when "
                    "it has finished."
                )
            if state.lease:  # a load or rotation cut off (a crash): undo what it left
                log.warning("match_lease_taken_over", lease=state.lease.partition(":")[0])
                self._undo(s, state)
            state.lease, state.lease_at = token, now
        return token

    @staticmethod
    def _state(s: Session) -> MatchStateRow:
        state = s.get(MatchStateRow, 1, with_for_update=True)
        if state is None:
            state = MatchStateRow(id=1, version=0, lease="", lease_at=0)
            s.add(state)
            s.flush()
        return state

    def _renew(self, s: Session, token: str) -> MatchStateRow:
        state = self._state(s)
        if state.lease != token:
            raise HolderBusyError("This load or rotation was taken over after a long pause.")
        state.lease_at = now_ms()
        return state

    def _abandon(self, token: str) -> None:
        """Undo a load or rotation that failed, if it still holds the lease."""
        with self.core.db.write() as s:
            state = self._state(s)
            if state.lease == token:
                self._undo(s, state)
                state.lease = ""

    @staticmethod
    def _undo(s: Session, state: MatchStateRow) -> None:
        """Remove what an unfinished load or rotation wrote: records of a version not yet
        published, and a key generation not yet ready, with their values."""
        ahead = select(MatchRecordRow.id).where(MatchRecordRow.version > state.version)
        s.execute(delete(MatchValuesRow).where(MatchValuesRow.record_id.in_(ahead)))
        s.execute(delete(MatchRecordRow).where(MatchRecordRow.version > state.version))
        building = select(MatchKeyRow.key_id).where(MatchKeyRow.ready.is_(False))
        s.execute(delete(MatchValuesRow).where(MatchValuesRow.key_id.in_(building)))
        s.execute(delete(MatchKeyRow).where(MatchKeyRow.ready.is_(False)))

    # -- holding records ------------------------------------------------------------------

    def load(
        self, officer: Officer, requests: Iterator[mpb.LoadRecordsRequest]
    ) -> mpb.LoadRecordsResponse:
        """Add, update or remove records; all of one call is one new index version.

        The call is streamed: records are checked, encoded by the worker pool and new ones
        written as they arrive, under a version peers are not served until the call ends
        (then all of it is published at once, or, if it fails, all of it is undone).
        Updated records wait in memory until then (about 2 KB each).
        """
        self._current()
        self._retire_due_later()
        token = self._take_lease("load")
        try:
            return self._load(officer, requests, token)
        except BaseException:
            self._abandon(token)
            raise

    def _load(
        self, officer: Officer, requests: Iterator[mpb.LoadRecordsRequest], token: str
    ) -> mpb.LoadRecordsResponse:
        # Values for every generation served in today's token domain (both during an
        # overlap); an old domain's generation cannot be computed any more and only loses
        # the values of records that change.
        gens = [g for g in self._generations() if g.token_domain == TOKEN_DOMAIN]
        keys = [g.secret for g in gens]
        with self.core.db.read() as s:
            state = s.get(MatchStateRow, 1)
            pending = (state.version if state is not None else 0) + 1
        seen: set[str] = set()
        removals: set[str] = set()
        counts = {"added": 0, "updated": 0, "unchanged": 0, "removed": 0}
        updates: list[tuple[int, bytes, bytes, list[bytes]]] = []

        def chunks() -> Iterator[tuple[list[_Prepared], list[VictimRecord]]]:
            batch: list[VictimRecord] = []
            for req in requests:
                removals.update(req.remove)
                for item in req.rows:
                    record = parse_csv_row(_person_row(item.person) | {"ref": item.ref}, item.line)
                    if record.ref in seen:
                        raise InvalidFieldError(
                            f"Line {item.line}, column ref: {record.ref!r} appears twice in "
                            "the load."
                        )
                    seen.add(record.ref)
                    batch.append(record)
                    if len(batch) >= _LOAD_CHUNK:
                        yield self._prepare(batch, counts)
                        batch = []
                if len(seen) + len(removals) > self.cfg.max_records_per_load:
                    raise OversizedError(
                        f"One load takes at most {self.cfg.max_records_per_load} records."
                    )
            if batch:
                yield self._prepare(batch, counts)

        now = now_ms()
        for prepared, values in self.pool.map(keys, chunks()):
            new_rows: list[dict[str, object]] = []
            new_values: list[list[bytes]] = []
            for item, vals in zip(prepared, values, strict=True):
                sealed = self.core.seal_to_self(item.text)
                if item.row_id is None:
                    new_rows.append(
                        {
                            "ref": item.record.ref,
                            "handle": os.urandom(16),
                            "record_sealed": sealed,
                            "fingerprint": item.fingerprint,
                            "version": pending,
                            "removed": False,
                            "updated_at": now,
                        }
                    )
                    new_values.append(vals)
                else:
                    updates.append((item.row_id, sealed, item.fingerprint, vals))
            # New records are written now, under the version not yet published.
            with self.core.db.write() as s:
                self._renew(s, token)
                if new_rows:
                    ids = s.scalars(
                        insert(MatchRecordRow).returning(
                            MatchRecordRow.id, sort_by_parameter_order=True
                        ),
                        new_rows,
                    ).all()
                    self._write_values(s, gens, ids, new_values)
            counts["added"] += len(new_rows)
        with self.core.db.write() as s:
            state = self._renew(s, token)
            for row_id, sealed, fingerprint, _ in updates:
                # A re-added record keeps its handle: a peer that missed the tombstone
                # then still replaces, not duplicates, what it holds for it.
                s.execute(
                    update(MatchRecordRow)
                    .where(MatchRecordRow.id == row_id)
                    .values(
                        record_sealed=sealed,
                        fingerprint=fingerprint,
                        version=pending,
                        removed=False,
                        updated_at=now,
                    )
                )
            for part in _chunks([u[0] for u in updates], 500):
                s.execute(delete(MatchValuesRow).where(MatchValuesRow.record_id.in_(part)))
            self._write_values(s, gens, [u[0] for u in updates], [u[3] for u in updates])
            counts["updated"] = len(updates)
            for ref_part in _chunks(sorted(removals), 500):
                gone = s.scalars(
                    select(MatchRecordRow.id).where(
                        MatchRecordRow.ref.in_(ref_part), MatchRecordRow.removed.is_(False)
                    )
                ).all()
                if not gone:
                    continue
                # The personal data goes; the tombstone tells peers to drop the handle.
                s.execute(delete(MatchValuesRow).where(MatchValuesRow.record_id.in_(gone)))
                s.execute(
                    update(MatchRecordRow)
                    .where(MatchRecordRow.id.in_(gone))
                    .values(
                        record_sealed=b"",
                        fingerprint=bytes(32),
                        version=pending,
                        removed=True,
                        updated_at=now,
                    )
                )
                counts["removed"] += len(gone)
            if counts["added"] + counts["updated"] + counts["removed"]:
                state.version = pending
            state.lease = ""
            total = s.scalar(
                select(func.count())
                .select_from(MatchRecordRow)
                .where(MatchRecordRow.removed.is_(False))
            )
            ledger.append(
                s,
                LedgerEntry.of(
                    "match.records_loaded",
                    now,
                    officer=officer.name,
                    added=counts["added"],
                    updated=counts["updated"],
                    removed=counts["removed"],
                    version=state.version,
                ),
            )
            return mpb.LoadRecordsResponse(
                added=counts["added"],
                updated=counts["updated"],
                unchanged=counts["unchanged"],
                removed=counts["removed"],
                index_version=state.version,
                records=total or 0,
            )

    def _prepare(
        self, batch: list[VictimRecord], counts: dict[str, int]
    ) -> tuple[list[_Prepared], list[VictimRecord]]:
        """The records of a chunk that changed (new, updated or re-added), with what is
        stored of them; the unchanged ones are counted and left alone (no OPRF work)."""
        with self.core.db.read() as s:
            existing = {
                r.ref: (r.id, r.fingerprint, r.removed)
                for r in s.execute(
                    select(
                        MatchRecordRow.ref,
                        MatchRecordRow.id,
                        MatchRecordRow.fingerprint,
                        MatchRecordRow.removed,
                    ).where(MatchRecordRow.ref.in_([r.ref for r in batch]))
                ).all()
            }
        out = []
        for record in batch:
            text = record_text(record)
            fingerprint = hashlib.sha256(text).digest()
            row = existing.get(record.ref)
            if row is not None and not row[2] and row[1] == fingerprint:
                counts["unchanged"] += 1
                continue
            out.append(_Prepared(record, text, fingerprint, row[0] if row else None))
        return out, [p.record for p in out]

    @staticmethod
    def _write_values(
        s: Session, gens: list[Generation], ids: Sequence[int], values: Sequence[list[bytes]]
    ) -> None:
        rows = [
            {"key_id": g.key_id, "record_id": rid, "values": v[i]}
            for rid, v in zip(ids, values, strict=True)
            for i, g in enumerate(gens)
        ]
        if rows:
            s.execute(insert(MatchValuesRow), rows)

    # -- rotating the key -----------------------------------------------------------------

    def rotate(self, officer: Officer | None, overlap_hours: float = 0.0) -> Rotation:
        """Start a new key generation: every held record is re-encoded under a new key (in
        the background), then it becomes current and the old one is served for the overlap.
        Returns at once; `Rotation.finished` is set when it is published or has failed."""
        if not 0 <= overlap_hours <= MAX_OVERLAP_HOURS:
            raise InvalidFieldError(
                f"Field overlap_hours: 0 (the node's default) to {MAX_OVERLAP_HOURS}."
            )
        hours = overlap_hours or self.cfg.key_overlap_hours
        with self._rotation_lock:
            if self._rotation is not None and not self._rotation.finished.is_set():
                raise HolderBusyError("A key rotation is already under way at this node.")
            self.retire_due()
            old = self._current()
            token = self._take_lease("rotate")
            try:
                secret = oprf.generate_key()
                new_id = os.urandom(16).hex()
                with self.core.db.write() as s:
                    s.add(
                        MatchKeyRow(
                            key_id=new_id,
                            key_sealed=self.core.seal_to_self(secret),
                            created_at=now_ms(),
                            active=False,
                            token_domain=TOKEN_DOMAIN,
                            ready=False,
                            retire_at=None,
                        )
                    )
                    total = s.scalar(
                        select(func.count())
                        .select_from(MatchRecordRow)
                        .where(MatchRecordRow.removed.is_(False))
                    )
            except BaseException:
                self._abandon(token)
                raise
            rotation = Rotation(old.key_id, new_id, TOKEN_DOMAIN, total or 0)
            self._rotation = rotation
        threading.Thread(
            target=self._run_rotation,
            args=(rotation, token, secret, hours, officer),
            name="match-rotate",
            daemon=True,
        ).start()
        return rotation

    def _run_rotation(
        self, rot: Rotation, token: str, secret: bytes, hours: float, officer: Officer | None
    ) -> None:
        try:
            last = 0

            def chunks() -> Iterator[tuple[list[int], list[VictimRecord]]]:
                nonlocal last
                while not self._closing.is_set():
                    with self.core.db.read() as s:
                        rows = s.execute(
                            select(
                                MatchRecordRow.id, MatchRecordRow.ref, MatchRecordRow.record_sealed
                            )
                            .where(MatchRecordRow.removed.is_(False), MatchRecordRow.id > last)
                            .order_by(MatchRecordRow.id)
                            .limit(_LOAD_CHUNK)
                        ).all()
                    if not rows:
                        return
                    last = rows[-1].id
                    yield (
                        [r.id for r in rows],
                        [
                            parse_csv_row(
                                record_fields(r.ref, self.core.open_from_self(r.record_sealed)),
                                0,
                            )
                            for r in rows
                        ],
                    )
                raise HolderBusyError("The node stopped during the key rotation.")

            new = Generation(rot.new_key_id, secret, rot.token_domain, False, None)
            for ids, values in self.pool.map([secret], chunks()):
                with self.core.db.write() as s:
                    self._renew(s, token)
                    self._write_values(s, [new], ids, values)
                rot.encoded += len(ids)
            now = now_ms()
            retire_at = now + int(hours * HOUR_MS)
            with self.core.db.write() as s:
                state = self._renew(s, token)
                # At most two generations: one still in an earlier overlap ends now.
                for row in s.scalars(
                    select(MatchKeyRow).where(
                        MatchKeyRow.active.is_(False),
                        MatchKeyRow.ready.is_(True),
                        MatchKeyRow.key_id != rot.old_key_id,
                    )
                ):
                    row.retire_at = now
                old_row = s.get(MatchKeyRow, rot.old_key_id)
                new_row = s.get(MatchKeyRow, rot.new_key_id)
                if old_row is None or new_row is None:
                    raise HolderBusyError("The key generations changed during the rotation.")
                old_row.active, old_row.retire_at = False, retire_at
                new_row.active, new_row.ready = True, True
                state.lease = ""
                fields: dict[str, str | int] = {
                    "old_key_id": rot.old_key_id,
                    "key_id": rot.new_key_id,
                    "token_domain": rot.token_domain,
                    "records": rot.encoded,
                    "retire_at": retire_at,
                }
                if officer is not None:
                    fields["officer"] = officer.name
                ledger.append(s, LedgerEntry.of("match.key_rotated", now, **fields))
            rot.retire_at = retire_at
            rot.done = True
            log.info(
                "match_key_rotated",
                key_id=rot.new_key_id,
                records=rot.encoded,
                token_domain=rot.token_domain,
            )
        except BaseException as e:
            rot.error = e
            try:
                self._abandon(token)
            except Exception:
                log.exception("match_rotation_undo_failed")
            if not isinstance(e, MlaxError):
                log.exception("match_rotation_failed")
        finally:
            rot.finished.set()
        self._retire_due_later()

    def start(self) -> None:
        """At node start: retire old generations whose overlap has ended, and rotate when
        the current generation was made under another token domain (a new token rule)."""
        self.retire_due()
        with self.core.db.read() as s:
            row = s.scalars(select(MatchKeyRow).where(MatchKeyRow.active.is_(True))).first()
            domain = row.token_domain if row is not None else TOKEN_DOMAIN
        if domain != TOKEN_DOMAIN:
            threading.Thread(target=self._auto_rotate, name="match-domain", daemon=True).start()

    def _auto_rotate(self) -> None:
        while not self._closing.is_set():
            with self.core.db.read() as s:
                row = s.scalars(select(MatchKeyRow).where(MatchKeyRow.active.is_(True))).first()
            if row is None or row.token_domain == TOKEN_DOMAIN:
                return
            try:
                rot = self.rotate(None)
                log.info("match_domain_rotation_started", token_domain=TOKEN_DOMAIN)
                rot.finished.wait()
                if rot.error is None:
                    return
            except HolderBusyError:
                pass  # a load, or another replica's rotation: try again later
            except Exception:
                log.exception("match_domain_rotation_failed")
            self._closing.wait(AUTO_ROTATE_RETRY_SECONDS)

    def close(self) -> None:
        """Stop a rotation at its next chunk (it is undone) and the worker processes."""
        self._closing.set()
        rot = self._rotation
        if rot is not None:
            rot.finished.wait(30)
        self.pool.close()

    # -- answering peers ------------------------------------------------------------------

    def evaluate(self, peer: str, req: mpb.MatchEvaluateRequest) -> mpb.MatchEvaluateResponse:
        """Blind-evaluate a peer's elements, within its quota; every call is ledgered."""
        count = len(req.blinded_elements)
        if len(req.query_id) != 16:
            raise InvalidFieldError("Field query_id: 16 bytes.")
        if not 0 < count <= self.cfg.max_elements_per_call:
            raise InvalidFieldError(
                f"Field blinded_elements: 1 to {self.cfg.max_elements_per_call} elements."
            )
        if any(len(e) != ELEMENT_BYTES for e in req.blinded_elements):
            raise InvalidFieldError("Field blinded_elements: each element is 32 bytes.")
        # Checked before the quota is charged: a malformed call costs nothing and does
        # no work (the evaluation itself comes only after the charge).
        for e in req.blinded_elements:
            oprf.check_element(bytes(e))
        # So is the key generation: a retired key or another token domain costs nothing.
        gen, _ = self._pick(req.key_id, req.token_domain or DOMAIN_BEFORE_FIELD, strict=True)
        now = now_ms()
        window = now // HOUR_MS
        limit = self.cfg.evaluations_per_hour
        # The whole query must fit, not only this call: a batch that cannot be answered
        # whole is refused before any of it is evaluated (and charged).
        needed = max(count, req.planned_elements)
        with self.core.db.write() as s:
            quota = s.get(MatchQuotaRow, (peer, window), with_for_update=True)
            used = quota.used if quota is not None else 0
            if used + needed > limit:
                over = True
            else:
                if quota is None:
                    s.add(MatchQuotaRow(peer=peer, window=window, used=count))
                else:
                    quota.used = used + count
                ledger.append(
                    s,
                    LedgerEntry.of(
                        "match.evaluated",
                        now,
                        peer=peer,
                        query_id=req.query_id.hex(),
                        elements=count,
                    ),
                )
                over = False
            state = s.get(MatchStateRow, 1)
            version = state.version if state is not None else 0
        if over:
            metrics.MATCH_REFUSED.labels(peer=peer).inc()
            # At a bounded rate: calls over quota cannot grow the ledger without end.
            self.core.rejections.record(
                peer,
                QuotaExceededError.__name__,
                QuotaExceededError.status,
                LedgerEntry.of(
                    "match.quota_exceeded",
                    now,
                    peer=peer,
                    query_id=req.query_id.hex(),
                    elements=count,
                    used=used,
                ),
            )
            more_at = format_instant((window + 1) * HOUR_MS)
            fit = max(limit - used, 0) // MAX_TOKENS
            raise QuotaExceededError(
                f"{self.core.agency} allows {peer} {limit:,} blind evaluations an hour: "
                f"{used:,} are used this hour and this query needs {needed:,} "
                f"({needed // MAX_TOKENS:,} people); {fit:,} people fit now, and the quota "
                f"starts afresh at {more_at}."
            )
        evaluated = [oprf.blind_evaluate(gen.secret, bytes(e)) for e in req.blinded_elements]
        metrics.MATCH_EVALUATIONS.labels(peer=peer).inc(count)
        return mpb.MatchEvaluateResponse(
            evaluated_elements=evaluated,
            key_id=gen.key_id,
            index_version=version,
            token_domain=gen.token_domain,
        )

    def index(self, peer: str, req: mpb.MatchIndexRequest) -> Iterator[mpb.MatchIndexChunk]:
        """The published index as changes since the peer's version (all of it on a reset),
        after the peer's resume position if it gives one this holder can place."""
        if req.after_handle and len(req.after_handle) != HANDLE_BYTES:
            raise InvalidFieldError("Field after_handle: 16 bytes, or empty.")
        domain = req.token_domain or DOMAIN_BEFORE_FIELD
        # The generation the peer's copy is of, if still served in its token domain;
        # else a reset to the current one of its domain (or FAILED_PRECONDITION).
        gen, same = self._pick(req.key_id, domain, strict=False)
        key_id = gen.key_id
        # During an overlap the peer is told of the newer generation, which it copies
        # while it keeps this one fresh.
        newest = next((g for g in self._generations() if g.token_domain == domain), gen)
        newer = newest.key_id if newest.key_id != key_id else ""
        reset = not same
        since = 0 if reset else req.since_version
        with self.core.db.read() as s:
            state = s.get(MatchStateRow, 1)
            version = state.version if state is not None else 0
            if since > version:
                # The peer's copy is ahead of this holder (restored from an older backup):
                # its records past this version are unknown here, so it gets everything.
                reset, since = True, 0
            last = (since, 0)
            if req.after_handle and not reset and since <= req.after_version <= version:
                # Placed only if the record was at that version or later (a version only
                # grows): a position this holder never streamed is not trusted.
                row = s.execute(
                    select(MatchRecordRow.id, MatchRecordRow.version).where(
                        MatchRecordRow.handle == bytes(req.after_handle)
                    )
                ).first()
                if row is not None and row.version >= req.after_version:
                    last = (req.after_version, row.id)
        metrics.MATCH_INDEX_SYNCS.labels(peer=peer).inc()
        # Ledgered only when it serves something (`ServedCopies`: a call that serves
        # nothing new reveals nothing, and repeats within the hour are not ledgered again).
        copy = (peer, key_id, since, version)
        if (reset or since < version) and self._served.first(copy):
            try:
                with self.core.db.write() as s:
                    ledger.append(
                        s,
                        LedgerEntry.of(
                            "match.index_served", now_ms(), peer=peer, since=since, version=version
                        ),
                    )
            except BaseException:
                self._served.forget(copy)  # not ledgered: the next call tries again
                raise
        if since == version and not reset:
            # Nothing changed: answer without touching the records (a query syncs first).
            yield mpb.MatchIndexChunk(
                key_id=key_id,
                version=version,
                token_domain=gen.token_domain,
                current_key_id=newer,
            )
            return

        def changed(*columns: Any) -> Any:
            # Keyset pages along (version, id), which ix_match_records_version serves:
            # the cost is what changed since the peer's version (or position), not the
            # table.
            q = (
                select(*columns)
                .outerjoin(
                    MatchValuesRow,
                    (MatchValuesRow.record_id == MatchRecordRow.id)
                    & (MatchValuesRow.key_id == key_id),
                )
                .where(
                    # Changed since the peer's version (not those of that version).
                    MatchRecordRow.version > since,
                    MatchRecordRow.version <= version,
                )
            )
            if reset:
                # Live records with values in this generation (a generation of an old
                # token domain has none for records loaded since).
                q = q.where(MatchRecordRow.removed.is_(False), MatchValuesRow.values.is_not(None))
            return q

        sent = False
        resumed = last[1] != 0
        while True:
            with self.core.db.read() as s:
                rows = s.execute(
                    changed(
                        MatchRecordRow.id,
                        MatchRecordRow.handle,
                        MatchRecordRow.removed,
                        MatchValuesRow.values,
                        MatchRecordRow.version,
                    )
                    .where(tuple_(MatchRecordRow.version, MatchRecordRow.id) > tuple_(*last))
                    .order_by(MatchRecordRow.version, MatchRecordRow.id)
                    .limit(_INDEX_CHUNK)
                ).all()
                records = 0
                if not sent:
                    # For the peer's "N of M records": the live records its copy holds
                    # once this stream has ended. A whole small reset is counted as sent;
                    # a larger one, or a resumed copy, by a count.
                    if reset and len(rows) < _INDEX_CHUNK:
                        records = len(rows)
                    elif reset or len(rows) == _INDEX_CHUNK or resumed:
                        records = (
                            s.scalar(
                                select(func.count())
                                .select_from(MatchRecordRow)
                                .join(
                                    MatchValuesRow,
                                    (MatchValuesRow.record_id == MatchRecordRow.id)
                                    & (MatchValuesRow.key_id == key_id),
                                )
                                .where(
                                    MatchRecordRow.removed.is_(False),
                                    MatchRecordRow.version <= version,
                                )
                            )
                            or 0
                        )
            if not rows and sent:
                return
            last = (rows[-1].version, rows[-1].id) if rows else last
            yield mpb.MatchIndexChunk(
                key_id=key_id,
                version=version,
                reset=reset and not sent,
                token_domain=gen.token_domain,
                records=records,
                current_key_id=newer,
                entries=[
                    # A record with no values in this generation is dropped by the peer.
                    mpb.MatchIndexEntry(
                        handle=r.handle,
                        removed=r.removed or r.values is None,
                        values=b"" if r.removed or r.values is None else r.values,
                        version=r.version,
                    )
                    for r in rows
                ],
            )
            sent = True
            if len(rows) < _INDEX_CHUNK:
                return


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
