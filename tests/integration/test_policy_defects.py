"""Who may read, forward and download, against real nodes (exchange.policy; issue 11,
defects 3, 4, 5 and 11): officers are (agency, account), named officers are the
recipient's, evidence is as restricted as its case, attachment ids do not shadow each
other, and a refused forward is not shown to the agency it was not sent to."""

from __future__ import annotations

import hashlib
import os
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from exchange import forms
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.attachment import AttachmentKey, ChunkCipher, new_attachment_key
from exchange.encoding import now_ms
from exchange.envelope import AttachmentDigest, MessageType, seal
from node.client import NodeCallError, OfficerClient
from node.client.cases import CaseClient

if TYPE_CHECKING:
    from conftest import LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"
FORMS = Path(__file__).resolve().parents[2] / "deploy" / "forms"
NAMED = ("named-officers-only",)
CHUNK = 256 * 1024


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


def _submitted_case(
    live: LiveFederation, to: str, handling: tuple[str, ...] = (), named: tuple[str, ...] = ()
) -> str:
    """A case GB's officer drafts (restricted as given), submits and GB's supervisor
    approves; returns once `to` holds it and GB has its receipt."""
    data = tomllib.loads((FORMS / "mla-request.toml").read_text())
    data["requested_authority"] = {"agency_id": to, "name": to}
    form = forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms())
    gb = CaseClient(live.client(GB))
    ref = gb.create(form, handling=handling, restricted_to=named).summary.case_ref
    gb.act(ref, "submit")
    CaseClient(live.client(GB, "supervisor")).approve(ref)
    other = CaseClient(live.client(to))
    _wait(lambda: other.get(ref).summary.state == "submitted", 30, "the case did not arrive")
    _wait(lambda: not gb.get(ref).summary.pending_action, 30, "the receipt did not come back")
    return ref


def _deliver_evidence(
    live: LiveFederation, sender: str, to: str, ref: str, key: AttachmentKey
) -> None:
    """`sender` announces a file by hand, with no handling codes (raises the refusal)."""
    env = seal(
        live.identity(sender).sender(published=live.card(sender)),
        live.card(to),
        apb.EvidenceBody(case_ref=ref, attachments=[key.to_proto()]).SerializeToString(
            deterministic=True
        ),
        MessageType.EVIDENCE,
        now_ms=now_ms(),
        case_ref=ref,
        attachments=(AttachmentDigest(name=key.name, sha256=key.sha256, size=key.size),),
    )
    stub = fgrpc.FederationStub(live.peer_channel(sender, to))
    stub.Deliver(epb.Envelope.FromString(env.to_bytes()), timeout=10)


def _push(live: LiveFederation, sender: str, to: str, key: AttachmentKey, data: bytes) -> None:
    cipher = ChunkCipher.of(key)
    chunks = [
        apb.AttachmentChunk(
            attachment_id=key.attachment_id,
            index=i,
            ciphertext=cipher.seal(
                i, data[i * key.chunk_size : (i + 1) * key.chunk_size], final=key.is_final(i)
            ),
        )
        for i in range(key.chunks)
    ]
    stub = fgrpc.FederationStub(live.peer_channel(sender, to))
    assert stub.PushAttachment(iter(chunks), timeout=10).complete


def _file(name: str, size: int = CHUNK + 100) -> tuple[AttachmentKey, bytes]:
    data = os.urandom(size)
    key = new_attachment_key(
        name=name, size=size, sha256=hashlib.sha256(data).digest(), chunk_size=CHUNK
    )
    return key, data


def _with_id(key: AttachmentKey, attachment_id: bytes) -> AttachmentKey:
    return AttachmentKey(
        attachment_id=attachment_id,
        key=key.key,
        chunk_size=key.chunk_size,
        size=key.size,
        sha256=key.sha256,
        name=key.name,
    )


def _refusals(live: LiveFederation, agency: str, kind: str, **match: str) -> list[dict[str, str]]:
    return [
        f
        for k, f in live.ledger_kinds(agency)
        if k == kind and all(f.get(n) == v for n, v in match.items())
    ]


# -- defect 3: attachment ids do not shadow each other -----------------------------------------


