"""`mlax node ...` and `mlax officer ...`: what a node operator runs on the node's host."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from exchange.encoding import now_ms
from keys.directory_file import read_versions
from keys.identity import read_card
from node.cli.common import JsonOpt, cli_errors, console, fail, passphrase, print_json
from node.cli.safe_text import shown
from node.client import OFFICER_PASSPHRASE_ENV
from node.config import NodeConfig, load_config

if TYPE_CHECKING:
    from exchange.directory import Directory
    from node.storage.db import Database

# Storage, the officer CA and the server are imported inside the commands that use them:
# every `mlax` call would otherwise pay for SQLAlchemy and Alembic at start.

node_app = typer.Typer(no_args_is_help=True)
officer_app = typer.Typer(no_args_is_help=True)
directory_app = typer.Typer(no_args_is_help=True, help="The directory this node trusts.")
node_app.add_typer(directory_app, name="directory")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The node's TOML configuration.")]


def _node_passphrase(cfg: NodeConfig) -> bytes:
    if cfg.node.passphrase_file is not None:
        value = cfg.node.passphrase_file.read_bytes().strip()
        if not value:
            fail(f"{cfg.node.passphrase_file} is empty.")
        return value
    return passphrase("Node key passphrase")


def _db(cfg: NodeConfig) -> Database:
    from node.storage.db import Database

    cfg.node.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(cfg.database_url, cfg.storage.pool_size)
    db.migrate()
    return db


@node_app.command("serve")
@cli_errors
def serve(config: ConfigOpt) -> None:
    """Run the node until SIGTERM or Ctrl-C."""
    from node import logs
    from node.server import run

    cfg = load_config(config)
    # The database, its WAL and everything else the node writes are for its eyes only.
    os.umask(0o077)
    logs.configure(cfg.log.level)
    run(cfg, _node_passphrase(cfg))


@node_app.command("check-config")
@cli_errors
def check_config(config: ConfigOpt) -> None:
    """Validate a configuration file and exit."""
    cfg = load_config(config)
    console.print(
        f"[green]ok[/] {shown(config)}: agency {shown(cfg.node.agency)}, "
        f"database {shown(cfg.database_url)}"
    )


@node_app.command("purge")
@cli_errors
def purge(
    config: ConfigOpt,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what is past retention; change nothing.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Purge content past its retention period now ([retention]; ledgered as
    retention.purged). Victim records are left to the running node's purge job: their
    removal needs the node's matching key."""
    from node.services.retention import RetentionDesk
    from node.storage.blobs import open_blob_store

    cfg = load_config(config)
    os.umask(0o077)
    db = _db(cfg)
    try:
        blobs = open_blob_store(
            cfg.storage.blob_backend, cfg.attachments_dir, cfg.database_url, cfg.storage.pool_size
        )
        done = RetentionDesk(db, blobs, cfg.retention).purge(dry_run=dry_run)
    finally:
        db.close()
    if json_out:
        print_json(
            [
                {"data": p.data.value, "count": p.count, "rule": p.rule, "cutoff": p.cutoff}
                for p in done
            ]
        )
        return
    verb = "would purge" if dry_run else "purged"
    if not done:
        console.print("No retention period is set: nothing is purged.")
    for p in done:
        console.print(f"{verb} {p.count} {p.data.value.replace('_', ' ')} under {shown(p.rule)}")


@node_app.command("backup")
@cli_errors
def node_backup(
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", help="A new directory for the backup.")],
    json_out: JsonOpt = False,
) -> None:
    """Back up the node, running or not: a consistent snapshot of the database, then the
    evidence files, key files (still encrypted) and config, with a manifest of SHA-256s."""
    from node.storage.backup import backup

    cfg = load_config(config)
    os.umask(0o077)
    done = backup(cfg, config, out, _node_passphrase(cfg))
    if json_out:
        print_json(
            {
                "out": str(done.out),
                "files": done.files,
                "bytes": done.bytes,
                "ledger_size": done.ledger_size,
                "ledger_root": done.ledger_root,
            }
        )
        return
    console.print(
        f"[green]backed up[/] {done.files} files ({done.bytes} bytes) to {shown(done.out)}; "
        f"ledger size {done.ledger_size}"
    )


