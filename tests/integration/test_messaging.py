"""Messaging between real nodes through the officer SDK and the `mlax` CLI, and what
officers see when their own input is refused."""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING

import grpc
import pytest

from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange._proto.mlax.v1 import officer_pb2_grpc as ogrpc
from exchange.encoding import parse_uuid
from exchange.receipt import Receipt, verify_receipt
from node.client import Credential, MessageInfo, NodeCallError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import Cli, LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"


def test_sdk_send_is_delivered_with_a_verified_receipt(live: LiveFederation) -> None:
    gb, fr = live.client(GB), live.client(FR)
    sent = gb.send(
        FR, subject="Request 1", text="Please confirm receipt.", message_type="note", case_ref="C-1"
    )
    assert sent.state == "queued"
    assert sent.direction == "outbound"
    assert sent.submitted_by == "gb-nca-officer"
    live.wait_delivered(gb, sent.message_id)

    detail = gb.show(sent.message_id, content=False)
    assert detail.evidence.receipt_verified
    body = verify_receipt(
        Receipt.from_bytes(detail.evidence.receipt),
        live.directory(),
        message_id=parse_uuid(sent.message_id),
        envelope_digest=bytes.fromhex(detail.evidence.envelope_digest),
        receiver=FR,
    )
    assert body.ledger_index == detail.evidence.ledger_index
    received = [
        f
        for k, f in live.ledger_kinds(FR)
        if k == "message.received" and f["message_id"] == sent.message_id
    ]
    assert len(received) == 1

    inbox = {m.message_id: m for m in fr.inbox()}
    assert inbox[sent.message_id].peer == GB
    assert inbox[sent.message_id].case_ref == "C-1"
    assert inbox[sent.message_id].message_type == "note"
    assert inbox[sent.message_id].read_at == 0
    shown = fr.show(sent.message_id)
    assert (shown.subject, shown.text) == ("Request 1", "Please confirm receipt.")
    assert shown.info.read_at > 0
    # The sender sees that it was read? Not part of v1: only that it was delivered.
    assert gb.show(sent.message_id).text == "Please confirm receipt."


def test_cli_send_inbox_show_reply_outbox(live: LiveFederation, cli: Cli) -> None:
    gb_cred, fr_cred = live.credential(GB), live.credential(FR)
    sent = cli.json(
        "send",
        "--as",
        gb_cred,
        "--to",
        FR,
        "--subject",
        "CLI request",
        "--body",
        "Sent from the command line.",
        "--case",
        "CLI-7",
        "--json",
    )
    mid = sent["message_id"]
    assert sent["peer"] == FR
    live.wait_delivered(live.client(GB), mid)

    inbox = cli.json("inbox", "--as", fr_cred, "--json")
    mine = [m for m in inbox if m["message_id"] == mid]
    assert len(mine) == 1
    assert mine[0]["peer"] == GB
    assert mine[0]["state"] == "received"

    shown = cli.json("show", mid, "--as", fr_cred, "--json")
    assert shown["subject"] == "CLI request"
    assert shown["text"] == "Sent from the command line."
    assert shown["case_ref"] == "CLI-7"

    reply = cli.json("reply", mid, "--as", fr_cred, "--body", "Received, thank you.", "--json")
    assert reply["peer"] == GB
    assert reply["in_reply_to"] == mid
    live.wait_delivered(live.client(FR), reply["message_id"])
    at_gb = live.client(GB).show(reply["message_id"])
    assert at_gb.info.direction == "inbound"
    assert at_gb.info.in_reply_to == mid
    assert at_gb.info.case_ref == "CLI-7"
    assert at_gb.info.message_type == "reply"
    assert at_gb.subject == "Re: CLI request"
    assert at_gb.text == "Received, thank you."

    outbox = {m["message_id"]: m for m in cli.json("outbox", "--as", gb_cred, "--json")}
    assert outbox[mid]["state"] == "delivered"
    assert outbox[mid]["delivered_at"] > 0


def test_watch_yields_a_new_inbound_message(live: LiveFederation) -> None:
    fr = live.client(FR)
    newest = fr.inbox(limit=1)
    after = newest[0].message_id if newest else ""
    seen: list[MessageInfo] = []
    errors: list[BaseException] = []
    stream: Iterator[MessageInfo] = fr.watch(after=after)

    def watch() -> None:
        try:
            for m in stream:
                seen.append(m)
                return
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    sent = live.client(GB).send(FR, subject="watched", text="Are you watching?")
    thread.join(15)
    assert not thread.is_alive(), "watch() yielded nothing"
    assert not errors, errors
    assert [m.message_id for m in seen] == [sent.message_id]
    assert seen[0].direction == "inbound"
    assert seen[0].peer == GB
    stream.close()  # type: ignore[attr-defined]


