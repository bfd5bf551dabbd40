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
from collections import defaultdict
from dataclasses import dataclass

import grpc
import structlog
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from exchange._proto.mlax.v1 import envelope_pb2 as epb
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
from node.storage.models import MessageRow
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


@dataclass(frozen=True)
class _Outcome:
    claim: _Claim
    receipt: bytes | None
    code: grpc.StatusCode | None
    detail: str
    sent_at: float


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
        self._in_flight: dict[str, int] = defaultdict(int)
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; wait for envelopes on the wire, then record their outcomes."""
        super().stop(timeout)

    # -- the loop -------------------------------------------------------------------------

    def tick(self) -> None:
        self._record(self._drain())
        self._dispatch()

    def finish(self) -> None:
        deadline = now_ms() + int(self.cfg.rpc_timeout_seconds * 1000)
        while sum(self._in_flight.values()) and now_ms() < deadline:
            self._record(self._drain(block=True))

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

    def _due_peers(self) -> set[str]:
        now = now_ms()
        with self.core.db.read() as s:
            # No GROUP BY/DISTINCT: either makes SQLite walk the (direction, peer, id)
            # index over every message ever sent; this filter uses ix_messages_due.
            return set(
                s.scalars(
                    select(MessageRow.peer).where(
                        MessageRow.direction == OUT,
                        MessageRow.state.in_((QUEUED, RETRYING)),
                        MessageRow.next_attempt_at <= now,
                        MessageRow.lease_until <= now,
                    )
                ).all()
            )

    def _claim(self, peer: str, limit: int) -> list[_Claim]:
        now = now_ms()
        lease = now + int(self.cfg.lease_seconds * 1000)
        with self.core.db.write() as s:
            q = (
                select(MessageRow)
                .where(
                    MessageRow.direction == OUT,
                    MessageRow.peer == peer,
                    MessageRow.state.in_((QUEUED, RETRYING)),
                    MessageRow.next_attempt_at <= now,
                    MessageRow.lease_until <= now,
                )
                .order_by(MessageRow.id)
                .limit(limit)
            )
            if not self.core.db.is_sqlite:
                # Two replicas never claim the same row; neither waits for the other.
                q = q.with_for_update(skip_locked=True)
            rows = s.scalars(q).all()
            for row in rows:
                row.lease_until = lease
                row.attempts += 1
            return [
                _Claim(
                    r.id,
                    r.peer,
                    r.message_id,
                    r.content.envelope,
                    r.envelope_digest,
                    r.created_at,
                    r.attempts,
                )
                for r in rows
            ]

    def _dispatch(self) -> None:
        for peer in self._due_peers():
            room = self.cfg.max_in_flight_per_peer - self._in_flight[peer]
            if room <= 0:
                continue
            for claim in self._claim(peer, room):
                try:
                    self._send(claim)
                except MlaxError as e:  # the peer left the directory: try again later
                    self._done.put(
                        _Outcome(claim, None, grpc.StatusCode.UNAVAILABLE, e.message, 0.0)
                    )

    def _send(self, claim: _Claim) -> None:
        started = now_ms() / 1000

        def done(answer: DeliverAnswer) -> None:
            receipt = answer.receipt.SerializeToString() if answer.receipt is not None else None
            self._done.put(_Outcome(claim, receipt, answer.code, answer.detail, started))
            self._ring()

        self.peers.deliver(
            claim.peer,
            epb.Envelope.FromString(claim.envelope),
            self.cfg.rpc_timeout_seconds,
            done,
        )
        # Only this thread counts (here) and records (in `tick`): an answer that came
        # back already is recorded after this.
        self._in_flight[claim.peer] += 1

    # -- outcomes -------------------------------------------------------------------------

    def _record(self, outcomes: list[_Outcome]) -> None:
        if not outcomes:
            return
        directory = self.core.directory.current()
        now = now_ms()
        with self.core.db.write() as s:
            for o in outcomes:
                self._in_flight[o.claim.peer] = max(0, self._in_flight[o.claim.peer] - 1)
                # Each outcome in its own savepoint: one that cannot be recorded is retried
                # after its lease, and never takes the other outcomes of the batch with it.
                try:
                    with s.begin_nested():
                        self._record_one(s, o, directory, now)
                except Exception:
                    log.exception(
                        "delivery_outcome_failed", message_id=format_uuid(o.claim.message_id)
                    )

    def _record_one(self, s: Session, o: _Outcome, directory: Directory, now: int) -> None:
        c = o.claim
        row = s.get(MessageRow, c.row_id)
        if row is None or row.state in (DELIVERED, FAILED):
            return
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
                self._retry(s, row, f"invalid receipt: {e.message}", now, None)
                return
            row.state, row.receipt, row.delivered_at = DELIVERED, o.receipt, now
            row.last_error, row.lease_until = "", 0
            ledger.append(
                s,
                LedgerEntry.of(
                    "receipt.stored",
                    now,
                    message_id=mid,
                    receiver=c.peer,
                    sender=self.core.agency,
                    receiver_ledger_index=body.ledger_index,
                    envelope_digest=c.envelope_digest.hex(),
                ),
            )
            for hook in self.core.outcome_hooks:
                hook(s, row, True)
            metrics.SENT.labels(peer=c.peer).inc()
            metrics.DELIVERY_LATENCY.observe(max(0.0, now / 1000 - c.created_at / 1000))
            log.info("delivered", message_id=mid, peer=c.peer, attempts=c.attempts)
        elif o.code in _PERMANENT:
            row.state, row.lease_until = FAILED, 0
            row.last_error = f"refused by {c.peer}: {o.code.name}: {o.detail}"[:500]
            ledger.append(
                s,
                LedgerEntry.of(
                    "delivery.failed",
                    now,
                    message_id=mid,
                    peer=c.peer,
                    reason=o.code.name,
                ),
            )
            for hook in self.core.outcome_hooks:
                hook(s, row, False)
            metrics.DELIVERY_FAILURES.labels(peer=c.peer, reason=o.code.name).inc()
            log.warning("delivery_refused", message_id=mid, peer=c.peer, code=o.code.name)
        else:
            code = o.code.name if o.code else "UNKNOWN"
            self._retry(s, row, _retry_reason(o.code, o.detail), now, o.code)
            metrics.DELIVERY_FAILURES.labels(peer=c.peer, reason=code).inc()

    def _retry(
        self,
        session: Session,
        row: MessageRow,
        reason: str,
        now: int,
        code: grpc.StatusCode | None,
    ) -> None:
        mid = format_uuid(row.message_id)
        row.last_error = reason[:500]
        row.lease_until = 0
        out_of_time = (
            now - row.created_at > self.cfg.give_up_after_seconds * 1000 or now >= row.expires_at
        )
        if out_of_time and row.message_type in self.core.settle_types and code in _UNSETTLED:
            # Giving up now could leave the peer holding what we think failed: keep asking
            # until it answers with its receipt or its refusal.
            out_of_time = False
        if out_of_time:
            row.state = FAILED
            row.last_error = f"given up after {row.attempts} attempts: {reason}"[:500]
            ledger.append(
                session,
                LedgerEntry.of(
                    "delivery.given_up", now, message_id=mid, peer=row.peer, attempts=row.attempts
                ),
            )
            for hook in self.core.outcome_hooks:
                hook(session, row, False)
            metrics.DELIVERY_GIVEN_UP.labels(peer=row.peer).inc()
            log.warning("delivery_given_up", message_id=mid, peer=row.peer, attempts=row.attempts)
            return
        row.state = RETRYING
        row.next_attempt_at = now + backoff_ms(row.attempts, self.cfg, self._rng)
        log.info(
            "delivery_retry", message_id=mid, peer=row.peer, attempts=row.attempts, reason=reason
        )


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
