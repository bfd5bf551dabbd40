"""Officer commands: send, inbox, outbox, show, reply, watch. All go through the SDK."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from exchange.receipt import Receipt
from node.cli.common import (
    CredOpt,
    JsonOpt,
    cli_errors,
    console,
    fail,
    officer_client,
    print_json,
)
from node.cli.safe_text import shown
from node.client import MessageDetail, MessageInfo


def _time(ms: int) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _state(m: MessageInfo) -> str:
    colour = {"delivered": "green", "received": "green", "failed": "red", "retrying": "yellow"}
    text = f"[{colour.get(m.state, 'white')}]{shown(m.state)}[/]"
    if m.state == "retrying" and m.attempts:
        text += f" ({m.attempts} tries)"
    if m.direction == "inbound" and not m.read_at:
        text += " [bold]new[/]"
    return text


def _table(messages: list[MessageInfo], title: str) -> Table:
    table = Table(title=title)
    for col in ("message id", "peer", "type", "case", "created (UTC)", "state"):
        table.add_column(col)
    for m in messages:
        table.add_row(
            shown(m.message_id),
            shown(m.peer),
            shown(m.message_type),
            shown(m.case_ref or "-"),
            _time(m.created_at),
            _state(m),
        )
    return table


PeerOpt = Annotated[str, typer.Option("--peer", help="Only messages with this agency.")]
CaseOpt = Annotated[str, typer.Option("--case", help="Only messages of this case.")]


def _listing(
    direction: str,
    title: str,
    limit: int,
    peer: str,
    case: str,
    cred: Path | None,
    json_out: bool,
) -> None:
    with officer_client(cred) as c:
        msgs = c.messages(direction, limit, peer=peer, case_ref=case)
    if json_out:
        print_json([m.to_json() for m in msgs])
    else:
        console.print(_table(msgs, title))


def register(app: typer.Typer) -> None:
    @app.command("send")
    @cli_errors
    def send(
        to: Annotated[str, typer.Option("--to", help="Recipient agency id.")],
        subject: Annotated[str, typer.Option(help="Subject line (travels encrypted).")],
        body_file: Annotated[
            Path | None, typer.Option("--body-file", help="File with the text.")
        ] = None,
        body: Annotated[str | None, typer.Option("--body", help="The text, inline.")] = None,
        message_type: Annotated[
            str, typer.Option("--type", help="note (requests travel as cases: mlax case new).")
        ] = "note",
        case: Annotated[str, typer.Option("--case", help="Case reference.")] = "",
        handling: Annotated[
            list[str] | None, typer.Option("--handling", help="Handling code (repeat).")
        ] = None,
        named: Annotated[
            list[str] | None, typer.Option("--named", help="Officer allowed to read (repeat).")
        ] = None,
        cred: CredOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Send a message to another agency; it is queued and delivered with retries."""
        if (body_file is None) == (body is None):
            fail("Give the text with exactly one of --body-file or --body.", 2)
        text = body_file.read_text() if body_file is not None else (body or "")
        with officer_client(cred) as c:
            m = c.send(
                to,
                subject=subject,
                text=text,
                message_type=message_type,
                case_ref=case,
                handling=tuple(handling or ()),
                restricted_to=tuple(named or ()),
            )
        if json_out:
            print_json(m.to_json())
        else:
            console.print(f"[green]queued[/] {shown(m.message_id)} to {shown(m.peer)}")

    @app.command("inbox")
    @cli_errors
    def inbox(
        limit: int = 50,
        peer: PeerOpt = "",
        case: CaseOpt = "",
        cred: CredOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Messages received from other agencies, newest first."""
        _listing("inbound", "Inbox", limit, peer, case, cred, json_out)

    @app.command("outbox")
    @cli_errors
    def outbox(
        limit: int = 50,
        peer: PeerOpt = "",
        case: CaseOpt = "",
        cred: CredOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Messages sent by this agency with their delivery state, newest first."""
        _listing("outbound", "Outbox", limit, peer, case, cred, json_out)

    @app.command("show")
    @cli_errors
    def show(
        message_id: str,
        metadata_only: Annotated[
            bool, typer.Option("--metadata-only", help="Do not decrypt the content.")
        ] = False,
        bundle_out: Annotated[
            Path | None,
            typer.Option(
                "--bundle-out",
                help="Save the sender's non-repudiation bundle (inbound messages) to this file.",
            ),
        ] = None,
        cred: CredOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """One message: content (the read is ledgered), state and delivery evidence."""
        if bundle_out is not None and bundle_out.exists():
            fail(f"{bundle_out} already exists.")
        proof = None
        with officer_client(cred) as c:
            d = c.show(message_id, content=not metadata_only)
            if d.info.direction == "outbound" and d.info.state == "delivered":
                proof = c.delivery_proof(message_id)
        if bundle_out is not None:
            if not d.non_repudiation_bundle:
                fail("Only inbound messages read with their content have a sender's bundle.")
            write_private(bundle_out, d.non_repudiation_bundle)
        if json_out:
            print_json({**d.to_json(), "ledger_proof": proof.to_json() if proof else None})
            return
        _print_detail(d)
        if proof is not None:
            if proof.verified:
                console.print(
                    f"  ledger proof [green]verified[/]: entry {proof.ledger_index} is in "
                    f"{shown(d.info.peer)}'s signed checkpoint of {proof.tree_size} entries, "
                    f"cosigned by {proof.cosignatures} witness(es)"
                )
            else:
                console.print(f"  ledger proof [yellow]not verified[/]: {shown(proof.problem)}")

    @app.command("reply")
    @cli_errors
    def reply(
        message_id: str,
        body_file: Annotated[Path | None, typer.Option("--body-file")] = None,
        body: Annotated[str | None, typer.Option("--body")] = None,
        named: Annotated[
            list[str] | None,
            typer.Option(
                "--restricted-to",
                "--named",
                help="Officer of the other agency allowed to read the reply (repeat); "
                "required when the message answered is restricted to named officers.",
            ),
        ] = None,
        cred: CredOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Answer an inbound message (same agency and case, at least its handling codes)."""
        if (body_file is None) == (body is None):
            fail("Give the text with exactly one of --body-file or --body.", 2)
        text = body_file.read_text() if body_file is not None else (body or "")
        with officer_client(cred) as c:
            m = c.reply(message_id, text=text, restricted_to=tuple(named or ()))
        if json_out:
            print_json(m.to_json())
        else:
            console.print(f"[green]queued[/] reply {shown(m.message_id)} to {shown(m.peer)}")

    @app.command("watch")
    @cli_errors
    def watch(cred: CredOpt = None, json_out: JsonOpt = False) -> None:
        """Print new inbound messages as they arrive (Ctrl-C to stop)."""
        with officer_client(cred) as c:
            try:
                for m in c.watch():
                    if json_out:
                        print_json(m.to_json())
                    else:
                        console.print(
                            f"{_time(m.created_at)} {shown(m.message_id)} from {shown(m.peer)} "
                            f"({shown(m.message_type)})"
                        )
            except KeyboardInterrupt:
                return


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (it may hold content)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _print_detail(d: MessageDetail) -> None:
    i = d.info
    towards = "to" if i.direction == "outbound" else "from"
    console.print(f"[bold]{shown(i.message_id)}[/] {shown(i.direction)} {towards} {shown(i.peer)}")
    console.print(
        f"  type {shown(i.message_type)}  case {shown(i.case_ref or '-')}  "
        f"created {_time(i.created_at)} UTC"
    )
    console.print(
        f"  state {_state(i)}" + (f"  last error: {shown(i.last_error)}" if i.last_error else "")
    )
    if i.handling_codes:
        console.print(f"  handling: {shown(', '.join(i.handling_codes))}")
    if d.subject is not None:
        # Content is printed as text, never interpreted as Rich markup, and neutralised:
        # nothing in it can move the cursor to rewrite the lines above.
        console.print()
        console.print(Text(shown(d.subject, markup=False), style="bold"))
        console.print(Text(shown(d.text or "", multiline=True, markup=False)))
        console.print()
    if d.purged:
        console.print(f"  content {shown(d.purged)}")
    ev = d.evidence
    console.print(f"  envelope digest {shown(ev.envelope_digest)}")
    if ev.receipt:
        r = Receipt.from_bytes(ev.receipt).parsed()
        ok = "[green]verified[/]" if ev.receipt_verified else "[red]NOT VERIFIED[/]"
        console.print(
            f"  receipt {ok}: stored by {shown(r.receiver)} at {_time(r.received_at)} UTC, "
            f"ledger index {r.ledger_index}, signed with key {shown(r.receiver_key_id)}"
        )
