"""One PushAttachment stream per inbound file: a second stream for a file that one is
already writing is refused (UNAVAILABLE, retry later) before it cuts or writes anything,
and a stream that finds the file completed meanwhile leaves it alone. Otherwise a peer's
second stream could overwrite a file already verified and marked available with other
ciphertext under the same key, and the file served would not be the one signed for."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sim_peer import GB, NG, MakeNetwork, SimNode, SimRpcError, wait_for
from sqlalchemy import select

from exchange import forms
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange.attachment import MIN_CHUNK_SIZE, AttachmentKey, ChunkCipher
from exchange.case import Action
from exchange.casework import ACTION_TO_WIRE
from node.config import DeliverySection
from node.services.evidence_files import AVAILABLE, RECEIVING, _blob_id
from node.services.messages import IN, OUT
from node.storage import blobs
from node.storage.blobs import BUSY, BlobBusyError, LocalBlobStore
from node.storage.models import AttachmentRow, CaseRow

DELIVERY = DeliverySection(
    poll_interval_seconds=0.05,
    initial_backoff_seconds=0.01,
    max_backoff_seconds=0.05,
    rpc_timeout_seconds=3.0,
)
FORM_FILE = Path(__file__).resolve().parents[2] / "deploy" / "forms" / "mla-request.toml"
CHUNKS = 3


@pytest.fixture(autouse=True)
def _short_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second writer waits this long for the first before it is refused (10 s by
    default: long enough for a dead stream to be noticed; here the first is alive)."""
    monkeypatch.setattr(blobs, "LOCK_WAIT_SECONDS", 0.3)


def _submitted(node: SimNode, case_ref: str) -> bool:
    with node.db.read() as s:
        seq = s.scalars(select(CaseRow.seq).where(CaseRow.case_ref == case_ref)).first()
        return seq is not None and seq >= 1


def _upload_start(gb: SimNode, ng: SimNode, data: bytes, upload_id: str) -> apb.UploadStart:
    """A case GB submitted and NG holds, and the start of an upload of `data` to it."""
    form = forms.form_from_mapping(
        forms.CaseType.MLA,
        tomllib.loads(FORM_FILE.read_text(encoding="utf-8")),
        now_ms=int(time.time() * 1000),
    )
    ref = gb.cases.create(gb.officer, cpb.CreateCaseRequest(form=form))
    gb.cases.act(
        gb.officer, cpb.CaseActionRequest(case_ref=ref, action=ACTION_TO_WIRE[Action.SUBMIT])
    )
    wait_for(lambda: _submitted(ng, ref) and _submitted(gb, ref))
    return apb.UploadStart(
        case_ref=ref,
        name="ledger.csv",
        size=len(data),
        upload_id=upload_id,
        chunk_size=MIN_CHUNK_SIZE,
        media_type="text/csv",
    )


