"""The `mlax` command line: one Typer app, a sub-app per area."""

from __future__ import annotations

import os
import sys

# gRPC's C core writes plain-text lines to stderr, which would break the node's JSON logs
# and duplicate the one-sentence errors MLAX prints itself. It reads this variable once,
# when it loads, so it is set before anything imports grpc. An operator's own setting
# (GRPC_VERBOSITY=debug for troubleshooting) wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import typer

from node.cli.admin_cmd import register as register_admin
from node.cli.audit_cmd import app as audit_app
from node.cli.bundle_cmd import app as bundle_app
from node.cli.cases_cmd import register as register_cases
from node.cli.common import report
from node.cli.console_cmd import register as register_console
from node.cli.directory_cmd import app as directory_app
from node.cli.keys_cmd import app as keys_app
from node.cli.match_cmd import register as register_match
from node.cli.messages_cmd import register as register_messages
from node.cli.node_cmd import demo, node_app, officer_app
from node.cli.stats_cmd import register as register_stats

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
app.add_typer(node_app, name="node", help="Run and administer this agency's node.")
app.add_typer(officer_app, name="officer", help="Issue and manage officer credentials.")
app.add_typer(audit_app, name="audit", help="Export and verify audit ledgers.")
app.add_typer(bundle_app, name="bundle", help="Verify a sender's non-repudiation bundle.")
register_messages(app)
register_cases(app)
register_match(app)
register_stats(app)
register_console(app)
register_admin(app)
app.command("demo")(demo)


def main() -> None:
    from node.transport import bound_buffer_memory

    try:
        bound_buffer_memory()  # downloads and uploads stream 1 MiB chunks
        app()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # what no command caught: still one sentence, never a traceback
        sys.exit(report(e))
