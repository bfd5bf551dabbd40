"""Casework between real nodes: both case types through their lifecycles, four-eyes,
legal clocks, handling codes, and transitions the state machine must refuse."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from exchange import forms
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange.case import Action
from exchange.casework import ACTION_TO_WIRE
from exchange.encoding import now_ms
from exchange.envelope import MessageType, seal
from node.client import NodeCallError
from node.client.cases import CaseClient

if TYPE_CHECKING:
    from conftest import Cli, LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"
FORMS = Path(__file__).resolve().parents[2] / "deploy" / "forms"


def _form(name: str, **changes: Any) -> dict[str, Any]:
    data = tomllib.loads((FORMS / name).read_text())
    data.update(changes)
    return data


def _write_form(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "form.json"
    path.write_text(json.dumps(data, default=str))
    return path


def _cases(live: LiveFederation, agency: str, role: str = "officer") -> CaseClient:
    return CaseClient(live.client(agency, role), retry_wait=0.2)


def _wait_state(live: LiveFederation, agency: str, case_ref: str, state: str) -> cpb.CaseView:
    client = _cases(live, agency)
    seen: list[cpb.CaseView] = []

    def reached() -> bool:
        view = client.get(case_ref)
        seen[:] = [view]
        return view.summary.state == state and not view.summary.pending_action

    live.wait_for(reached, 20, f"{agency} did not see case {case_ref} become {state}")
    return seen[0]


def _timeline(view: cpb.CaseView) -> list[tuple[int, str, str, str, bytes]]:
    return [(e.seq, e.action, e.agency, e.state_after, bytes(e.digest)) for e in view.timeline]


def test_mla_case_runs_its_whole_lifecycle_through_the_cli(
    live: LiveFederation, cli: Cli, tmp_path: Path
) -> None:
    officer, supervisor = live.credential(GB, "officer"), live.credential(GB, "supervisor")
    ng = live.credential(NG, "officer")
    form = _write_form(tmp_path, _form("mla-request.toml"))
    draft = cli.json("case", "new", "--type", "mla", "--form", form, "--as", officer, "--json")
    ref = draft["summary"]["case_ref"]
    assert ref.startswith(f"{GB}-")
    assert draft["summary"]["state"] == "draft"

    # Four-eyes: submitting only asks for approval; the officer cannot approve it.
    out = cli.run("case", "submit", ref, "--as", officer)
    assert out.returncode == 0, out.stderr
    assert "awaiting a supervisor's approval" in out.stdout
    listed = cli.json("cases", "--awaiting-approval", "--as", supervisor, "--json")
    assert ref in [c["case_ref"] for c in listed]
    refused = cli.refusal(cli.run("case", "approve", ref, "--as", officer))
    assert "officer role may not call ApproveCase" in refused
    assert _cases(live, NG).cases(peer=GB) == [] or all(
        c.case_ref != ref for c in _cases(live, NG).cases(peer=GB)
    )
    out = cli.run("case", "approve", ref, "--as", supervisor)
    assert out.returncode == 0, out.stderr

    _wait_state(live, GB, ref, "submitted")
    _wait_state(live, NG, ref, "submitted")
    steps: list[tuple[str, ...]] = [
        ("case", "ack", ref, "--reference", "NAPTIP/MLA/2026/117", "--as", str(ng)),
        ("case", "request-info", ref, "--question", "Full names of W1 and W2?", "--as", str(ng)),
        ("case", "provide-info", ref, "--answers", "See the annexed list.", "--as", str(officer)),
        ("case", "accept", ref, "--condition", "Speciality rule applies.", "--as", str(ng)),
        ("case", "start", ref, "--authority", "NAPTIP Edo State Command", "--as", str(ng)),
    ]
    expected = ["acknowledged", "more_info_requested", "acknowledged", "accepted", "in_execution"]
    for args, state in zip(steps, expected, strict=True):
        out = cli.run(*args)
        assert out.returncode == 0, (args, out.stderr)
        _wait_state(live, GB, ref, state)
        _wait_state(live, NG, ref, state)

    # The requested party sends evidence, then reports with it.
    evidence = tmp_path / "bank-statements.csv"
    evidence.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    out = cli.run("attach", ref, evidence, "--chunk-kib", "256", "--as", ng, "--json")
    assert out.returncode == 0, out.stderr
    attachment_id = json.loads(out.stdout)["attachment_id"]

    def arrived() -> bool:
        files = _cases(live, GB).get(ref).attachments
        return any(a.attachment_id == attachment_id and a.state == "available" for a in files)

    live.wait_for(arrived, 30, "the evidence did not arrive")
    out = cli.run(
        "case", "execute", ref, "--partial", "--summary", "Bank records produced.",
        "--evidence", attachment_id, "--as", ng,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    _wait_state(live, GB, ref, "partially_executed")
    out = cli.run("case", "execute", ref, "--summary", "Witnesses heard.", "--as", ng)
    assert out.returncode == 0, out.stderr
    _wait_state(live, GB, ref, "executed")
    out = cli.run("case", "close", ref, "--outcome", "Evidence received.", "--as", officer)
    assert out.returncode == 0, out.stderr
    gb_view = _wait_state(live, GB, ref, "closed")
    ng_view = _wait_state(live, NG, ref, "closed")

    # Both agencies hold the same signed history, step for step and digest for digest.
    assert _timeline(gb_view) == _timeline(ng_view)
    assert [e.action for e in gb_view.timeline] == [
        "submit", "acknowledge", "request_info", "provide_info", "accept",
        "start_execution", "report_partial", "report_executed", "close",
    ]  # fmt: skip
    assert gb_view.summary.head_digest == ng_view.summary.head_digest
    assert gb_view.summary.approved_by == "gb-nca-supervisor"
    assert ng_view.summary.approved_by == "gb-nca-supervisor"

    # The downloaded evidence is byte for byte what was attached.
    out_file = tmp_path / "received.csv"
    out = cli.run("download", ref, "bank-statements.csv", "--out", out_file, "--as", officer)
    assert out.returncode == 0, out.stderr
    assert (
        hashlib.sha256(out_file.read_bytes()).digest()
        == hashlib.sha256(evidence.read_bytes()).digest()
    )
    assert (out_file.stat().st_mode & 0o777) == 0o600
    # --follow on a file already complete: the same bytes (the following itself, of a file
    # still arriving, is tests/integration/test_evidence.py's).
    followed = tmp_path / "followed.csv"
    out = cli.run(
        "download", ref, "bank-statements.csv", "--out", followed, "--follow", "--as", officer
    )
    assert out.returncode == 0, out.stderr
    assert followed.read_bytes() == out_file.read_bytes()

    # The timeline with content shows the requested party's words.
    shown = cli.run("case", "show", ref, "--content", "--as", officer)
    assert shown.returncode == 0, shown.stderr
    assert "Full names of W1 and W2?" in shown.stdout
    assert "Speciality rule applies." in shown.stdout

    # Every step is in both ledgers, and the approval with its signature in the sender's.
    gb_kinds = live.ledger_kinds(GB)
    approvals = [f for k, f in gb_kinds if k == "case.approved" and f["case_ref"] == ref]
    assert len(approvals) == 1
    assert len(approvals[0]["signature"]) > 64
    for agency in (GB, NG):
        applied = [
            f["seq"]
            for k, f in live.ledger_kinds(agency)
            if k == "case.transition" and f["case_ref"] == ref
        ]
        assert applied == list(range(1, 10))


def test_extradition_case_refused_on_stated_grounds_then_closed(live: LiveFederation) -> None:
    gb, ng = _cases(live, GB), _cases(live, NG)
    form = forms.form_from_mapping(
        forms.CaseType.EXTRADITION, _form("extradition-request.toml"), now_ms=now_ms()
    )
    ref = gb.create(form).summary.case_ref
    assert gb.act(ref, "submit").summary.awaiting_approval
    # The drafter cannot approve their own request, even as a supervisor.
    sup = _cases(live, GB, "supervisor")
    own = sup.create(form).summary.case_ref
    sup.act(own, "submit")
    with pytest.raises(NodeCallError) as e:
        sup.approve(own)
    assert e.value.status == "PERMISSION_DENIED"
    assert "cannot approve" in e.value.message
    # A draft waiting for approval can still be withdrawn: it leaves the approval queue.
    withdrawn = sup.act(
        own, "withdraw", forms.details_from_mapping(Action.WITHDRAW, {"reason": "Duplicate."})
    ).summary
    assert (withdrawn.state, withdrawn.awaiting_approval) == ("withdrawn", False)
    assert own not in [c.case_ref for c in sup.cases(awaiting_approval=True)]
    sup.approve(ref)
    _wait_state(live, NG, ref, "submitted")
    ng.act(ref, "acknowledge")
    _wait_state(live, GB, ref, "acknowledged")

    # A refusal without grounds is refused before anything is sent.
    with pytest.raises(Exception, match="ground"):
        ng.act(ref, "refuse")
    details = forms.details_from_mapping(
        Action.REFUSE,
        {"grounds": ["death-penalty"], "explanation": "No assurances were given."},
    )
    ng.act(ref, "refuse", details)
    _wait_state(live, GB, ref, "refused")
    gb.act(ref, "close")
    gb_view, ng_view = _wait_state(live, GB, ref, "closed"), _wait_state(live, NG, ref, "closed")
    assert _timeline(gb_view) == _timeline(ng_view)
    assert ng_view.summary.case_type == "extradition"
    content = gb.get(ref, content=True)
    refusal = next(e for e in content.timeline if e.action == "refuse")
    assert refusal.details.refuse.explanation == "No assurances were given."


def _submitted_case(live: LiveFederation, recipient: str = NG, **changes: Any) -> str:
    gb = _cases(live, GB)
    data = _form("mla-request.toml", **changes)
    data["requested_authority"] = {"agency_id": recipient, "name": recipient}
    form = forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms())
    ref = gb.create(form).summary.case_ref
    gb.act(ref, "submit")
    _cases(live, GB, "supervisor").approve(ref)
    _wait_state(live, recipient, ref, "submitted")
    _wait_state(live, GB, ref, "submitted")
    return ref


def test_illegal_and_unentitled_transitions_are_refused_and_change_nothing(
    live: LiveFederation, cli: Cli
) -> None:
    ref = _submitted_case(live)
    gb, ng = _cases(live, GB), _cases(live, NG)
    before = _timeline(ng.get(ref))
    # The requesting party may not acknowledge its own request.
    with pytest.raises(NodeCallError) as e:
        gb.act(ref, "acknowledge")
    assert e.value.status == "PERMISSION_DENIED"
    # Nobody may execute a request that was never accepted.
    out = cli.refusal(
        cli.run("case", "execute", ref, "--summary", "x", "--as", live.credential(NG, "officer"))
    )
    assert "not allowed" in out
    # An act on a stale view is refused.
    with pytest.raises(NodeCallError) as e:
        ng.act(ref, "acknowledge", expected_seq=7)
    assert e.value.status == "FAILED_PRECONDITION"
    assert _timeline(ng.get(ref)) == before
    assert _timeline(gb.get(ref)) == before


def test_a_transition_signed_by_the_wrong_party_is_refused_by_the_peer(
    live: LiveFederation,
) -> None:
    """GB seals an acknowledgement of its own request and delivers it straight to NG."""
    ref = _submitted_case(live)
    ng = _cases(live, NG)
    head = ng.get(ref).summary
    gb_id = live.identity(GB)
    at = now_ms()
    body = cpb.CaseTransitionBody(
        case_ref=ref,
        action=ACTION_TO_WIRE[Action.ACKNOWLEDGE],
        seq=head.seq + 1,
        prev_digest=head.head_digest,
        at=at,
        officer="gb-nca-officer",
    )
    body.details.acknowledge.note = "self-acknowledged"
    env = seal(
        gb_id.sender(published=live.card(GB)),
        live.card(NG),
        body.SerializeToString(deterministic=True),
        MessageType.CASE_TRANSITION,
        now_ms=at,
        case_ref=ref,
    )
    stub = fgrpc.FederationStub(live.peer_channel(GB, NG))
    with pytest.raises(grpc.RpcError) as e:
        stub.Deliver(epb.Envelope.FromString(env.to_bytes()), timeout=10)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "Only the requested party may acknowledge" in (e.value.details() or "")
    after = ng.get(ref).summary
    assert (after.state, after.seq, after.head_digest) == ("submitted", head.seq, head.head_digest)
    rejected = [f for k, f in live.ledger_kinds(NG) if k == "message.rejected"]
    assert any(f["reason"] == "NotEntitledError" for f in rejected)


def test_an_emergency_case_left_unacknowledged_is_flagged_overdue(
    live: LiveFederation, cli: Cli
) -> None:
    ref = _submitted_case(
        live, recipient=FR, urgency="emergency", urgency_reason="A victim is in danger now."
    )
    sup = live.credential(GB, "supervisor")

    def flagged() -> bool:
        found = cli.json("cases", "--overdue", "--as", sup, "--json")
        return any(c["case_ref"] == ref and "acknowledgement" in c["overdue"] for c in found)

    live.wait_for(flagged, 15, "the emergency case was not flagged overdue")
    # Both sides raise the alert once, in the log and the ledger.
    for agency in (GB, FR):
        live.wait_for(
            lambda a=agency: any(
                e.get("case_ref") == ref and e.get("clock") == "acknowledgement"
                for e in live.log_events(a, "case_overdue")
            ),
            10,
            f"{agency} logged no overdue alert",
        )
        alerts = [
            f for k, f in live.ledger_kinds(agency) if k == "case.overdue" and f["case_ref"] == ref
        ]
        assert [a["clock"] for a in alerts].count("acknowledgement") == 1
    table = cli.run("cases", "--as", sup)
    assert "OVERDUE" in table.stdout
    # Acknowledging meets the acknowledgement clock.
    _cases(live, FR).act(ref, "acknowledge")
    view = _wait_state(live, GB, ref, "acknowledged")
    assert "acknowledgement" not in view.summary.overdue


def test_a_restricted_note_cannot_be_forwarded(live: LiveFederation, cli: Cli) -> None:
    gb = live.client(GB)
    secret = gb.send(
        FR, subject="Source details", text="Do not share.", handling=("no-onward-transmission",)
    )
    plain = gb.send(FR, subject="Meeting", text="Tuesday 10:00.")
    live.wait_delivered(gb, secret.message_id)
    live.wait_delivered(gb, plain.message_id)
    fr = live.credential(FR, "officer")
    sentence = cli.refusal(cli.run("forward", secret.message_id, "--to", NG, "--as", fr))
    assert "no-onward-transmission" in sentence
    refusals = [
        f
        for k, f in live.ledger_kinds(FR)
        if k == "message.forward_refused" and f["message_id"] == secret.message_id
    ]
    assert len(refusals) == 1
    assert refusals[0]["reason"] == "no_onward_transmission"
    out = cli.run("forward", plain.message_id, "--to", NG, "--as", fr, "--json")
    assert out.returncode == 0, out.stderr
    forwarded = json.loads(out.stdout)["message_id"]
    live.wait_for(lambda: forwarded in live.inbox_ids(NG), 15, "the forward did not arrive")
    assert secret.message_id not in {m.message_id for m in live.client(NG).inbox(limit=1000)}
