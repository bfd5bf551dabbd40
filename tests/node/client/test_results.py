"""The SDK's results: the field names of the messages they come from, converted once, and
`to_json()` the very document json_format made of the message (what `--json` printed)."""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from node.client import (
    AttachmentInfo,
    CaseEvent,
    CaseSummary,
    CaseView,
    DeliveryProofInfo,
    MatchAnswer,
    MessageDetail,
    RecordsLoaded,
    UploadStatus,
    WhoAmI,
)
from node.client.results import Disclosure, WireResult

RESULTS: list[type[WireResult]] = [
    AttachmentInfo,
    CaseEvent,
    CaseSummary,
    CaseView,
    Disclosure,
    MatchAnswer,
    RecordsLoaded,
    UploadStatus,
    WhoAmI,
]
BIG = 2**63 - 1  # an int64 the JSON mapping writes as a string


def _attachment(n: int) -> apb.AttachmentInfo:
    return apb.AttachmentInfo(
        attachment_id=f"a{n}",
        case_ref="GB-NCA-2026-0001",
        name=f"ledger-{n}.xlsx",
        size=BIG,
        sha256=bytes(range(32)),
        state="available",
        peer="NG-NAPTIP",
        direction="in",
        confirmed_chunks=3,
        total_chunks=3,
        message_id="0190b0a0-0000-7000-8000-000000000001",
        created_at=1_700_000_000_000,
        completed_at=1_700_000_000_500,
        description="Bank records",
        last_error="",
        chunk_size=262_144,
    )


def _summary() -> cpb.CaseSummary:
    return cpb.CaseSummary(
        case_ref="GB-NCA-2026-0001",
        case_type="mla",
        role="requesting",
        peer="NG-NAPTIP",
        state="submitted",
        urgency="urgent",
        seq=4,
        opened_at=1_700_000_000_000,
        updated_at=BIG,
        pending_action="withdraw",
        pending_delivery="retrying",
        pending_error="unreachable",
        awaiting_approval=True,
        created_by="alice",
        approved_by="sam",
        ack_due=1_700_000_100_000,
        response_due=1_700_000_200_000,
        overdue=["acknowledgement", "response"],
        requested_deadline=1_700_000_300_000,
        allowed_actions=["withdraw", "close"],
        form_digest=b"\x00\xff" * 16,
        head_digest=b"\x01" * 32,
        handling_codes=[
            epb.HANDLING_CODE_NO_ONWARD_TRANSMISSION,
            epb.HANDLING_CODE_RESTRICTED_TO_NAMED_OFFICERS,
            99,  # a code newer than this SDK: the JSON mapping keeps the number
        ],
        restricted_to=["fr-named"],
        last_error="The peer refused: ...",
        queued_actions=["submit", "withdraw"],
        local_seq=6,
        local_state="withdrawn",
    )


def _view(content: bool) -> cpb.CaseView:
    details = fpb.TransitionDetails(refuse=fpb.Refusal(explanation="No assurances."))
    view = cpb.CaseView(
        summary=_summary(),
        timeline=[
            cpb.CaseEvent(
                seq=1,
                action="submit",
                party="requesting",
                agency="GB-NCA",
                at=1_700_000_000_000,
                officer="alice",
                message_id="m1",
                digest=b"\xaa" * 32,
                state_after="submitted",
            ),
            cpb.CaseEvent(seq=2, action="refuse", agency="NG-NAPTIP", state_after="refused"),
        ],
        attachments=[_attachment(1), _attachment(2)],
    )
    if content:
        view.form.mla.summary_of_facts = "Eleven women were recruited in Lagos."
        view.timeline[1].details.CopyFrom(details)
    return view


SAMPLES: list[tuple[type[WireResult], Message]] = [
    (CaseView, _view(content=True)),
    (CaseView, _view(content=False)),
    (CaseView, cpb.CaseView(summary=cpb.CaseSummary())),  # a node always sends the summary
    (CaseSummary, _summary()),
    (CaseSummary, cpb.CaseSummary()),
    (CaseEvent, cpb.CaseEvent(seq=1, details=fpb.TransitionDetails())),
    (AttachmentInfo, _attachment(1)),
    (UploadStatus, apb.UploadStatus()),
    (
        UploadStatus,
        apb.UploadStatus(
            upload_id="u1",
            confirmed_chunks=BIG,
            total_chunks=BIG,
            chunk_size=1 << 20,
            complete=True,
            attachment_id="a1",
            message_id="m1",
        ),
    ),
    (
        RecordsLoaded,
        mpb.LoadRecordsResponse(
            added=2, updated=1, unchanged=0, removed=4, index_version=BIG, records=12
        ),
    ),
    (
        MatchAnswer,
        mpb.MatchAnswer(query=1, peer="NG-NAPTIP", result="hit", band="strong", reference="r"),
    ),
    (
        WhoAmI,
        opb.WhoAmIResponse(officer="alice", role="officer", agency="GB-NCA", peers=["FR"]),
    ),
    (
        Disclosure,
        opb.DiscloseResponse(
            agreement="does-not-match",
            disclosed=True,
            overridden=True,
            case=_view(content=False),
        ),
    ),
    (Disclosure, opb.DiscloseResponse(agreement="weak", problem="Case X is accepted.")),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: r.__name__)