def _announced(gb: SimNode, ng: SimNode, data: bytes) -> tuple[AttachmentRow, AttachmentKey]:
    """GB uploads `data` to a case NG holds; once NG has accepted the EVIDENCE envelope
    (its inbound row is receiving), GB's outbound row and the file's key."""
    start = _upload_start(gb, ng, data, "upload-0001")
    parts = [apb.UploadPart(start=start)]
    for i in range(0, len(data), MIN_CHUNK_SIZE):
        chunk = apb.UploadData(index=i // MIN_CHUNK_SIZE, data=data[i : i + MIN_CHUNK_SIZE])
        parts.append(apb.UploadPart(data=chunk))
    parts.append(apb.UploadPart(finish=apb.UploadFinish(sha256=hashlib.sha256(data).digest())))
    assert gb.attachments.upload(gb.officer, iter(parts)).complete
    with gb.db.read() as s:
        row_id = s.scalars(select(AttachmentRow.id).where(AttachmentRow.direction == OUT)).one()
    row, key = gb.attachments.outbound(row_id)
    wait_for(lambda: _inbound(ng, row.attachment_id) is not None)
    return row, key


def _inbound(node: SimNode, attachment_id: bytes) -> AttachmentRow | None:
    with node.db.read() as s:
        row = s.scalars(
            select(AttachmentRow).where(
                AttachmentRow.attachment_id == attachment_id, AttachmentRow.direction == IN
            )
        ).first()
        if row is not None:
            s.expunge(row)
        return row


def _genuine(gb: SimNode, row: AttachmentRow, key: AttachmentKey) -> list[apb.AttachmentChunk]:
    return [
        apb.AttachmentChunk(
            attachment_id=row.attachment_id,
            index=i,
            ciphertext=gb.attachments.sealed_chunk(row, key, i),
        )
        for i in range(key.chunks)
    ]


def _forged(key: AttachmentKey, plain: bytes) -> list[apb.AttachmentChunk]:
    """Other content sealed under the same key: every chunk authenticates, only the
    whole file's SHA-256 tells it from the one signed for."""
    cipher = ChunkCipher.of(key)
    return [
        apb.AttachmentChunk(
            attachment_id=key.attachment_id,
            index=i,
            ciphertext=cipher.seal(
                i,
                plain[i * key.chunk_size : i * key.chunk_size + key.plain_length(i)],
                final=key.is_final(i),
            ),
        )
        for i in range(key.chunks)
    ]


def _stored_sha256(ng: SimNode, key: AttachmentKey) -> bytes:
    """SHA-256 of the plaintext of the file as NG stores it."""
    row = _inbound(ng, key.attachment_id)
    assert row is not None
    digest = hashlib.sha256()
    cipher = ChunkCipher.of(key)
    for i in range(key.chunks):
        stored = ng.attachments.sealed_chunk(row, key, i)
        digest.update(cipher.open(i, stored, final=key.is_final(i)))
    return digest.digest()


def _download(node: SimNode, attachment_id: bytes) -> bytes:
    parts = node.attachments.download(
        node.officer, apb.DownloadRequest(attachment_id=attachment_id.hex())
    )
    return b"".join(p.data for p in parts)


def _network(sim_network: MakeNetwork) -> tuple[SimNode, SimNode, bytes]:
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    gb.start()
    data = os.urandom((CHUNKS - 1) * MIN_CHUNK_SIZE + 1234)
    return gb, ng, data


def test_a_second_stream_is_refused_while_the_first_writes(sim_network: MakeNetwork) -> None:
    gb, ng, data = _network(sim_network)
    row, key = _announced(gb, ng, data)
    assert key.chunks == CHUNKS
    genuine = _genuine(gb, row, key)
    forged = _forged(key, b"Q" * len(data))
    paused, release = threading.Event(), threading.Event()

    def first() -> Iterator[apb.AttachmentChunk]:
        yield genuine[0]
        paused.set()  # chunk 0 is written: NG is mid-stream on this file
        assert release.wait(30)
        yield from genuine[1:]

    result: list[object] = []

    def push_first() -> None:
        try:
            result.append(gb.peers.push_attachment(NG, first(), 30.0))
        except Exception as e:
            result.append(e)

    thread = threading.Thread(target=push_first)
    thread.start()
    try:
        assert paused.wait(30)
        with pytest.raises(SimRpcError) as refused:
            gb.peers.push_attachment(NG, iter(forged), 30.0)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert refused.value.details() == BUSY
    finally:
        release.set()
        thread.join(60)
    done = result[0]
    assert isinstance(done, apb.AttachmentProgress), done
    assert done.complete
    assert done.confirmed_chunks == CHUNKS
    inbound = _inbound(ng, row.attachment_id)
    assert inbound is not None
    assert inbound.state == AVAILABLE
    assert _stored_sha256(ng, key) == key.sha256 == hashlib.sha256(data).digest()
    assert _download(ng, row.attachment_id) == data


def test_a_stream_that_finds_the_file_completed_meanwhile_leaves_it_alone(
    sim_network: MakeNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second stream read the row while it was still receiving; before it takes the
    file, the first one completes it. The second must not cut the file back and rewrite
    it from the position it read."""
    gb, ng, data = _network(sim_network)
    row, key = _announced(gb, ng, data)
    genuine = _genuine(gb, row, key)
    forged = _forged(key, b"Q" * len(data))
    real_key = ng.attachments._key
    calls: list[int] = []

    def key_then_let_the_first_finish(r: AttachmentRow) -> AttachmentKey:
        calls.append(1)
        if len(calls) == 1:  # the second stream, between its read of the row and the blob
            assert gb.peers.push_attachment(NG, iter(genuine), 30.0).complete
        return real_key(r)

    monkeypatch.setattr(ng.attachments, "_key", key_then_let_the_first_finish)
    answer = gb.peers.push_attachment(NG, iter(forged), 30.0)
    monkeypatch.undo()
    assert answer.complete
    assert answer.confirmed_chunks == CHUNKS
    inbound = _inbound(ng, row.attachment_id)
    assert inbound is not None
    assert inbound.state == AVAILABLE
    assert _stored_sha256(ng, key) == key.sha256
    assert _download(ng, row.attachment_id) == data


# -- the filesystem store's one writer per blob ------------------------------------------


def test_a_file_whose_check_was_cut_off_completes_at_the_senders_next_status_call(
    sim_network: MakeNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chunk confirmed, then the node stopped before checking the file against its
    signed digest: the sender has nothing left to push (an empty push is refused), so the
    file must settle when the sender next asks how far NG got, not stay receiving."""
    gb, ng, data = _network(sim_network)
    desk = ng.attachments
    finish = desk._finish_inbound

    def node_stops(row_id: int, verifier: object) -> None:
        raise RuntimeError("the node stops here")

    monkeypatch.setattr(desk, "_finish_inbound", node_stops)
    row, key = _announced(gb, ng, data)
    with pytest.raises((RuntimeError, SimRpcError)):
        gb.peers.push_attachment(NG, iter(_genuine(gb, row, key)), 30.0)
    stuck = _inbound(ng, row.attachment_id)
    assert stuck is not None
    assert (stuck.state, stuck.confirmed_chunks) == (RECEIVING, CHUNKS)
    desk._progress.clear()  # a restarted node has no verifier in memory
    monkeypatch.setattr(desk, "_finish_inbound", finish)
    # What GB's push worker asks before each push: NG settles the file then.
    status = gb.peers.attachment_status(
        NG, apb.AttachmentStatusRequest(attachment_id=row.attachment_id), 30.0
    )
    assert (status.complete, status.confirmed_chunks) == (True, CHUNKS)
    settled = _inbound(ng, row.attachment_id)
    assert settled is not None
    assert settled.state == AVAILABLE
    assert _stored_sha256(ng, key) == hashlib.sha256(data).digest()
    assert _download(ng, row.attachment_id) == data
    received = [
        e
        for e in ng.store.entries(0, ng.store.size())
        if b'"attachment.received"' in (e.entry or b"")
    ]
    assert len(received) == 1


def test_an_upload_resumed_while_its_old_stream_lives_does_not_rewrite_the_file(
    sim_network: MakeNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An officer's client resumes an upload while the node still runs the old stream
    (the connection broke, the node has not noticed): the resume waits for the file,
    then finds it complete and leaves it alone, instead of cutting it back to where the
    row was when it asked."""
    monkeypatch.setattr(blobs, "LOCK_WAIT_SECONDS", 20.0)
    gb, ng, data = _network(sim_network)
    start = _upload_start(gb, ng, data, "upload-0002")
    chunks = [
        apb.UploadPart(data=apb.UploadData(index=i, data=data[o : o + MIN_CHUNK_SIZE]))
        for i, o in enumerate(range(0, len(data), MIN_CHUNK_SIZE))
    ]
    done = apb.UploadPart(finish=apb.UploadFinish(sha256=hashlib.sha256(data).digest()))
    paused, release = threading.Event(), threading.Event()

    def old_stream() -> Iterator[apb.UploadPart]:
        yield apb.UploadPart(start=start)
        yield from chunks
        paused.set()  # every chunk written: the file is about to be checked
        assert release.wait(30)
        yield done

    results: dict[str, object] = {}

    def run(name: str, parts: Iterator[apb.UploadPart]) -> None:
        try:
            results[name] = gb.attachments.upload(gb.officer, parts)
        except Exception as e:
            results[name] = e

    first = threading.Thread(target=run, args=("old", old_stream()))
    first.start()
    assert paused.wait(30)
    # The resume, sent from chunk 0 as the client saw it, cut off after one chunk: it
    # waits for the file, and must then leave the completed file as it is.
    second = threading.Thread(
        target=run, args=("resume", iter([apb.UploadPart(start=start), chunks[0]]))
    )
    second.start()
    time.sleep(0.3)
    release.set()
    first.join(60)
    second.join(60)
    old, resumed = results["old"], results["resume"]
    assert isinstance(old, apb.UploadStatus), old
    assert isinstance(resumed, apb.UploadStatus), resumed
    assert old.complete
    assert resumed.complete
    with gb.db.read() as s:
        (row,) = s.scalars(select(AttachmentRow).where(AttachmentRow.direction == OUT)).all()
        s.expunge(row)
    assert (
        gb.attachments.blobs.size(_blob_id(row)) == gb.attachments.outbound(row.id)[1].cipher_size
    )
    assert _download(gb, row.attachment_id) == data


def test_a_local_blob_has_one_writer_at_a_time(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    replica = LocalBlobStore(tmp_path / "blobs")  # another store on the same directory
    w = store.open_append("abcdef", 0)
    w.write(b"kept")
    w.sync()
    with pytest.raises(BlobBusyError, match="try again"):
        store.open_append("abcdef", 0)
    with pytest.raises(BlobBusyError):
        replica.open_append("abcdef", 0)
    asked: list[int] = []

    def keep() -> int:
        asked.append(1)
        return 0

    with pytest.raises(BlobBusyError):
        replica.open_append("abcdef", keep)
    assert asked == []  # refused before the keep function could read anything
    w.write(b"more")
    w.sync()
    w.close()
    assert store.read("abcdef", 0, 100) == b"keptmore"  # the refusals cut nothing
    again = replica.open_append("abcdef", 4)  # free once the first writer closed
    again.write(b"!")
    again.sync()
    again.close()
    assert store.read("abcdef", 0, 100) == b"kept!"


def test_a_failing_keep_function_leaves_the_blob_untouched_and_free(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    w = store.open_append("abcdef", 0)
    w.write(b"12345")
    w.sync()
    w.close()

    def settled() -> int:
        raise LookupError("completed meanwhile")

    with pytest.raises(LookupError):
        store.open_append("abcdef", settled)
    assert store.read("abcdef", 0, 100) == b"12345"
    store.open_append("abcdef", lambda: 5).close()
    assert store.size("abcdef") == 5


_HOLD = """
import sys
from pathlib import Path
from node.storage.blobs import LocalBlobStore
w = LocalBlobStore(Path(sys.argv[1])).open_append("abcdef", 0)
print("held", flush=True)
sys.stdin.readline()
w.close()
"""


def test_a_local_blob_writer_in_another_process_excludes_this_one(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(BlobBusyError):
            LocalBlobStore(root).open_append("abcdef", 0)
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(30)
    LocalBlobStore(root).open_append("abcdef", 0).close()


def test_a_writer_waits_for_the_one_before_it_to_close(tmp_path: Path) -> None:
    """A client that resumes at once after its connection broke: the node closes the dead
    stream's writer a moment later, and the new writer gets the blob then."""
    store = LocalBlobStore(tmp_path / "blobs", lock_wait=5.0)
    first = store.open_append("abcdef", 0)
    first.write(b"kept")
    first.sync()
    timer = threading.Timer(0.3, first.close)
    timer.start()
    started = time.monotonic()
    second = store.open_append("abcdef", 4)
    assert 0.2 < time.monotonic() - started < 5.0
    second.close()
    timer.join()
    assert store.read("abcdef", 0, 10) == b"kept"