@node_app.command("restore")
@cli_errors
def node_restore(
    source: Annotated[Path, typer.Option("--from", help="A backup `mlax node backup` wrote.")],
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="A new, empty data dir to restore into.")
    ],
    identity_dir: Annotated[
        Path | None,
        typer.Option(
            "--identity-dir", help="Also restore the key files into this new, empty directory."
        ),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help="A file holding the node passphrase (else MLAX_KEY_PASSPHRASE or a prompt).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore a backup into a new data dir after checking its manifest's seal (under the
    node passphrase) and every file against it; ledgers node.restored. Point
    node.data_dir at it, then start the node."""
    from node.storage.backup import restore

    if passphrase_file is not None:
        secret = passphrase_file.read_bytes().strip()
        if not secret:
            fail(f"{passphrase_file} is empty.")
    else:
        secret = passphrase("Node key passphrase")
    os.umask(0o077)
    done = restore(source, data_dir, identity_dir, passphrase=secret)
    if json_out:
        print_json(
            {
                "data_dir": str(done.data_dir),
                "files": done.files,
                "ledger_size": done.ledger_size,
                "restored_index": done.restored_index,
            }
        )
        return
    console.print(
        f"[green]restored[/] {done.files} files into {shown(done.data_dir)}; the ledger "
        f"resumes at index {done.restored_index} (node.restored). Entries written after "
        "the backup are lost: see docs/operators.md, Backups."
    )


@node_app.command("acknowledge-restore")
@cli_errors
def acknowledge_restore_cmd(
    peer: Annotated[str, typer.Argument(help="The agency whose node was restored.")],
    config: ConfigOpt,
    restored_from: Annotated[
        int,
        typer.Option(
            "--restored-from",
            min=0,
            help="The restored node's backup size (its node.restored index).",
        ),
    ],
) -> None:
    """As a witness: accept that PEER was restored from a backup. The checkpoint of PEER
    this node cosigned past the backup is kept in the ledger as evidence of the lost
    entries, and the node cosigns PEER's restored ledger afresh."""
    from node.services.trust import TrustedDirectory
    from node.services.witnessing import acknowledge_restore

    cfg = load_config(config)
    db = _db(cfg)
    try:
        federation = TrustedDirectory(db).current().federation_id
        known = acknowledge_restore(db, federation, peer, restored_from)
    finally:
        db.close()
    console.print(
        f"[green]acknowledged[/] the restore of {shown(peer)}: entries {restored_from} to "
        f"{known - 1} of its old ledger are lost; the checkpoint of size {known} is kept "
        "in this node's ledger (witness.restore_acknowledged)."
    )


