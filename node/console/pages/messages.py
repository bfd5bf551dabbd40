"""Messages: the inbox and outbox (metadata only), composing a note, a message with its
content and delivery evidence, replying, forwarding, and the receiver's ledger proof.

Reading a message's content is ledgered on the node (as `mlax show` is), so only the
message page asks for content; the lists, the proof page and every redirect after a
POST show metadata only. The node is the one rule on who may read or forward what: the
pages show its refusal sentences and never decide in its place.
"""

from __future__ import annotations

import re
from typing import Any

import grpc
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from exchange.errors import MlaxError
from exchange.policy import CONTENT_ROLES
from node.client import HANDLING_CODES, MessageDetail, MessageInfo, NodeCallError
from node.console.app import Console, Refused, flash, http_status, redirect
from node.console.security import Session

BOXES = {"inbox": "inbound", "outbox": "outbound"}
LIST_LIMIT = 200
# Only the canonical 8-4-4-4-12 form: an id from a URL is checked before it reaches the node.
_MESSAGE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Statuses of a refused send, as the compose page answers them (else the node's 4xx/5xx).


def message_id(request: Request) -> str:
    """The message id of the URL, canonical, or a refusal that says what an id looks like."""
    raw = str(request.path_params["id"]).lower()
    if not _MESSAGE_ID.fullmatch(raw):
        raise Refused(
            "That is not a message id: an id is 32 hexadecimal digits in five groups, "
            "like 0f8fad5b-d9cb-469f-a165-70867728950e.",
            400,
        )
    return raw


def _field(post: FormData, name: str) -> str:
    value = post.get(name, "")
    return value if isinstance(value, str) else ""


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.replace("\n", ",").split(",") if n.strip()]


def _row(m: MessageInfo) -> dict[str, Any]:
    return {
        "m": m,
        "unread": m.direction == "inbound" and not m.read_at,
        "receipt": m.direction == "outbound" and m.state == "delivered",
    }


def _compose_context(console: Console, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "peers": console.me.peers,
        "handling_codes": list(HANDLING_CODES),
        "v": values,
        "problem": "",
    }


def _detail_context(
    console: Console, d: MessageDetail, content_problem: str = ""
) -> dict[str, Any]:
    i = d.info
    inbound = i.direction == "inbound"
    return {
        "d": d,
        "i": i,
        "ev": d.evidence,
        "inbound": inbound,
        "content_problem": content_problem,
        # The receipt is signed by whoever stored the message: the peer, or this node.
        "receiver": i.peer if not inbound else console.me.agency,
        "can_reply": inbound and console.role in CONTENT_ROLES,
        "can_forward": inbound and console.role in CONTENT_ROLES,
        "no_onward": "no-onward-transmission" in i.handling_codes,
        "forward_to": [p for p in console.me.peers if p != i.peer] or list(console.me.peers),
        "has_proof": not inbound and i.state == "delivered",
        "reply_subject": f"Re: {d.subject}" if d.subject is not None else "",
    }


