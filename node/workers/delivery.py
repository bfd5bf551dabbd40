"""The delivery worker: sends the outbox to peers, with retries, backoff and jitter.

Each peer is its own lane with at most `max_in_flight_per_peer` envelopes on the wire,
so a dead peer delays only its own messages. A message is claimed with a lease before
it is sent; if this process dies the lease runs out and it is sent again, and the
receiver answers a re-delivery with its original receipt, so nothing is lost and
nothing is done twice.
"""

from __future__ import annotations

import queue
import random
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

import grpc
import structlog
from sqlalchemy import Integer, Table, Update, and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from exchange.directory import Directory
from exchange.encoding import format_uuid, now_ms
from exchange.errors import MlaxError
from exchange.ledger_entry import LedgerEntry
from exchange.receipt import Receipt, verify_receipt
from node import metrics
from node.config import DeliverySection
from node.peers.client import DeliverAnswer, PeerClient
from node.services.messages import DELIVERED, FAILED, HELD, OUT, QUEUED, RETRYING, NodeCore
from node.storage import ledger
from node.storage.models import MessageContentRow, MessageRow
from node.workers.periodic import Periodic
from node.workers.wakeup import Wakeup

log = structlog.get_logger("mlax.delivery")

# Codes a peer answers when it refuses the envelope itself: trying again cannot help.
_PERMANENT = {
    grpc.StatusCode.INVALID_ARGUMENT,
    # A case transition that conflicts with what the peer already recorded: the officer
    # must look at the case again, a retry would conflict the same way.
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}
# Codes that say nothing of whether the peer stored the envelope: the transport or the
# peer's own trouble. A message whose fate must be settled is retried past its give-up
# time on these; any other answer after expiry is the peer's word that it was not stored
# (a stored envelope is answered with its receipt before any other check).
_UNSETTLED = {
    None,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}


@dataclass(frozen=True)
class _Claim:
    row_id: int
    peer: str
    message_id: bytes
    envelope: bytes
    envelope_digest: bytes
    created_at: int
    attempts: int
    message_type: int = 0
    expires_at: int = 0


@dataclass(frozen=True)
class _Outcome:
    claim: _Claim
    receipt: bytes | None
    code: grpc.StatusCode | None
    detail: str
    sent_at: float


