"""The `mlax` command line: one Typer app, a sub-app per area."""

from __future__ import annotations

import typer

from node.cli.directory_cmd import app as directory_app
from node.cli.keys_cmd import app as keys_app

app = typer.Typer(
    name="mlax",
    help="MLAX: the mutual legal assistance exchange between agencies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(keys_app, name="keys", help="Agency identities and federation administrator keys.")
app.add_typer(
    directory_app, name="directory", help="Build, sign and verify the federation directory."
)


def main() -> None:
    app()
