"""The console's reply form to a message restricted to named officers: it asks for the
peer's officers who may read the reply, and the reply keeps the message's handling."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR = "GB-NCA", "FR-OCRTEH"
CODES = ("named-officers-only", "no-onward-transmission")


def test_replying_to_a_restricted_message_names_the_readers(
    console_for: Any, csrf: Any, live: Any
) -> None:
    bob = f"bob-{uuid.uuid4().hex[:6]}"
    bob_credential = live.add_officer(FR, bob)
    gb = live.client(GB)
    sent = gb.send(FR, subject="Eyes only", text="secret", handling=CODES, restricted_to=(bob,))
    live.wait_delivered(gb, sent.message_id)
    client, console = console_for(FR, "officer", credential=bob_credential)
    page = client.get(f"/messages/{sent.message_id}")
    assert page.status_code == 200, page.text
    assert '<input id="f-reply-named" name="named" required>' in page.text
    assert "The reply carries this message's handling codes" in page.text

    def outbox() -> set[str]:
        return {m.message_id for m in console.client.outbox(limit=1000)}

    before = outbox()
    refused = client.post(
        f"/messages/{sent.message_id}/reply",
        data={"csrf": csrf(client, "/messages"), "subject": "", "text": "Noted.", "named": ""},
        follow_redirects=False,
    )
    assert refused.status_code == 400, refused.text
    assert (
        "The message this answers is restricted to named officers: name the officers of "
        f"{GB} who may read the reply." in refused.text
    )
    assert outbox() == before

    answered = client.post(
        f"/messages/{sent.message_id}/reply",
        data={
            "csrf": csrf(client, "/messages"),
            "subject": "",
            "text": "Noted.",
            "named": "gb-nca-officer",
        },
        follow_redirects=False,
    )
    assert answered.status_code == 303, answered.text
    [reply] = [console.client.show(m, content=False) for m in outbox() - before]
    assert set(reply.info.handling_codes) == set(CODES)
    assert reply.restricted_to == ("gb-nca-officer",)
    assert reply.info.in_reply_to == sent.message_id


def test_an_unrestricted_message_asks_for_no_names(console_for: Any, live: Any) -> None:
    gb = live.client(GB)
    sent = gb.send(FR, subject="Open", text="hello")
    live.wait_delivered(gb, sent.message_id)
    client, _ = console_for(FR, "officer")
    page = client.get(f"/messages/{sent.message_id}")
    assert 'id="reply"' in page.text
    assert "f-reply-named" not in page.text
