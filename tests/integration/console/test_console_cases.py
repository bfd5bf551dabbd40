"""Cases in the console: the list, a new request with field errors beside the fields,
four-eyes approval in a second console, the peer's steps, and what a page refuses."""

from __future__ import annotations

import re
from typing import Any

import pytest

from node.client.cases import CaseClient

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

MLA_FIELDS = {
    "legal_basis#n": "1",
    "legal_basis[0].instrument": "untoc-art18",
    "offences#n": "1",
    "offences[0].description": "Human trafficking for labour exploitation.",
    "offences[0].legal_provision": "Modern Slavery Act 2015, s. 2",
    "offences[0].maximum_penalty": "Life imprisonment",
    "summary_of_facts": "Eleven workers were made to work 80-hour weeks.",
    "assistance_sought": "banking-records",
    "urgency": "ordinary",
    "contact_officer.name": "DS Marsh",
    "contact_officer.email": "marsh@nca.example",
    "requesting_authority.agency_id": "GB-NCA",
    "requesting_authority.name": "GB-NCA",
    "language": "en",
    "_type": "mla",
    "_recipient": "NG-NAPTIP",
}


def _case_ref(location: str) -> str:
    found = re.fullmatch(r"/cases/([^/]+)", location)
    assert found, location
    return found.group(1)


def test_new_request_shows_the_field_error_beside_the_field_and_saves_nothing(
    console_for: Any, csrf: Any, live: Any
) -> None:
    client, _ = console_for("GB-NCA", "officer")
    before = len(CaseClient(live.client("GB-NCA")).cases(limit=1000))
    form = {**MLA_FIELDS, "csrf": csrf(client), "offences[0].description": ""}
    page = client.post("/cases/new", data=form, follow_redirects=False)
    assert page.status_code == 400
    # The protocol's own sentence, beside the field its dotted path names.
    error = re.search(
        r'data-path="offences\[0\]\.description">.*?<p class="field-error"[^>]*>([^<]+)</p>',
        page.text,
        re.S,
    )
    assert error, page.text
    assert "Field" not in error.group(1)
    assert error.group(1).strip()
    # What was typed is kept.
    assert "Modern Slavery Act 2015, s. 2" in page.text
    assert len(CaseClient(live.client("GB-NCA")).cases(limit=1000)) == before


def test_list_fields_grow_with_add_another(console_for: Any, csrf: Any) -> None:
    client, _ = console_for("GB-NCA", "officer")
    page = client.post("/cases/new", data={**MLA_FIELDS, "csrf": csrf(client), "_add": "offences"})
    assert page.status_code == 200
    assert 'name="offences[1].description"' in page.text
    assert "Save draft" in page.text