def test_same_idempotency_key_twice_yields_one_message(live: LiveFederation) -> None:
    gb = live.client(GB)
    key = f"idem-{uuid.uuid4()}"
    before_fr = live.inbox_ids(FR)
    first = gb.send(FR, subject="once", text="only once", idempotency_key=key)
    second = gb.send(FR, subject="once", text="only once", idempotency_key=key)
    assert first.message_id == second.message_id
    live.wait_delivered(gb, first.message_id)
    third = gb.send(FR, subject="once", text="only once", idempotency_key=key)
    assert third.message_id == first.message_id
    assert third.state == "delivered"
    outbound = [m for m in gb.outbox(limit=1000) if m.message_id == first.message_id]
    assert len(outbound) == 1
    assert live.inbox_ids(FR) - before_fr == {first.message_id}
    submitted = [
        f
        for k, f in live.ledger_kinds(GB)
        if k == "message.submitted" and f["message_id"] == first.message_id
    ]
    assert len(submitted) == 1


# -- bad officer input --------------------------------------------------------------------


@pytest.fixture(scope="module")
def gb_stub(live: LiveFederation) -> Iterator[ogrpc.OfficerStub]:
    """GB's Officer service without the SDK's client-side checks: raw requests."""
    cred = Credential.load(live.credential(GB), live.officer_passphrase)
    creds = grpc.ssl_channel_credentials(
        root_certificates=cred.server_certificate,
        private_key=cred.private_key_pem,
        certificate_chain=cred.certificate,
    )
    options = [
        ("grpc.ssl_target_name_override", "127.0.0.1"),  # the nodes serve on loopback
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]
    with grpc.secure_channel(cred.endpoint, creds, options=options) as channel:
        yield ogrpc.OfficerStub(channel)


def _submit(**kw: object) -> opb.SubmitRequest:
    fields: dict[str, object] = {
        "recipient": FR,
        "message_type": 1,
        "content": opb.Content(subject="s", text="t", media_type="text/plain"),
        "idempotency_key": str(uuid.uuid4()),
    }
    fields.update(kw)
    return opb.SubmitRequest(**fields)  # type: ignore[arg-type]


BAD_SUBMISSIONS = [
    pytest.param(_submit(recipient=GB), "INVALID_ARGUMENT", id="to-own-agency"),
    pytest.param(
        _submit(content=opb.Content(subject="  ", text="t")), "INVALID_ARGUMENT", id="no-subject"
    ),
    pytest.param(_submit(message_type=99), "INVALID_ARGUMENT", id="unknown-message-type"),
    pytest.param(_submit(handling_codes=[99]), "INVALID_ARGUMENT", id="unknown-handling-code"),
    pytest.param(_submit(handling_codes=[3]), "INVALID_ARGUMENT", id="named-only-without-names"),
    pytest.param(_submit(in_reply_to=b"short"), "INVALID_ARGUMENT", id="bad-in-reply-to"),
    pytest.param(_submit(ttl_seconds=365 * 86400), "INVALID_ARGUMENT", id="ttl-beyond-lifetime"),
    pytest.param(_submit(case_ref="C" * 200), "RESOURCE_EXHAUSTED", id="case-ref-too-long"),
    pytest.param(_submit(idempotency_key="k" * 129), "RESOURCE_EXHAUSTED", id="long-idem-key"),
    pytest.param(
        _submit(content=opb.Content(subject="big", text="x" * (3 * 1024 * 1024 + 1))),
        "RESOURCE_EXHAUSTED",
        id="body-too-large",
    ),
    pytest.param(
        _submit(recipient="XX-NOBODY"),
        "INVALID_ARGUMENT/NOT_FOUND/FAILED_PRECONDITION",
        id="unknown-recipient",
    ),
]


@pytest.mark.parametrize(("request_", "status"), BAD_SUBMISSIONS)
def test_bad_submission_is_refused_and_stores_nothing(
    live: LiveFederation, gb_stub: ogrpc.OfficerStub, request_: opb.SubmitRequest, status: str
) -> None:
    gb = live.client(GB)
    outbox_before = {m.message_id for m in gb.outbox(limit=1000)}
    submitted_before = sum(1 for k, _ in live.ledger_kinds(GB) if k == "message.submitted")
    with pytest.raises(grpc.RpcError) as exc:
        gb_stub.Submit(request_, timeout=10)
    assert exc.value.code().name in status.split("/"), (exc.value.code(), exc.value.details())
    assert exc.value.details()
    assert {m.message_id for m in gb.outbox(limit=1000)} == outbox_before
    assert sum(1 for k, _ in live.ledger_kinds(GB) if k == "message.submitted") == submitted_before
    assert live.nodes[GB].running


@pytest.mark.parametrize(
    ("message_id", "status"),
    [
        ("not-a-uuid", "INVALID_ARGUMENT"),
        ("", "INVALID_ARGUMENT"),
        (str(uuid.UUID(int=0)), "NOT_FOUND"),
        ("x" * 10_000, "INVALID_ARGUMENT"),
    ],
    ids=["garbage", "empty", "unknown", "huge"],
)
def test_show_bad_message_id(live: LiveFederation, message_id: str, status: str) -> None:
    with pytest.raises(NodeCallError) as exc:
        live.client(FR).show(message_id)
    assert exc.value.status == status, exc.value.message
    assert len(exc.value.message) < 200  # an echo of the input is bounded


def test_cli_send_to_unknown_agency_is_one_sentence(live: LiveFederation, cli: Cli) -> None:
    result = cli.run(
        "send", "--as", live.credential(GB), "--to", "XX-NOBODY", "--subject", "s", "--body", "b"
    )
    sentence = cli.refusal(result)
    assert "XX-NOBODY" in sentence
