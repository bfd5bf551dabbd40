"""`mlax audit ...`: export a node's ledger and verify it, offline or online."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from node.cli.common import (
    EXIT_REFUSED,
    CredOpt,
    JsonOpt,
    cli_errors,
    console,
    fail,
    officer_client,
    print_json,
)
from node.cli.safe_text import shown

if TYPE_CHECKING:
    from exchange._proto.mlax.v1 import ledger_pb2 as lpb
    from exchange.ledger.audit import AuditReport

app = typer.Typer(no_args_is_help=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _write_export(records: Iterable[lpb.LedgerExportRecord], out: Path) -> int:
    """Write records to `out` atomically (0600); returns the number of entries."""
    from exchange.ledger.export import encode_record

    tmp = out.with_name(out.name + ".partial")
    count = 0
    try:
        with _progress() as bar:
            task = bar.add_task("exporting", total=None)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                for rec in records:
                    if rec.HasField("header"):
                        bar.update(task, total=rec.header.entries)
                    elif rec.HasField("entry"):
                        count += 1
                        if count % 1000 == 0:
                            bar.update(task, completed=count)
                    f.write(encode_record(rec))
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return count


def _local_records(config: Path) -> Iterator[lpb.LedgerExportRecord]:
    """The export of a node's ledger read straight from its database (on the node's host)."""
    from exchange._proto.mlax.v1 import ledger_pb2 as lpb
    from exchange.encoding import now_ms
    from exchange.ledger.export import EXPORT_FORMAT
    from exchange.ledger.names import log_origin
    from node.config import load_config
    from node.services.trust import TrustedDirectory
    from node.storage.db import Database
    from node.storage.ledger import LedgerStore

    cfg = load_config(config)
    db = Database(cfg.database_url)
    try:
        trust = TrustedDirectory(db)
        directory = trust.current()
        store = LedgerStore(db, log_origin(directory.federation_id, cfg.node.agency))
        # Read-only on purpose: an audit must not change the evidence it reads (a tampered
        # database may not even accept a new entry). Exports through the node's API are
        # ledgered; whoever reads the database on the host could edit it anyway.
        header = lpb.LedgerExportHeader(
            format=EXPORT_FORMAT,
            origin=store.origin,
            agency=cfg.node.agency,
            signed_directory=trust.signed_bytes(),
            exported_at=now_ms(),
        )
        yield from store.export(header)
    finally:
        db.close()


@app.command("export")
@cli_errors
def export(
    out: Annotated[Path, typer.Option("--out", help="Where to write the export file.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Read the node's database directly (on its host)."),
    ] = None,
    cred: CredOpt = None,
) -> None:
    """Export a node's ledger (entries, tree leaves, checkpoints, cosignatures).

    Online through the node with an auditor credential (--as), or with --config from the
    database of a node on this host.
    """
    if out.exists():
        fail(f"{out} already exists.")
    if config is not None:
        count = _write_export(_local_records(config), out)
    else:
        with officer_client(cred) as c:
            count = _write_export(c.export_ledger(), out)
    console.print(f"[green]exported[/] {count:,} entries to {shown(out)}")


@contextmanager
def _records(path: Path) -> Iterator[Iterator[lpb.LedgerExportRecord]]:
    from exchange.ledger.export import iter_records

    # The reader itself, not a generator over it: it hands the verifier runs of entries.
    with path.open("rb") as f:
        yield iter_records(f.read)


def _verify(records: Iterable[lpb.LedgerExportRecord], trusted: Path | None) -> AuditReport:
    from exchange.directory import Directory
    from exchange.ledger.audit import verify_export
    from keys.directory_file import read_signed_directory

    trusted_dir = (
        Directory.from_bytes(read_signed_directory(trusted).directory) if trusted else None
    )
    with _progress() as bar:
        task = bar.add_task("verifying", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        return verify_export(records, trusted_directory=trusted_dir, progress=progress)


@app.command("verify")
@cli_errors
def verify(
    file: Annotated[Path | None, typer.Argument(help="An export file (offline).")] = None,
    node: Annotated[
        str | None,
        typer.Option("--node", help="Verify a node online: its officer HOST:PORT."),
    ] = None,
    trusted: Annotated[
        Path | None,
        typer.Option("--trusted-directory", help="A directory you trust (pins the admins)."),
    ] = None,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Recompute the tree, check every checkpoint, consistency and cosignature.

    Exit status 0 only when everything holds; otherwise the first bad index and what is
    wrong with it.
    """
    if (file is None) == (node is None):
        fail("Give an export FILE, or --node HOST:PORT to verify a node online.", 2)
    if file is not None:
        with _records(file) as records:
            report = _verify(records, trusted)
    else:
        with officer_client(cred) as c:
            c.retarget(node or "")
            report = _verify(c.export_ledger(), trusted)
    _print_report(report, json_out)
    if not report.ok:
        raise typer.Exit(EXIT_REFUSED)


def _print_report(report: AuditReport, json_out: bool) -> None:
    if json_out:
        print_json(
            {
                "ok": report.ok,
                "origin": report.origin,
                "entries": report.entries,
                "redacted": report.redacted,
                "checkpoints": report.checkpoints,
                "latest_checkpoint_size": report.latest_checkpoint_size,
                "cosigned_by": report.cosigned_by,
                "problems": [
                    {"index": p.index, "kind": p.kind, "detail": p.detail} for p in report.problems
                ],
                "warnings": report.warnings,
                "directory_admins": report.directory_admins,
            }
        )
        return
    # An export file may come from the node under audit: what it says is shown inert.
    console.print(
        f"ledger {shown(report.origin)}: {report.entries:,} entries "
        f"({report.redacted:,} redacted), "
        f"{report.checkpoints} checkpoints, latest covers {report.latest_checkpoint_size:,}"
    )
    witnesses = ", ".join(f"{a} ({n})" for a, n in sorted(report.cosigned_by.items())) or "none"
    console.print(f"cosigned by: {shown(witnesses)}")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {shown(w)}")
    if report.ok:
        console.print("[bold green]OK[/]: every entry, checkpoint and cosignature verifies")
        return
    for p in report.problems:
        where = f"index {p.index}: " if p.index is not None else ""
        console.print(f"[bold red]{shown(p.kind)}[/] {where}{shown(p.detail)}", highlight=False)
