"""Evidence files between real nodes: tampered and truncated chunks are refused, an
interrupted upload stays invisible until resumed, a receiver killed mid-transfer
resumes from its last confirmed chunk with the file intact (on either blob backend), and
a file followed while it arrives gets its name only once verified."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from exchange import forms
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange.attachment import ChunkCipher, new_attachment_key
from exchange.encoding import now_ms
from exchange.envelope import AttachmentDigest, MessageType, seal
from node.client import NodeCallError, OfficerClient
from node.client.cases import CaseClient
from node.devtools.federation import DEMO_AGENCIES, NodeProcess, build_federation

if TYPE_CHECKING:
    from conftest import LiveFederation

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"
FORMS = Path(__file__).resolve().parents[2] / "deploy" / "forms"
CHUNK = 256 * 1024


def _open_case(cases: CaseClient, supervisor: CaseClient, recipient: str) -> str:
    data = tomllib.loads((FORMS / "mla-request.toml").read_text())
    data["requested_authority"] = {"agency_id": recipient, "name": recipient}
    form = forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms())
    ref = cases.create(form).summary.case_ref
    cases.act(ref, "submit")
    supervisor.approve(ref)
    return ref


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except NodeCallError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


def _submitted(live: LiveFederation, recipient: str) -> str:
    gb = CaseClient(live.client(GB))
    ref = _open_case(gb, CaseClient(live.client(GB, "supervisor")), recipient)
    other = CaseClient(live.client(recipient))
    _wait(lambda: other.get(ref).summary.state == "submitted", 20, "the case did not arrive")
    _wait(lambda: not gb.get(ref).summary.pending_action, 20, "the receipt did not come back")
    return ref


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_tampered_and_truncated_chunks_are_refused_and_change_nothing(
    live: LiveFederation, tmp_path: Path
) -> None:
    """GB announces a file to NG by hand, then pushes bad chunks before the good ones."""
    ref = _submitted(live, NG)
    data = os.urandom(2 * CHUNK + 1000)
    key = new_attachment_key(
        name="ledger.xlsx", size=len(data), sha256=hashlib.sha256(data).digest(), chunk_size=CHUNK
    )
    cipher = ChunkCipher.of(key)
    chunks = [
        cipher.seal(i, data[i * CHUNK : (i + 1) * CHUNK], final=key.is_final(i))
        for i in range(key.chunks)
    ]
    body = apb.EvidenceBody(case_ref=ref, attachments=[key.to_proto()])
    at = now_ms()
    env = seal(
        live.identity(GB).sender(published=live.card(GB)),
        live.card(NG),
        body.SerializeToString(deterministic=True),
        MessageType.EVIDENCE,
        now_ms=at,
        case_ref=ref,
        attachments=(AttachmentDigest(name=key.name, sha256=key.sha256, size=key.size),),
    )
    stub = fgrpc.FederationStub(live.peer_channel(GB, NG))
    stub.Deliver(epb.Envelope.FromString(env.to_bytes()), timeout=10)
    ng = CaseClient(live.client(NG))

    def push(*items: tuple[int, bytes]) -> apb.AttachmentProgress:
        reply: apb.AttachmentProgress = stub.PushAttachment(
            iter(
                apb.AttachmentChunk(attachment_id=key.attachment_id, index=i, ciphertext=c)
                for i, c in items
            ),
            timeout=10,
        )
        return reply

    def status() -> apb.AttachmentProgress:
        reply: apb.AttachmentProgress = stub.AttachmentStatus(
            apb.AttachmentStatusRequest(attachment_id=key.attachment_id), timeout=10
        )
        return reply

    flipped = bytearray(chunks[0])
    flipped[100] ^= 1
    bad: list[tuple[int, bytes]] = [
        (0, bytes(flipped)),  # one bit changed
        (0, chunks[1]),  # chunk 1 presented as chunk 0
        (0, chunks[0][:-1]),  # truncated chunk
        (1, chunks[1]),  # skips chunk 0
    ]
    for item in bad:
        with pytest.raises(grpc.RpcError) as e:
            push(item)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert status().confirmed_chunks == 0
    # The final chunk can't be passed off as a middle one (or the stream cut before it).
    assert push((0, chunks[0])).confirmed_chunks == 1
    with pytest.raises(grpc.RpcError):
        push((1, cipher.seal(1, data[CHUNK : 2 * CHUNK], final=True)))
    assert push((1, chunks[1])).confirmed_chunks == 2
    progress = status()
    assert not progress.complete
    attachment_id = key.attachment_id.hex()
    files = {a.attachment_id: a for a in ng.get(ref).attachments}
    assert files[attachment_id].state == "receiving"
    with pytest.raises(NodeCallError) as refused:
        ng.download(attachment_id, tmp_path / "early.bin")
    assert refused.value.status == "FAILED_PRECONDITION"
    assert not (tmp_path / "early.bin").exists()
    # The last chunk completes the file, and NG's officer gets exactly the bytes sent.
    assert push((2, chunks[2])).complete
    ng.download(attachment_id, tmp_path / "ledger.xlsx")
    assert (tmp_path / "ledger.xlsx").read_bytes() == data
    kinds = [k for k, f in live.ledger_kinds(NG) if f.get("attachment_id") == attachment_id]
    assert kinds.count("attachment.chunk_refused") >= 4
    assert "attachment.received" in kinds
    assert "attachment.downloaded" in kinds


def _announce_by_hand(
    live: LiveFederation, ref: str, data: bytes, signed_sha256: bytes
) -> tuple[bytes, list[bytes], fgrpc.FederationStub]:
    """GB announces a file to NG by hand (its EVIDENCE envelope naming `signed_sha256`);
    the attachment id, the sealed chunks, and GB's federation stub to push them with."""
    key = new_attachment_key(
        name="ledger.xlsx", size=len(data), sha256=signed_sha256, chunk_size=CHUNK
    )
    cipher = ChunkCipher.of(key)
    chunks = [
        cipher.seal(i, data[i * CHUNK : (i + 1) * CHUNK], final=key.is_final(i))
        for i in range(key.chunks)
    ]
    body = apb.EvidenceBody(case_ref=ref, attachments=[key.to_proto()])
    env = seal(
        live.identity(GB).sender(published=live.card(GB)),
        live.card(NG),
        body.SerializeToString(deterministic=True),
        MessageType.EVIDENCE,
        now_ms=now_ms(),
        case_ref=ref,
        attachments=(AttachmentDigest(name=key.name, sha256=key.sha256, size=key.size),),
    )
    stub = fgrpc.FederationStub(live.peer_channel(GB, NG))
    stub.Deliver(epb.Envelope.FromString(env.to_bytes()), timeout=10)
    return key.attachment_id, chunks, stub