@node_app.command("health")
@cli_errors
def node_health(config: ConfigOpt, json_out: JsonOpt = False) -> None:
    """Whether the running node is ready, and why not; exits 1 when it is not ready.

    Reads the node's metrics endpoint ([metrics] listen), so it works with the database
    locked or the disk full.
    """
    import time

    from node.health import BY_NAME, Cause, HealthReadError, metrics_url, scrape_readiness

    cfg = load_config(config)
    if not cfg.metrics.listen:
        fail(
            f"metrics.listen is not set in {config}: `mlax node health` reads the node's "
            "metrics endpoint; set it to a loopback address such as 127.0.0.1:9401."
        )
    url = metrics_url(cfg.metrics.listen)
    try:
        ready, values, checked = scrape_readiness(url)
    except HealthReadError as e:
        fail(e.message, 3)
    if ready is None:
        fail(f"{url} serves no readiness (mlax_ready): is it this node's metrics endpoint?", 3)
    causes = [BY_NAME.get(n, Cause(n, "An unknown cause.", "")) for n, v in values.items() if v]
    age = None if checked is None else max(0.0, time.time() - checked)
    # The check runs every check_interval_seconds and waits at most probe_timeout_seconds.
    if age is not None and age > 3 * cfg.health.check_interval_seconds + (
        cfg.health.probe_timeout_seconds + 5
    ):
        causes.append(
            Cause(
                "stale",
                f"The node's last readiness check was {age:.0f} s ago: the check is stuck.",
                "Look at the node's log; restart it if the check does not resume.",
            )
        )
    is_ready = not causes and ready == 1
    if json_out:
        print_json(
            {
                "ready": is_ready,
                "checked_seconds_ago": None if age is None else round(age, 1),
                "causes": [
                    {"cause": c.name, "meaning": c.meaning, "action": c.action} for c in causes
                ],
            }
        )
    elif is_ready:
        console.print(f"[green]ready[/] (checked {age or 0:.0f} s ago)")
    else:
        names = ", ".join(c.name for c in causes) or "mlax_ready is 0"
        console.print(f"[red]not ready[/]: {shown(names)}")
        for c in causes:
            console.print(f"  {shown(c.name)}: {shown(c.meaning)}", soft_wrap=True)
            if c.action:
                console.print(f"    what to do: {shown(c.action)}", soft_wrap=True)
    if not is_ready:
        raise typer.Exit(1)


@directory_app.command("update")
@cli_errors
def directory_update(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="A signed directory (JSON or binary), or several versions or chain files "
            "(`mlax directory chain`) to install in order."
        ),
    ],
    config: ConfigOpt,
    trusted: Annotated[
        Path | None,
        typer.Option(
            help="A node's first directory only: the version trusted out of band, from which "
            "the versions in FILES are verified one by one."
        ),
    ] = None,
) -> None:
    """Install a newer signed directory; rollback and bad signatures are refused.

    With several versions (or a chain file) each one is verified against the version before
    it, so a node that trusts an old version reaches the newest across changes of
    administrators; a missing version refuses the whole chain and installs nothing.
    """
    from exchange.directory import Directory
    from node.services.trust import NoDirectoryError, TrustedDirectory

    versions = read_versions([*([trusted] if trusted else []), *files])
    if trusted is not None:
        # The chain starts at the version trusted out of band: an older one in FILES
        # (forged, or of another history) must not become the anchor T is checked against.
        anchor = read_versions([trusted])
        if len(anchor) != 1:
            fail(f"{trusted} holds {len(anchor)} directory versions; --trusted takes one.")
        floor = Directory.from_bytes(anchor[0].directory).version
        versions = [v for v in versions if Directory.from_bytes(v.directory).version >= floor]
    cfg = load_config(config)
    db = _db(cfg)
    try:
        trust = TrustedDirectory(db)
        installed: tuple[Directory, ...]
        if trusted is not None:
            try:
                held = trust.current()
            except NoDirectoryError:
                pass
            else:
                fail(
                    f"This node already trusts directory version {held.version}; --trusted is "
                    "only for a node without a directory."
                )
        if len(versions) == 1 and trusted is None:
            installed = (trust.install(versions[0].to_bytes(), "operator"),)
        else:
            installed = trust.install_chain([v.to_bytes() for v in versions], "operator")
    finally:
        db.close()
    if not installed:
        console.print("Nothing to install: the node already trusts the newest version given.")
    for directory in installed:
        console.print(
            f"[green]installed[/] directory version {directory.version} of "
            f"{shown(directory.federation_id)} "
            f"({len(directory.agencies)} agencies)"
        )


