"""The officer SDK for casework and evidence: cases, four-eyes approval, attachments.

    cases = CaseClient(OfficerClient.from_bundle(Path("alice.json"), b"passphrase"))
    view = cases.create(form)                  # a draft (exchange.forms builds the form)
    cases.act(view.summary.case_ref, "submit")  # waits for a supervisor when four-eyes applies
    cases.attach(case_ref, Path("ledger.xlsx"), progress=print)
    cases.download(attachment_id, Path("out.xlsx"))

Uploads and downloads stream in chunks and resume by themselves after an interruption,
from the last chunk the other side confirmed; nothing holds more than one chunk.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange._proto.mlax.v1 import officer_pb2_grpc as ogrpc
from exchange.attachment import DEFAULT_CHUNK_SIZE, DigestMismatchError, chunk_count
from exchange.case import Action
from exchange.casework import ACTION_TO_WIRE, approval_message
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError
from node.client.officer import HANDLING_CODES, MessageInfo, OfficerClient
from node.client.results import AttachmentInfo, CaseSummary, CaseView, UploadStatus

Progress = Callable[[int], None]
# Codes after which the same call may simply be tried again from where it stopped.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}
ACTIONS = {a.value.replace("_", "-"): a for a in Action}


def _codes(handling: tuple[str, ...]) -> list[int]:
    unknown = [h for h in handling if h not in HANDLING_CODES]
    if unknown:
        raise InvalidFieldError(
            f"Handling code {unknown[0]!r} is not one of {', '.join(HANDLING_CODES)}."
        )
    return [HANDLING_CODES[h] for h in handling]


class _Digest:
    """The SHA-256 of a file, computed in a thread beside the upload (hashlib releases
    the GIL), so that it can be declared before the last chunk is sent."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._sha = b""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlax-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        digest = hashlib.sha256()
        try:
            with self._path.open("rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
        except BaseException as e:  # re-raised by result()
            self._error = e
        self._sha = digest.digest()

    def ready(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> bytes:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._sha


def _stream_timeout(size: int, floor: float) -> float:
    # Generous: 2 MB/s at worst, so a deadline never cuts a healthy transfer.
    return floor + size / 2_000_000


class CaseClient:
    """Case and evidence calls on one's own node, over an OfficerClient's channel."""

    def __init__(self, client: OfficerClient, retries: int = 5, retry_wait: float = 1.0) -> None:
        self.client = client
        self.retries = retries
        self.retry_wait = retry_wait

    @property
    def _stub(self) -> ogrpc.OfficerStub:
        return self.client._stub

    def _call(self, name: str, request: object) -> object:
        return self.client._call(getattr(self._stub, name), request)

    def _view(self, name: str, request: object) -> CaseView:
        view: cpb.CaseView = self._call(name, request)  # type: ignore[assignment]
        return CaseView.from_proto(view)

    # -- cases ----------------------------------------------------------------------------

    def create(
        self,
        form: fpb.CaseForm,
        *,
        recipient: str = "",
        handling: tuple[str, ...] = (),
        restricted_to: tuple[str, ...] = (),
        idempotency_key: str | None = None,
    ) -> CaseView:
        """A draft case on this node; nothing leaves it until the draft is submitted."""
        req = cpb.CreateCaseRequest(
            recipient=recipient,
            form=form,
            handling_codes=_codes(handling),  # type: ignore[arg-type]
            restricted_to=list(restricted_to),
            idempotency_key=idempotency_key or str(uuid.uuid4()),
        )
        return self._view("CreateCase", req)

    def act(
        self,
        case_ref: str,
        action: str,
        details: fpb.TransitionDetails | None = None,
        expected_seq: int = 0,
    ) -> CaseView:
        """Take `action` (e.g. "submit", "acknowledge", "refuse") on a case."""
        key = action.replace("_", "-")
        if key not in ACTIONS:
            raise InvalidFieldError(
                f"Case action {action!r} is not one of {', '.join(sorted(ACTIONS))}."
            )
        req = cpb.CaseActionRequest(
            case_ref=case_ref, action=ACTION_TO_WIRE[ACTIONS[key]], expected_seq=expected_seq
        )
        if details is not None:
            req.details.CopyFrom(details)
        return self._view("CaseAction", req)

    def approve(self, case_ref: str) -> CaseView:
        """Supervisor: sign the draft as it stands now (four-eyes); the node then sends it."""
        summary = self.get(case_ref).summary
        if not summary.awaiting_approval:
            raise InvalidFieldError(f"Case {case_ref} is not waiting for approval.")
        at = now_ms()
        officer = self.client.credential.officer
        key = serialization.load_pem_private_key(self.client.credential.private_key_pem, None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidFieldError("This credential's key cannot sign approvals.")
        message = approval_message(case_ref, summary.form_digest, officer, at)
        req = cpb.ApproveCaseRequest(
            case_ref=case_ref,
            at=at,
            form_digest=summary.form_digest,
            signature=key.sign(message, ec.ECDSA(hashes.SHA256())),
        )
        return self._view("ApproveCase", req)

    def get(self, case_ref: str, content: bool = False) -> CaseView:
        """A case's summary, timeline and attachments; with `content` the form and details."""
        return self._view("GetCase", cpb.GetCaseRequest(case_ref=case_ref, include_content=content))

    def hold(self, case_ref: str, reason: str) -> CaseView:
        """Supervisor: put a case on legal hold: nothing of it is purged until released."""
        return self._view("HoldCase", opb.HoldCaseRequest(case_ref=case_ref, reason=reason))

    def release_hold(self, case_ref: str) -> CaseView:
        """Supervisor: lift a case's legal hold (its retention periods apply again)."""
        return self._view("ReleaseHold", opb.ReleaseHoldRequest(case_ref=case_ref))

    def cases(
        self,
        *,
        states: tuple[str, ...] = (),
        peer: str = "",
        overdue_only: bool = False,
        awaiting_approval: bool = False,
        case_type: str = "",
        open_only: bool = False,
        limit: int = 100,
    ) -> list[CaseSummary]:
        resp: cpb.ListCasesResponse = self._call(  # type: ignore[assignment]
            "ListCases",
            cpb.ListCasesRequest(
                states=list(states),
                peer=peer,
                overdue_only=overdue_only,
                awaiting_approval=awaiting_approval,
                case_type=case_type,
                open_only=open_only,
                limit=limit,
            ),
        )
        return [CaseSummary.from_proto(c) for c in resp.cases]

    def forward(self, message_id: str, recipient: str, note: str = "") -> MessageInfo:
        """Pass an inbound note to another agency (refused if its handling codes forbid it)."""
        resp: opb.MessageSummary = self._call(  # type: ignore[assignment]
            "Forward", cpb.ForwardRequest(message_id=message_id, recipient=recipient, note=note)
        )
        return MessageInfo.from_proto(resp)

    # -- evidence -------------------------------------------------------------------------

    def attach(
        self,
        case_ref: str,
        path: Path,
        *,
        progress: Progress | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        upload_id: str | None = None,
        handling: tuple[str, ...] = (),
        restricted_to: tuple[str, ...] = (),
        description: str = "",
        early: bool = True,
    ) -> UploadStatus:
        """Upload `path` as evidence for a case; resumes by itself after an interruption.

        `progress` gets the number of bytes the node has confirmed so far. With `early`
        the file's SHA-256 is computed beside the upload and declared as soon as it is
        known, so the node sends the file on to the peer while it still arrives (the
        peer then sees it as "receiving" even if this upload is abandoned). The node
        checks it against the bytes it received; a file that changes meanwhile fails.
        """
        size = path.stat().st_size
        # Resuming: start after what the node already holds of this upload.
        first = self._held_chunks(upload_id) if upload_id else 0
        upload_id = upload_id or secrets.token_hex(16)
        start = apb.UploadStart(
            case_ref=case_ref,
            name=path.name,
            size=size,
            upload_id=upload_id,
            chunk_size=chunk_size,
            description=description,
            handling_codes=_codes(handling),  # type: ignore[arg-type]
            restricted_to=list(restricted_to),
        )
        total = chunk_count(size, chunk_size)
        hashed = _Digest(path) if early else None
        attempts = 0
        while True:
            try:
                status: apb.UploadStatus = self._stub.Upload(
                    self._parts(start, path, first, total, chunk_size, progress, hashed),
                    timeout=_stream_timeout(size, self.client.timeout),
                )
                if status.complete:
                    if progress:
                        progress(size)
                    return UploadStatus.from_proto(status)
            except grpc.RpcError as e:
                if e.code() not in _TRANSIENT or attempts >= self.retries:
                    raise self.client.call_error(e) from None
            attempts += 1
            time.sleep(self.retry_wait * attempts)
            # Ask the node where it got to, and go on from there.
            try:
                status = self._stub.GetUpload(
                    apb.GetUploadRequest(upload_id=upload_id), timeout=self.client.timeout
                )
                first = status.confirmed_chunks
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    first = 0
                elif e.code() not in _TRANSIENT or attempts >= self.retries:
                    raise self.client.call_error(e) from None

    def _held_chunks(self, upload_id: str) -> int:
        """How many chunks of `upload_id` the node holds (0 if none), asked with the same
        patience as the upload itself: a resume usually follows a dropped connection, and
        the channel may first wait out its reconnect backoff."""
        attempts = 0
        while True:
            try:
                held = self._stub.GetUpload(
                    apb.GetUploadRequest(upload_id=upload_id), timeout=self.client.timeout
                )
                return 0 if held.complete else int(held.confirmed_chunks)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return 0
                if e.code() not in _TRANSIENT or attempts >= self.retries:
                    raise self.client.call_error(e) from None
            attempts += 1
            time.sleep(self.retry_wait * attempts)

    @staticmethod
    def _parts(
        start: apb.UploadStart,
        path: Path,
        first: int,
        total: int,
        chunk_size: int,
        progress: Progress | None,
        hashed: _Digest | None = None,
    ) -> Iterator[apb.UploadPart]:
        digest = hashlib.sha256() if hashed is None else None
        declared = False
        with path.open("rb") as f:
            if digest is not None:
                # The prefix the node already holds is hashed, not sent again.
                for _ in range(first):
                    digest.update(f.read(chunk_size))
            else:
                f.seek(first * chunk_size)
            yield apb.UploadPart(start=start)
            for index in range(first, total):
                if hashed is not None and not declared and hashed.ready():
                    declared = True
                    yield apb.UploadPart(digest=apb.UploadDigest(sha256=hashed.result()))
                data = f.read(chunk_size)
                if digest is not None:
                    digest.update(data)
                yield apb.UploadPart(data=apb.UploadData(index=index, data=data))
                if progress:
                    progress(min(start.size, (index + 1) * chunk_size))
        sha = digest.digest() if digest is not None else hashed.result() if hashed else b""
        yield apb.UploadPart(finish=apb.UploadFinish(sha256=sha))

    def download(
        self,
        attachment_id: str,
        out: Path,
        *,
        progress: Progress | None = None,
        follow: bool = False,
    ) -> AttachmentInfo:
        """Save a verified attachment to `out`; the name appears only once the digest matches.

        Written to `out.part` first (mode 0600), hashed as it is written, and resumed
        from its last whole chunk. With `follow` a file the node is still receiving is
        downloaded as it arrives; `out` then appears only once the node has also said the
        whole file is verified and available, and the SHA-256 matches here too.
        """
        part = out.with_name(out.name + ".part")
        part.unlink(missing_ok=True)
        attempts = 0
        seen: list[apb.AttachmentInfo] = []
        while True:
            have = part.stat().st_size if part.exists() else 0
            first = have // seen[0].chunk_size if seen and seen[0].chunk_size else 0
            try:
                final, sha = self._download_into(attachment_id, part, first, progress, seen, follow)
                break
            except grpc.RpcError as e:
                if e.code() not in _TRANSIENT or attempts >= self.retries:
                    part.unlink(missing_ok=True)
                    raise self.client.call_error(e) from None
                attempts += 1
                time.sleep(self.retry_wait * attempts)
        info = seen[0]
        if (
            final.state not in ("available", "sending", "delivered")
            or sha != bytes(info.sha256)
            or part.stat().st_size != info.size
        ):
            part.unlink()
            raise DigestMismatchError(
                f"The download of {attachment_id} does not match its signed SHA-256; "
                "it was discarded."
            )
        os.replace(part, out)
        return AttachmentInfo.from_proto(final)

    def _download_into(
        self,
        attachment_id: str,
        part: Path,
        first: int,
        progress: Progress | None,
        seen: list[apb.AttachmentInfo],
        follow: bool,
    ) -> tuple[apb.AttachmentInfo, bytes]:
        """One Download call into `part` from chunk `first`. The file's last known info
        (the head's, or the closing one of a download that began while it was being
        received) and the SHA-256 of `part` as written."""
        stream = self._stub.Download(
            apb.DownloadRequest(attachment_id=attachment_id, from_chunk=first, follow=follow),
            timeout=None,
        )
        try:
            head: apb.DownloadPart = next(stream)
        except StopIteration:
            raise InvalidFieldError("The node sent no attachment.") from None
        if not seen:
            seen.append(head.info)
        final = head.info
        done = first * head.info.chunk_size
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as f:
            # Keep only the whole chunks already saved; the node resends from `first`.
            f.truncate(done)
            digest = hashlib.sha256()
            left = done  # a resume: hash the kept prefix once, then what arrives
            while left:
                block = f.read(min(left, 1 << 20))
                digest.update(block)
                left -= len(block)
            f.seek(done)
            for piece in stream:
                if piece.HasField("info"):
                    final = piece.info  # the node's closing word on a followed file
                    continue
                data = piece.data  # a protobuf bytes field is copied on every access
                f.write(data)
                digest.update(data)
                done += len(data)
                if progress:
                    progress(done)
            f.flush()
            os.fsync(f.fileno())
        return final, digest.digest()