# DeliverBatch calls one worker keeps on the wire to one peer. Two keep the link busy
# while an answer travels back; envelopes due meanwhile wait for the next call.
_CALLS_PER_PEER = 2
# The states a claim may be settled from: a row another worker (or replica) settled first
# is left as it is, so an outcome is recorded, ledgered and hooked exactly once.
_OPEN = (QUEUED, RETRYING)
_M = cast(Table, MessageRow.__table__)
_C = cast(Table, MessageContentRow.__table__)
# Prebuilt statements (SQLAlchemy Core): the worker runs them for every message, and a
# statement built per call cost several times its execution.
_DUE = and_(
    _M.c.direction == OUT,
    _M.c.state.in_(_OPEN),
    _M.c.next_attempt_at <= bindparam("b_now"),
    _M.c.lease_until <= bindparam("b_now"),
)
# No GROUP BY/DISTINCT: either makes SQLite walk the (direction, peer, id) index over
# every message ever sent; this filter uses ix_messages_due.
_DUE_PEERS = select(_M.c.peer).where(_DUE)
_CLAIMABLE = (
    select(
        _M.c.id,
        _M.c.message_id,
        _C.c.envelope,
        _M.c.envelope_digest,
        _M.c.created_at,
        _M.c.attempts,
        _M.c.message_type,
        _M.c.expires_at,
    )
    .join(_C, _C.c.message_pk == _M.c.id)
    .where(_DUE, _M.c.peer == bindparam("b_peer"))
    .order_by(_M.c.id)
    .limit(bindparam("b_room", type_=Integer))
)
# Two replicas never claim the same row; neither waits for the other.
_CLAIMABLE_LOCKED = _CLAIMABLE.with_for_update(of=_M, skip_locked=True)
# The lease and the attempt count live in the small messages row: a claim does not
# rewrite the sealed bytes (message_contents).
_LEASE = (
    update(_M)
    .where(_M.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(lease_until=bindparam("b_lease"), attempts=_M.c.attempts + 1)
)
_UNSETTLED_ROW = and_(_M.c.id == bindparam("b_id"), _M.c.state.in_(_OPEN))
_SETTLE_DELIVERED = (
    update(_M)
    .where(_UNSETTLED_ROW)
    .values(
        state=DELIVERED,
        receipt=bindparam("b_receipt"),
        delivered_at=bindparam("b_now"),
        last_error="",
        lease_until=0,
    )
)
_SETTLE_FAILED = (
    update(_M)
    .where(_UNSETTLED_ROW)
    .values(state=FAILED, lease_until=0, last_error=bindparam("b_error"))
)
_SETTLE_RETRY = (
    update(_M)
    .where(_UNSETTLED_ROW)
    .values(
        state=RETRYING,
        lease_until=0,
        last_error=bindparam("b_error"),
        next_attempt_at=bindparam("b_next"),
    )
)


def _retry_reason(code: grpc.StatusCode | None, detail: str) -> str:
    """A short reason an officer can read; gRPC's connection details run to a paragraph."""
    if code == grpc.StatusCode.UNAVAILABLE:
        return "peer unreachable (UNAVAILABLE)"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "peer did not answer in time (DEADLINE_EXCEEDED)"
    name = code.name if code else "UNKNOWN"
    return f"{name}: {detail.split(';')[0]}"[:200]


def backoff_ms(attempts: int, cfg: DeliverySection, rng: random.Random) -> int:
    """Exponential backoff, capped, with "equal jitter": a delay drawn in [base/2, base]."""
    base = min(cfg.max_backoff_seconds, cfg.initial_backoff_seconds * 2 ** max(attempts - 1, 0))
    return int(1000 * base * (0.5 + 0.5 * rng.random()))


class DeliveryWorker(Periodic):
    """One thread that claims due messages per peer and records outcomes in batches.

    It runs a round every `poll_interval_seconds`, and at once when `wakeup` rings:
    `run()` gives the same `Wakeup` to the core, which rings it on every submission,
    and the worker rings it itself when an answer comes back. A failing round backs
    off (`Periodic`); submissions and answers do not cut the backoff short. `stop()`
    stops claiming, waits for envelopes on the wire, then records their outcomes.
    """

    def __init__(
        self,
        core: NodeCore,
        peers: PeerClient,
        cfg: DeliverySection,
        wakeup: Wakeup | None = None,
    ) -> None:
        bell = wakeup or Wakeup()
        super().__init__(
            "mlax-delivery",
            cfg.poll_interval_seconds,
            "delivery_tick_failed",
            run_first=True,
            wakeup=bell,
        )
        self._ring = bell.notify
        self.core = core
        self.peers = peers
        self.cfg = cfg
        self._done: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._fresh: queue.SimpleQueue[_Claim] = queue.SimpleQueue()
        # DeliverBatch calls on the wire per peer, and the claims waiting for one to end:
        # with a call out, what comes next waits and goes in the next call, so batches
        # grow with the load and a lone message is never held back (this thread only).
        self._calls: dict[str, int] = defaultdict(int)
        self._calls_done: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._waiting: dict[str, list[_Claim]] = defaultdict(list)
        # Envelopes on the wire per peer; submissions reserve places from their threads.
        self._in_flight: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._closing = False
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; wait for envelopes on the wire, then record their outcomes."""
        self._closing = True
        super().stop(timeout)

    # -- the fast lane: a submission handed over without a claim ---------------------------

    def reserve(self, peer: str, now: int) -> int:
        """A place on the wire to `peer` for a message about to be stored: the lease to
        store it with, already claimed for this worker, or 0 if the peer's lane is full
        (the message is then claimed from the outbox as usual).

        A reserved message is sent as soon as `hand_over` gives it to the worker, with no
        claim transaction. If this process dies first, the lease runs out and any worker
        claims it, as after a crash mid-send.
        """
        with self._lock:
            if self._closing or self._in_flight[peer] >= self.cfg.max_in_flight_per_peer:
                return 0
            self._in_flight[peer] += 1
        return now + int(self.cfg.lease_seconds * 1000)

    def release(self, peer: str) -> None:
        """Give back a place `reserve` took for a message that was not stored."""
        with self._lock:
            self._in_flight[peer] = max(0, self._in_flight[peer] - 1)

    def hand_over(self, row_id: int, row: MessageRow) -> None:
        """Send a stored message that `reserve` leased (it is committed, with its lease)."""
        self._fresh.put(
            _Claim(
                row_id,
                row.peer,
                row.message_id,
                row.content.envelope,
                row.envelope_digest,
                row.created_at,
                row.attempts,
                row.message_type,
                row.expires_at,
            )
        )
        self._ring()

    # -- the loop -------------------------------------------------------------------------

    def tick(self) -> None:
        self._calls_ended()
        # Submissions handed over go out first, with no transaction of their own.
        self._send_all(self._drain_fresh())
        # One transaction per wake: the answers that came back are recorded and the next
        # envelopes claimed together, one commit (one fsync) for both.
        outcomes = self._drain()
        directory = self.core.directory.current()
        now = now_ms()
        with self.core.db.write() as s:
            self._record_in(s, outcomes, directory, now)
            claims = self._claim_due(s, now)
        self._send_all(claims)

    def finish(self) -> None:
        deadline = now_ms() + int(self.cfg.rpc_timeout_seconds * 1000)
        # Handed over or claimed before the stop: send them all now, then settle them.
        self._send_all(self._drain_fresh(), hold=False)
        while sum(self._in_flight.values()) and now_ms() < deadline:
            self._record(self._drain(block=True))

    def _calls_ended(self) -> None:
        while True:
            try:
                peer = self._calls_done.get_nowait()
            except queue.Empty:
                return
            self._calls[peer] = max(0, self._calls[peer] - 1)

    def _drain_fresh(self) -> list[_Claim]:
        out: list[_Claim] = []
        while True:
            try:
                out.append(self._fresh.get_nowait())
            except queue.Empty:
                return out

    def _drain(self, block: bool = False) -> list[_Outcome]:
        out: list[_Outcome] = []
        if block:
            try:
                out.append(self._done.get(timeout=0.2))
            except queue.Empty:
                return out
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    # -- claims ---------------------------------------------------------------------------

    def _claim_due(self, s: Session, now: int) -> list[_Claim]:
        conn = s.connection()
        peers = set(conn.execute(_DUE_PEERS, {"b_now": now}).scalars())
        claims: list[_Claim] = []
        for peer in sorted(peers):
            with self._lock:
                room = self.cfg.max_in_flight_per_peer - self._in_flight[peer]
            if room > 0:
                claims.extend(self._claim_in(s, peer, room, now))
        return claims

    def _claim(self, peer: str, limit: int) -> list[_Claim]:
        """Claim up to `limit` due envelopes to `peer` in a transaction of their own."""
        now = now_ms()
        with self.core.db.write() as s:
            return self._claim_in(s, peer, limit, now)

    def _claim_in(self, s: Session, peer: str, limit: int, now: int) -> list[_Claim]:
        conn = s.connection()
        q = _CLAIMABLE if self.core.db.is_sqlite else _CLAIMABLE_LOCKED
        rows = conn.execute(q, {"b_now": now, "b_peer": peer, "b_room": limit}).all()
        if not rows:
            return []
        with self._lock:  # counted from the claim: a claim waiting for a call holds a place
            self._in_flight[peer] += len(rows)
        lease = now + int(self.cfg.lease_seconds * 1000)
        conn.execute(_LEASE, {"b_ids": [r.id for r in rows], "b_lease": lease})
        return [
            _Claim(
                r.id,
                peer,
                r.message_id,
                r.envelope,
                r.envelope_digest,
                r.created_at,
                r.attempts + 1,
                r.message_type,
                r.expires_at,
            )
            for r in rows
        ]

    # -- sending --------------------------------------------------------------------------

    def _send_all(self, claims: list[_Claim], hold: bool = True) -> None:
        for claim in claims:
            self._waiting[claim.peer].append(claim)
        for peer, waiting in self._waiting.items():
            while waiting and (not hold or self._calls[peer] < _CALLS_PER_PEER):
                self._send(peer, self._next_batch(waiting))

    def _next_batch(self, waiting: list[_Claim]) -> list[_Claim]:
        """Take the next call's envelopes off `waiting`: at most `max_envelopes_per_batch`,
        within the size one call may carry (the peer's limit is the same message size
        limit as ours); an envelope that fills a call alone goes alone."""
        cap = self.core.limits.max_envelope_bytes
        size = count = 0
        for claim in waiting:
            cost = len(claim.envelope) + 16
            if count and (size + cost > cap or count >= self.cfg.max_envelopes_per_batch):
                break
            size += cost
            count += 1
        batch = waiting[:count]
        del waiting[:count]
        return batch

    def _send(self, peer: str, batch: list[_Claim]) -> None:
        started = now_ms() / 1000

        def done(answers: list[DeliverAnswer]) -> None:
            for claim, answer in zip(batch, answers, strict=True):
                receipt = answer.receipt.SerializeToString() if answer.receipt is not None else None
                self._done.put(_Outcome(claim, receipt, answer.code, answer.detail, started))
            self._calls_done.put(peer)
            self._ring()

        self._calls[peer] += 1
        try:
            self.peers.deliver_batch(
                peer, [c.envelope for c in batch], self.cfg.rpc_timeout_seconds, done
            )
        except Exception as e:  # not sent (the peer left the directory...): try again later
            reason = e.message if isinstance(e, MlaxError) else f"not sent: {type(e).__name__}"
            for claim in batch:
                self._done.put(_Outcome(claim, None, grpc.StatusCode.UNAVAILABLE, reason, 0.0))
            self._calls_done.put(peer)
            self._ring()

    # -- outcomes -------------------------------------------------------------------------

    def _record(self, outcomes: list[_Outcome]) -> None:
        """Record `outcomes` in a transaction of their own."""
        if not outcomes:
            return
        directory = self.core.directory.current()
        now = now_ms()
        with self.core.db.write() as s:
            self._record_in(s, outcomes, directory, now)

    def _record_in(
        self, s: Session, outcomes: list[_Outcome], directory: Directory, now: int
    ) -> None:
        entries: list[LedgerEntry] = []
        for o in outcomes:
            self.release(o.claim.peer)
            # An outcome with hooks (case steps, evidence) runs in its own savepoint: one
            # that cannot be recorded is retried after its lease, and never takes the
            # other outcomes of the batch with it. Without hooks an outcome is one UPDATE.
            try:
                if self.core.outcome_hooks_for(o.claim.message_type):
                    with s.begin_nested():
                        entry = self._record_one(s, o, directory, now)
                else:
                    entry = self._record_one(s, o, directory, now)
            except Exception:
                log.exception("delivery_outcome_failed", message_id=format_uuid(o.claim.message_id))
                continue
            if entry is not None:
                entries.append(entry)
        if entries:
            ledger.append_many(s, entries)

    def _settle(self, s: Session, claim: _Claim, statement: Update, **values: Any) -> bool:
        """Move the claim's row to its outcome, unless it was settled already."""
        done = s.connection().execute(statement, {"b_id": claim.row_id, **values})
        return bool(done.rowcount)

    def _hooks(self, s: Session, claim: _Claim, delivered: bool) -> None:
        hooks = self.core.outcome_hooks_for(claim.message_type)
        if not hooks:
            return
        row = s.get(MessageRow, claim.row_id)
        assert row is not None
        for hook in hooks:
            hook(s, row, delivered)

    def _record_one(
        self, s: Session, o: _Outcome, directory: Directory, now: int
    ) -> LedgerEntry | None:
        c = o.claim
        mid = format_uuid(c.message_id)
        if o.receipt is not None:
            try:
                receipt = Receipt.from_bytes(o.receipt)
                body = verify_receipt(
                    receipt,
                    directory,
                    message_id=c.message_id,
                    envelope_digest=c.envelope_digest,
                    receiver=c.peer,
                    sender=self.core.agency,
                )
            except MlaxError as e:
                return self._retry(s, c, f"invalid receipt: {e.message}", now, None)
            # Built before the row moves: nothing after the move can fail but the hooks,
            # which run in the outcome's savepoint.
            entry = LedgerEntry.of(
                "receipt.stored",
                now,
                message_id=mid,
                receiver=c.peer,
                sender=self.core.agency,
                receiver_ledger_index=body.ledger_index,
                envelope_digest=c.envelope_digest.hex(),
            )
            if not self._settle(s, c, _SETTLE_DELIVERED, b_receipt=o.receipt, b_now=now):
                return None
            self._hooks(s, c, True)
            metrics.SENT.labels(peer=c.peer).inc()
            metrics.DELIVERY_LATENCY.observe(max(0.0, now / 1000 - c.created_at / 1000))
            log.info("delivered", message_id=mid, peer=c.peer, attempts=c.attempts)
            return entry
        if o.code in _PERMANENT:
            error = f"refused by {c.peer}: {o.code.name}: {o.detail}"[:500]
            entry = LedgerEntry.of(
                "delivery.failed", now, message_id=mid, peer=c.peer, reason=o.code.name
            )
            if not self._settle(s, c, _SETTLE_FAILED, b_error=error):
                return None
            self._hooks(s, c, False)
            metrics.DELIVERY_FAILURES.labels(peer=c.peer, reason=o.code.name).inc()
            log.warning("delivery_refused", message_id=mid, peer=c.peer, code=o.code.name)
            return entry
        code = o.code.name if o.code else "UNKNOWN"
        metrics.DELIVERY_FAILURES.labels(peer=c.peer, reason=code).inc()
        return self._retry(s, c, _retry_reason(o.code, o.detail), now, o.code)

    def _retry(
        self,
        s: Session,
        c: _Claim,
        reason: str,
        now: int,
        code: grpc.StatusCode | None,
    ) -> LedgerEntry | None:
        mid = format_uuid(c.message_id)
        out_of_time = (
            now - c.created_at > self.cfg.give_up_after_seconds * 1000 or now >= c.expires_at
        )
        if out_of_time and c.message_type in self.core.settle_types and code in _UNSETTLED:
            # Giving up now could leave the peer holding what we think failed: keep asking
            # until it answers with its receipt or its refusal.
            out_of_time = False
        if out_of_time:
            error = f"given up after {c.attempts} attempts: {reason}"[:500]
            entry = LedgerEntry.of(
                "delivery.given_up", now, message_id=mid, peer=c.peer, attempts=c.attempts
            )
            if not self._settle(s, c, _SETTLE_FAILED, b_error=error):
                return None
            self._hooks(s, c, False)
            metrics.DELIVERY_GIVEN_UP.labels(peer=c.peer).inc()
            log.warning("delivery_given_up", message_id=mid, peer=c.peer, attempts=c.attempts)
            return entry
        self._settle(
            s,
            c,
            _SETTLE_RETRY,
            b_error=reason[:500],
            b_next=now + backoff_ms(c.attempts, self.cfg, self._rng),
        )
        log.info("delivery_retry", message_id=mid, peer=c.peer, attempts=c.attempts, reason=reason)
        return None


def outbox_depth(core: NodeCore) -> dict[str, int]:
    """Messages waiting per peer, for metrics and operators."""
    with core.db.read() as s:
        rows = s.execute(
            select(MessageRow.peer, func.count())
            .where(
                and_(MessageRow.direction == OUT, MessageRow.state.in_((QUEUED, RETRYING, HELD)))
            )
            .group_by(MessageRow.peer)
        ).all()
    return {peer: int(n) for peer, n in rows}