def _push(
    stub: fgrpc.FederationStub, attachment_id: bytes, first: int, chunks: list[bytes]
) -> None:
    stub.PushAttachment(
        iter(
            apb.AttachmentChunk(attachment_id=attachment_id, index=first + i, ciphertext=c)
            for i, c in enumerate(chunks)
        ),
        timeout=10,
    )


class _Follow:
    """NG's officer downloads a file with `follow`, in a thread."""

    def __init__(self, live: LiveFederation, attachment_id: bytes, out: Path) -> None:
        self.out = out
        self.outcome: list[object] = []
        cases = CaseClient(live.client(NG), retry_wait=0.1)

        def run() -> None:
            try:
                self.outcome.append(cases.download(attachment_id.hex(), out, follow=True))
            except Exception as e:
                self.outcome.append(e)

        self.thread = threading.Thread(target=run)
        self.thread.start()

    @property
    def part(self) -> Path:
        return self.out.with_name(self.out.name + ".part")


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_a_followed_download_gets_chunks_as_they_land_and_its_name_once_verified(
    live: LiveFederation, tmp_path: Path
) -> None:
    ref = _submitted(live, NG)
    data = os.urandom(3 * CHUNK + 10)
    attachment_id, chunks, stub = _announce_by_hand(live, ref, data, hashlib.sha256(data).digest())
    follow = _Follow(live, attachment_id, tmp_path / "ledger.xlsx")
    _push(stub, attachment_id, 0, chunks[:2])
    # The first two chunks reach the officer while the file is still being received.
    _wait(
        lambda: follow.part.exists() and follow.part.stat().st_size == 2 * CHUNK,
        20,
        "the landed chunks did not reach the followed download",
    )
    assert not follow.out.exists()
    assert follow.thread.is_alive()
    _push(stub, attachment_id, 2, chunks[2:])
    follow.thread.join(30)
    info = follow.outcome[0]
    assert not isinstance(info, Exception), info
    assert follow.out.read_bytes() == data
    assert not follow.part.exists()


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_a_followed_file_that_fails_its_signed_digest_is_discarded(
    live: LiveFederation, tmp_path: Path
) -> None:
    ref = _submitted(live, NG)
    data = os.urandom(2 * CHUNK + 10)
    # Every chunk authentic, but the signed SHA-256 is another file's.
    attachment_id, chunks, stub = _announce_by_hand(
        live, ref, data, hashlib.sha256(b"another file").digest()
    )
    follow = _Follow(live, attachment_id, tmp_path / "ledger.xlsx")
    _push(stub, attachment_id, 0, chunks[:1])
    _wait(lambda: follow.part.exists(), 20, "the followed download did not start")
    _push(stub, attachment_id, 1, chunks[1:])
    follow.thread.join(30)
    refused = follow.outcome[0]
    assert isinstance(refused, NodeCallError)
    assert refused.status == "FAILED_PRECONDITION"
    assert not follow.out.exists()
    assert not follow.part.exists()
    states = {a.attachment_id: a.state for a in CaseClient(live.client(NG)).get(ref).attachments}
    assert states[attachment_id.hex()] == "rejected"


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_an_interrupted_upload_stays_invisible_until_resumed(
    live: LiveFederation, tmp_path: Path
) -> None:
    ref = _submitted(live, FR)
    gb = CaseClient(live.client(GB), retry_wait=0.1)
    path = tmp_path / "photos.zip"
    data = os.urandom(5 * CHUNK + 17)
    path.write_bytes(data)
    upload_id = "interrupted-upload-1"
    start = apb.UploadStart(
        case_ref=ref, name=path.name, size=len(data), upload_id=upload_id, chunk_size=CHUNK
    )

    def first_chunks() -> Iterator[apb.UploadPart]:
        yield apb.UploadPart(start=start)
        for i in range(3):
            yield apb.UploadPart(
                data=apb.UploadData(index=i, data=data[i * CHUNK : (i + 1) * CHUNK])
            )
        # The client stops here without a finish, as a dropped connection would.

    stub = live.client(GB)._stub
    partial = stub.Upload(first_chunks(), timeout=10)
    assert not partial.complete
    assert partial.confirmed_chunks == 3
    # Nobody sees a half upload: not in the case, not at the peer.
    assert list(gb.get(ref).attachments) == []
    assert list(CaseClient(live.client(FR)).get(ref).attachments) == []
    # A retry with the same id carries on from chunk 3 and completes.
    status = gb.attach(ref, path, chunk_size=CHUNK, upload_id=upload_id)
    assert status.complete
    fr = CaseClient(live.client(FR))
    _wait(
        lambda: [a.state for a in fr.get(ref).attachments] == ["available"],
        20,
        "the resumed upload did not reach FR",
    )
    fr.download(status.attachment_id, tmp_path / "got.zip")
    assert (tmp_path / "got.zip").read_bytes() == data
    # An upload id cannot be reused for another file.
    other = tmp_path / "other.bin"
    other.write_bytes(b"x" * 10)
    with pytest.raises(NodeCallError) as e:
        gb.attach(ref, other, upload_id=upload_id)
    assert e.value.status == "ALREADY_EXISTS"


