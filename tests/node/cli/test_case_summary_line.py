"""`mlax case show` tells the officer which of their steps are still travelling."""

from __future__ import annotations

from exchange._proto.mlax.v1 import casework_pb2 as cpb
from node.cli.cases_cmd import _summary_line
from node.client.results import CaseSummary


def test_queued_steps_are_shown_with_the_state_they_lead_to() -> None:
    summary = CaseSummary.from_proto(
        cpb.CaseSummary(
            case_ref="NG-NAPTIP-2026-00001",
            case_type="mla",
            role="requested",
            peer="GB-NCA",
            state="submitted",
            pending_action="acknowledge",
            pending_delivery="retrying",
            queued_actions=["acknowledge", "accept", "start_execution"],
            local_seq=4,
            local_state="in_execution",
        )
    )
    line = _summary_line(summary)
    assert "(sending acknowledge: retrying)" in line
    assert "(then accept, start_execution; in_execution once all arrive)" in line


def test_nothing_queued_says_nothing_more() -> None:
    summary = CaseSummary.from_proto(
        cpb.CaseSummary(case_ref="GB-NCA-2026-00001", state="accepted", local_state="accepted")
    )
    assert "then" not in _summary_line(summary)
