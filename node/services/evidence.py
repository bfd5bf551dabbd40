"""Evidence attachments on a node: upload, node-to-node transfer, download.

The flow, each step resumable from its last confirmed chunk and none holding more than
one chunk in memory:

1. An officer streams the file's plaintext to their own node (`upload`). The node seals
   each chunk as it arrives (exchange.attachment), appends the ciphertext to the blob
   store and, every few MiB, makes it durable and records how many chunks count.
2. The node queues an EVIDENCE envelope to the case's other party: the header names
   the file's digest and size (signed), the sealed body carries its key. It does so as
   soon as the client declares the file's SHA-256 (`UploadDigest`, sent by the SDK while
   the chunks still stream), or else at the finish once the SHA-256 matches the client's.
3. Once the peer receipts that envelope, the pusher (node/workers/evidence_push.py)
   streams the ciphertext chunks to the peer (`PushAttachment`), starting from the chunk
   the peer last confirmed: while the upload goes on, every chunk that is durable here
   but the last one; the last one only once the node has checked the whole file's
   SHA-256 against the declared one (docs/adr/0012-evidence-pipeline.md).
4. The peer authenticates every chunk before storing it, and marks the file available
   only when every chunk is in and the plaintext digest equals the signed one.
5. An officer downloads the plaintext from their own node, once the file is available or
   (`follow`) while it is still arriving, marked as such; the SDK checks the digest
   itself before the file gets its name, and a followed download also needs the node's
   final word that the file is available.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange import policy
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange.attachment import (
    DEFAULT_CHUNK_SIZE,
    MAX_ATTACHMENT_SIZE,
    AttachmentKey,
    ChunkCipher,
    DigestMismatchError,
    StreamVerifier,
    new_attachment_key,
    validate_name,
)
from exchange.encoding import format_uuid, now_ms
from exchange.envelope import (
    AttachmentDigest,
    MessageType,
    codes_of,
    codes_text,
    handling_from_wire,
)
from exchange.errors import (
    ConflictError,
    InvalidFieldError,
    MlaxError,
    OversizedError,
    RetryLaterError,
    Status,
)
from exchange.ledger_entry import LedgerEntry
from exchange.retention import PurgedError, purged_text
from node import metrics
from node.services.case_store import check_may_act, row_of
from node.services.cases import CaseDesk
from node.services.evidence_files import (
    AVAILABLE,
    FOLLOW_POLL_MAX_SECONDS,
    FOLLOW_POLL_SECONDS,
    FOLLOW_STALL_SECONDS,
    RECEIVING,
    REJECTED,
    SEND_FAILED,
    SENDING,
    SENT,
    SYNC_EVERY_BYTES,
    UPLOADING,
    AttachmentConflictError,
    _blob_id,
    info,
    log,
)
from node.services.evidence_inbound import InboundEvidence
from node.services.messages import (
    OUT,
    NodeCore,
    NotFoundError,
    Officer,
    PermissionDeniedError,
)
from node.storage import ledger
from node.storage.blobs import BlobStore
from node.storage.models import AttachmentRow, MessageRow

_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class AttachmentDesk(InboundEvidence):
    """Attachment operations over the node's database, blob store and identity: an
    officer's uploads and downloads, the sender's side of a push, and (from
    `InboundEvidence`) a peer's files arriving."""

    def __init__(
        self,
        core: NodeCore,
        blobs: BlobStore,
        cases: CaseDesk,
        on_push_due: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(core, blobs, cases, on_push_due)
        core.receive_hooks[MessageType.EVIDENCE] = self._on_evidence
        core.on_outcome({MessageType.EVIDENCE}, self._on_outcome)

    # -- upload (officer to own node) -----------------------------------------------------

    def upload_status(self, officer: Officer, upload_id: str) -> apb.UploadStatus:
        with self.core.db.read() as s:
            row = s.scalars(
                select(AttachmentRow).where(
                    AttachmentRow.uploaded_by == officer.name, AttachmentRow.upload_id == upload_id
                )
            ).first()
        if row is None:
            raise NotFoundError(f"No upload {upload_id[:64]} by you on this node.")
        return self._status(row)

    @staticmethod
    def _status(row: AttachmentRow) -> apb.UploadStatus:
        done = row.state != UPLOADING
        return apb.UploadStatus(
            upload_id=row.upload_id or "",
            confirmed_chunks=row.confirmed_chunks,
            total_chunks=row.total_chunks,
            chunk_size=row.chunk_size,
            complete=done,
            attachment_id=row.attachment_id.hex() if done else "",
            message_id=format_uuid(row.message_id) if row.message_id else "",
        )

    def upload(self, officer: Officer, parts: Iterator[apb.UploadPart]) -> apb.UploadStatus:
        """Store an upload's chunks; queue the evidence to the peer once its SHA-256 is
        declared (`UploadDigest`) or, failing that, at its finish."""
        first = next(parts, None)
        if first is None or first.WhichOneof("part") != "start":
            raise InvalidFieldError("An upload starts with an UploadStart message.")
        row, key = self._begin(officer, first.start)
        if row.state != UPLOADING:
            return self._status(row)
        # The row `_begin` read may be older than a stream that held the blob before (a
        # client resuming while the node has not yet noticed its dead stream).
        opened = self._open_current(row, key, UPLOADING, lambda s: s.get(AttachmentRow, row.id))
        if opened is None:
            with self.core.db.read() as s:
                settled = s.get(AttachmentRow, row.id)
                assert settled is not None
                return self._status(settled)
        writer, row, verifier = opened
        cipher = ChunkCipher.of(key)
        declared = bytes(row.sha256) if row.message_id else None  # announced before
        unsynced = 0
        finished: bytes | None = None
        completed: apb.UploadStatus | None = None
        try:
            for part in parts:
                kind = part.WhichOneof("part")
                if kind == "data":
                    index = part.data.index
                    if index != verifier.next_index:
                        raise InvalidFieldError(
                            f"Field index: expected chunk {verifier.next_index}, got {index}."
                        )
                    if index >= key.chunks:
                        raise InvalidFieldError(
                            f"Field index: the upload has only {key.chunks} chunks."
                        )
                    # A protobuf bytes field is copied on every access: read it once.
                    data = part.data.data
                    if len(data) != key.plain_length(index):
                        raise InvalidFieldError(
                            f"Field data: chunk {index} must be {key.plain_length(index)} "
                            f"bytes, not {len(data)}."
                        )
                    sealed = cipher.seal(index, data, final=key.is_final(index))
                    writer.write(sealed)
                    verifier.feed_plain(index, data)
                    metrics.ATTACHMENT_BYTES.labels(direction="upload").inc(len(sealed))
                    unsynced += len(sealed)
                    if unsynced >= SYNC_EVERY_BYTES:
                        self._confirm(row.id, writer, verifier.next_index, declared is not None)
                        unsynced = 0
                elif kind == "digest":
                    sha = bytes(part.digest.sha256)
                    if declared is None:
                        self._confirm(row.id, writer, verifier.next_index, False)
                        unsynced = 0
                        declared = self._announce(officer, row.id, key, sha, first.start)
                    elif sha != declared:
                        raise AttachmentConflictError(
                            f"Field digest: upload {first.start.upload_id} declared another "
                            "SHA-256 before; it was sent to the peer and cannot change."
                        )
                elif kind == "finish":
                    finished = bytes(part.finish.sha256)
                    break
                else:
                    raise InvalidFieldError("An upload has one UploadStart, at its beginning.")
            self._confirm(row.id, writer, verifier.next_index, declared is not None)
            if finished is not None:
                # Still the blob's writer: nothing rewrites the file between its check
                # and the row saying it is complete.
                completed = self._complete(officer, row.id, key, verifier, finished, first.start)
        finally:
            writer.close()
            if completed is None:
                self._park(row.id, verifier)
        if completed is not None:
            return completed
        # The client stopped early: what arrived is kept for a resume.
        with self.core.db.read() as s:
            fresh = s.get(AttachmentRow, row.id)
            assert fresh is not None
            return self._status(fresh)

    def _begin(
        self, officer: Officer, start: apb.UploadStart
    ) -> tuple[AttachmentRow, AttachmentKey]:
        if not _UPLOAD_ID.fullmatch(start.upload_id):
            raise InvalidFieldError(
                "Field upload_id: 8 to 64 letters, digits, '-' or '_' chosen by the client."
            )
        validate_name(start.name)
        if start.size > MAX_ATTACHMENT_SIZE:
            raise OversizedError(
                f"Field size: attachments are at most {MAX_ATTACHMENT_SIZE} bytes."
            )
        codes = handling_from_wire(start.handling_codes, start.restricted_to, "an attachment")
        chunk_size = start.chunk_size or DEFAULT_CHUNK_SIZE
        # Validates the chunk size and name; the digest is filled in at the finish.
        key = new_attachment_key(
            name=start.name, size=start.size, sha256=bytes(32), chunk_size=chunk_size
        )
        # Only who may read the case adds evidence to it (`policy.may_act`).
        with self.core.db.read() as s:
            case = row_of(s, start.case_ref)
            s.expunge(case)
        check_may_act(self.core.db, self.core.agency, officer, case, "add_evidence")
        with self.core.db.write() as s:
            row = s.scalars(
                select(AttachmentRow).where(
                    AttachmentRow.uploaded_by == officer.name,
                    AttachmentRow.upload_id == start.upload_id,
                )
            ).first()
            if row is not None:
                old = self._key(row)
                if (row.case_ref, old.name, old.size, old.chunk_size) != (
                    start.case_ref,
                    start.name,
                    start.size,
                    chunk_size,
                ):
                    raise AttachmentConflictError(
                        f"Upload {start.upload_id} is another file; choose a new upload id."
                    )
                s.expunge(row)
                return row, old
            peer = self.cases.counterpart(s, start.case_ref)
            # Evidence is at least as restricted as its case: the header carries the merge
            # as far as it can name the peer's officers (the peer merges with its own case).
            own = policy.Handling.of(
                codes,
                start.restricted_to,
                recipient=peer,
                author=policy.OfficerId(self.core.agency, officer.name),
            )
            handling = policy.evidence_handling(own, self.cases.handling(s, start.case_ref))
            codes, named = handling.wire(peer)
            row = AttachmentRow(
                attachment_id=key.attachment_id,
                direction=OUT,
                peer=peer,
                case_ref=start.case_ref,
                state=UPLOADING,
                size=start.size,
                chunk_size=chunk_size,
                total_chunks=key.chunks,
                confirmed_chunks=0,
                key_sealed=self.core.seal_to_self(key.to_bytes()),
                sha256=b"",
                upload_id=start.upload_id,
                uploaded_by=officer.name,
                handling_codes=codes_text(codes),
                restricted_to="\n".join(named),
                created_at=now_ms(),
            )
            s.add(row)
            s.flush()
            s.expunge(row)
        return row, key

    def _evidence(
        self, officer: Officer, row_id: int, final: AttachmentKey, start: apb.UploadStart
    ) -> tuple[MessageRow, LedgerEntry]:
        """The EVIDENCE envelope that carries `final` (its key and SHA-256) to the peer."""
        with self.core.db.read() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            case_ref, peer = row.case_ref, row.peer
            codes, restricted = (
                codes_of(row.handling_codes),
                tuple(r for r in row.restricted_to.split("\n") if r),
            )
        body = apb.EvidenceBody(
            case_ref=case_ref,
            description=start.description,
            attachments=[final.to_proto()],
            media_types=[start.media_type] if start.media_type else [],
        )
        return self.core.outbound(
            officer.name,
            peer,
            body.SerializeToString(deterministic=True),
            MessageType.EVIDENCE,
            case_ref=case_ref,
            handling_codes=codes,
            restricted_to=restricted,
            attachments=(AttachmentDigest(name=final.name, sha256=final.sha256, size=final.size),),
        )

    @staticmethod
    def _with_digest(key: AttachmentKey, sha: bytes) -> AttachmentKey:
        if len(sha) != 32:
            raise InvalidFieldError("Field sha256: 32 bytes.")
        return AttachmentKey(
            attachment_id=key.attachment_id,
            key=key.key,
            chunk_size=key.chunk_size,
            size=key.size,
            sha256=sha,
            name=key.name,
        )

    def _announce(
        self,
        officer: Officer,
        row_id: int,
        key: AttachmentKey,
        sha: bytes,
        start: apb.UploadStart,
    ) -> bytes:
        """Queue the EVIDENCE envelope of an upload still in progress, naming the SHA-256
        the client declared; the upload's finish must match it. The declared SHA-256."""
        final = self._with_digest(key, sha)
        msg, entry = self._evidence(officer, row_id, final, start)
        with self.core.db.write() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            if row.message_id:  # a concurrent stream of the same upload announced it
                if row.sha256 != sha:
                    raise AttachmentConflictError(
                        "Field digest: this upload declared another SHA-256 before."
                    )
                return sha
            if row.state != UPLOADING:
                raise AttachmentConflictError(f"Upload {start.upload_id} is {row.state}.")
            row.sha256, row.message_id = sha, msg.message_id
            row.key_sealed = self.core.seal_to_self(final.to_bytes())
            s.add(msg)
            ledger.append(s, entry)
        self.core.on_submit()
        log.info("attachment_announced", attachment_id=key.attachment_id.hex(), size=key.size)
        return sha

    def _complete(
        self,
        officer: Officer,
        row_id: int,
        key: AttachmentKey,
        verifier: StreamVerifier,
        client_sha256: bytes,
        start: apb.UploadStart,
    ) -> apb.UploadStatus:
        if not verifier.complete:
            raise InvalidFieldError(
                f"Field finish: only {verifier.next_index} of {key.chunks} chunks were sent."
            )
        sha = verifier.digest()
        with self.core.db.read() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            if row.state != UPLOADING:  # a concurrent finish of the same upload won
                return self._status(row)
            declared = bytes(row.sha256) if row.message_id else None
        if declared is not None and not client_sha256 == declared == sha:
            # Announced to the peer with a SHA-256 this file does not have: the file
            # changed while it was read. Its last chunk never leaves this node, so the
            # peer never completes it; a new upload is needed.
            self._fail_upload(row_id, "the file changed after its SHA-256 was declared")
            raise DigestMismatchError(
                "Field finish.sha256: the file's SHA-256 differs from the one declared at "
                "the start of the upload; it was not sent. Upload the file again."
            )
        if client_sha256 != sha:
            raise DigestMismatchError(
                "Field finish.sha256: the file's SHA-256 differs from what the node received; "
                "the upload was corrupted in transit."
            )
        final = self._with_digest(key, sha)
        msg: MessageRow | None = None
        if declared is None:
            msg, entry = self._evidence(officer, row_id, final, start)
        now = now_ms()
        with self.core.db.write() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            if row.state != UPLOADING:  # a concurrent finish of the same upload won
                return self._status(row)
            row.state, row.sha256, row.completed_at = SENDING, sha, now
            if msg is not None:
                row.key_sealed = self.core.seal_to_self(final.to_bytes())
                row.message_id = msg.message_id
                s.add(msg)
                ledger.append(s, entry)
            else:
                row.next_attempt_at = 0  # the last chunk may go now
            ledger.append(
                s,
                LedgerEntry.of(
                    "attachment.uploaded",
                    now,
                    attachment_id=final.attachment_id.hex(),
                    case_ref=row.case_ref,
                    officer=officer.name,
                    sha256=sha.hex(),
                    size=final.size,
                    message_id=format_uuid(row.message_id),
                ),
            )
            status = self._status(row)
        with self._lock:
            self._progress.pop(row_id, None)
        self._notify()
        if msg is not None:
            self.core.on_submit()
        else:
            self.on_push_due()
        log.info("attachment_uploaded", attachment_id=final.attachment_id.hex(), size=final.size)
        return status

    def _fail_upload(self, row_id: int, reason: str) -> None:
        with self.core.db.write() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            if row.state == UPLOADING:
                row.state, row.last_error, row.completed_at = SEND_FAILED, reason, now_ms()
        with self._lock:
            self._progress.pop(row_id, None)
        self._notify()
        log.warning("attachment_upload_failed", reason=reason)

    # -- sender side: the pusher (node/workers/evidence_push.py) sends the chunks once the
    # -- evidence envelope is receipted ----------------------------------------------------

    def _on_outcome(self, s: Session, msg: MessageRow, delivered: bool) -> None:
        if msg.message_type != MessageType.EVIDENCE.value:
            return
        rows = s.scalars(
            select(AttachmentRow).where(
                AttachmentRow.direction == OUT, AttachmentRow.message_id == msg.message_id
            )
        ).all()
        for row in rows:
            if delivered:
                row.next_attempt_at = 0
            else:
                row.state, row.last_error = SEND_FAILED, msg.last_error
        self.on_push_due()

    def outbound(self, row_id: int) -> tuple[AttachmentRow, AttachmentKey]:
        """An outbound attachment's row (detached from the session) and its key."""
        with self.core.db.read() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            s.expunge(row)
        return row, self._key(row)

    def sendable(self, row_id: int) -> int | None:
        """How many chunks of an outbound file may go to the peer now: all of a verified
        upload; of one still uploading (announced early), those durable here but the
        last, which waits for the node's check of the whole file's SHA-256. None once
        the file will not be sent."""
        with self.core.db.read() as s:
            row = s.get(AttachmentRow, row_id)
            if row is None or row.state not in (UPLOADING, SENDING, SENT):
                return None
            if row.state == UPLOADING:
                return min(row.confirmed_chunks, row.total_chunks - 1)
            return int(row.total_chunks)

    def sealed_chunk(self, row: AttachmentRow, key: AttachmentKey, index: int) -> bytes:
        """Chunk `index` of an attachment's ciphertext, as stored."""
        return self.blobs.read(_blob_id(row), key.cipher_offset(index), key.cipher_length(index))

    # -- officer reads --------------------------------------------------------------------

    def list_for_case(self, s: Session, case_ref: str) -> list[apb.AttachmentInfo]:
        # An upload still in progress is not part of the case yet: nobody sees it but
        # its uploader, through GetUpload.
        rows = s.scalars(
            select(AttachmentRow)
            .where(AttachmentRow.case_ref == case_ref, AttachmentRow.state != UPLOADING)
            .order_by(AttachmentRow.id)
        ).all()
        out = []
        for row in rows:
            view = info(row)
            if row.state != UPLOADING and not row.purged_at:  # a purged file's key is gone
                try:
                    view.name = self._key(row).name
                except MlaxError:
                    view.name = "(key no longer held)"
            out.append(view)
        return out

    def download(self, officer: Officer, req: apb.DownloadRequest) -> Iterator[apb.DownloadPart]:
        """The plaintext of a verified attachment, chunk by chunk (a ledgered read)."""
        try:
            attachment_id = bytes.fromhex(req.attachment_id)
        except ValueError:
            raise InvalidFieldError("Field attachment_id: 32 hex digits.") from None
        with self.core.db.read() as s:
            row = s.scalars(
                select(AttachmentRow)
                .where(AttachmentRow.attachment_id == attachment_id)
                # Ids are unique since peers' duplicates are refused; of older duplicates
                # the first holder's file is the one its id names.
                .order_by(AttachmentRow.id)
                .limit(1)
            ).first()
            if row is None:
                raise NotFoundError(f"No attachment {req.attachment_id} on this node.")
            if row.purged_at:
                raise PurgedError(
                    f"Attachment {req.attachment_id} was "
                    f"{purged_text(row.purged_at, row.purge_rule)}."
                )
            following = req.follow and row.state == RECEIVING
            if row.state not in (AVAILABLE, SENDING, SENT) and not following:
                raise _NotReadyError(
                    f"Attachment {req.attachment_id} is {row.state}: it can be downloaded "
                    "once every chunk is in and its digest verified (or followed while it "
                    "arrives)."
                )
            case = self.cases.handling(s, row.case_ref)
            s.expunge(row)
        who = policy.OfficerId(self.core.agency, officer.name)
        decision = policy.may_download(who, officer.role, self._handling(row), case)
        if decision.reason is not None:
            with self.core.db.write() as s:
                ledger.refusal(
                    s,
                    "attachment.download_refused",
                    who,
                    decision.reason.value,
                    attachment_id=req.attachment_id,
                    case_ref=row.case_ref,
                )
            raise PermissionDeniedError(decision.explain(f"Attachment {req.attachment_id}"))
        key = self._key(row)
        if req.from_chunk > key.chunks:
            raise InvalidFieldError(f"Field from_chunk: the file has {key.chunks} chunks.")
        with self.core.db.write() as s:
            ledger.append(
                s,
                LedgerEntry.of(
                    "attachment.downloaded",
                    now_ms(),
                    attachment_id=req.attachment_id,
                    case_ref=row.case_ref,
                    officer=officer.name,
                    from_chunk=req.from_chunk,
                ),
            )
        if following:
            return self._follow(row, key, req.from_chunk)
        return self._stream(row, key, req.from_chunk)

    def _handling(self, row: AttachmentRow) -> policy.Handling:
        """The file's own handling: names the officers of its recipient (the peer for a
        file sent, this agency for one received); its uploader is its author."""
        sent = row.direction == OUT
        return policy.Handling.of(
            codes_of(row.handling_codes),
            [r for r in row.restricted_to.split("\n") if r],
            recipient=row.peer if sent else self.core.agency,
            author=(
                policy.OfficerId(self.core.agency, row.uploaded_by)
                if sent and row.uploaded_by
                else None
            ),
        )

    def _stream(
        self, row: AttachmentRow, key: AttachmentKey, start: int
    ) -> Iterator[apb.DownloadPart]:
        head = info(row)
        head.name = key.name
        yield apb.DownloadPart(info=head, index=start)
        cipher = ChunkCipher.of(key)
        blob = _blob_id(row)
        for i in range(start, key.chunks):
            data = self.blobs.read(blob, key.cipher_offset(i), key.cipher_length(i))
            yield apb.DownloadPart(index=i, data=cipher.open(i, data, final=key.is_final(i)))

    def _landed_state(self, row_id: int) -> tuple[int, str, AttachmentRow]:
        with self.core.db.read() as s:
            row = s.get(AttachmentRow, row_id)
            assert row is not None
            s.expunge(row)
            return row.confirmed_chunks, row.state, row

    def _follow(
        self, row: AttachmentRow, key: AttachmentKey, start: int
    ) -> Iterator[apb.DownloadPart]:
        """A file still arriving: each chunk once it is authenticated and durable here,
        then, once the node has checked the whole file's SHA-256, its info again."""
        head = info(row)
        head.name = key.name
        yield apb.DownloadPart(info=head, index=start)
        cipher = ChunkCipher.of(key)
        blob = _blob_id(row)
        i, idle_since, delay = start, time.monotonic(), FOLLOW_POLL_SECONDS
        while True:
            landed, state, fresh = self._landed_state(row.id)
            if state == REJECTED:
                raise _NotReadyError(
                    f"Attachment {head.attachment_id} failed its SHA-256 check here and was "
                    "rejected: discard what was downloaded."
                )
            if i >= key.chunks and state == AVAILABLE:
                break
            if i >= landed:
                if time.monotonic() - idle_since > FOLLOW_STALL_SECONDS:
                    raise RetryLaterError(
                        f"No chunk of attachment {head.attachment_id} arrived for "
                        f"{FOLLOW_STALL_SECONDS:.0f} s; resume the download later."
                    )
                if not self.wait_landed(delay):
                    delay = min(2 * delay, FOLLOW_POLL_MAX_SECONDS)  # quiet: poll less
                continue
            for j in range(i, landed):
                data = self.blobs.read(blob, key.cipher_offset(j), key.cipher_length(j))
                yield apb.DownloadPart(index=j, data=cipher.open(j, data, final=key.is_final(j)))
            i, idle_since, delay = landed, time.monotonic(), FOLLOW_POLL_SECONDS
        tail = info(fresh)
        tail.name = key.name
        yield apb.DownloadPart(info=tail, index=key.chunks)


class _NotReadyError(ConflictError):
    status = Status.FAILED_PRECONDITION
