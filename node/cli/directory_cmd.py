"""`mlax directory`: build, sign, verify and export the federation directory (k of n)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from exchange.agency import AgencyCard
from exchange.directory import (
    AdminKey,
    Directory,
    SignedDirectory,
    verify_directory,
    verify_directory_chain,
)
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError
from keys.admin import decode_public_key, load_admin
from keys.card_file import read_card_file
from keys.directory_edit import (
    DAY_MS,
    DEFAULT_DIRECTORY_VALIDITY_DAYS,
    DirectoryEdit,
    add_admin,
    add_agencies,
    admin_set_changed,
    extend_expiry,
    new_directory,
    remove_admin,
    remove_agency,
    set_statistics_coordinators,
    set_threshold,
)
from keys.directory_file import (
    read_directory_file,
    read_signed_directory,
    read_versions,
    write_chain_file,
    write_directory_file,
)
from node.cli.common import (
    JsonOpt,
    cli_errors,
    format_time,
    passphrase,
    print_json,
    print_table,
    say,
    warn,
)
from node.cli.safe_text import shown

app = typer.Typer(no_args_is_help=True)

FileOption = Annotated[
    Path, typer.Option("--file", help="The directory file (JSON, or binary protobuf).")
]


def _admin_public_key(value: str) -> bytes:
    """An --admin value: base64 public key, or the path of an admin.pub holding one."""
    path = Path(value)
    if path.is_file():
        return decode_public_key(path.read_text())
    return decode_public_key(value)


@app.command("init")
@cli_errors
def init(
    federation: Annotated[str, typer.Option(help="The federation id.")],
    threshold: Annotated[int, typer.Option(help="Signatures needed (k of n).", min=1)],
    admin: Annotated[
        list[str],
        typer.Option(help="An administrator public key (base64, or an admin.pub file)."),
    ],
    out: Annotated[Path, typer.Option(help="Where to write the new directory (JSON).")],
    admin_name: Annotated[
        list[str] | None,
        typer.Option(help="Administrator names, in the order of --admin."),
    ] = None,
    expires_in_days: Annotated[
        int, typer.Option(help="Validity of each version of the directory.", min=1)
    ] = DEFAULT_DIRECTORY_VALIDITY_DAYS,
) -> None:
    """Create version 1 of a federation directory with its administrators and no agencies."""
    names = admin_name or []
    if len(names) > len(admin):
        raise InvalidFieldError(f"{len(names)} --admin-name given for {len(admin)} --admin keys.")
    admins = [
        AdminKey(names[i] if i < len(names) else f"admin-{i + 1}", _admin_public_key(value))
        for i, value in enumerate(admin)
    ]
    signed = new_directory(federation, threshold, admins, validity_days=expires_in_days)
    write_directory_file(out, signed, create=True)
    directory = Directory.from_bytes(signed.directory)
    say(
        f"Created version 1 of federation {federation!r} in {out}: "
        f"{threshold} of {len(admins)} administrators must sign; "
        f"expires {format_time(directory.expires_at)}."
    )
    for a in directory.admins:
        say(f"  admin {a.key_id}  {a.name}")


def _report_edit(edit: DirectoryEdit, file: Path) -> None:
    if not edit.changed:
        say("Nothing changed; the directory was left as it was.")
        return
    for change in edit.changes:
        say(f"  {change}")
    before, after = edit.before, edit.after
    version = (
        f"version {before.version} -> {after.version}"
        if after.version != before.version
        else f"version {after.version} (still unsigned)"
    )
    cleared = f"; {edit.cleared_signatures} signatures cleared" if edit.cleared_signatures else ""
    say(
        f"Wrote {file}: {version}{cleared}; expires {format_time(after.expires_at)}. "
        f"It needs {after.threshold} administrator signatures."
    )


def _apply(file: Path, edit: DirectoryEdit, binary: bool) -> None:
    if edit.changed:
        write_directory_file(file, edit.signed, binary=binary)
    _report_edit(edit, file)


@app.command("add")
@cli_errors
def add(
    cards: Annotated[list[Path], typer.Argument(help="Agency cards (card.json), one or more.")],
    file: FileOption,
) -> None:
    """Add agencies' cards, or replace the cards of the same agencies."""
    agencies = [read_card_file(card) for card in cards]
    current = read_directory_file(file)
    _apply(file, add_agencies(current.signed, agencies), current.binary)
    for agency in agencies:
        _warn_unusable(agency)


