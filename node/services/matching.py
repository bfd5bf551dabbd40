"""Victim identification on a node: holding records, answering blind evaluations, asking
the federation, and disclosing an identity after a follow-up request.

As a *holder* the node keeps each victim record sealed to its own key and publishes only
a random handle and the record's match tokens run through its OPRF key, truncated to 8
bytes (`GetMatchIndex`). It evaluates blinded elements for peers (`MatchEvaluate`) within
a per-peer hourly quota, and ledgers every call.

As a *querier* it keeps a copy of each peer's published index, blinds its query's tokens
with fresh scalars per peer, has each peer evaluate them, unblinds, and looks the outputs
up in its copy: a record sharing tokens with the query gives a coarse band (strong,
possible) and the handle becomes an opaque reference for the follow-up case. Names never
leave the querier; the holder sees blinded elements only (docs/matching.md).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import grpc
import structlog
from sqlalchemy import delete, func, insert, select, tuple_
from sqlalchemy.orm import Session

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.encoding import now_ms
from exchange.errors import InputError, InvalidFieldError, MlaxError, OversizedError, Status
from exchange.forms.base import format_instant
from exchange.ledger_entry import LedgerEntry
from exchange.matching import oprf
from exchange.matching.records import (
    QUERY_COLUMNS,
    VictimQuery,
    VictimRecord,
    parse_csv_row,
    parse_query_row,
)
from exchange.matching.score import Band, band
from exchange.matching.tokens import MAX_TOKENS, Token, record_tokens
from node import metrics
from node.config import MatchingSection
from node.peers.client import PeerClient
from node.services import match_disclosure
from node.services.cases import CaseDesk
from node.services.match_disclosure import parse_reference, record_text, reference_of
from node.services.messages import NodeCore, Officer
from node.storage import ledger
from node.storage.models import (
    MatchKeyRow,
    MatchPeerRow,
    MatchQuotaRow,
    MatchRecordRow,
    MatchReplicaRow,
    MatchStateRow,
)

log = structlog.get_logger("mlax.matching")
T = TypeVar("T")

VALUE_BYTES = 8
ELEMENT_BYTES = 32
HOUR_MS = 3_600_000
_INDEX_CHUNK = 2000
_LOOKUP_CHUNK = 500
_RANK = {Band.STRONG: 2, Band.POSSIBLE: 1}
_FIELDS = QUERY_COLUMNS


class QuotaExceededError(InputError):
    """A peer that used up its blind evaluations for this hour."""

    status = Status.RESOURCE_EXHAUSTED


def truncate(output: bytes) -> int:
    """The published form of an OPRF output: its first 8 bytes, as a signed 64-bit int."""
    return int.from_bytes(output[:VALUE_BYTES], "big", signed=True)


def _pack(values: Iterable[int]) -> bytes:
    return b"".join(v.to_bytes(VALUE_BYTES, "big", signed=True) for v in sorted(set(values)))


def _unpack(data: bytes) -> list[int]:
    return [
        int.from_bytes(data[i : i + VALUE_BYTES], "big", signed=True)
        for i in range(0, len(data), VALUE_BYTES)
    ]


def _person_row(person: mpb.MatchPerson) -> dict[str, str]:
    return {f: getattr(person, f) for f in _FIELDS}


PAD_KIND = "pad"


def pad_tokens(tokens: list[Token]) -> list[Token]:
    """A query's tokens plus random dummies, MAX_TOKENS in all: the holder sees the same
    number of blinded elements for every person, whatever fields the officer knew."""
    return tokens + [Token(PAD_KIND, os.urandom(32)) for _ in range(MAX_TOKENS - len(tokens))]


def pad_values(values: Iterable[int]) -> list[int]:
    """A record's published values plus random ones, MAX_TOKENS distinct in all: peers
    cannot tell from the index how much a record says (a birth date or not, one name or
    two). Random 8-byte values look exactly like truncated OPRF outputs."""
    out = set(values)
    while len(out) < MAX_TOKENS:
        out.add(int.from_bytes(os.urandom(VALUE_BYTES), "big", signed=True))
    return sorted(out)


@dataclass(frozen=True)
class _Hit:
    band: Band
    handle: bytes


class MatchDesk:
    """Matching operations over the node's database, identity and peers (`PeerClient`);
    node/workers/matching_sync.py keeps the copies of the peers' indexes fresh."""

    def __init__(
        self, core: NodeCore, cfg: MatchingSection, peers: PeerClient, cases: CaseDesk
    ) -> None:
        self.core = core
        self.cfg = cfg
        self.peers = peers
        self.cases = cases
        self._key_lock = threading.Lock()
        self._key: tuple[str, bytes] | None = None
        self._sync_locks: dict[str, threading.Lock] = {}

    # -- the holder's key -----------------------------------------------------------------

    def key(self) -> tuple[str, bytes]:
        """(key id, OPRF key): created on first use, kept sealed to the node's own key."""
        with self._key_lock:
            if self._key is not None:
                return self._key
            with self.core.db.write() as s:
                row = s.scalars(select(MatchKeyRow).where(MatchKeyRow.active.is_(True))).first()
                if row is None:
                    secret = oprf.generate_key()
                    row = MatchKeyRow(
                        key_id=os.urandom(16).hex(),
                        key_sealed=self.core.seal_to_self(secret),
                        created_at=now_ms(),
                        active=True,
                    )
                    s.add(row)
                    ledger.append(
                        s, LedgerEntry.of("match.key_created", now_ms(), key_id=row.key_id)
                    )
                key_id, sealed = row.key_id, row.key_sealed
            self._key = (key_id, self.core.open_from_self(sealed))
            return self._key

    # -- holding records ------------------------------------------------------------------

    def load(
        self, officer: Officer, requests: Iterator[mpb.LoadRecordsRequest]
    ) -> mpb.LoadRecordsResponse:
        """Add, update or remove records; all of one call is one new index version."""
        records: dict[str, VictimRecord] = {}
        removals: set[str] = set()
        for req in requests:
            for item in req.rows:
                record = parse_csv_row(_person_row(item.person) | {"ref": item.ref}, item.line)
                if record.ref in records:
                    raise InvalidFieldError(
                        f"Line {item.line}, column ref: {record.ref!r} appears twice in the load."
                    )
                records[record.ref] = record
            removals.update(req.remove)
            if len(records) + len(removals) > self.cfg.max_records_per_load:
                raise OversizedError(
                    f"One load takes at most {self.cfg.max_records_per_load} records."
                )
        _, key = self.key()
        # The OPRF work happens before the write lock: it is the slow part.
        prepared: dict[str, tuple[bytes, bytes]] = {}
        for ref, record in records.items():
            text = record_text(record)
            fingerprint = hashlib.sha256(text).digest()
            values = _pack(
                pad_values(truncate(oprf.evaluate(key, t.value)) for t in record_tokens(record))
            )
            prepared[ref] = (fingerprint, values)
        now = now_ms()
        added = updated = unchanged = removed = 0
        with self.core.db.write() as s:
            state = s.get(MatchStateRow, 1, with_for_update=True)
            if state is None:
                state = MatchStateRow(id=1, version=0)
                s.add(state)
            version = state.version + 1
            existing = {
                r.ref: r
                for ref_chunk in _chunks(list(prepared) + sorted(removals), 500)
                for r in s.scalars(
                    select(MatchRecordRow).where(MatchRecordRow.ref.in_(ref_chunk))
                ).all()
            }
            for ref, (fingerprint, values) in prepared.items():
                row = existing.get(ref)
                if row is not None and not row.removed and row.fingerprint == fingerprint:
                    unchanged += 1
                    continue
                sealed = self.core.seal_to_self(record_text(records[ref]))
                if row is None:
                    s.add(
                        MatchRecordRow(
                            ref=ref,
                            handle=os.urandom(16),
                            record_sealed=sealed,
                            fingerprint=fingerprint,
                            values=values,
                            version=version,
                            removed=False,
                            updated_at=now,
                        )
                    )
                    added += 1
                else:
                    # A re-added record keeps its handle: a peer that missed the tombstone
                    # then still replaces, not duplicates, what it holds for it.
                    row.record_sealed, row.fingerprint, row.values = sealed, fingerprint, values
                    row.version, row.removed, row.updated_at = version, False, now
                    updated += 1
            for ref in removals:
                row = existing.get(ref)
                if row is None or row.removed:
                    continue
                # The personal data goes; the tombstone tells peers to drop the handle.
                row.record_sealed, row.values, row.fingerprint = b"", b"", bytes(32)
                row.version, row.removed, row.updated_at = version, True, now
                removed += 1
            changed = added + updated + removed
            if changed:
                state.version = version
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
                    added=added,
                    updated=updated,
                    removed=removed,
                    version=state.version,
                ),
            )
            return mpb.LoadRecordsResponse(
                added=added,
                updated=updated,
                unchanged=unchanged,
                removed=removed,
                index_version=state.version,
                records=total or 0,
            )

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
        key_id, key = self.key()
        evaluated = [oprf.blind_evaluate(key, bytes(e)) for e in req.blinded_elements]
        metrics.MATCH_EVALUATIONS.labels(peer=peer).inc(count)
        return mpb.MatchEvaluateResponse(
            evaluated_elements=evaluated, key_id=key_id, index_version=version
        )

    def index(self, peer: str, req: mpb.MatchIndexRequest) -> Iterator[mpb.MatchIndexChunk]:
        """The published index as changes since the peer's version (all of it on a reset)."""
        key_id, _ = self.key()
        reset = req.key_id != key_id
        since = 0 if reset else req.since_version
        with self.core.db.read() as s:
            state = s.get(MatchStateRow, 1)
            version = state.version if state is not None else 0
        if since > version:
            reset, since = True, 0
        with self.core.db.write() as s:
            ledger.append(
                s,
                LedgerEntry.of(
                    "match.index_served", now_ms(), peer=peer, since=since, version=version
                ),
            )
        if since == version and not reset:
            # Nothing changed: answer without touching the records (a query syncs first).
            yield mpb.MatchIndexChunk(key_id=key_id, version=version)
            return
        sent = False
        last = (since, 0)
        while True:
            with self.core.db.read() as s:
                # Keyset pages along (version, id), which ix_match_records_version serves:
                # the cost is what changed since the peer's version, not the table.
                q = (
                    select(
                        MatchRecordRow.id,
                        MatchRecordRow.handle,
                        MatchRecordRow.removed,
                        MatchRecordRow.values,
                        MatchRecordRow.version,
                    )
                    .where(
                        tuple_(MatchRecordRow.version, MatchRecordRow.id) > tuple_(*last),
                        MatchRecordRow.version <= version,
                    )
                    .order_by(MatchRecordRow.version, MatchRecordRow.id)
                    .limit(_INDEX_CHUNK)
                )
                if reset:
                    q = q.where(MatchRecordRow.removed.is_(False))
                rows = s.execute(q).all()
            if not rows and sent:
                return
            last = (rows[-1].version, rows[-1].id) if rows else last
            yield mpb.MatchIndexChunk(
                key_id=key_id,
                version=version,
                reset=reset and not sent,
                entries=[
                    mpb.MatchIndexEntry(
                        handle=r.handle, removed=r.removed, values=r.values, version=r.version
                    )
                    for r in rows
                ],
            )
            sent = True
            if len(rows) < _INDEX_CHUNK:
                return

    # -- asking peers ---------------------------------------------------------------------

    def sync(self, peer: str, timeout: float) -> MatchPeerRow:
        """Bring our copy of `peer`'s published index up to date."""
        lock = self._sync_locks.setdefault(peer, threading.Lock())
        with lock:
            with self.core.db.read() as s:
                have = s.get(MatchPeerRow, peer)
                key_id, since = (have.key_id, have.version) if have else ("", 0)
            # A peer still connecting is waited for, within the timeout (PeerClient).
            stream = self.peers.get_match_index(
                peer, mpb.MatchIndexRequest(key_id=key_id, since_version=since), timeout
            )
            final: tuple[str, int] | None = None
            for chunk in stream:
                with self.core.db.write() as s:
                    if chunk.reset:
                        s.execute(delete(MatchReplicaRow).where(MatchReplicaRow.peer == peer))
                        # Until this reset completes the copy is nobody's: an interrupted
                        # one is redone from the start, never taken as up to date.
                        self._set_state(s, peer, "", 0)
                    handles = [bytes(e.handle) for e in chunk.entries]
                    for part in _chunks(handles, 500):
                        s.execute(
                            delete(MatchReplicaRow).where(
                                MatchReplicaRow.peer == peer, MatchReplicaRow.handle.in_(part)
                            )
                        )
                    rows = [
                        {"peer": peer, "handle": bytes(e.handle), "value": v}
                        for e in chunk.entries
                        if not e.removed
                        for v in _unpack(bytes(e.values))
                    ]
                    if rows:
                        s.execute(insert(MatchReplicaRow), rows)
                final = (chunk.key_id, chunk.version)
            if final is None:
                raise MlaxError(f"Agency {peer} sent no index.")
            # Only a complete stream moves the copy's version: a sync cut off half way is
            # redone from the old version next time (re-applying entries is harmless).
            with self.core.db.write() as s:
                state = self._set_state(s, peer, *final)
                s.flush()
                s.expunge(state)
            return state

    @staticmethod
    def _set_state(s: Session, peer: str, key_id: str, version: int) -> MatchPeerRow:
        state = s.get(MatchPeerRow, peer)
        if state is None:
            state = MatchPeerRow(peer=peer, key_id=key_id, version=version, synced_at=0)
            s.add(state)
        state.key_id, state.version, state.synced_at = key_id, version, now_ms()
        return state

    def query(self, officer: Officer, req: mpb.MatchQueryRequest) -> Iterator[mpb.MatchAnswer]:
        """Ask peers in parallel; yield each peer's answers as they arrive."""
        if not req.queries:
            raise InvalidFieldError("Field queries: at least one person to look for.")
        if len(req.queries) > self.cfg.max_queries_per_call:
            raise OversizedError(
                f"Field queries: at most {self.cfg.max_queries_per_call} people in one call."
            )
        people = [parse_query_row(_person_row(p), i + 1) for i, p in enumerate(req.queries)]
        directory = self.core.directory.current()
        others = [a.agency_id for a in directory.agencies if a.agency_id != self.core.agency]
        peers = list(dict.fromkeys(req.peers)) or others
        if not peers:
            raise InvalidFieldError("There is no other member of the federation to ask.")
        for p in peers:
            if p not in others:
                raise InvalidFieldError(
                    f"Field peers: {p} is not another member of the federation."
                )
        raw = [record_tokens(person) for person in people]
        # A person with no birth year, or a single name part, yields no token and can
        # match nothing: each peer's answer for them says so, and no peer's quota is
        # spent on padding for them. A single query and a batch say the same.
        asked = [i for i, t in enumerate(raw) if t]
        tokens = [pad_tokens(raw[i]) for i in asked]
        query_id = os.urandom(16)
        timeout = (req.timeout_ms / 1000) if req.timeout_ms else self.cfg.query_timeout_seconds
        with self.core.db.write() as s:
            ledger.append(
                s,
                LedgerEntry.of(
                    "match.query",
                    now_ms(),
                    query_id=query_id.hex(),
                    officer=officer.name,
                    queries=len(people),
                    unmatchable=len(people) - len(asked),
                    peers=",".join(peers),
                ),
            )
        results: queue.Queue[list[mpb.MatchAnswer]] = queue.Queue()
        pool = ThreadPoolExecutor(max_workers=min(16, len(peers)), thread_name_prefix="match")

        def ask(peer: str) -> None:
            # A fresh wire id per peer: holders cannot link one search by its id.
            answers = self._ask(peer, os.urandom(16), tokens, timeout) if tokens else []
            for a in answers:
                a.query = asked[a.query]
            answers += [
                mpb.MatchAnswer(
                    query=i,
                    peer=peer,
                    result="unmatchable",
                    detail="Too little to match: a birth year and two name parts are needed.",
                    query_id=query_id.hex(),
                )
                for i in range(len(people))
                if not raw[i]
            ]
            results.put(answers)

        for peer in peers:
            pool.submit(ask, peer)
        pool.shutdown(wait=False)
        for _ in peers:
            answers = results.get()
            with self.core.db.write() as s:
                for a in answers:
                    ledger.append(
                        s,
                        LedgerEntry.of(
                            "match.answer",
                            now_ms(),
                            query_id=query_id.hex(),
                            peer=a.peer,
                            query=a.query,
                            result=a.result,
                            band=a.band,
                        ),
                    )
            yield from answers

    def _ask(
        self, peer: str, query_id: bytes, tokens: list[list[Token]], timeout: float
    ) -> list[mpb.MatchAnswer]:
        def every(result: str, detail: str) -> list[mpb.MatchAnswer]:
            return [
                mpb.MatchAnswer(
                    query=i, peer=peer, result=result, detail=detail, query_id=query_id.hex()
                )
                for i in range(len(tokens))
            ]

        try:
            return self._ask_peer(peer, query_id, tokens, timeout)
        except grpc.RpcError as e:
            code = e.code()
            detail = e.details() or code.name
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return every("over-quota", detail)
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return every("unavailable", f"{peer} did not answer ({code.name}: {detail}).")
            return every("error", detail)
        except MlaxError as e:
            return every("error", e.message)
        except Exception as e:  # one peer's failure never sinks the others' answers
            log.exception("match_peer_failed", peer=peer)
            return every("error", f"Unexpected {type(e).__name__}.")

    def _ask_peer(
        self, peer: str, query_id: bytes, tokens: list[list[Token]], timeout: float
    ) -> list[mpb.MatchAnswer]:
        flat = [t for ts in tokens for t in ts]
        state = self.sync(peer, timeout)
        blinds = [oprf.blind(t.value) for t in flat]
        outputs: list[bytes] = []
        for start in range(0, len(flat), self.cfg.max_elements_per_call):
            part = blinds[start : start + self.cfg.max_elements_per_call]
            resp = self.peers.match_evaluate(
                peer,
                mpb.MatchEvaluateRequest(
                    query_id=query_id,
                    blinded_elements=[b for _, b in part],
                    planned_elements=len(flat) - start,
                ),
                timeout,
            )
            if len(resp.evaluated_elements) != len(part):
                raise MlaxError(f"Agency {peer} answered {len(resp.evaluated_elements)} elements.")
            if resp.key_id != state.key_id or resp.index_version > state.version:
                state = self.sync(peer, timeout)
            if resp.key_id != state.key_id:
                raise MlaxError(f"Agency {peer} changed its matching key during the query.")
            for (blind, _), t, ev in zip(
                part, flat[start : start + len(part)], resp.evaluated_elements, strict=True
            ):
                outputs.append(oprf.finalize(t.value, blind, bytes(ev)))
        value_of = [truncate(o) for o in outputs]
        found: dict[int, list[bytes]] = {}
        with self.core.db.read() as s:
            for part_values in _chunks(sorted(set(value_of)), _LOOKUP_CHUNK):
                for handle, value in s.execute(
                    select(MatchReplicaRow.handle, MatchReplicaRow.value).where(
                        MatchReplicaRow.peer == peer, MatchReplicaRow.value.in_(part_values)
                    )
                ).all():
                    found.setdefault(value, []).append(bytes(handle))
        answers = []
        pos = 0
        for i, ts in enumerate(tokens):
            kinds: dict[bytes, set[str]] = {}
            for t in ts:
                if t.kind != PAD_KIND:
                    for handle in found.get(value_of[pos], ()):
                        kinds.setdefault(handle, set()).add(t.kind)
                pos += 1
            best: _Hit | None = None
            for handle, matched in sorted(kinds.items()):
                b = band(matched, year_alone=self.cfg.year_alone_hits)
                if b is not None and (best is None or _RANK[b] > _RANK[best.band]):
                    best = _Hit(b, handle)
            if best is None:
                answers.append(
                    mpb.MatchAnswer(query=i, peer=peer, result="no-hit", query_id=query_id.hex())
                )
            else:
                answers.append(
                    mpb.MatchAnswer(
                        query=i,
                        peer=peer,
                        result="hit",
                        band=best.band.value,
                        reference=reference_of(peer, best.handle),
                        query_id=query_id.hex(),
                    )
                )
        return answers

    # -- the follow-up: disclosure by the holder's supervisor -----------------------------

    def disclose(self, officer: Officer, case_ref: str) -> str:
        """Send the identity behind a victim-identification case's reference (ledgered)."""
        return match_disclosure.disclose(self.core, self.cases, officer, case_ref)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


__all__ = ["MatchDesk", "QuotaExceededError", "VictimQuery", "parse_reference"]