def test_mla_case_draft_approval_and_peer_steps(console_for: Any, csrf: Any, live: Any) -> None:
    officer, _ = console_for("GB-NCA", "officer")
    saved = officer.post(
        "/cases/new", data={**MLA_FIELDS, "csrf": csrf(officer)}, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text
    ref = _case_ref(saved.headers["location"])
    page = officer.get(f"/cases/{ref}")
    assert "Draft" in page.text
    assert 'id="case-state">draft<' in page.text
    assert "Human trafficking for labour exploitation." in page.text

    submitted = officer.post(
        f"/cases/{ref}/act/submit", data={"csrf": csrf(officer)}, follow_redirects=True
    )
    assert "waits for a supervisor" in submitted.text
    # An officer never sees an approve button, least of all for their own draft.
    assert ">Approve</button>" not in submitted.text

    supervisor, _ = console_for("GB-NCA", "supervisor")
    queue = supervisor.get("/approvals")
    assert ref in queue.text
    case = supervisor.get(f"/cases/{ref}")
    assert ">Approve</button>" in case.text
    approved = supervisor.post(
        f"/cases/{ref}/approve", data={"csrf": csrf(supervisor)}, follow_redirects=True
    )
    assert approved.status_code == 200
    assert "Approved" in approved.text

    peer, _ = console_for("NG-NAPTIP", "officer")
    ng = CaseClient(live.client("NG-NAPTIP"))
    live.wait_for(lambda: ng.get(ref).summary.state == "submitted", 30, "the case arrives")
    acked = peer.post(
        f"/cases/{ref}/act/acknowledge",
        data={"csrf": csrf(peer), "reference": "NAPTIP/2026/9"},
        follow_redirects=True,
    )
    assert acked.status_code == 200, acked.text
    assert "Acknowledge: done" in acked.text
    # A refusal with no ground: the sentence beside the grounds, nothing sent.
    refused = peer.post(
        f"/cases/{ref}/act/refuse",
        data={"csrf": csrf(peer), "explanation": "No."},
        follow_redirects=True,
    )
    assert refused.status_code == 400
    assert 'data-path="grounds"' in refused.text
    assert "field-error" in refused.text
    assert ng.get(ref).summary.local_state == "acknowledged"


def test_a_stale_page_cannot_act_on_a_case_that_moved(
    console_for: Any, csrf: Any, live: Any
) -> None:
    officer, _ = console_for("GB-NCA", "officer")
    saved = officer.post(
        "/cases/new", data={**MLA_FIELDS, "csrf": csrf(officer)}, follow_redirects=False
    )
    ref = _case_ref(saved.headers["location"])
    stale = officer.post(
        f"/cases/{ref}/act/submit",
        data={"csrf": csrf(officer), "expected_step": "7"},
    )
    assert stale.status_code in (400, 409), stale.text
    assert 'id="problem"' in stale.text
    assert CaseClient(live.client("GB-NCA")).get(ref).summary.awaiting_approval is False


def test_unknown_case_and_action_are_refused_with_a_sentence(console_for: Any, csrf: Any) -> None:
    client, _ = console_for("GB-NCA", "officer")
    missing = client.get("/cases/MLA-NOPE-0000")
    assert missing.status_code in (400, 404)
    assert 'id="problem"' in missing.text
    bad = client.post("/cases/whatever/act/explode", data={"csrf": csrf(client)})
    assert bad.status_code == 400
    assert "no case action" in bad.text


def test_cases_list_filters_and_flags(console_for: Any) -> None:
    client, _ = console_for("GB-NCA", "officer")
    page = client.get("/cases?type=mla&open=on")
    assert page.status_code == 200
    assert 'id="cases"' in page.text
    assert client.get("/cases?state=exploded").status_code == 400


def test_an_auditor_cannot_open_cases(console_for: Any) -> None:
    client, _ = console_for("GB-NCA", "auditor")
    assert client.get("/cases").status_code == 403


def test_a_supervisor_may_withdraw_a_draft_from_the_queue(
    console_for: Any, csrf: Any, live: Any
) -> None:
    officer, _ = console_for("GB-NCA", "officer")
    saved = officer.post(
        "/cases/new", data={**MLA_FIELDS, "csrf": csrf(officer)}, follow_redirects=False
    )
    ref = _case_ref(saved.headers["location"])
    officer.post(f"/cases/{ref}/act/submit", data={"csrf": csrf(officer)})
    supervisor, _ = console_for("GB-NCA", "supervisor")
    page = supervisor.get(f"/cases/{ref}")
    assert ">Approve</button>" in page.text
    assert ">Withdraw</button>" in page.text
    withdrawn = supervisor.post(
        f"/cases/{ref}/act/withdraw",
        data={"csrf": csrf(supervisor), "reason": "Not enough grounds yet."},
        follow_redirects=True,
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert 'id="case-state">withdrawn<' in withdrawn.text
    assert ref not in supervisor.get("/approvals").text
    # Nothing left the node: the peer never heard of it.
    assert CaseClient(live.client("GB-NCA")).get(ref).summary.seq == 0


@pytest.mark.parametrize("kind", ["mla", "extradition", "victim-id"])
def test_each_request_type_has_its_form(console_for: Any, kind: str) -> None:
    client, _ = console_for("GB-NCA", "officer")
    page = client.get(f"/cases/new?type={kind}")
    assert page.status_code == 200
    assert 'name="_type" value="' + kind + '"' in page.text
    assert "Save draft" in page.text
    # Every visible input has a label.
    for field_id in re.findall(r'<(?:input|select|textarea) id="([^"]+)"', page.text):
        assert f'<label for="{field_id}">' in page.text, field_id


def test_an_unknown_request_type_is_refused(console_for: Any) -> None:
    client, _ = console_for("GB-NCA", "officer")
    assert client.get("/cases/new?type=bogus").status_code == 400