def _warn_unusable(card: AgencyCard) -> None:
    t = now_ms()
    for use, keys in (("signing", card.signing_keys), ("encryption", card.encryption_keys)):
        if not any(k.valid_at(t) and card.revocation(k.key_id) is None for k in keys):
            warn(f"{card.agency_id} has no {use} key valid now; peers cannot exchange with it.")


@app.command("remove")
@cli_errors
def remove(
    agency: Annotated[str, typer.Argument(help="The agency id to remove.")],
    file: FileOption,
) -> None:
    """Remove an agency from the directory."""
    current = read_directory_file(file)
    _apply(file, remove_agency(current.signed, agency), current.binary)


@app.command("stats-coordinators")
@cli_errors
def stats_coordinators(
    file: FileOption,
    agencies: Annotated[
        list[str] | None,
        typer.Argument(help="Agency ids that coordinate statistics; none: every member."),
    ] = None,
) -> None:
    """Name the agencies that receive statistics releases (a regional body, UNODC)."""
    current = read_directory_file(file)
    _apply(file, set_statistics_coordinators(current.signed, agencies or []), current.binary)


@app.command("sign")
@cli_errors
def sign(
    admin_key: Annotated[
        Path, typer.Option(help="The administrator's key file (admin.key) or its directory.")
    ],
    file: FileOption,
) -> None:
    """Add this administrator's signature to the directory."""
    current = read_directory_file(file)
    # Parse before unlocking the key: nobody should sign bytes that are not a directory.
    directory = Directory.from_bytes(current.signed.directory)
    signer = load_admin(admin_key, passphrase("Administrator key passphrase"))
    kid = signer.public.key_id
    if directory.admin(kid) is None:
        # Still signed: administrators of the trusted version may have to approve a new
        # version that no longer lists them. Verification decides whether it counts.
        warn(
            f"{signer.name} ({kid}) is not an administrator of this version; the signature "
            "counts only for nodes that trust a version listing this key."
        )
    signed = current.signed.signed_by(signer.signing_key)
    write_directory_file(file, signed, binary=current.binary)
    listed = sum(1 for k, _ in signed.signatures if directory.admin(k) is not None)
    say(
        f"Signed version {directory.version} of {directory.federation_id!r} as {signer.name} "
        f"({kid}): {listed} of the {directory.threshold} required administrator signatures."
    )


def _summary(directory: Directory, signed: SignedDirectory) -> dict[str, Any]:
    return {
        "federation_id": directory.federation_id,
        "version": directory.version,
        "issued_at": directory.issued_at,
        "expires_at": directory.expires_at,
        "threshold": directory.threshold,
        "admins": [{"name": a.name, "key_id": a.key_id} for a in directory.admins],
        "signatures": [
            {
                "key_id": kid,
                "admin": a.name if (a := directory.admin(kid)) is not None else None,
            }
            for kid, _ in signed.signatures
        ],
        "agencies": [
            {
                "agency_id": c.agency_id,
                "name": c.name,
                "country": c.country,
                "endpoint": c.endpoint,
                "tls_spki_sha256": c.tls_spki_sha256.hex(),
                "signing_keys": [k.key_id for k in c.signing_keys],
                "encryption_keys": [k.key_id for k in c.encryption_keys],
                "revoked_keys": [r.key_id for r in c.revoked_keys],
            }
            for c in directory.agencies
        ],
    }