@directory_app.command("show")
@cli_errors
def directory_show(config: ConfigOpt, json_out: JsonOpt = False) -> None:
    """The directory this node trusts now."""
    from node.services.trust import TrustedDirectory

    cfg = load_config(config)
    db = _db(cfg)
    try:
        d = TrustedDirectory(db).current()
    finally:
        db.close()
    if json_out:
        print_json(
            {
                "federation": d.federation_id,
                "version": d.version,
                "expires_at": d.expires_at,
                "agencies": [a.agency_id for a in d.agencies],
            }
        )
        return
    days = (d.expires_at - now_ms()) / 86_400_000
    console.print(f"{shown(d.federation_id)} version {d.version}, expires in {days:.0f} days")
    for a in d.agencies:
        console.print(f"  {shown(a.agency_id):16} {shown(a.endpoint):24} {shown(a.name)}")


@officer_app.command("add")
@cli_errors
def officer_add(
    name: Annotated[str, typer.Argument(help="The officer's account name.")],
    config: ConfigOpt,
    role: Annotated[str, typer.Option(help="officer, supervisor, auditor or admin.")] = "officer",
    out: Annotated[Path | None, typer.Option(help="Where to write the credential bundle.")] = None,
    days: Annotated[int, typer.Option(help="Validity of the credential.")] = 365,
) -> None:
    """Issue an officer credential bundle (client certificate and encrypted key)."""
    from node.services.officers import OfficerCA, add_officer, write_bundle

    cfg = load_config(config)
    out = out or Path(f"{name}.officer.json")
    if out.exists():
        fail(f"{out} already exists.")
    bundle_pass = passphrase(
        "Passphrase for the officer's credential", confirm=True, env=OFFICER_PASSPHRASE_ENV
    )
    node_pass = _node_passphrase(cfg)
    db = _db(cfg)
    try:
        ca = OfficerCA.load_or_create(cfg.node.data_dir, cfg.node.agency, node_pass)
        card = read_card(cfg.node.identity_dir)
        bundle = add_officer(
            db,
            ca,
            name=name,
            role=role,
            agency=cfg.node.agency,
            endpoint=cfg.officer.advertise or cfg.officer.listen,
            server_cert_pem=card.tls_certificate_pem,
            bundle_passphrase=bundle_pass,
            days=days,
        )
    finally:
        db.close()
    write_bundle(out, bundle)
    console.print(
        f"[green]added[/] {shown(role)} {shown(name)}; credential written to {shown(out)} "
        "(mode 0600)"
    )


@officer_app.command("list")
@cli_errors
def officer_list(config: ConfigOpt, json_out: JsonOpt = False) -> None:
    """Officers of this node with their roles."""
    from node.services.officers import list_officers

    cfg = load_config(config)
    db = _db(cfg)
    try:
        rows = list_officers(db)
    finally:
        db.close()
    if json_out:
        print_json([{"name": r.name, "role": r.role, "active": r.active} for r in rows])
        return
    table = Table("officer", "role", "active")
    for r in rows:
        table.add_row(shown(r.name), shown(r.role), "yes" if r.active else "no")
    console.print(table)


@officer_app.command("set")
@cli_errors
def officer_set(
    name: str,
    config: ConfigOpt,
    role: Annotated[str | None, typer.Option(help="New role.")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive")] = None,
) -> None:
    """Change an officer's role, or deactivate them (effective on their next call)."""
    from node.services.officers import set_officer

    cfg = load_config(config)
    db = _db(cfg)
    try:
        set_officer(db, name, role=role, active=active)
    finally:
        db.close()
    console.print(f"[green]updated[/] {shown(name)}")


@cli_errors
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the demo's files afterwards.")] = False,
    directory: Annotated[Path | None, typer.Option("--dir", help="Build the demo here.")] = None,
    consoles: Annotated[
        bool,
        typer.Option(
            "--console",
            help="Afterwards keep the federation up and start a web console per demo officer.",
        ),
    ] = False,
) -> None:
    """Start a local 3-agency federation and show the whole product working."""
    from node.devtools.demo import run_demo

    run_demo(directory, keep, consoles)
