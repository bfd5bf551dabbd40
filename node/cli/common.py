"""What every CLI command shares: one-sentence errors, passphrases, output modes."""

from __future__ import annotations

import functools
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from exchange.errors import MlaxError

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

PASSPHRASE_ENV = "MLAX_KEY_PASSPHRASE"  # noqa: S105 - the variable name, not a secret

# Exit codes: 1 for a refusal of the input (MlaxError), 2 for wrong use of the command
# line (Click's convention), 3 when a node cannot be reached.
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """Print one sentence to stderr and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
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

    return wrapper


def passphrase(prompt: str = "Key passphrase", confirm: bool = False) -> bytes:
    """The key passphrase from MLAX_KEY_PASSPHRASE, else from a prompt on the terminal."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        if not sys.stdin.isatty():
            fail(f"Set {PASSPHRASE_ENV} or run on a terminal to enter the key passphrase.")
        value = getpass.getpass(f"{prompt}: ")
        if confirm and getpass.getpass(f"{prompt} (again): ") != value:
            fail("The two passphrases differ.")
    if not value:
        fail("The key passphrase must not be empty.")
    return value.encode()


def print_json(obj: Any) -> None:
    """Machine-readable output for scripts: one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