@app.command("verify")
@cli_errors
def verify(
    file: Annotated[Path, typer.Argument(help="The directory file to verify.")],
    trusted: Annotated[
        Path | None,
        typer.Option(help="The directory trusted until now: rollback and admin-change checks."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify signatures (k of n), expiry and, against a trusted version, rollback."""
    signed = read_signed_directory(file)
    # The trusted file is taken as the operator's pinned state, as a node holds it.
    old = Directory.from_bytes(read_signed_directory(trusted).directory) if trusted else None
    directory = verify_directory(signed.to_bytes(), old, now_ms())
    signers = sum(1 for kid, _ in signed.signatures if directory.admin(kid) is not None)
    if as_json:
        print_json({"ok": True, "valid_signatures": signers, **_summary(directory, signed)})
        return
    say(
        f"OK: federation {directory.federation_id!r} version {directory.version}: "
        f"{signers} of {directory.threshold} required signatures (of {len(directory.admins)} "
        f"administrators), {len(directory.agencies)} agencies, "
        f"expires {format_time(directory.expires_at)}."
    )
    for card in directory.agencies:
        say(f"  {card.agency_id:<20} {card.endpoint}")


@app.command("show")
@cli_errors
def show(
    file: Annotated[Path, typer.Argument(help="The directory file.")],
    as_json: JsonOpt = False,
) -> None:
    """List the directory's content and signers, without verifying it."""
    signed = read_signed_directory(file)
    directory = Directory.from_bytes(signed.directory)
    if as_json:
        print_json(_summary(directory, signed))
        return
    expired = " (EXPIRED)" if now_ms() >= directory.expires_at else ""
    say(
        f"{directory.federation_id} version {directory.version}, issued "
        f"{format_time(directory.issued_at)}, expires {format_time(directory.expires_at)}"
        f"{expired}"
    )
    signer_ids = {kid for kid, _ in signed.signatures}
    say(
        f"{len(signer_ids)} signatures; {directory.threshold} of {len(directory.admins)} "
        "administrators must sign (check with `mlax directory verify`)."
    )
    admins = Table(box=box.SIMPLE_HEAD)
    admins.add_column("administrator")
    admins.add_column("key id", no_wrap=True)
    admins.add_column("signed")
    for a in directory.admins:
        admins.add_row(
            Text(shown(a.name, markup=False)),
            shown(a.key_id),
            "yes" if a.key_id in signer_ids else "",
        )
    print_table(admins)
    for kid in sorted(signer_ids - {a.key_id for a in directory.admins}):
        warn(f"Signature by {kid}, who is not an administrator of this version.")
    agencies = Table(box=box.SIMPLE_HEAD)
    for column in ("agency", "name", "country", "endpoint", "TLS pin", "keys"):
        agencies.add_column(column, no_wrap=column == "agency")
    for c in directory.agencies:
        agencies.add_row(
            shown(c.agency_id),
            Text(shown(c.name, markup=False)),
            shown(c.country),
            Text(shown(c.endpoint, markup=False)),
            c.tls_spki_sha256.hex()[:16] + "…",
            f"{len(c.signing_keys)} signing, {len(c.encryption_keys)} encryption"
            + (f", {len(c.revoked_keys)} revoked" if c.revoked_keys else ""),
        )
    print_table(agencies)


@app.command("export")
@cli_errors
def export(
    file: Annotated[Path, typer.Argument(help="The directory file.")],
    out: Annotated[Path, typer.Option(help="Where to write the binary SignedDirectory.")],
) -> None:
    """Write the directory as a binary SignedDirectory protobuf (signatures stay valid)."""
    signed = read_signed_directory(file)
    Directory.from_bytes(signed.directory)  # refuse to export something that is not one
    write_directory_file(out, signed, binary=True)
    say(f"Wrote {out} ({len(signed.signatures)} signatures).")


# --- expiry, administrators, chains ----------------------------------------------------------


def _parse_until(value: str) -> int:
    """--until: an ISO date (00:00 UTC that day) or date and time (UTC unless it says)."""
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidFieldError(
            f"{value[:40]!r} is not a date: write it as 2027-06-30 or 2027-06-30T12:00Z."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


@app.command("extend")
@cli_errors
def extend(
    file: FileOption,
    until: Annotated[
        str | None, typer.Option(help="The new expiry: 2027-06-30 (00:00 UTC) or a date-time.")
    ] = None,
    days: Annotated[
        int | None, typer.Option(help="The new version expires this many days from now.", min=1)
    ] = None,
) -> None:
    """Start the next version with a later expiry, for the administrators to sign."""
    if (until is None) == (days is None):
        raise InvalidFieldError("Give either --until DATE or --days N.")
    t = now_ms()
    until_ms = _parse_until(until) if until is not None else t + (days or 0) * DAY_MS
    current = read_directory_file(file)
    _apply(file, extend_expiry(current.signed, until_ms, at_ms=t), current.binary)


admins_app = typer.Typer(
    no_args_is_help=True,
    help="Change the administrators and the threshold (the old administrators must approve).",
)
app.add_typer(admins_app, name="admins")


def _apply_admin_change(file: Path, edit: DirectoryEdit, binary: bool) -> None:
    _apply(file, edit, binary)
    if edit.changed and admin_set_changed(edit):
        say(
            "The administrators trusted until now must approve it too: nodes accept it only "
            "with the threshold of the previous version's administrators as well "
            "(check with `mlax directory verify FILE --trusted PREVIOUS`)."
        )


@admins_app.command("add")
@cli_errors
def admins_add(
    admin: Annotated[
        str, typer.Argument(help="The administrator public key (base64, or an admin.pub file).")
    ],
    file: FileOption,
    name: Annotated[str, typer.Option(help="The administrator's name.")],
) -> None:
    """Add an administrator (the threshold stays as it is)."""
    current = read_directory_file(file)
    new_admin = AdminKey(name, _admin_public_key(admin))
    _apply_admin_change(file, add_admin(current.signed, new_admin), current.binary)


@admins_app.command("remove")
@cli_errors
def admins_remove(
    admin: Annotated[
        str,
        typer.Argument(help="The administrator's key id, public key, or admin.pub file."),
    ],
    file: FileOption,
) -> None:
    """Remove an administrator (refused if fewer than the threshold would remain)."""
    current = read_directory_file(file)
    directory = Directory.from_bytes(current.signed.directory)
    kid = admin if directory.admin(admin) is not None else None
    if kid is None:
        try:
            kid = AdminKey("", _admin_public_key(admin)).key_id
        except InvalidFieldError:
            raise InvalidFieldError(
                f"{admin[:60]!r} is neither an administrator key id of this directory nor a "
                "public key."
            ) from None
    _apply_admin_change(file, remove_admin(current.signed, kid), current.binary)


@admins_app.command("threshold")
@cli_errors
def admins_threshold(
    threshold: Annotated[int, typer.Argument(help="Signatures needed (k of n).")],
    file: FileOption,
) -> None:
    """Set how many administrators must sign each version."""
    current = read_directory_file(file)
    _apply_admin_change(file, set_threshold(current.signed, threshold), current.binary)


@app.command("chain")
@cli_errors
def chain(
    files: Annotated[
        list[Path], typer.Argument(help="Signed versions (or chain files), in any order.")
    ],
    out: Annotated[Path, typer.Option(help="Where to write the chain file (JSON).")],
) -> None:
    """Bundle consecutive signed versions into one chain file, verified step by step.

    For a node that must catch up across changes of administrators: `mlax node directory
    update CHAIN` (docs/operators.md 8.3).
    """
    versions = read_versions(files)
    directories = verify_directory_chain([v.to_bytes() for v in versions], None, now_ms())
    write_chain_file(out, versions)
    say(
        f"Wrote {out}: versions {directories[0].version} to {directories[-1].version} of "
        f"{directories[-1].federation_id!r}, each verified against the one before it."
    )
