"""`mlax bundle verify`: what a court or third party runs on a non-repudiation bundle."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.directory import Directory
from exchange.envelope import verify_bundle
from keys.directory_file import read_signed_directory
from node.cli.common import JsonOpt, cli_errors, console, print_json
from node.cli.safe_text import shown

app = typer.Typer(no_args_is_help=True)


@app.command("verify")
@cli_errors
def verify(
    bundle: Annotated[Path, typer.Argument(help="A bundle saved with `mlax show --bundle-out`.")],
    directory: Annotated[
        Path,
        typer.Option("--directory", help="The federation directory in force when it was sent."),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Check who sent which plaintext, with nothing but the federation directory."""
    signed = read_signed_directory(directory)
    statement = verify_bundle(bundle.read_bytes(), Directory.from_bytes(signed.directory))
    h = statement.header
    content = opb.Content.FromString(statement.body)
    sent = dt.datetime.fromtimestamp(h.created_at / 1000, dt.UTC)
    if json_out:
        print_json(
            {
                "verified": True,
                "message_id": h.message_id_text,
                "sender": h.sender,
                "recipient": h.recipient,
                "sender_key_id": h.sender_key_id,
                "created_at": h.created_at,
                "case_ref": h.case_ref,
                "subject": content.subject,
                "text": content.text,
                "key_revoked_later": statement.key_revoked_later,
            }
        )
        return
    console.print(
        f"[green]verified[/]: {shown(h.sender)} signed message {shown(h.message_id_text)} to "
        f"{shown(h.recipient)} at {sent:%Y-%m-%d %H:%M:%S} UTC with key {shown(h.sender_key_id)}"
    )
    if statement.key_revoked_later:
        console.print(
            "[yellow]note:[/] that key was revoked later; the recipient's receipt and ledger "
            "fix when the message really arrived."
        )
    console.print(Text(shown(content.subject, markup=False), style="bold"))
    console.print(Text(shown(content.text, multiline=True, markup=False)))
