"""Messages in the console: the boxes, composing, a message's page (escaped), replying,
forwarding as handling codes allow, the delivery proof, CSRF and bad ids."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"


def _outbox_ids(console: Any) -> set[str]:
    return {m.message_id for m in console.client.outbox(limit=1000)}


def _arrived(live: Any, agency: str, message_id: str) -> None:
    live.wait_for(
        lambda: message_id in live.inbox_ids(agency), 15, f"{message_id} did not reach {agency}"
    )


def test_compose_then_outbox_and_inbox_list_it(console_for: Any, csrf: Any, live: Any) -> None:
    gb_client, gb = console_for(GB, "officer")
    form = gb_client.get("/messages/new")
    assert form.status_code == 200, form.text
    assert f'<option value="{FR}">' in form.text
    assert 'name="handling" value="no-onward-transmission"' in form.text

    before = _outbox_ids(gb)
    subject = f"Console note {uuid.uuid4().hex[:8]}"
    sent = gb_client.post(
        "/messages/new",
        data={
            "csrf": csrf(gb_client, "/messages"),
            "recipient": FR,
            "subject": subject,
            "text": "Written in the web console.",
            "handling": ["no-evidential-use"],
        },
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == "/messages?box=outbox"
    new = _outbox_ids(gb) - before
    assert len(new) == 1
    mid = new.pop()

    outbox = gb_client.get("/messages?box=outbox")
    assert outbox.status_code == 200
    assert f"Message {mid} to {FR} is queued for delivery." in outbox.text
    table = outbox.text.split('id="messages"', 1)[1]
    assert f'href="/messages/{mid}"' in table
    assert "no-evidential-use" in table
    assert subject not in outbox.text  # lists carry metadata only

    _arrived(live, FR, mid)
    fr_client, _ = console_for(FR, "officer")
    inbox = fr_client.get("/messages")
    assert inbox.status_code == 200
    row = re.search(rf'<tr>\s*<td><a href="/messages/{mid}">.*?</tr>', inbox.text, re.S)
    assert row, "the inbox lists the note"
    assert GB in row.group(0)
    assert '<span class="tag">new</span>' in row.group(0)
    assert subject not in inbox.text


def test_compose_problems_keep_the_text(console_for: Any, csrf: Any) -> None:
    gb_client, gb = console_for(GB, "officer")
    before = _outbox_ids(gb)
    page = gb_client.post(
        "/messages/new",
        data={
            "csrf": csrf(gb_client, "/messages"),
            "recipient": FR,
            "subject": "",
            "text": "Kept <as typed>",
        },
    )
    assert page.status_code == 400
    assert "Write a subject." in page.text
    assert "Kept &lt;as typed&gt;</textarea>" in page.text
    assert _outbox_ids(gb) == before


def test_message_page_escapes_a_peers_text(console_for: Any, live: Any) -> None:
    subject = "<script>alert(1)</script>\u202eevil"
    sent = live.client(GB).send(FR, subject=subject, text="line one\nline <b>two</b>")
    _arrived(live, FR, sent.message_id)
    fr_client, _ = console_for(FR, "officer")
    page = fr_client.get(f"/messages/{sent.message_id}")
    assert page.status_code == 200, page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\u202eevil" in page.text
    assert "<script>alert" not in page.text
    assert "\u202e" not in page.text
    assert "line one\nline &lt;b&gt;two&lt;/b&gt;" in page.text
    assert "recorded in its ledger that you read" in page.text
    # The reply form offers the subject, escaped as well.
    assert 'value="Re: &lt;script&gt;alert(1)&lt;/script&gt;\\u202eevil"' in page.text


def test_reply_from_the_message_page(console_for: Any, csrf: Any, live: Any) -> None:
    sent = live.client(GB).send(FR, subject="Question", text="Can you confirm?")
    _arrived(live, FR, sent.message_id)
    fr_client, _ = console_for(FR, "officer")
    page = fr_client.get(f"/messages/{sent.message_id}")
    assert 'id="reply"' in page.text
    answered = fr_client.post(
        f"/messages/{sent.message_id}/reply",
        data={"csrf": csrf(fr_client, "/messages"), "subject": "", "text": "Confirmed."},
        follow_redirects=False,
    )
    assert answered.status_code == 303, answered.text
    outbox = fr_client.get(answered.headers["location"])
    assert f"to {GB} is queued for delivery." in outbox.text

    def replied() -> bool:
        return any(m.in_reply_to == sent.message_id for m in live.client(GB).inbox(limit=200))

    live.wait_for(replied, 15, "the reply did not reach GB")
    reply = next(m for m in live.client(GB).inbox(limit=200) if m.in_reply_to == sent.message_id)
    shown = live.client(GB).show(reply.message_id)
    assert shown.subject == "Re: Question"
    assert shown.text == "Confirmed."


def test_forwarding_a_no_onward_note_is_refused(console_for: Any, csrf: Any, live: Any) -> None:
    sent = live.client(GB).send(
        FR, subject="Source details", text="Do not share.", handling=("no-onward-transmission",)
    )
    _arrived(live, FR, sent.message_id)
    fr_client, fr = console_for(FR, "officer")
    page = fr_client.get(f"/messages/{sent.message_id}")
    assert 'id="forward"' in page.text
    assert "your node will refuse to forward it" in page.text

    before = _outbox_ids(fr)
    refused = fr_client.post(
        f"/messages/{sent.message_id}/forward",
        data={"csrf": csrf(fr_client, "/messages"), "recipient": NG, "note": "FYI"},
        follow_redirects=False,
    )
    assert refused.status_code == 403, refused.text
    assert "carries the handling code no-onward-transmission: it cannot be forwarded." in (
        refused.text
    )
    assert _outbox_ids(fr) == before


def test_forwarding_a_plain_note(console_for: Any, csrf: Any, live: Any) -> None:
    sent = live.client(GB).send(FR, subject="Shareable", text="Pass this on.")
    _arrived(live, FR, sent.message_id)
    fr_client, fr = console_for(FR, "officer")
    page = fr_client.get(f"/messages/{sent.message_id}")
    assert "your node will refuse to forward it" not in page.text
    before = _outbox_ids(fr)
    done = fr_client.post(
        f"/messages/{sent.message_id}/forward",
        data={"csrf": csrf(fr_client, "/messages"), "recipient": NG, "note": "For you."},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    new = _outbox_ids(fr) - before
    assert len(new) == 1
    _arrived(live, NG, new.pop())


def test_delivery_proof_page(console_for: Any, csrf: Any, live: Any) -> None:
    gb_client, gb = console_for(GB, "officer")
    before = _outbox_ids(gb)
    sent = gb_client.post(
        "/messages/new",
        data={
            "csrf": csrf(gb_client, "/messages"),
            "recipient": FR,
            "subject": "Proof",
            "text": "Prove it.",
        },
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text
    (mid,) = _outbox_ids(gb) - before
    live.wait_delivered(gb.client, mid)
    page = gb_client.get(f"/messages/{mid}")
    assert page.status_code == 200
    assert f'href="/messages/{mid}/proof"' in page.text
    assert "signature verified" in page.text
    # FR signs a checkpoint every few seconds; until then the page says why it cannot verify.
    live.wait_for(lambda: gb.client.delivery_proof(mid).verified, 30, "no verified proof")
    proof = gb_client.get(f"/messages/{mid}/proof")
    assert proof.status_code == 200, proof.text
    found = re.search(
        rf"Inclusion in {FR}'s checkpoint of (\d+) entries verified, (\d+) cosignature\(s\)",
        proof.text,
    )
    assert found, proof.text


def test_post_without_csrf_sends_nothing(console_for: Any) -> None:
    gb_client, gb = console_for(GB, "officer")
    before = _outbox_ids(gb)
    data = {"recipient": FR, "subject": "Forged", "text": "Should not leave."}
    refused = gb_client.post("/messages/new", data=data)
    assert refused.status_code == 403
    refused = gb_client.post("/messages/new", data={**data, "csrf": "not-the-token"})
    assert refused.status_code == 403
    assert _outbox_ids(gb) == before


def test_bad_and_unknown_message_ids(console_for: Any) -> None:
    gb_client, _ = console_for(GB, "officer")
    bad = gb_client.get("/messages/not-an-id")
    assert bad.status_code == 400
    assert "That is not a message id" in bad.text
    unknown = str(uuid.uuid4())
    missing = gb_client.get(f"/messages/{unknown}")
    assert missing.status_code == 404
    assert f"No message {unknown} on this node." in missing.text
    assert gb_client.get(f"/messages/{unknown}/proof").status_code == 404
    assert gb_client.get("/messages?box=trash").status_code == 400


def test_an_auditor_sees_metadata_and_evidence_only(console_for: Any, live: Any) -> None:
    sent = live.client(GB).send(FR, subject="Not for auditors", text="Content.")
    _arrived(live, FR, sent.message_id)
    client, _ = console_for(FR, "auditor")
    listing = client.get("/messages")
    assert listing.status_code == 200
    assert 'id="new-message"' not in listing.text
    page = client.get(f"/messages/{sent.message_id}")
    assert page.status_code == 200, page.text
    assert "not its content" in page.text
    assert "Not for auditors" not in page.text
    assert 'id="delivery"' in page.text
    assert 'id="reply"' not in page.text
    assert 'id="forward"' not in page.text