PASS, OFFICER_PASS = b"node-pass", b"officer-pass"


@pytest.mark.integration
def test_receiver_killed_mid_transfer_resumes_and_the_file_is_intact(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    env = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")
    fed = build_federation(
        tmp_path / "fed",
        PASS,
        OFFICER_PASS,
        agencies=DEMO_AGENCIES[:2],
        db_urls=storage,
        delivery={"initial_backoff_seconds": 0.1, "max_backoff_seconds": 0.5},
    )
    sender_agency, receiver_agency = (a for a, _ in DEMO_AGENCIES[:2])
    if storage:  # PostgreSQL: the evidence goes into rows of the nodes' databases too
        for setup in fed.nodes.values():
            text = setup.config.read_text()
            setup.config.write_text(
                text.replace("[storage]\n", '[storage]\nblob_backend = "postgresql"\n', 1)
            )
    nodes = {a: NodeProcess(s, env) for a, s in fed.nodes.items()}
    for n in nodes.values():
        n.start()
    clients: list[OfficerClient] = []

    def client(agency: str, role: str = "officer") -> CaseClient:
        c = OfficerClient.from_bundle(fed.nodes[agency].credentials[role], OFFICER_PASS)
        clients.append(c)
        return CaseClient(c, retry_wait=0.2)

    try:
        sender, receiver = client(sender_agency), client(receiver_agency)
        data = tomllib.loads((FORMS / "mla-request.toml").read_text())
        data["requesting_authority"] = {"agency_id": sender_agency, "name": "A"}
        data["requested_authority"] = {"agency_id": receiver_agency, "name": "B"}
        form = forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms())
        ref = sender.create(form).summary.case_ref
        sender.act(ref, "submit")
        client(sender_agency, "supervisor").approve(ref)
        _wait(lambda: receiver.get(ref).summary.state == "submitted", 30, "no case")
        _wait(lambda: not sender.get(ref).summary.pending_action, 30, "no receipt")

        path = tmp_path / "recording.bin"
        with path.open("wb") as f:
            for _ in range(96):
                f.write(os.urandom(1 << 20))
        status = sender.attach(ref, path)
        attachment_id = status.attachment_id

        def confirmed() -> int:
            for a in receiver.get(ref).attachments:
                if a.attachment_id == attachment_id:
                    return a.confirmed_chunks
            return 0

        # Kill the receiver once part of the file is durable there, then restart it.
        killed = threading.Event()

        def chaos() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed.is_set():
                try:
                    if confirmed() >= 16:
                        nodes[receiver_agency].kill()
                        killed.set()
                        return
                except NodeCallError:
                    pass
                time.sleep(0.02)

        thread = threading.Thread(target=chaos)
        thread.start()
        thread.join(70)
        assert killed.is_set(), "the transfer finished before the receiver could be killed"
        nodes[receiver_agency].start()
        receiver = client(receiver_agency)
        _wait(
            lambda: any(
                a.attachment_id == attachment_id and a.state == "available"
                for a in receiver.get(ref).attachments
            ),
            120,
            "the transfer did not resume to the end",
        )
        out = tmp_path / "received.bin"
        receiver.download(attachment_id, out)
        digest = hashlib.sha256()
        with out.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        assert digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
        log = (fed.nodes[receiver_agency].root / "node.log").read_text()
        assert log.count('"event": "attachment_received"') == 1
        if storage:  # the evidence lives in the databases, not in files
            for setup in fed.nodes.values():
                assert not list((setup.root / "data" / "attachments").glob("*/*"))
    finally:
        for c in clients:
            c.close()
        for n in nodes.values():
            n.stop()


