"""The evidence files as the node writes them, whoever sends them: where a file's bytes
live (`_blob_id`), how a stream's progress is made durable and resumed, and how a writer
becomes the file's one writer and reads its current state (`EvidenceFiles`, the base of
node/services/evidence_inbound.py and node/services/evidence.py)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange.attachment import (
    AttachmentKey,
    StreamVerifier,
)
from exchange.encoding import format_uuid, now_ms
from exchange.errors import (
    ConflictError,
    Status,
)
from node.services.cases import CaseDesk
from node.services.messages import (
    NodeCore,
)
from node.storage.blobs import BlobStore, BlobWriter
from node.storage.models import AttachmentRow

log = structlog.get_logger("mlax.attachments")

# Outbound states.
UPLOADING, SENDING, SENT, SEND_FAILED = "uploading", "sending", "delivered", "failed"
# Inbound states.
RECEIVING, AVAILABLE, REJECTED = "receiving", "available", "rejected"

# Make progress durable (fsync, then record the count) at least this often.
SYNC_EVERY_BYTES = 16 * 1024 * 1024
# A followed download (or a push of a file still uploading) is woken at once by chunks
# landing in this process, and also reads the database this often (doubling up to the
# maximum while nothing lands), for chunks that land on another replica; it gives up
# after FOLLOW_STALL_SECONDS without one (the client resumes).
FOLLOW_POLL_SECONDS = 0.05
FOLLOW_POLL_MAX_SECONDS = 0.4  # polls slow down to this while nothing lands
FOLLOW_STALL_SECONDS = 30.0


class AttachmentConflictError(ConflictError):
    """An upload id reused for a different file, or a peer's attachment id already held."""

    status = Status.ALREADY_EXISTS


def _blob_id(row: AttachmentRow) -> str:
    # Direction and peer keep a sender's and a receiver's copy apart on one shared store.
    return hashlib.sha256(
        row.direction.encode() + b"\0" + row.peer.encode() + b"\0" + row.attachment_id
    ).hexdigest()


def info(row: AttachmentRow) -> apb.AttachmentInfo:
    return apb.AttachmentInfo(
        attachment_id=row.attachment_id.hex(),
        case_ref=row.case_ref,
        size=row.size,
        sha256=row.sha256,
        state=row.state,
        peer=row.peer,
        direction=row.direction,
        confirmed_chunks=row.confirmed_chunks,
        total_chunks=row.total_chunks,
        message_id=format_uuid(row.message_id) if row.message_id else "",
        created_at=row.created_at,
        completed_at=row.completed_at,
        last_error=row.last_error,
        chunk_size=row.chunk_size,
        purged_at=row.purged_at,
        purge_rule=row.purge_rule,
    )


@dataclass
class _Progress:
    """A stream in progress: the verifier holds the running SHA-256 of what counts."""

    verifier: StreamVerifier


class _SettledError(Exception):
    """The file was completed (or refused) by another stream: nothing to receive."""


class EvidenceFiles:
    """The database, blob store and identity the attachment operations share."""

    def __init__(
        self,
        core: NodeCore,
        blobs: BlobStore,
        cases: CaseDesk,
        on_push_due: Callable[[], None] = lambda: None,
    ) -> None:
        self.core = core
        self.blobs = blobs
        self.cases = cases
        self.limits = core.limits
        # Running digests of streams cut off mid-way, so a resume need not re-read them.
        self._progress: dict[int, _Progress] = {}
        self._lock = threading.Lock()
        # Notified whenever chunks become durable or a file changes state here, so that
        # pushes and followed downloads in this process look at once; they also poll
        # the database, which sees what other replicas do.
        self._landed = threading.Condition()
        # Rung when an evidence envelope is receipted (or failed): `run` passes the
        # evidence pusher's wake-up (node/workers/evidence_push.py).
        self.on_push_due = on_push_due

    # -- shared ---------------------------------------------------------------------------

    def _key(self, row: AttachmentRow) -> AttachmentKey:
        return AttachmentKey.from_bytes(self.core.open_from_self(row.key_sealed))

    def _verifier(self, row: AttachmentRow, key: AttachmentKey) -> StreamVerifier:
        """A verifier positioned after the row's confirmed chunks, digest included."""
        with self._lock:
            kept = self._progress.pop(row.id, None)
        if kept is not None and kept.verifier.next_index == row.confirmed_chunks:
            return kept.verifier
        # Re-derive the running digest from the stored chunks (after a restart).
        verifier = StreamVerifier(key)
        blob = _blob_id(row)
        for i in range(row.confirmed_chunks):
            verifier.feed(i, self.blobs.read(blob, key.cipher_offset(i), key.cipher_length(i)))
        return verifier

    def _park(self, row_id: int, verifier: StreamVerifier) -> None:
        with self._lock:
            self._progress[row_id] = _Progress(verifier)

    def _confirm(self, row_id: int, writer: BlobWriter, confirmed: int, push: bool) -> None:
        """Make the blob durable, then record how many chunks of it count; `push` rings
        the pusher (an announced upload: the new chunks may go to the peer)."""
        writer.sync()
        with self.core.db.write() as s:
            row = s.get(AttachmentRow, row_id)
            if row is not None and confirmed > row.confirmed_chunks:
                row.confirmed_chunks, row.touched_at = confirmed, now_ms()
        self._notify()
        if push:
            self.on_push_due()

    def _notify(self) -> None:
        with self._landed:
            self._landed.notify_all()

    def wait_landed(self, seconds: float = FOLLOW_POLL_SECONDS) -> bool:
        """Sleep until chunks land or a file changes state in this process (True), or
        `seconds` pass (False: the caller polls the database, for other replicas)."""
        with self._landed:
            return self._landed.wait(seconds)

    def _open_current(
        self,
        row: AttachmentRow,
        key: AttachmentKey,
        state: str,
        read: Callable[[Session], AttachmentRow | None],
    ) -> tuple[BlobWriter, AttachmentRow, StreamVerifier] | None:
        """Become the writer of the file of `row` (its blob's one writer), then read the
        row as it is now with `read` (a stream that held the blob before may have
        confirmed more chunks or settled the file since `row` was read): the writer, cut
        back to the row's confirmed chunks, the current row and a verifier after them;
        None, touching nothing, if the file is no longer in `state`."""
        held: list[tuple[AttachmentRow, StreamVerifier]] = []

        def resume() -> int:
            with self.core.db.read() as s:
                fresh = read(s)
                assert fresh is not None
                s.expunge(fresh)
            if fresh.state != state:
                raise _SettledError
            verifier = self._verifier(fresh, key)
            held.append((fresh, verifier))
            return key.resume_offset(verifier.next_index)

        try:
            writer = self.blobs.open_append(_blob_id(row), resume)
        except _SettledError:
            return None
        return writer, *held[0]
