"""`mlax admin officers ...`: an admin manages the node's officer accounts over the API.

The same changes as the node host's `mlax officer ...`, made from any workstation with an
admin's credential (`--as`, as every officer command; node.client.admin); each is ledgered
with the admin's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from node.cli.common import (
    CredOpt,
    JsonOpt,
    cli_errors,
    fail,
    format_time,
    officer_client,
    passphrase,
    print_json,
    print_table,
    say,
)
from node.cli.safe_text import shown
from node.client.admin import AdminClient, OfficerAccount

# The passphrase that will protect the new officer's credential (else a prompt, twice).
NEW_OFFICER_PASSPHRASE_ENV = "MLAX_NEW_OFFICER_PASSPHRASE"  # noqa: S105 - a variable name

admin_app = typer.Typer(no_args_is_help=True)
officers_app = typer.Typer(no_args_is_help=True)
admin_app.add_typer(officers_app, name="officers", help="This node's officer accounts.")


def register(app: typer.Typer) -> None:
    app.add_typer(
        admin_app, name="admin", help="Administer this node through its API (admin role)."
    )


def _admin(cred: Path | None) -> AdminClient:
    return AdminClient(officer_client(cred))


def _show(verb: str, account: OfficerAccount, json_out: bool) -> None:
    if json_out:
        print_json(account.to_json())
        return
    state = "active" if account.active else "inactive"
    say(f"{verb} {account.name}: {account.role}, {state}")


@officers_app.command("list")
@cli_errors
def officers_list(cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """Every officer account of the node, with its role and whether it is active."""
    admin = _admin(cred)
    with admin.client:
        accounts = admin.officers()
    if json_out:
        print_json([a.to_json() for a in accounts])
        return
    table = Table("officer", "role", "active", "issued")
    for a in accounts:
        table.add_row(
            shown(a.name), shown(a.role), "yes" if a.active else "no", format_time(a.created_at)
        )
    print_table(table)


@officers_app.command("issue")
@cli_errors
def officers_issue(
    name: Annotated[str, typer.Argument(help="The new officer's account name.")],
    role: Annotated[str, typer.Option(help="officer, supervisor, auditor or admin.")] = "officer",
    out: Annotated[
        Path | None, typer.Option(help="Where to write the credential (default NAME.officer.json).")
    ] = None,
    days: Annotated[int, typer.Option(help="Validity of the credential, 1 to 3650.")] = 365,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Issue a credential; its key is made here and sealed under a passphrase you choose."""
    out = out or Path(f"{name}.officer.json")
    if out.exists():
        fail(f"{out} already exists.")
    if not out.parent.is_dir():
        fail(f"No such directory: {out.parent}.")
    if not 1 <= days <= 3650:
        fail("A credential is valid for 1 to 3650 days.")
    admin = _admin(cred)
    secret = passphrase(
        "Passphrase for the new officer's credential", confirm=True, env=NEW_OFFICER_PASSPHRASE_ENV
    )
    from keys.officer_bundle import write_bundle

    with admin.client:
        account, bundle = admin.issue(name, role=role, passphrase=secret, days=days)
    write_bundle(out, bundle)
    if json_out:
        print_json({**account.to_json(), "credential": str(out)})
        return
    say(f"issued {account.role} {account.name}; credential written to {out} (mode 0600)")


@officers_app.command("set-role")
@cli_errors
def officers_set_role(
    name: Annotated[str, typer.Argument(help="The officer's account name.")],
    role: Annotated[str, typer.Argument(help="officer, supervisor, auditor or admin.")],
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Change an officer's role; it applies to their next call."""
    admin = _admin(cred)
    with admin.client:
        account = admin.set_role(name, role)
    _show("updated", account, json_out)


@officers_app.command("deactivate")
@cli_errors
def officers_deactivate(
    name: Annotated[str, typer.Argument(help="The officer's account name.")],
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Deactivate an account: the officer's next call is refused."""
    _set_active(name, False, cred, json_out)


@officers_app.command("activate")
@cli_errors
def officers_activate(
    name: Annotated[str, typer.Argument(help="The officer's account name.")],
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Reactivate a deactivated account."""
    _set_active(name, True, cred, json_out)


def _set_active(name: str, active: bool, cred: Path | None, json_out: bool) -> None:
    admin = _admin(cred)
    with admin.client:
        account = admin.set_active(name, active)
    _show("activated" if active else "deactivated", account, json_out)


@admin_app.command("export-pem")
@cli_errors
def export_pem(
    bundle: Annotated[Path, typer.Argument(help="An officer credential bundle.")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where to write the PEM files.")],
) -> None:
    """Write a credential as PEM files for standard tools (grpcurl, grpc_health_probe):
    node.crt, officer.crt and officer.key, the key unencrypted (mode 0600)."""
    from keys.atomic import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, write_atomic
    from node.client import OFFICER_PASSPHRASE_ENV, Credential

    if not bundle.is_file():
        fail(f"No officer credential at {bundle}.")
    if not out_dir.is_dir():
        fail(f"No such directory: {out_dir}.")
    names = ("node.crt", "officer.crt", "officer.key")
    taken = [n for n in names if (out_dir / n).exists()]
    if taken:
        fail(f"{out_dir / taken[0]} already exists.")
    cred = Credential.load(bundle, passphrase("Credential passphrase", env=OFFICER_PASSPHRASE_ENV))
    for name, data, mode in (
        ("node.crt", cred.server_certificate, PUBLIC_FILE_MODE),
        ("officer.crt", cred.certificate, PUBLIC_FILE_MODE),
        ("officer.key", cred.private_key_pem, PRIVATE_FILE_MODE),
    ):
        write_atomic(out_dir / name, data, mode=mode, overwrite=False)
    say(f"wrote node.crt, officer.crt and officer.key (0600, unencrypted) to {out_dir}")