def test_a_peer_cannot_reuse_an_attachment_id_we_hold(live: LiveFederation, tmp_path: Path) -> None:
    ref = _submitted_case(live, FR)
    gb = CaseClient(live.client(GB))
    ours = tmp_path / "ours.bin"
    ours.write_bytes(os.urandom(3000))
    uploaded = gb.attach(ref, ours)
    assert uploaded.complete
    our_id = bytes.fromhex(uploaded.attachment_id)

    # FR learned our id from the evidence envelope; it announces its own bytes under it.
    theirs, theirs_data = _file("theirs.bin")
    with pytest.raises(grpc.RpcError) as refused:
        _deliver_evidence(live, FR, GB, ref, _with_id(theirs, our_id))
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "already used" in (refused.value.details() or "")
    # Our officer downloading our id gets our bytes, and the case lists our file only.
    gb.download(uploaded.attachment_id, tmp_path / "got.bin")
    assert (tmp_path / "got.bin").read_bytes() == ours.read_bytes()
    assert [a.attachment_id for a in gb.get(ref).attachments] == [uploaded.attachment_id]

    # An id a peer sent us is not reusable either: not by that peer in a new envelope,
    # nor by a third agency on a case of its own.
    _deliver_evidence(live, FR, GB, ref, theirs)
    _push(live, FR, GB, theirs, theirs_data)
    again, _ = _file("again.bin")
    with pytest.raises(grpc.RpcError) as refused:
        _deliver_evidence(live, FR, GB, ref, _with_id(again, theirs.attachment_id))
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    ng_ref = _submitted_case(live, NG)
    with pytest.raises(grpc.RpcError) as refused:
        _deliver_evidence(live, NG, GB, ng_ref, _with_id(again, theirs.attachment_id))
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    gb.download(theirs.attachment_id.hex(), tmp_path / "theirs.bin")
    assert (tmp_path / "theirs.bin").read_bytes() == theirs_data
    assert list(CaseClient(live.client(GB)).get(ng_ref).attachments) == []


# -- defect 4 and 11: named officers are the recipient's; evidence follows its case ------------


@dataclass
class Restricted:
    """A GB case to FR restricted to FR's officer `name`; GB has an officer `name` too."""

    ref: str
    name: str
    gb_namesake: Path
    fr_named: Path


@pytest.fixture(scope="module")
def restricted(live: LiveFederation) -> Restricted:
    name = f"benoit-{uuid.uuid4().hex[:6]}"
    gb_namesake = live.add_officer(GB, name)
    fr_named = live.add_officer(FR, name)
    ref = _submitted_case(live, FR, NAMED, (name,))
    return Restricted(ref, name, gb_namesake, fr_named)


def _as(live: LiveFederation, credential: Path) -> OfficerClient:
    return OfficerClient.from_bundle(credential, live.officer_passphrase, timeout=10)


def _denied(call: object) -> str:
    with pytest.raises(NodeCallError) as exc:
        call()  # type: ignore[operator]
    assert exc.value.status == "PERMISSION_DENIED", exc.value
    return exc.value.message


def test_a_namesake_at_the_sending_agency_reads_neither_note_nor_case(
    live: LiveFederation, restricted: Restricted
) -> None:
    gb = live.client(GB)
    sent = gb.send(
        FR,
        subject="eyes only",
        text="for FR's named officer",
        handling=NAMED,
        restricted_to=(restricted.name,),
    )
    live.wait_delivered(gb, sent.message_id)
    with _as(live, restricted.gb_namesake) as namesake:
        assert "restricted to named officers" in _denied(lambda: namesake.show(sent.message_id))
        _denied(lambda: CaseClient(namesake).get(restricted.ref, content=True))
        # Metadata stays visible.
        assert namesake.show(sent.message_id, content=False).restricted_to == (restricted.name,)
    assert (
        _refusals(
            live, GB, "content.read_refused", message_id=sent.message_id, officer=restricted.name
        )[0]["reason"]
        == "restricted_to_named_officers"
    )
    assert _refusals(
        live, GB, "case.read_refused", case_ref=restricted.ref, officer=restricted.name
    )
    # Nor may the namesake act on the case it cannot read, or add evidence to it: refused,
    # ledgered, and the case is as it was.
    state = CaseClient(gb).get(restricted.ref).summary.state
    blind = Path(os.environ.get("TMPDIR", "/tmp")) / f"blind-{uuid.uuid4().hex[:6]}.bin"
    blind.write_bytes(b"taken blind")
    with _as(live, restricted.gb_namesake) as namesake:
        assert "restricted to named officers" in _denied(
            lambda: CaseClient(namesake).act(restricted.ref, "withdraw")
        )
        _denied(lambda: CaseClient(namesake).attach(restricted.ref, blind))
    blind.unlink()
    acts = _refusals(
        live, GB, "case.action_refused", case_ref=restricted.ref, officer=restricted.name
    )
    assert {(f["action"], f["reason"]) for f in acts} == {
        ("withdraw", "restricted_to_named_officers"),
        ("add_evidence", "restricted_to_named_officers"),
    }
    after = CaseClient(gb).get(restricted.ref)
    assert (after.summary.state, list(after.attachments)) == (state, [])
    # The author reads both on the sending node; FR's named officer reads both there.
    assert gb.show(sent.message_id).text == "for FR's named officer"
    assert CaseClient(gb).get(restricted.ref, content=True).form.ByteSize() > 0
    _denied(lambda: CaseClient(live.client(GB, "supervisor")).get(restricted.ref, content=True))
    with _as(live, restricted.fr_named) as named:
        assert named.show(sent.message_id).text == "for FR's named officer"
        assert CaseClient(named).get(restricted.ref, content=True).form.ByteSize() > 0
    _denied(lambda: live.client(FR).show(sent.message_id))
    _denied(lambda: CaseClient(live.client(FR)).get(restricted.ref, content=True))


