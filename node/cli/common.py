"""What every CLI command shares: one-sentence errors, passphrases, output modes."""

from __future__ import annotations

import datetime
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from exchange.errors import MlaxError

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

DEBUG_ENV = "MLAX_DEBUG"
PASSPHRASE_ENV = "MLAX_KEY_PASSPHRASE"  # noqa: S105 - the variable name, not a secret

# Exit codes: 1 for a refusal of the input (MlaxError), 2 for wrong use of the command
# line (Click's convention), 3 when a node cannot be reached.
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """Print one sentence to stderr and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn MLAX errors and unreadable files into one clear sentence and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except MlaxError as e:
            fail(e.message)
        except FileNotFoundError as e:
            fail(f"No such file: {e.filename}.")
        except PermissionError as e:
            fail(f"Permission denied: {e.filename}.")
        except IsADirectoryError as e:
            fail(f"{e.filename} is a directory, not a file.")
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt):
            raise
        except Exception as e:
            # A bug or an unforeseen state: still one sentence, and the traceback on request.
            if os.environ.get(DEBUG_ENV):
                raise
            fail(
                f"Unexpected {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                f" (set {DEBUG_ENV}=1 for the traceback)."
            )

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


def print_json(obj: Any) -> None:
    """Machine-readable output for scripts: one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def warn(message: str) -> None:
    """Print a warning sentence in yellow on stderr; the command carries on."""
    err_console.print(
        f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True
    )


def format_time(ms: int) -> str:
    """A unix-millisecond timestamp as people read it: `2026-01-01 00:00 UTC`."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def say(text: str) -> None:
    """Print one line for people as plain text (no markup), never re-wrapped: ids stay whole."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_table(table: Table) -> None:
    """Print a table at its natural width, wider than the terminal if need be: ids never get cut."""
    natural = Measurement.get(console, console.options.update_width(1000), table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width
