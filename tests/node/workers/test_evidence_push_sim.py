"""The evidence pusher against an in-process peer (tests/node/sim_peer.py): once NG has
receipted GB's EVIDENCE envelope, GB's pusher streams the file's chunks to NG's real
attachment desk, which checks every chunk and the file's digest."""

from __future__ import annotations

import hashlib
import os
import time
import tomllib
from pathlib import Path

import grpc
import structlog
from sim_peer import GB, NG, MakeNetwork, SimNode, wait_for
from sqlalchemy import select

from exchange import forms
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange.attachment import MIN_CHUNK_SIZE
from exchange.case import Action
from exchange.casework import ACTION_TO_WIRE
from node.config import DeliverySection
from node.services.evidence import AVAILABLE, SENT
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