def test_a_named_officer_cannot_forward_a_restricted_note_to_another_agency(
    live: LiveFederation, restricted: Restricted
) -> None:
    """The names are FR's officers: forwarded to NG, they would name NG's namesakes."""
    gb = live.client(GB)
    sent = gb.send(
        FR,
        subject="eyes only",
        text="not for NG",
        handling=NAMED,
        restricted_to=(restricted.name,),
    )
    live.wait_delivered(gb, sent.message_id)
    before = live.inbox_ids(NG)
    with _as(live, restricted.fr_named) as named:
        sentence = _denied(lambda: CaseClient(named).forward(sent.message_id, NG))
    assert "cannot be forwarded" in sentence
    refusal = _refusals(live, FR, "message.forward_refused", message_id=sent.message_id)
    assert [(f["officer"], f["reason"]) for f in refusal] == [
        (restricted.name, "named_officers_not_at_recipient")
    ]
    assert live.inbox_ids(NG) == before


def test_evidence_is_as_restricted_as_its_case_on_both_nodes(
    live: LiveFederation, restricted: Restricted, tmp_path: Path
) -> None:
    ref = restricted.ref
    # GB announces a file by hand WITHOUT handling codes (defect 11)...
    key, data = _file("unmarked.bin")
    _deliver_evidence(live, GB, FR, ref, key)
    _push(live, GB, FR, key, data)
    fid = key.attachment_id.hex()
    # ...FR's case still restricts it: only the named officer downloads it.
    for role in ("officer", "supervisor"):
        _denied(lambda r=role: CaseClient(live.client(FR, r)).download(fid, tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    refused = _refusals(live, FR, "attachment.download_refused", attachment_id=fid)
    assert {f["officer"] for f in refused} == {"fr-ocrteh-officer", "fr-ocrteh-supervisor"}
    assert {f["reason"] for f in refused} == {"restricted_to_named_officers"}
    with _as(live, restricted.fr_named) as named:
        CaseClient(named).download(fid, tmp_path / "named.bin")
        assert (tmp_path / "named.bin").read_bytes() == data
        # FR's named officer sends evidence back; GB's case restricts it to its creator.
        back = tmp_path / "back.bin"
        back.write_bytes(os.urandom(5000))
        status = CaseClient(named).attach(ref, back)
    gb = CaseClient(live.client(GB))
    _wait(
        lambda: any(
            a.attachment_id == status.attachment_id and a.state == "available"
            for a in gb.get(ref).attachments
        ),
        30,
        "FR's evidence did not reach GB",
    )
    gb.download(status.attachment_id, tmp_path / "creator.bin")
    assert (tmp_path / "creator.bin").read_bytes() == back.read_bytes()
    _denied(
        lambda: CaseClient(live.client(GB, "supervisor")).download(
            status.attachment_id, tmp_path / "y"
        )
    )
    with _as(live, restricted.gb_namesake) as namesake:
        _denied(lambda: CaseClient(namesake).download(status.attachment_id, tmp_path / "z"))
        # Nor does GB's namesake download what GB's creator uploaded for FR's officer.
        mine = tmp_path / "mine.bin"
        mine.write_bytes(os.urandom(4000))
        up = gb.attach(ref, mine)
        _denied(lambda: CaseClient(namesake).download(up.attachment_id, tmp_path / "w"))
    gb.download(up.attachment_id, tmp_path / "mine-again.bin")


# -- defect 5: the ledger redaction rule ---------------------------------------------------------


def test_a_refused_forward_is_not_readable_by_the_agency_it_was_not_sent_to(
    live: LiveFederation,
) -> None:
    gb = live.client(GB)
    secret = gb.send(
        FR, subject="source", text="do not share", handling=("no-onward-transmission",)
    )
    live.wait_delivered(gb, secret.message_id)
    _denied(lambda: CaseClient(live.client(FR)).forward(secret.message_id, NG))
    entries = live.ledger_kinds(FR)
    index = next(
        i
        for i, (k, f) in enumerate(entries)
        if k == "message.forward_refused" and f["message_id"] == secret.message_id
    )
    assert entries[index][1]["recipient"] == NG
    received = next(
        i
        for i, (k, f) in enumerate(entries)
        if k == "message.received" and f["message_id"] == secret.message_id
    )

    def read_as(agency: str, i: int) -> lpb.LedgerEntry:
        stub = fgrpc.FederationStub(live.peer_channel(agency, FR))
        reply = stub.GetEntries(lpb.GetEntriesRequest(start=i, count=1), timeout=10)
        assert [e.index for e in reply.entries] == [i]
        entry: lpb.LedgerEntry = reply.entries[0]
        return entry

    # NG sees the commitment only; GB still reads the receipt of what it sent.
    hidden = read_as(NG, index)
    assert hidden.commitment
    assert (hidden.entry, hidden.salt) == (b"", b"")
    assert read_as(GB, received).entry
