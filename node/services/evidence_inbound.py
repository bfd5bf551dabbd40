"""The receiving side of evidence (node to node): the EVIDENCE envelope that announces a
peer's file, and the chunks it pushes (`AttachmentStatus`, `PushAttachment`), checked
chunk by chunk and then against the signed SHA-256 (docs/protocol-casework.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange.attachment import (
    AttachmentKey,
    DigestMismatchError,
    StreamVerifier,
    TamperedChunkError,
)
from exchange.casework import CaseConflictError
from exchange.encoding import now_ms
from exchange.envelope import (
    Opened,
    codes_text,
)
from exchange.errors import (
    InvalidFieldError,
    MlaxError,
)
from exchange.ledger_entry import LedgerEntry
from exchange.wire import parse
from node import metrics
from node.services.evidence_files import (
    AVAILABLE,
    RECEIVING,
    REJECTED,
    SYNC_EVERY_BYTES,
    AttachmentConflictError,
    EvidenceFiles,
    log,
)
from node.services.messages import (
    IN,
    NotFoundError,
    PermissionDeniedError,
)
from node.storage import ledger
from node.storage.blobs import BlobWriter
from node.storage.models import AttachmentRow


class InboundEvidence(EvidenceFiles):
    """A peer's evidence files arriving at this node."""

    # -- node to node ---------------------------------------------------------------------

    def _on_evidence(self, opened: Opened) -> Callable[[Session], None]:
        """Check an inbound EVIDENCE envelope; the returned step records its files."""
        header = opened.header
        body = parse(apb.EvidenceBody, opened.body, "evidence body", self.limits.max_body_bytes)
        if body.case_ref != header.case_ref:
            raise InvalidFieldError(
                "Field case_ref: the evidence body names another case than its header."
            )
        signed = list(header.attachments)
        if not body.attachments or len(body.attachments) != len(signed):
            raise InvalidFieldError(
                "Field attachments: the evidence body and its signed header list different files."
            )
        keys = []
        for i, (m, digest) in enumerate(zip(body.attachments, signed, strict=True)):
            key = AttachmentKey.from_bytes(m.SerializeToString(deterministic=True))
            if (key.name, key.sha256, key.size) != (digest.name, digest.sha256, digest.size):
                raise InvalidFieldError(
                    f"Field attachments[{i}]: the key's file differs from the signed digest."
                )
            keys.append(key)
        ids = [k.attachment_id for k in keys]
        if len(set(ids)) != len(ids):
            raise InvalidFieldError("Field attachments: two files share one attachment id.")
        sealed = [self.core.seal_to_self(k.to_bytes()) for k in keys]
        codes = codes_text(header.handling_codes)
        restricted = "\n".join(header.restricted_to)

        def apply(s: Session) -> None:
            try:
                peer = self.cases.counterpart(s, header.case_ref)
            except MlaxError as e:
                # A closed or unknown case takes no more evidence: a retry cannot help.
                raise CaseConflictError(e.message) from None
            if peer != header.sender:
                raise PermissionDeniedError(
                    f"Agency {header.sender} is not a party to case {header.case_ref}."
                )
            # An attachment id names one file on this node, whoever drew it: a peer's id
            # that is already held (sent or received, from anyone) is refused, so no
            # lookup by id can find another party's file.
            held = s.scalars(
                select(AttachmentRow.attachment_id).where(AttachmentRow.attachment_id.in_(ids))
            ).first()
            if held is not None:
                raise AttachmentConflictError(
                    f"Attachment id {held.hex()} is already used on this node; the sender "
                    "must draw a new one."
                )
            now = now_ms()
            for key, blob_key in zip(keys, sealed, strict=True):
                s.add(
                    AttachmentRow(
                        attachment_id=key.attachment_id,
                        direction=IN,
                        peer=header.sender,
                        case_ref=header.case_ref,
                        state=RECEIVING,
                        size=key.size,
                        chunk_size=key.chunk_size,
                        total_chunks=key.chunks,
                        confirmed_chunks=0,
                        key_sealed=blob_key,
                        sha256=key.sha256,
                        message_id=header.message_id,
                        handling_codes=codes,
                        restricted_to=restricted,
                        created_at=now,
                    )
                )

        return apply

    def _inbound(self, s: Session, peer: str, attachment_id: bytes) -> AttachmentRow:
        row = s.scalars(
            select(AttachmentRow).where(
                AttachmentRow.direction == IN,
                AttachmentRow.peer == peer,
                AttachmentRow.attachment_id == attachment_id,
            )
        ).first()
        if row is None:
            raise NotFoundError(
                f"No attachment {attachment_id.hex()[:32]} from {peer} is announced here."
            )
        return row

    def peer_status(self, peer: str, attachment_id: bytes) -> apb.AttachmentProgress:
        self._settle_confirmed(peer, attachment_id)
        return self._status_of(peer, attachment_id)

    def _status_of(self, peer: str, attachment_id: bytes) -> apb.AttachmentProgress:
        with self.core.db.read() as s:
            row = self._inbound(s, peer, attachment_id)
            return apb.AttachmentProgress(
                attachment_id=row.attachment_id,
                confirmed_chunks=row.confirmed_chunks,
                total_chunks=row.total_chunks,
                complete=row.state == AVAILABLE,
            )

    def receive_chunks(
        self, peer: str, chunks: Iterable[apb.AttachmentChunk]
    ) -> apb.AttachmentProgress:
        """Authenticate and store a run of chunks; complete the file when all are in.

        One stream per file at a time: a second one, on this or another replica, is
        refused with BlobBusyError (retry later) before anything is cut or written, and
        the first one holds the file until it is complete and verified or has stopped."""
        stream = iter(chunks)
        first = next(stream, None)
        if first is None:
            raise InvalidFieldError("A push carries at least one chunk.")
        held = self._hold(peer, bytes(first.attachment_id))
        if held is None:
            return self._status_of(peer, bytes(first.attachment_id))
        writer, row, verifier = held
        unsynced = 0
        finished = False
        try:
            for chunk in _chain(first, stream):
                if chunk.attachment_id != row.attachment_id:
                    raise InvalidFieldError("Field attachment_id: one push carries one file.")
                try:
                    ciphertext = chunk.ciphertext  # copied on every access: read once
                    verifier.feed(chunk.index, ciphertext)
                except TamperedChunkError:
                    self._ledger_refusal(row, chunk.index)
                    raise
                writer.write(ciphertext)
                metrics.ATTACHMENT_BYTES.labels(direction="in").inc(len(ciphertext))
                unsynced += len(ciphertext)
                if unsynced >= SYNC_EVERY_BYTES:
                    self._confirm(row.id, writer, verifier.next_index, False)
                    unsynced = 0
            self._confirm(row.id, writer, verifier.next_index, False)
            if verifier.complete:
                # Still holding the blob: no other stream can cut or rewrite the file
                # between the digest check and the row saying it is available.
                self._finish_inbound(row.id, verifier)
                finished = True
        finally:
            writer.close()
            if not finished:
                self._park(row.id, verifier)
        return self._status_of(peer, row.attachment_id)

    def _hold(
        self, peer: str, attachment_id: bytes
    ) -> tuple[BlobWriter, AttachmentRow, StreamVerifier] | None:
        """Become the writer of an inbound file still being received: its blob (the one
        writer), its row as it is now and a verifier after its confirmed chunks; None if
        the file is settled (complete or refused), by this stream's time or before."""
        with self.core.db.read() as s:
            row = self._inbound(s, peer, attachment_id)
            s.expunge(row)
        if row.state != RECEIVING:
            return None
        return self._open_current(
            row, self._key(row), RECEIVING, lambda s: self._inbound(s, peer, attachment_id)
        )

    def _settle_confirmed(self, peer: str, attachment_id: bytes) -> None:
        """Check and settle a file whose every chunk is confirmed but which was never
        checked against its signed digest (the node stopped between the two): the sender
        has nothing left to push, so its next status call finishes the file."""
        with self.core.db.read() as s:
            row = self._inbound(s, peer, attachment_id)
            if row.state != RECEIVING or row.confirmed_chunks < row.total_chunks:
                return
        held = self._hold(peer, attachment_id)
        if held is None:
            return
        writer, row, verifier = held
        try:
            if verifier.complete:
                self._finish_inbound(row.id, verifier)
        finally:
            writer.close()

    def _ledger_refusal(self, row: AttachmentRow, index: int) -> None:
        metrics.REJECTED.labels(reason="TamperedChunkError").inc()
        # At a bounded rate: a peer pushing junk chunks cannot grow the ledger without end.
        self.core.rejections.record(
            row.peer,
            TamperedChunkError.__name__,
            TamperedChunkError.status,
            LedgerEntry.of(
                "attachment.chunk_refused",
                now_ms(),
                attachment_id=row.attachment_id.hex(),
                peer=row.peer,
                index=index,
            ),
        )

    def _finish_inbound(self, row_id: int, verifier: StreamVerifier) -> None:
        now = now_ms()
        try:
            verifier.finish()
            problem = ""
        except DigestMismatchError as e:
            problem = e.message
        with self.core.db.write() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            if row.state != RECEIVING:
                return
            row.state = REJECTED if problem else AVAILABLE
            row.completed_at, row.last_error = now, problem
            ledger.append(
                s,
                LedgerEntry.of(
                    "attachment.rejected" if problem else "attachment.received",
                    now,
                    attachment_id=row.attachment_id.hex(),
                    case_ref=row.case_ref,
                    peer=row.peer,
                    sha256=row.sha256.hex(),
                    size=row.size,
                ),
            )
        with self._lock:
            self._progress.pop(row_id, None)
        self._notify()
        log.info(
            "attachment_received", attachment_id=verifier.key.attachment_id.hex(), ok=not problem
        )


def _chain(
    first: apb.AttachmentChunk, rest: Iterator[apb.AttachmentChunk]
) -> Iterator[apb.AttachmentChunk]:
    yield first
    yield from rest