def test_a_result_has_exactly_the_fields_of_its_message(result: type[WireResult]) -> None:
    assert dataclasses.is_dataclass(result)
    names = [f.name for f in dataclasses.fields(result)]
    assert names == [f.name for f in result.WIRE.DESCRIPTOR.fields]
    assert result.__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize(("result", "wire"), SAMPLES)
def test_to_json_is_what_json_format_makes_of_the_message(
    result: type[WireResult], wire: Message
) -> None:
    made = result.from_proto(wire)  # type: ignore[attr-defined]
    assert made.to_json() == MessageToDict(wire, preserving_proto_field_name=True)


def test_a_case_view_reads_like_the_message() -> None:
    wire = _view(content=True)
    view = CaseView.from_proto(wire)
    s = view.summary
    assert s.case_ref == "GB-NCA-2026-0001"
    assert s.awaiting_approval is True
    assert s.queued_actions == ("submit", "withdraw")
    assert s.overdue == ("acknowledgement", "response")
    assert s.handling_codes == (1, 3, 99)
    assert s.form_digest == b"\x00\xff" * 16
    assert type(s.form_digest) is bytes
    assert view.timeline[0].digest == b"\xaa" * 32
    assert [e.action for e in view.timeline] == ["submit", "refuse"]
    assert view.attachments[1].sha256 == bytes(range(32))
    assert view.form is not None
    assert view.form.mla.summary_of_facts.startswith("Eleven")
    assert view.timeline[0].details is None
    details = view.timeline[1].details
    assert details is not None
    assert details.refuse.explanation == "No assurances."
    # Converted once: the result shares nothing with the response it came from.
    wire.form.mla.summary_of_facts = "changed"
    wire.timeline[1].details.refuse.explanation = "changed"
    assert view.form.mla.summary_of_facts.startswith("Eleven")
    assert details.refuse.explanation == "No assurances."
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.summary = s  # type: ignore[misc]


def test_without_content_there_is_no_form_and_no_details() -> None:
    view = CaseView.from_proto(_view(content=False))
    assert view.form is None
    assert all(e.details is None for e in view.timeline)
    assert "form" not in view.to_json()
    assert all("details" not in e for e in view.to_json()["timeline"])


def test_results_compare_by_value() -> None:
    assert CaseView.from_proto(_view(True)) == CaseView.from_proto(_view(True))
    assert CaseView.from_proto(_view(True)) != CaseView.from_proto(_view(False))


def test_a_message_shows_with_its_evidence_and_a_proof_with_its_checkpoint() -> None:
    wire = opb.MessageView(
        summary=opb.MessageSummary(
            message_id="m1",
            direction=opb.DIRECTION_INBOUND,
            peer="FR-OCRTEH",
            message_type=epb.MESSAGE_TYPE_NOTE,
            handling_codes=[epb.HANDLING_CODE_NO_ONWARD_TRANSMISSION],
            state=opb.DELIVERY_STATE_RECEIVED,
        ),
        content=opb.Content(subject="s", text="t"),
        evidence=opb.DeliveryEvidence(receipt=b"r", envelope_digest=b"\x0f" * 32),
        restricted_to=["x"],
        non_repudiation_bundle=b"b",
    )
    d = MessageDetail.from_proto(wire)
    assert (d.info.direction, d.info.message_type, d.info.state) == ("inbound", "note", "received")
    assert d.info.handling_codes == ("no-onward-transmission",)
    assert (d.subject, d.text, d.restricted_to) == ("s", "t", ("x",))
    assert d.evidence.envelope_digest == "0f" * 32
    assert d.evidence.receipt == b"r"
    assert d.non_repudiation_bundle == b"b"
    wire.ClearField("content")
    assert MessageDetail.from_proto(wire).subject is None

    proof = opb.DeliveryProof(ledger_index=7, verified=True)
    proof.proof.tree_size = 9
    proof.proof.checkpoint.cosignatures.extend(["a", "b"])
    assert DeliveryProofInfo.from_proto(proof) == DeliveryProofInfo(7, True, "", 9, 2)
    assert isinstance(proof.proof, lpb.InclusionProofResponse)


HOUR = 3600 * 1000


@pytest.mark.parametrize(
    ("opened", "due", "now", "overdue", "status"),
    [
        (0, 30 * 24 * HOUR, 10 * 24 * HOUR, (), "running"),
        (0, 30 * 24 * HOUR, 29 * 24 * HOUR + 1, (), "due-soon"),  # a day left of 30
        (0, 24 * HOUR, 17 * HOUR, (), "running"),  # an emergency clock: a quarter is 6 h
        (0, 24 * HOUR, 19 * HOUR, (), "due-soon"),
        (0, 24 * HOUR, 25 * HOUR, (), "overdue"),  # past its instant, not yet flagged
        (0, 30 * 24 * HOUR, 1 * HOUR, ("acknowledgement",), "overdue"),  # the node's word
    ],
)
def test_legal_clocks_are_flagged_by_one_rule(
    opened: int, due: int, now: int, overdue: tuple[str, ...], status: str
) -> None:
    summary = CaseSummary.from_proto(
        cpb.CaseSummary(opened_at=opened + 1, ack_due=due, overdue=list(overdue))
    )
    (clock,) = summary.clocks(now)
    assert clock.name == "acknowledgement"
    assert clock.due == due
    assert clock.status == status
    # A clock that is not running is not shown at all.
    assert CaseSummary.from_proto(cpb.CaseSummary(opened_at=1)).clocks(now) == ()
