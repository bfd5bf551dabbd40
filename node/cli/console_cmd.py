"""`mlax console`: the officer's web console, served on this workstation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli.common import cli_errors, fail, officer_client, warn


@cli_errors
def console_cmd(
    credential: Annotated[
        Path | None,
        typer.Option("--credential", "--as", help="Your officer credential file."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; loopback unless you mean otherwise.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8780,
    idle_minutes: Annotated[
        float, typer.Option("--idle-minutes", help="Sign out after this long without use.")
    ] = 15.0,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Its private key.")] = None,
    max_upload_mib: Annotated[
        int, typer.Option("--max-upload-mib", help="Largest evidence file accepted.")
    ] = 4096,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Another host name browsers reach this console by, e.g. a jump host's "
            "name or a TLS proxy's (repeat).",
        ),
    ] = None,
) -> None:
    """Serve the web console for your credential; it prints a one-time sign-in link.

    The console talks to your node only through the officer API with your credential,
    so it may do exactly what the CLI may. The key stays in this process's memory.
    """
    from node.console.app import ConsoleSettings
    from node.console.server import bind, is_loopback, serve
    from node.logs import configure

    configure()

    if (tls_cert is None) != (tls_key is None):
        fail("Give both --tls-cert and --tls-key, or neither.", 2)
    if not 0 <= port <= 65535:
        fail("--port must be between 0 and 65535.", 2)
    if idle_minutes <= 0:
        fail("--idle-minutes must be more than 0.", 2)
    if ":" in host:
        fail("--host takes an IPv4 address or a host name (IPv6 is not served).", 2)
    for name in allow_host or ():
        if not name or any(c in name for c in ":/ *"):
            fail(f"--allow-host takes a host name, not {name!r}.", 2)
    client = officer_client(credential)
    try:
        sock = bind(host, port)
    except OSError as e:
        client.close()
        fail(f"Cannot listen on {host}:{port} ({e.strerror or e}).")
    if not is_loopback(host):
        warn(
            f"The console listens on {host}, not on loopback: anyone who can reach it can try "
            "to sign in"
            + ("." if tls_cert else ", and its pages travel unencrypted; use --tls-cert/--tls-key.")
        )
        if host == "0.0.0.0" and not allow_host:  # noqa: S104 - what the operator typed
            warn(
                "Every Host name is answered: name the ones browsers use with --allow-host, "
                "so that a rebound DNS name cannot reach the console."
            )
    settings = ConsoleSettings(
        host=host,
        port=int(sock.getsockname()[1]),
        idle_seconds=idle_minutes * 60,
        tls=tls_cert is not None,
        max_upload_bytes=max_upload_mib * 1024 * 1024,
        extra_hosts=tuple(allow_host or ()),
    )
    serve(client, settings, sock, tls_cert, tls_key)


def register(app: typer.Typer) -> None:
    app.command("console")(console_cmd)


__all__ = ["register"]
