"""The evidence pusher against an in-process peer (tests/node/sim_peer.py): once NG has
receipted GB's EVIDENCE envelope, GB's pusher streams the file's chunks to NG's real
attachment desk, which checks every chunk and the file's digest."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import structlog
from sim_peer import GB, NG, MakeNetwork, SimNode, wait_for
from sqlalchemy import select

from exchange import forms
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange.attachment import MIN_CHUNK_SIZE, DigestMismatchError
from exchange.case import Action
from exchange.casework import ACTION_TO_WIRE
from exchange.errors import MlaxError, Status
from node.config import DeliverySection
from node.services import evidence, evidence_inbound
from node.services.evidence_files import AVAILABLE, SEND_FAILED, SENT
from node.services.messages import IN, OUT
from node.storage.models import AttachmentRow, CaseRow
from node.workers.evidence_push import AttachmentPusher

DELIVERY = DeliverySection(
    poll_interval_seconds=0.05,
    initial_backoff_seconds=0.01,
    max_backoff_seconds=0.05,
    rpc_timeout_seconds=3.0,
)
FORM_FILE = Path(__file__).resolve().parents[3] / "deploy" / "forms" / "mla-request.toml"


def _case(gb: SimNode, ng: SimNode) -> str:
    """An MLA request from GB, submitted and held by NG."""
    form = forms.form_from_mapping(
        forms.CaseType.MLA,
        tomllib.loads(FORM_FILE.read_text(encoding="utf-8")),
        now_ms=int(time.time() * 1000),
    )
    ref = gb.cases.create(gb.officer, cpb.CreateCaseRequest(form=form))
    gb.cases.act(
        gb.officer, cpb.CaseActionRequest(case_ref=ref, action=ACTION_TO_WIRE[Action.SUBMIT])
    )
    # Held by NG, and submitted at GB too (GB applies its step when NG's receipt arrives).
    wait_for(lambda: _submitted(ng, ref) and _submitted(gb, ref))
    return ref


def _submitted(node: SimNode, case_ref: str) -> bool:
    with node.db.read() as s:
        seq = s.scalars(select(CaseRow.seq).where(CaseRow.case_ref == case_ref)).first()
        return seq is not None and seq >= 1


def _upload(gb: SimNode, case_ref: str, data: bytes) -> str:
    """GB's officer uploads `data` to the case; the attachment id."""
    chunk = MIN_CHUNK_SIZE
    start = apb.UploadStart(
        case_ref=case_ref,
        name="ledger.csv",
        size=len(data),
        upload_id="upload-0001",
        chunk_size=chunk,
        media_type="text/csv",
    )
    parts = [apb.UploadPart(start=start)]
    for i in range(0, len(data), chunk):
        parts.append(
            apb.UploadPart(data=apb.UploadData(index=i // chunk, data=data[i : i + chunk]))
        )
    parts.append(apb.UploadPart(finish=apb.UploadFinish(sha256=hashlib.sha256(data).digest())))
    status = gb.attachments.upload(gb.officer, iter(parts))
    assert status.complete
    return status.attachment_id


def _state(node: SimNode, attachment_id: str, direction: str) -> str | None:
    with node.db.read() as s:
        return s.scalars(
            select(AttachmentRow.state).where(
                AttachmentRow.attachment_id == bytes.fromhex(attachment_id),
                AttachmentRow.direction == direction,
            )
        ).first()


def _download(node: SimNode, attachment_id: str) -> bytes:
    parts = node.attachments.download(
        node.officer, apb.DownloadRequest(attachment_id=attachment_id)
    )
    return b"".join(p.data for p in parts)


def test_delivered_evidence_is_pushed_to_the_peer_chunk_by_chunk(sim_network: MakeNetwork) -> None:
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    gb.start()
    ref = _case(gb, ng)
    data = os.urandom(2 * MIN_CHUNK_SIZE + 1234)  # three chunks, the last one short
    attachment_id = _upload(gb, ref, data)
    pusher = AttachmentPusher(gb.attachments, gb.peers, 3.0, gb.pushes)
    pusher.start()
    try:
        wait_for(lambda: _state(gb, attachment_id, OUT) == SENT)
    finally:
        pusher.stop()
    assert _state(ng, attachment_id, IN) == AVAILABLE
    assert _download(ng, attachment_id) == data
    assert gb.peers.calls_to(NG, "AttachmentStatus") == 1
    assert gb.peers.calls_to(NG, "PushAttachment") == 1


def test_a_push_the_peer_did_not_take_is_resumed(sim_network: MakeNetwork) -> None:
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    gb.start()
    ref = _case(gb, ng)
    data = os.urandom(MIN_CHUNK_SIZE + 1)
    attachment_id = _upload(gb, ref, data)
    wait_for(lambda: _state(ng, attachment_id, IN) is not None)  # the envelope is in
    gb.peers.fail(NG, grpc.StatusCode.UNAVAILABLE, method="PushAttachment")
    pusher = AttachmentPusher(gb.attachments, gb.peers, 3.0, gb.pushes)
    with structlog.testing.capture_logs() as logs:
        pusher.start()
        try:
            wait_for(lambda: _state(gb, attachment_id, OUT) == SENT)
        finally:
            pusher.stop()
    assert [e["attempts"] for e in logs if e["event"] == "attachment_push_failed"] == [1]
    assert gb.peers.calls_to(NG, "PushAttachment") == 2
    assert _download(ng, attachment_id) == data


def _confirmed(node: SimNode, attachment_id: bytes, direction: str) -> int:
    with node.db.read() as s:
        found = s.scalars(
            select(AttachmentRow.confirmed_chunks).where(
                AttachmentRow.attachment_id == attachment_id,
                AttachmentRow.direction == direction,
            )
        ).first()
        return found or 0


class _Upload:
    """An upload fed by the test: start, declared digest and every chunk, then the
    finish once the test releases it."""

    def __init__(self, gb: SimNode, case_ref: str, data: bytes, declared: bytes) -> None:
        self.chunk = MIN_CHUNK_SIZE
        self.data = data
        self.start = apb.UploadStart(
            case_ref=case_ref,
            name="recording.bin",
            size=len(data),
            upload_id="pipelined-0001",
            chunk_size=self.chunk,
        )
        self.declared = declared
        self.release = threading.Event()
        self.result: list[object] = []
        self.thread = threading.Thread(target=self._run, args=(gb,))
        self.thread.start()

    def _parts(self) -> Iterator[apb.UploadPart]:
        yield apb.UploadPart(start=self.start)
        yield apb.UploadPart(digest=apb.UploadDigest(sha256=self.declared))
        for i in range(0, len(self.data), self.chunk):
            yield apb.UploadPart(
                data=apb.UploadData(index=i // self.chunk, data=self.data[i : i + self.chunk])
            )
        self.release.wait(60)  # the finish waits for the test
        yield apb.UploadPart(finish=apb.UploadFinish(sha256=self.declared))

    def _run(self, gb: SimNode) -> None:
        try:
            self.result.append(gb.attachments.upload(gb.officer, self._parts()))
        except Exception as e:
            self.result.append(e)


def test_the_push_follows_an_upload_and_holds_back_its_last_chunk_until_verified(
    sim_network: MakeNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Confirm every chunk as it arrives, so that the test can see the push follow.
    monkeypatch.setattr(evidence, "SYNC_EVERY_BYTES", 1)  # the upload
    monkeypatch.setattr(evidence_inbound, "SYNC_EVERY_BYTES", 1)  # and the peer's receipt
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    gb.start()
    ref = _case(gb, ng)
    data = os.urandom(4 * MIN_CHUNK_SIZE + 99)  # five chunks
    pusher = AttachmentPusher(gb.attachments, gb.peers, 3.0, gb.pushes)
    pusher.start()
    upload = _Upload(gb, ref, data, hashlib.sha256(data).digest())
    try:
        wait_for(lambda: _state(gb, _out_id(gb), OUT) is not None)
        attachment_id = bytes.fromhex(_out_id(gb))
        # GB holds all five chunks durably, but before the finish (and its check of the
        # whole file's SHA-256) NG gets every chunk but the last, authenticated.
        wait_for(lambda: _confirmed(gb, attachment_id, OUT) == 5)
        wait_for(lambda: _confirmed(ng, attachment_id, IN) == 4)
        assert _state(ng, attachment_id.hex(), IN) == "receiving"
        time.sleep(0.3)  # the last chunk does not follow on its own
        assert _confirmed(ng, attachment_id, IN) == 4
        upload.release.set()
        upload.thread.join(60)
        assert isinstance(upload.result[0], apb.UploadStatus)
        assert upload.result[0].complete
        wait_for(lambda: _state(gb, attachment_id.hex(), OUT) == SENT)
    finally:
        upload.release.set()
        pusher.stop()
    assert _state(ng, attachment_id.hex(), IN) == AVAILABLE
    assert _download(ng, attachment_id.hex()) == data


def test_an_upload_that_does_not_match_its_declared_digest_never_completes_at_the_peer(
    sim_network: MakeNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evidence, "SYNC_EVERY_BYTES", 1)  # the upload
    monkeypatch.setattr(evidence_inbound, "SYNC_EVERY_BYTES", 1)  # and the peer's receipt
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    gb.start()
    ref = _case(gb, ng)
    data = os.urandom(2 * MIN_CHUNK_SIZE + 5)
    pusher = AttachmentPusher(gb.attachments, gb.peers, 3.0, gb.pushes)
    pusher.start()
    upload = _Upload(gb, ref, data, hashlib.sha256(b"another file").digest())
    try:
        wait_for(lambda: _state(gb, _out_id(gb), OUT) is not None)
        attachment_id = bytes.fromhex(_out_id(gb))
        wait_for(lambda: _confirmed(gb, attachment_id, OUT) == 3)
        wait_for(lambda: _confirmed(ng, attachment_id, IN) == 2)
        upload.release.set()
        upload.thread.join(60)
        assert isinstance(upload.result[0], DigestMismatchError)
        wait_for(lambda: _state(gb, attachment_id.hex(), OUT) == SEND_FAILED)
        time.sleep(0.5)
    finally:
        upload.release.set()
        pusher.stop()
    # NG never got the last chunk: the file stays unfinished and cannot be downloaded.
    assert _confirmed(ng, attachment_id, IN) == 2
    assert _state(ng, attachment_id.hex(), IN) == "receiving"
    with pytest.raises(MlaxError) as refused:
        _download(ng, attachment_id.hex())
    assert refused.value.status == Status.FAILED_PRECONDITION


def _out_id(gb: SimNode) -> str:
    with gb.db.read() as s:
        found = s.scalars(
            select(AttachmentRow.attachment_id).where(
                AttachmentRow.direction == OUT, AttachmentRow.message_id != b""
            )
        ).first()
    return found.hex() if found else "00"