def register(console: Console) -> None:
    @console.page("/messages")
    async def listing(console: Console, request: Request, session: Session) -> Response:
        q = request.query_params
        box = q.get("box", "inbox")
        if box not in BOXES:
            raise Refused("There are two boxes: inbox and outbox.")
        peer = q.get("peer", "")
        case_ref = q.get("case", "").strip()
        found = await console.call(
            console.client.messages, BOXES[box], LIST_LIMIT, peer=peer, case_ref=case_ref
        )
        return console.render(
            request,
            session,
            "messages.html",
            {
                "box": box,
                "rows": [_row(m) for m in found],
                "limit": LIST_LIMIT,
                "peers": console.me.peers,
                "filters": {"peer": peer, "case": case_ref},
                "can_send": console.role in CONTENT_ROLES,
            },
        )

    @console.page("/messages/new", methods=("GET", "POST"))
    async def compose(console: Console, request: Request, session: Session) -> Response:
        if request.method == "GET":
            q = request.query_params
            values: dict[str, Any] = {
                "recipient": q.get("to", ""),
                "case_ref": q.get("case", ""),
                "subject": "",
                "text": "",
                "handling": [],
                "named": "",
            }
            return console.render(
                request, session, "message_new.html", _compose_context(console, values)
            )
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        values = {
            "recipient": _field(post, "recipient").strip(),
            "case_ref": _field(post, "case_ref").strip(),
            "subject": _field(post, "subject"),
            "text": _field(post, "text"),
            "handling": [str(h) for h in post.getlist("handling")],
            "named": _field(post, "named"),
        }
        problem = ""
        if values["recipient"] not in console.me.peers:
            problem = "Choose the agency to send the message to."
        elif not values["subject"].strip():
            problem = "Write a subject."
        elif not values["text"].strip():
            problem = "Write the message's text."
        elif any(h not in HANDLING_CODES for h in values["handling"]):
            problem = "Choose handling codes from the list."
        if problem:
            return _compose_again(console, request, session, values, problem, 400)
        try:
            sent = await console.call(
                console.client.send,
                values["recipient"],
                subject=values["subject"],
                text=values["text"],
                message_type="note",
                case_ref=values["case_ref"],
                handling=tuple(values["handling"]),
                restricted_to=tuple(_names(values["named"])),
            )
        except NodeCallError as e:
            # The typed text stays in the form; the node's sentence says what to change.
            status = http_status(e)
            return _compose_again(console, request, session, values, str(e), status)
        except MlaxError as e:
            return _compose_again(console, request, session, values, str(e), 400)
        flash(session, f"Message {sent.message_id} to {sent.peer} is queued for delivery.")
        return redirect("/messages?box=outbox")

    @console.page("/messages/{id}")
    async def message_page(console: Console, request: Request, session: Session) -> Response:
        mid = message_id(request)
        problem = ""
        if console.role in CONTENT_ROLES:
            try:
                detail = await console.call(console.client.show, mid, True)
            except NodeCallError as e:
                if e.code != grpc.StatusCode.PERMISSION_DENIED:
                    raise
                # Not for this officer's eyes: the metadata and evidence still are.
                problem = str(e)
                detail = await console.call(console.client.show, mid, False)
        else:
            problem = "Your role sees a message's metadata and delivery evidence, not its content."
            detail = await console.call(console.client.show, mid, False)
        return console.render(
            request, session, "message.html", _detail_context(console, detail, problem)
        )

    @console.page("/messages/{id}/reply", methods=("POST",))
    async def reply(console: Console, request: Request, session: Session) -> Response:
        mid = message_id(request)
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        text = _field(post, "text")
        subject = _field(post, "subject").strip()
        if not text.strip():
            raise Refused("Write the reply's text; nothing was sent.")
        # Required by the node when the message answered is restricted to named officers.
        named = tuple(_names(_field(post, "named")))
        sent = await console.call(
            console.client.reply, mid, text=text, subject=subject or None, restricted_to=named
        )
        flash(session, f"Reply {sent.message_id} to {sent.peer} is queued for delivery.")
        return redirect("/messages?box=outbox")

    @console.page("/messages/{id}/forward", methods=("POST",))
    async def forward(console: Console, request: Request, session: Session) -> Response:
        mid = message_id(request)
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        recipient = _field(post, "recipient").strip()
        if recipient not in console.me.peers:
            raise Refused("Choose the agency to forward the message to; nothing was sent.")
        sent = await console.call(console.cases.forward, mid, recipient, _field(post, "note"))
        flash(session, f"Forwarded as message {sent.message_id} to {sent.peer}; it is queued.")
        return redirect("/messages?box=outbox")

    @console.page("/messages/{id}/proof")
    async def proof(console: Console, request: Request, session: Session) -> Response:
        mid = message_id(request)
        info = (await console.call(console.client.show, mid, False)).info
        if info.direction != "outbound":
            raise Refused("Only a message this node sent has a delivery proof.", 404)
        found = await console.call(console.client.delivery_proof, mid)
        return console.render(request, session, "message_proof.html", {"i": info, "p": found})


def _compose_again(
    console: Console,
    request: Request,
    session: Session,
    values: dict[str, Any],
    problem: str,
    status: int,
) -> Response:
    ctx = {**_compose_context(console, values), "problem": problem}
    return console.render(request, session, "message_new.html", ctx, status=status)


__all__ = ["message_id", "register"]