@pytest.mark.integration
def test_a_step_crossing_the_requesting_agencys_pending_one_is_refused(
    tmp_path: Path,
) -> None:
    """GB (requesting) withdraws while FR is down, so its step stays pending; an FR
    acknowledgement of the same step reaches GB meanwhile: GB refuses it (ABORTED: the
    requesting agency's step stands), and once FR is back both nodes hold GB's
    withdrawal as step 2, and only it (docs/protocol-casework.md, "Steps in flight")."""
    from exchange._proto.mlax.v1 import casework_pb2 as cpb
    from exchange.case import Action
    from exchange.casework import ACTION_TO_WIRE
    from exchange.directory import Directory
    from keys.directory_file import read_signed_directory
    from keys.identity import load_identity

    env = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")
    fed = build_federation(
        tmp_path / "fed",
        PASS,
        OFFICER_PASS,
        agencies=DEMO_AGENCIES[:2],
        delivery={"initial_backoff_seconds": 0.2, "max_backoff_seconds": 0.5},
    )
    gb, fr = (a for a, _ in DEMO_AGENCIES[:2])
    nodes = {a: NodeProcess(s, env) for a, s in fed.nodes.items()}
    for n in nodes.values():
        n.start()
    clients: list[OfficerClient] = []

    def client(agency: str, role: str = "officer") -> CaseClient:
        c = OfficerClient.from_bundle(fed.nodes[agency].credentials[role], OFFICER_PASS)
        clients.append(c)
        return CaseClient(c, retry_wait=0.2)

    try:
        requester = client(gb)
        data = tomllib.loads((FORMS / "mla-request.toml").read_text())
        data["requested_authority"] = {"agency_id": fr, "name": fr}
        form = forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms())
        ref = requester.create(form).summary.case_ref
        requester.act(ref, "submit")
        client(gb, "supervisor").approve(ref)
        responder = client(fr)
        _wait(lambda: responder.get(ref).summary.state == "submitted", 30, "no case")
        _wait(lambda: not requester.get(ref).summary.pending_action, 30, "no receipt")
        head = responder.get(ref).summary

        nodes[fr].stop()
        requester.act(
            ref,
            "withdraw",
            forms.details_from_mapping(Action.WITHDRAW, {"reason": "No longer needed."}),
        )
        assert requester.get(ref).summary.pending_action == "withdraw"

        at = now_ms()
        body = cpb.CaseTransitionBody(
            case_ref=ref,
            action=ACTION_TO_WIRE[Action.ACKNOWLEDGE],
            seq=head.seq + 1,
            prev_digest=head.head_digest,
            at=at,
            officer="fr-ocrteh-officer",
        )
        body.details.acknowledge.reference = "FR-2026-1"
        directory = Directory.from_bytes(read_signed_directory(fed.directory_file).directory)
        gb_card, fr_card = directory.agency(gb), directory.agency(fr)
        assert gb_card is not None
        assert fr_card is not None
        ident = load_identity(fed.nodes[fr].root / "keys", PASS)
        env_bytes = seal(
            ident.sender(published=fr_card),
            gb_card,
            body.SerializeToString(deterministic=True),
            MessageType.CASE_TRANSITION,
            now_ms=at,
            case_ref=ref,
        ).to_bytes()
        creds = grpc.ssl_channel_credentials(
            root_certificates=gb_card.tls_certificate_pem,
            private_key=ident.tls_private_key_pem(),
            certificate_chain=ident.tls_certificate_pem(),
        )
        with (
            grpc.secure_channel(
                gb_card.endpoint, creds, options=[("grpc.ssl_target_name_override", "127.0.0.1")]
            ) as channel,
            pytest.raises(grpc.RpcError) as e,
        ):
            fgrpc.FederationStub(channel).Deliver(epb.Envelope.FromString(env_bytes), timeout=10)
        assert e.value.code() == grpc.StatusCode.ABORTED
        assert "the requesting agency's step stands" in (e.value.details() or "")

        nodes[fr].start()
        responder = client(fr)
        _wait(
            lambda: (
                responder.get(ref).summary.state == "withdrawn"
                and not requester.get(ref).summary.pending_action
            ),
            60,
            "the withdrawal did not reach FR",
        )
        gb_view, fr_view = requester.get(ref), responder.get(ref)
        steps = [(e.seq, e.action, bytes(e.digest)) for e in gb_view.timeline]
        assert steps == [(e.seq, e.action, bytes(e.digest)) for e in fr_view.timeline]
        assert [s[1] for s in steps] == ["submit", "withdraw"]
    finally:
        for c in clients:
            c.close()
        for n in nodes.values():
            n.stop()
