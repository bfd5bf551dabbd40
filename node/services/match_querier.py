"""Victim identification, the querier's side: keeping copies of the peers' published
indexes (`sync`, node/services/match_replica.py), asking the federation (`query`) and
looking the unblinded outputs up in the copies.

A query's tokens are blinded with fresh scalars per peer, each peer evaluates them, the
querier unblinds and looks the outputs up in its copy: a record sharing tokens with the
query gives a coarse band (strong, possible) and the handle becomes an opaque reference
for the follow-up case. Names never leave the querier; the holder sees blinded elements
only (docs/matching.md). `MatchDesk` (node/services/matching.py) combines this with the
holder's side.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass

import grpc
import structlog

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError, MlaxError, OversizedError
from exchange.ledger_entry import LedgerEntry
from exchange.matching import oprf
from exchange.matching.records import parse_query_row
from exchange.matching.score import Band, band
from exchange.matching.tokens import MAX_TOKENS, TOKEN_DOMAIN, Token, record_tokens
from node.config import MatchingSection
from node.peers.client import PeerClient
from node.services.match_disclosure import reference_of
from node.services.match_holder import DOMAIN_BEFORE_FIELD, _person_row
from node.services.match_pool import truncate
from node.services.match_replica import BUILDING, Copy, CopyPendingError, Entry, ReplicaStore
from node.services.messages import NodeCore, Officer
from node.storage import ledger

log = structlog.get_logger("mlax.matching")

# How long a sync's hold on a peer's copies lasts unless renewed (a crashed process's).
SYNC_LEASE_SECONDS = 120.0
_RANK = {Band.STRONG: 2, Band.POSSIBLE: 1}


PAD_KIND = "pad"


def pad_tokens(tokens: list[Token]) -> list[Token]:
    """A query's tokens plus random dummies, MAX_TOKENS in all: the holder sees the same
    number of blinded elements for every person, whatever fields the officer knew."""
    return tokens + [Token(PAD_KIND, os.urandom(32)) for _ in range(MAX_TOKENS - len(tokens))]


@dataclass(frozen=True)
class _Hit:
    band: Band
    handle: bytes


class MatchQuerier:
    """The querier's operations over the node's database and peers (`PeerClient`), mixed
    into `MatchDesk`; node/workers/matching_sync.py keeps the copies fresh."""

    core: NodeCore
    cfg: MatchingSection

    def __init__(self, core: NodeCore, cfg: MatchingSection, peers: PeerClient) -> None:
        self.core = core
        self.cfg = cfg
        self.peers = peers
        self._sync_locks: dict[str, threading.Lock] = {}
        # The querier's copies of the peers' indexes, and the threads that update them
        # apart from any query's deadline (`sync_soon`).
        self.replicas = ReplicaStore(core.db)
        self._sync_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="match-sync")
        self._sync_futures: dict[str, Future[Copy]] = {}
        self._sync_guard = threading.Lock()
        self._sync_stop = threading.Event()

    def sync(self, peer: str, timeout: float) -> Copy:
        """Bring our copy of `peer`'s published index up to date (node/services/
        match_replica.py); returns the complete copy queries read.

        A first copy, a reset or the holder's newer key generation is staged and replaces
        the complete copy only once its stream has ended; meanwhile the complete copy is
        still brought up to date. An interrupted one resumes right after the last record
        it took. One process at a time syncs a peer (a lease)."""
        lock = self._sync_locks.setdefault(peer, threading.Lock())
        with lock:
            if not self.replicas.lease(peer, SYNC_LEASE_SECONDS):
                done, making = self.replicas.copies(peer)
                if done is None:
                    raise CopyPendingError(_pending(peer, making))
                return done  # another process is bringing it up to date
            synced = False
            try:
                copy = self._sync_locked(peer, timeout)
                synced = True
                return copy
            finally:
                self.replicas.release(peer, synced)

    def _sync_locked(self, peer: str, timeout: float) -> Copy:
        done, making = self.replicas.copies(peer)
        if making is not None:
            # A copy is being made (a first copy, a reset, a newer key generation): the
            # complete one queries read is kept fresh meanwhile (during a rotation's
            # overlap the holder publishes new records in both generations), then the
            # one being made goes on from where it stopped.
            if done is None or done.key_id == making.key_id:
                return self._pull(peer, making, timeout)[0]
            done, _ = self._pull(peer, done, timeout, stage=False)
            return self._staged(peer, making, done, timeout)
        copy, newer = self._pull(peer, done, timeout)
        if newer and newer != copy.key_id:
            # The holder has made a newer key generation (a rotation's overlap): copy it
            # now, staged, while queries read this copy, which stays served until the
            # overlap ends; once complete it replaces this one.
            return self._staged(peer, None, copy, timeout)
        return copy

    def _staged(self, peer: str, making: Copy | None, done: Copy, timeout: float) -> Copy:
        """Go on with the copy being made (None: start it) while `done`, just brought up
        to date, serves queries: a stream of the new copy that breaks leaves `done` in
        use (the new copy resumes at the next round), so queries are not refused for it."""
        try:
            return self._pull(peer, making, timeout)[0]
        except (grpc.RpcError, MlaxError) as e:
            log.warning("match_copy_cut_off", peer=peer, error=type(e).__name__)
            return done

    def _pull(
        self, peer: str, ask: Copy | None, timeout: float, stage: bool = True
    ) -> tuple[Copy, str]:
        """One stream of `peer`'s index into the copy `ask` (None: a new one, staged).
        Returns the copy as the stream leaves it, and the holder's newer key generation
        if it named one. Not `stage`: a stream that would start a new copy is left at
        once and `ask` returned as it was."""
        key_id, since = (ask.key_id, ask.version) if ask else ("", 0)
        request = mpb.MatchIndexRequest(
            key_id=key_id, since_version=since, token_domain=TOKEN_DOMAIN
        )
        if ask is not None and ask.state == BUILDING:
            # Resume right after the last record the copy took (protocol-matching.md 4.3).
            at = self.replicas.position(ask.copy_no)
            if at is not None:
                request.after_version, request.after_handle = at
        # A peer still connecting is waited for, within the timeout (PeerClient).
        stream = self.peers.get_match_index(peer, request, timeout)
        target: Copy | None = None
        version = 0
        newer = ""
        renewed = time.monotonic()
        ended = False
        try:
            for chunk in stream:
                if self._sync_stop.is_set():
                    raise MlaxError("The node is stopping: the copy resumes at its next start.")
                domain = chunk.token_domain or DOMAIN_BEFORE_FIELD
                if domain != TOKEN_DOMAIN:
                    raise MlaxError(
                        f"{peer} publishes token domain {domain}; this node uses domain "
                        f"{TOKEN_DOMAIN}: its index is not copied."
                    )
                expected = 0
                if target is None:
                    newer = chunk.current_key_id
                    if chunk.reset or ask is None or chunk.key_id != ask.key_id:
                        if not stage and ask is not None:
                            return ask, newer
                        # Staged: queries keep reading the complete copy (if any) meanwhile.
                        target = self.replicas.stage(
                            peer, chunk.key_id, chunk.version, chunk.records
                        )
                    else:
                        target = ask
                        if ask.state == BUILDING and chunk.records not in (0, ask.expected):
                            expected = chunk.records  # a resumed copy's "of M records"
                version = chunk.version
                if not chunk.entries and not expected and target is ask:
                    continue  # nothing changed: no write (a query syncs first)
                entries = [
                    Entry(bytes(e.handle), e.removed, bytes(e.values), e.version)
                    for e in chunk.entries
                ]
                target = self.replicas.apply(target.copy_no, entries, chunk.version, expected)
                if time.monotonic() - renewed > SYNC_LEASE_SECONDS / 4:
                    self.replicas.lease(peer, SYNC_LEASE_SECONDS)
                    renewed = time.monotonic()
            ended = True
        finally:
            if not ended:
                _end(stream)
        if target is None:
            raise MlaxError(f"Agency {peer} sent no index.")
        if target is ask and ask is not None and ask.state != BUILDING and version == ask.version:
            return ask, newer
        self.replicas.lease(peer, SYNC_LEASE_SECONDS * 5)  # compacting a large copy takes long
        # Only a complete stream brings the copy to the holder's version (and a staged
        # copy into use); one cut off half way resumes after its last record.
        return self.replicas.finish(target.copy_no, version), newer

    def sync_soon(self, peer: str, timeout: float | None = None) -> Future[Copy]:
        """A sync of `peer` on the desk's own threads, under `sync_timeout_seconds` (not a
        query's deadline); one at a time per peer: a sync already running is returned."""
        with self._sync_guard:
            running = self._sync_futures.get(peer)
            if running is not None and not running.done():
                return running
            if self._sync_stop.is_set():
                stopped: Future[Copy] = Future()
                stopped.set_exception(MlaxError("The node is stopping."))
                return stopped
            wait = self.cfg.sync_timeout_seconds if timeout is None else timeout
            future = self._sync_pool.submit(self.sync, peer, wait)
            self._sync_futures[peer] = future
            return future

    def stop_syncs(self) -> None:
        """Stop the syncs at their next chunk (each resumes at the next start)."""
        self._sync_stop.set()
        self._sync_pool.shutdown(wait=False, cancel_futures=True)

    def _copy_for_query(self, peer: str, timeout: float) -> Copy:
        """The copy of `peer`'s index a query reads, brought up to date if that takes at
        most half the query's timeout; the sync goes on in the background otherwise."""
        future = self.sync_soon(peer)
        with contextlib.suppress(FutureTimeoutError):
            future.result(timeout=max(timeout / 2, 0.05))
        done, making = self.replicas.copies(peer)
        if done is not None:
            return done
        if future.done() and not future.cancelled():
            error = future.exception()
            if error is not None:
                raise error  # the peer is down, or refused: said as for any call
        raise CopyPendingError(_pending(peer, making))

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
        except CopyPendingError as e:
            return every("unavailable", e.message)
        except MlaxError as e:
            return every("error", e.message)
        except Exception as e:  # one peer's failure never sinks the others' answers
            log.exception("match_peer_failed", peer=peer)
            return every("error", f"Unexpected {type(e).__name__}.")

    def _ask_peer(
        self, peer: str, query_id: bytes, tokens: list[list[Token]], timeout: float
    ) -> list[mpb.MatchAnswer]:
        flat = [t for ts in tokens for t in ts]
        state = self._copy_for_query(peer, timeout)
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
                    key_id=state.key_id,
                    token_domain=TOKEN_DOMAIN,
                ),
                timeout,
            )
            if len(resp.evaluated_elements) != len(part):
                raise MlaxError(f"Agency {peer} answered {len(resp.evaluated_elements)} elements.")
            # A holder older than token domains sends none: its values are of domain 1.
            if (resp.token_domain or DOMAIN_BEFORE_FIELD) != TOKEN_DOMAIN:
                raise MlaxError(
                    f"{peer} publishes token domain {resp.token_domain or DOMAIN_BEFORE_FIELD}; "
                    f"this query uses domain {TOKEN_DOMAIN}: the two agencies run different "
                    "versions of the matching rules."
                )
            if resp.key_id != state.key_id or resp.index_version > state.version:
                state = self._copy_for_query(peer, timeout)
            if resp.key_id != state.key_id:
                raise MlaxError(f"Agency {peer} changed its matching key during the query.")
            for (blind, _), t, ev in zip(
                part, flat[start : start + len(part)], resp.evaluated_elements, strict=True
            ):
                outputs.append(oprf.finalize(t.value, blind, bytes(ev)))
        value_of = [truncate(o) for o in outputs]
        found = self.replicas.lookup(state.copy_no, value_of)
        answers = []
        pos = 0
        for i, ts in enumerate(tokens):
            kinds: dict[bytes, set[str]] = {}
            for t in ts:
                if t.kind != PAD_KIND:
                    for handle in found.get(value_of[pos], ()):
                        kinds.setdefault(handle, set()).add(t.kind)
                pos += 1
            # The answer names one record: the best band, and among records of that band
            # the one that shares the most evidence with the query (a namesake or a
            # relative shares less than the person), then the lowest handle. The count
            # only orders candidates here; it never leaves this loop.
            best: _Hit | None = None
            best_key = (0, 0)
            for handle, matched in sorted(kinds.items()):
                b = band(matched, year_alone=self.cfg.year_alone_hits)
                if b is None:
                    continue
                key = (_RANK[b], len(matched))
                if best is None or key > best_key:
                    best, best_key = _Hit(b, handle), key
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


def _pending(peer: str, making: Copy | None) -> str:
    got = making.progress() if making is not None else "0 records so far"
    return f"The copy of {peer}'s index is still being made: {got}."


def _end(stream: Iterator[mpb.MatchIndexChunk]) -> None:
    """Cancel a stream left before its end (a gRPC call, or a generator in process)."""
    stop = getattr(stream, "cancel", None) or getattr(stream, "close", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()
