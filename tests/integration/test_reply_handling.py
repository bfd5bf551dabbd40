"""A reply keeps the handling of the message it answers, against real nodes: its codes
travel with the reply (the node adds them whatever the caller asked for), a reply to a
message restricted to named officers must name the peer's officers who may read it, and
only an officer who may read the message can answer it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from node.client import NodeCallError, OfficerClient

if TYPE_CHECKING:
    from conftest import Cli, LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"
CODES = ("named-officers-only", "no-onward-transmission")


@dataclass(frozen=True)
class Thread:
    """GB's note to FR, restricted to FR's `bob` and not to be passed on; GB's `ann` is
    the officer FR names when it answers."""

    message_id: str
    bob: str
    bob_credential: Path
    ann: str
    ann_credential: Path


@pytest.fixture(scope="module")
def thread(live: LiveFederation) -> Thread:
    tag = uuid.uuid4().hex[:6]
    bob, ann = f"bob-{tag}", f"ann-{tag}"
    bob_credential = live.add_officer(FR, bob)
    ann_credential = live.add_officer(GB, ann)
    gb = live.client(GB)
    sent = gb.send(
        FR,
        subject="Witness J. Martin",
        text="Lives at 12 rue X, Lyon.",
        handling=CODES,
        restricted_to=(bob,),
    )
    live.wait_delivered(gb, sent.message_id)
    return Thread(sent.message_id, bob, bob_credential, ann, ann_credential)


def _as(live: LiveFederation, credential: Path) -> OfficerClient:
    return OfficerClient.from_bundle(credential, live.officer_passphrase, timeout=10)


def _refused(call: Any, status: str) -> str:
    with pytest.raises(NodeCallError) as exc:
        call()
    assert exc.value.status == status, exc.value
    return exc.value.message


def _submitted_by(live: LiveFederation, officer: str) -> int:
    return sum(
        1
        for kind, fields in live.ledger_kinds(FR)
        if kind == "message.submitted" and fields.get("officer") == officer
    )


def test_a_reply_carries_the_handling_and_is_read_only_as_it_allows(
    live: LiveFederation, thread: Thread
) -> None:
    with _as(live, thread.bob_credential) as bob:
        reply = bob.reply(
            thread.message_id, text="Noted, quoting: 12 rue X.", restricted_to=[thread.ann]
        )
        assert set(reply.handling_codes) == set(CODES)
        assert reply.in_reply_to == thread.message_id
        # On FR: its author reads it, FR's other officers do not.
        assert bob.show(reply.message_id).text == "Noted, quoting: 12 rue X."
    sentence = _refused(lambda: live.client(FR).show(reply.message_id), "PERMISSION_DENIED")
    assert sentence == f"Message {reply.message_id} is restricted to named officers."
    refusals = [
        f
        for k, f in live.ledger_kinds(FR)
        if k == "content.read_refused" and f["message_id"] == reply.message_id
    ]
    assert [(f["officer"], f["reason"]) for f in refusals] == [
        ("fr-ocrteh-officer", "restricted_to_named_officers")
    ]
    # On GB: only the officer named reads it, and it cannot be passed on.
    gb = live.client(GB)
    live.wait_for(lambda: reply.message_id in live.inbox_ids(GB), 15, "the reply did not reach GB")
    at_gb = gb.show(reply.message_id, content=False)
    assert set(at_gb.info.handling_codes) == set(CODES)
    assert at_gb.restricted_to == (thread.ann,)
    _refused(lambda: gb.show(reply.message_id), "PERMISSION_DENIED")
    with _as(live, thread.ann_credential) as ann:
        assert ann.show(reply.message_id).text == "Noted, quoting: 12 rue X."


def test_the_node_adds_the_codes_whatever_the_caller_sent(
    live: LiveFederation, thread: Thread
) -> None:
    """Not only the SDK: a Submit naming the message answered gets its codes."""
    with _as(live, thread.bob_credential) as bob:
        bare = bob.send(
            GB,
            subject="Re: bare",
            text="No codes asked for.",
            message_type="reply",
            in_reply_to=thread.message_id,
            restricted_to=(thread.ann,),
        )
        assert set(bare.handling_codes) == set(CODES)
        assert bob.show(bare.message_id, content=False).restricted_to == (thread.ann,)
        # A reply goes to the agency that sent the message it answers.
        before = _submitted_by(live, thread.bob)
        sentence = _refused(
            lambda: bob.send(
                NG,
                subject="Re: elsewhere",
                text="x",
                message_type="reply",
                in_reply_to=thread.message_id,
                restricted_to=("someone",),
            ),
            "INVALID_ARGUMENT",
        )
        assert sentence == (
            f"No message {thread.message_id} from {NG} is on this node: a reply answers a "
            "message received from its recipient."
        )
        assert _submitted_by(live, thread.bob) == before


def test_an_officer_who_may_not_read_the_message_cannot_answer_it(
    live: LiveFederation, thread: Thread
) -> None:
    fr = live.client(FR)
    before = {m.message_id for m in fr.outbox(limit=1000)}
    # With a subject of its own the SDK does not read the message first: the node refuses.
    sentence = _refused(
        lambda: fr.reply(thread.message_id, text="x", subject="Re: ?", restricted_to=(thread.ann,)),
        "PERMISSION_DENIED",
    )
    assert sentence == f"Message {thread.message_id} is restricted to named officers."
    assert {m.message_id for m in fr.outbox(limit=1000)} == before


def test_cli_reply_without_names_to_a_restricted_message_is_refused(
    live: LiveFederation, cli: Cli, thread: Thread
) -> None:
    before = _submitted_by(live, thread.bob)
    result = cli.run("reply", thread.message_id, "--as", thread.bob_credential, "--body", "Noted.")
    assert cli.refusal(result) == (
        "The message this answers is restricted to named officers: name the officers of "
        f"{GB} who may read the reply."
    )
    assert _submitted_by(live, thread.bob) == before
    named = cli.json(
        "reply",
        thread.message_id,
        "--as",
        thread.bob_credential,
        "--body",
        "Noted.",
        "--restricted-to",
        thread.ann,
        "--json",
    )
    assert set(named["handling_codes"]) == set(CODES)
    assert named["in_reply_to"] == thread.message_id
    assert _submitted_by(live, thread.bob) == before + 1
