"""The evidence pusher: streams an attachment's ciphertext to the case's other party once
the peer has receipted its EVIDENCE envelope, resuming from the chunk the peer last
confirmed (node/services/evidence.py keeps the upload and download side, evidence_inbound.py
the receiving one).

An upload whose SHA-256 was declared early is announced while it still streams in; its
push then follows the upload, sending each chunk once it is durable here and the last
one only after the node checked the whole file (docs/adr/0012-evidence-pipeline.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import structlog
from sqlalchemy import select

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange.encoding import now_ms
from exchange.errors import MlaxError
from exchange.ledger_entry import LedgerEntry
from node import metrics
from node.peers.client import PeerClient
from node.services.evidence import AttachmentDesk
from node.services.evidence_files import (
    FOLLOW_POLL_MAX_SECONDS,
    FOLLOW_POLL_SECONDS,
    FOLLOW_STALL_SECONDS,
    SENDING,
    SENT,
    UPLOADING,
)
from node.services.messages import DELIVERED, OUT
from node.storage import ledger
from node.storage.models import AttachmentRow, MessageRow
from node.workers.periodic import Periodic
from node.workers.wakeup import Wakeup

log = structlog.get_logger("mlax.attachments")


class AttachmentPusher(Periodic):
    """Background thread: pushes delivered evidence's chunks to peers, with backoff.

    It looks every `interval` seconds (`[delivery] poll_interval_seconds`), and at once
    when `wakeup` rings (`run()` gives the same `Wakeup` to the attachment desk, which
    rings it when an evidence envelope is receipted or an upload declares its digest).
    `stop()` waits up to 10 s for a push in progress.
    """

    def __init__(
        self,
        desk: AttachmentDesk,
        peers: PeerClient,
        timeout: float,
        wakeup: Wakeup | None = None,
        interval: float = 0.5,
    ) -> None:
        super().__init__(
            "attachment-pusher",
            interval,
            "attachment_tick_failed",
            run_first=True,
            wakeup=wakeup or Wakeup(),
        )
        self.desk = desk
        self.peers = peers
        self.timeout = timeout

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)

    def tick(self) -> None:
        for row_id in self.due(now_ms()):
            if self.stopping:
                break
            self.push(row_id)

    def due(self, now: int, limit: int = 4) -> list[int]:
        """Claim outbound attachments whose envelope is delivered and whose push is due."""
        with self.desk.core.db.write() as s:
            rows = s.scalars(
                select(AttachmentRow)
                .join(
                    MessageRow,
                    (MessageRow.message_id == AttachmentRow.message_id)
                    & (MessageRow.direction == OUT),
                )
                .where(
                    AttachmentRow.direction == OUT,
                    AttachmentRow.state.in_((UPLOADING, SENDING)),
                    AttachmentRow.next_attempt_at <= now,
                    AttachmentRow.lease_until <= now,
                    MessageRow.state == DELIVERED,
                )
                .order_by(AttachmentRow.id)
                .limit(limit)
            ).all()
            for row in rows:
                row.lease_until = now + 120_000
            return [r.id for r in rows]

    def push(self, row_id: int) -> bool:
        """Send one attachment's remaining chunks; True once the peer holds all of it."""
        row, key = self.desk.outbound(row_id)
        timeout = self.timeout
        try:
            status = self.peers.attachment_status(
                row.peer, apb.AttachmentStatusRequest(attachment_id=row.attachment_id), timeout
            )
            before = status.confirmed_chunks
            if not status.complete:
                start = status.confirmed_chunks

                def chunks() -> Iterator[apb.AttachmentChunk]:
                    # Follows an upload still in progress: sends what is sendable, then
                    # waits for more; ends when the file is sent, or after a stall.
                    i, idle_since, delay = start, time.monotonic(), FOLLOW_POLL_SECONDS
                    while i < key.chunks and not self.stopping:
                        allowed = self.desk.sendable(row_id)
                        if allowed is None:
                            return
                        if i >= allowed:
                            if time.monotonic() - idle_since > FOLLOW_STALL_SECONDS / 3:
                                return
                            if not self.desk.wait_landed(delay):
                                delay = min(2 * delay, FOLLOW_POLL_MAX_SECONDS)
                            continue
                        for j in range(i, allowed):
                            data = self.desk.sealed_chunk(row, key, j)
                            yield apb.AttachmentChunk(
                                attachment_id=row.attachment_id, index=j, ciphertext=data
                            )
                        i, idle_since, delay = allowed, time.monotonic(), FOLLOW_POLL_SECONDS

                # The deadline grows with what is left: about 1 s per 8 MiB on top, or
                # 1 s per MiB while the upload is still arriving (a stall ends it sooner).
                left = key.cipher_size - key.cipher_offset(start) if start < key.chunks else 0
                rate = (1 << 20) if row.state == UPLOADING else (8 << 20)
                status = self.peers.push_attachment(row.peer, chunks(), timeout + left / rate)
        except (grpc.RpcError, MlaxError) as e:
            detail = e.details() if isinstance(e, grpc.RpcError) else e.message
            self._push_failed(row_id, str(detail or "unreachable"))
            return False
        if not status.complete:
            sendable = self.desk.sendable(row_id)
            if sendable is not None and (
                status.confirmed_chunks > before or status.confirmed_chunks >= sendable
            ):
                # Caught up with an upload still in progress (or stopping): go on soon.
                self._push_later(row_id)
            else:
                self._push_failed(row_id, "the peer has not confirmed every chunk")
            return False
        now = now_ms()
        with self.desk.core.db.write() as s:
            fresh = s.get(AttachmentRow, row_id)
            assert fresh is not None
            fresh.state, fresh.completed_at = SENT, now
            fresh.confirmed_chunks, fresh.lease_until, fresh.last_error = key.chunks, 0, ""
            ledger.append(
                s,
                LedgerEntry.of(
                    "attachment.delivered",
                    now,
                    attachment_id=row.attachment_id.hex(),
                    case_ref=row.case_ref,
                    peer=row.peer,
                    sha256=row.sha256.hex(),
                    size=row.size,
                ),
            )
        metrics.ATTACHMENT_BYTES.labels(direction="out").inc(key.cipher_size)
        log.info("attachment_delivered", attachment_id=row.attachment_id.hex(), peer=row.peer)
        return True

    def _push_later(self, row_id: int) -> None:
        """Not a failure: the upload the push follows has paused; look again shortly."""
        with self.desk.core.db.write() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            row.lease_until, row.next_attempt_at = 0, now_ms() + 500

    def _push_failed(self, row_id: int, reason: str) -> None:
        now = now_ms()
        with self.desk.core.db.write() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            row.attempts += 1
            row.last_error = reason[:500]
            row.lease_until = 0
            row.next_attempt_at = now + min(60_000, 500 * 2 ** min(row.attempts, 7))
            attachment_id, attempts = row.attachment_id.hex(), row.attempts
        log.warning("attachment_push_failed", attachment_id=attachment_id, attempts=attempts)
