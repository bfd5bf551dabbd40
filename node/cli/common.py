"""What every CLI command shares: one-sentence errors, passphrases, the officer's
credential (--as), output modes (--json).

The one error path: every command is wrapped in `cli_errors`, which turns whatever it
raises (a refusal, a node that cannot be reached, a bug) into `report`: one sentence on
stderr and the exit status of `exit_status`. Commands let errors propagate to it rather
than catching them.
"""

from __future__ import annotations

import datetime
import functools
import getpass
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from exchange.errors import MlaxError
from node.cli.safe_text import shown
from node.client import OFFICER_PASSPHRASE_ENV, OfficerClient

P = ParamSpec("P")
R = TypeVar("R")

# No :emoji: codes: text quoted in markup shows as it was written (see safe_text).
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

DEBUG_ENV = "MLAX_DEBUG"
PASSPHRASE_ENV = "MLAX_KEY_PASSPHRASE"  # noqa: S105 - the variable name, not a secret
# The officer's credential bundle when --as is not given.
CREDENTIAL_ENV = "MLAX_CREDENTIAL"

# The options every officer command takes, and every command that can print JSON.
CredOpt = Annotated[
    Path | None,
    typer.Option(
        "--as", help=f"Officer credential bundle (default: ${CREDENTIAL_ENV}).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

# Exit codes: 1 for a refusal of the input (MlaxError), 2 for wrong use of the command
# line (Click's convention), 3 when a node cannot be reached.
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

# Statuses of a node that failed rather than refused the input: changing the call cannot
# help, so they exit 3 like a node that cannot be reached. A node answers an unexpected
# failure with INTERNAL and an error id its operator can look up; UNKNOWN comes from a
# node whose error text is gRPC's own report of an exception, shown here in other words.
NODE_FAILURES = frozenset({"UNAVAILABLE", "INTERNAL", "UNKNOWN", "DATA_LOSS", "DEADLINE_EXCEEDED"})


def exit_status(e: Exception) -> int:
    """1 for a refusal, 3 when the node could not be reached or failed (NODE_FAILURES)."""
    return EXIT_UNAVAILABLE if getattr(e, "status", None) in NODE_FAILURES else EXIT_REFUSED


def say_error(message: str) -> None:
    """Print one sentence to stderr as `error: ...`."""
    err_console.print(f"[bold red]error:[/] {shown(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """Print one sentence to stderr and exit non-zero."""
    say_error(message)
    raise typer.Exit(code)


def explain(e: Exception) -> str:
    """The one sentence the CLI shows for an exception that ends a command."""
    if isinstance(e, MlaxError):
        if e.status == "UNKNOWN":
            return "The node failed unexpectedly (UNKNOWN); its operator can find why in its log."
        return e.message
    if isinstance(e, FileNotFoundError):
        return f"No such file: {e.filename}."
    if isinstance(e, PermissionError):
        return f"Permission denied: {e.filename}."
    if isinstance(e, IsADirectoryError):
        return f"{e.filename} is a directory, not a file."
    from node.rpc.errors import STORAGE_FULL, is_storage_full

    if is_storage_full(e) and not isinstance(e, OSError):
        return STORAGE_FULL  # the node's database (serve, or a command on the node's host)
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.strerror}: {e.filename}."  # e.g. "No space left on device: ..."
    # A bug or an unforeseen state: still one sentence, and the traceback on request.
    detail = str(e).strip().splitlines()[0][:200].rstrip(".") if str(e).strip() else ""
    what = f"{type(e).__name__}: {detail}" if detail else type(e).__name__
    return f"Unexpected error ({what}); set {DEBUG_ENV}=1 for details."


def report(e: Exception) -> int:
    """Print `e` as one sentence on stderr (after its traceback when MLAX_DEBUG is set);
    return the exit status. The one error path of every command and of `main`."""
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(e, file=sys.stderr)
    say_error(explain(e))
    return exit_status(e)


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn every error a command raises into one sentence on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt):
            raise
        except Exception as e:
            raise typer.Exit(report(e)) from None

    return wrapper


def passphrase(
    prompt: str = "Key passphrase", confirm: bool = False, env: str = PASSPHRASE_ENV
) -> bytes:
    """A passphrase from the variable `env` (MLAX_KEY_PASSPHRASE), else a terminal prompt."""
    value = os.environ.get(env)
    if value is None:
        if not sys.stdin.isatty():
            fail(f"Set {env} or run on a terminal to enter the {prompt.lower()}.")
        value = getpass.getpass(f"{prompt}: ")
        if confirm and getpass.getpass(f"{prompt} (again): ") != value:
            fail("The two passphrases differ.")
    if not value:
        fail("The key passphrase must not be empty.")
    return value.encode()


def officer_client(cred: Path | None) -> OfficerClient:
    """The SDK client of the officer whose credential is --as (else $MLAX_CREDENTIAL),
    unlocked with $MLAX_OFFICER_PASSPHRASE or a prompt."""
    path = cred or (Path(os.environ[CREDENTIAL_ENV]) if os.environ.get(CREDENTIAL_ENV) else None)
    if path is None:
        fail(f"Name your credential with --as FILE or ${CREDENTIAL_ENV}.")
    if not path.is_file():
        fail(f"No officer credential at {path}.")
    secret = passphrase("Credential passphrase", env=OFFICER_PASSPHRASE_ENV)
    return OfficerClient.from_bundle(path, secret)


def print_json(obj: Any) -> None:
    """Machine-readable output for scripts: one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def warn(message: str) -> None:
    """Print a warning sentence in yellow on stderr; the command carries on."""
    err_console.print(f"[bold yellow]warning:[/] {shown(message)}", highlight=False, soft_wrap=True)


def format_time(ms: int) -> str:
    """A unix-millisecond timestamp as people read it: `2026-01-01 00:00 UTC`."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def err_say(text: str) -> None:
    """One plain line on stderr (a detail beside an error sentence), made safe as `say`."""
    err_console.print(shown(text, markup=False), markup=False, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """Print one line for people as plain text (no markup), never re-wrapped: ids stay whole.

    The whole line goes through `shown`: what it quotes cannot act on the terminal, and a
    line break in a value shows as `\\n` instead of starting a line of its own.
    """
    console.print(shown(text, markup=False), markup=False, highlight=False, soft_wrap=True)


def print_table(table: Table) -> None:
    """Print a table at its natural width, wider than the terminal if need be: ids never get cut."""
    natural = Measurement.get(console, console.options.update_width(1000), table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width
