"""`mlax stats ...`: differentially private statistics releases (docs/statistics.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from exchange.errors import MlaxError
from exchange.stats.export import combine, federation_csv, release_csv
from exchange.stats.release import canonical, validate
from node.cli.common import (
    CredOpt,
    JsonOpt,
    cli_errors,
    fail,
    format_time,
    officer_client,
    print_json,
    say,
)
from node.cli.safe_text import shown
from node.client.stats import ReleaseView, StatsClient
from node.config import LimitsSection

# A release file is at most what a peer may send in one message (LimitsSection default).
MAX_RELEASE_FILE_BYTES = LimitsSection().max_message_bytes

stats_app = typer.Typer(no_args_is_help=True)

FromOpt = Annotated[str, typer.Option("--from", help="First day of the period, YYYY-MM-DD.")]
ToOpt = Annotated[str, typer.Option("--to", help="Last day of the period, YYYY-MM-DD.")]
FormatOpt = Annotated[str, typer.Option("--format", help="csv or json.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write to this file (default: stdout).")]


def _budget_line(view: ReleaseView) -> str:
    return "; ".join(
        f"{b.year}: {b.spent:g} of {b.budget:g} spent, {b.left:g} left" for b in view.budget
    )


def _write(text: str, out: Path | None, *, json_text: bool = False) -> None:
    """`text` to `out` as it is, or to stdout made safe for a terminal: a peer's values
    (a release received before they were checked) cannot act on it. CSV goes through
    `shown` (line breaks kept, anything else escaped); JSON is written with every
    non-ASCII character as a JSON escape, the same document, as `--json` output is."""
    if out is not None:
        out.write_text(text, encoding="utf-8")
        say(f"Wrote {out}.")
    elif json_text:
        typer.echo(json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")))
    else:
        typer.echo(shown(text, multiline=True, markup=False), nl=False)


@stats_app.command("preview")
@cli_errors
def preview(start: FromOpt, end: ToOpt, cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """What a release of the period would hold and cost; reads no data, spends nothing."""
    with officer_client(cred) as c:
        view = StatsClient(c).preview(start, end)
    if json_out:
        print_json(view.to_json())
        return
    doc = view.document
    p = doc["privacy"]
    say(
        f"A release of {doc['period']['start']} to {doc['period']['end']} spends epsilon "
        f"{p['epsilon']:g} ({p['mechanism']}, {p['library']}); "
        f"cells below {p['threshold']} are left out."
    )
    for t in doc["tables"]:
        say(
            f"  {t['name']}: sensitivity {t['sensitivity']}, scale {t['scale']:g}, "
            f"epsilon {t['epsilon']:g}, noise sd {t['noise_sd']:g}"
        )
    say(f"Budget after it: {_budget_line(view)}.")


@stats_app.command("release")
@cli_errors
def release(start: FromOpt, end: ToOpt, cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """Draft a release of the period: noise is drawn and the budget charged now."""
    with officer_client(cred) as c:
        view = StatsClient(c).draft(start, end)
    if json_out:
        print_json(view.to_json())
        return
    s = view.summary
    assert s is not None
    say(
        f"Drafted release {s.release_id} ({s.period_start} to {s.period_end}), epsilon "
        f"{s.epsilon:g}: {s.cells_released} cells released, {s.cells_suppressed} suppressed; "
        "awaiting a supervisor's approval."
    )
    say(f"Budget: {_budget_line(view)}.")


@stats_app.command("approve")
@cli_errors
def approve(release_id: str, cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """Supervisor: sign a release another officer drafted (four-eyes); it is then final."""
    with officer_client(cred) as c:
        view = StatsClient(c).approve(release_id)
    if json_out:
        print_json(view.to_json())
        return
    s = view.summary
    assert s is not None
    say(f"Approved release {s.release_id}: it is final.")


@stats_app.command("list")
@cli_errors
def list_releases(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """This node's releases, newest first, and the periods it holds releases of (its own
    final ones and those peers sent it)."""
    with officer_client(cred) as c:
        releases = StatsClient(c).releases(limit)
        periods = [] if json_out else StatsClient(c).periods(limit)
    if json_out:
        print_json([r.to_json() for r in releases])
        return
    if not releases:
        say("No statistics releases.")
    for r in releases:
        by = f", approved by {r.approved_by}" if r.approved_by else ""
        say(
            f"{r.release_id}  {r.period_start} to {r.period_end}  epsilon {r.epsilon:g}  "
            f"{r.state}  drafted by {r.drafted_by} {format_time(r.drafted_at)}{by}"
        )
    if periods:
        held = ", ".join(f"{a} to {b}" for a, b in periods)
        say(f"Federation tables (mlax stats federation) can be built for: {held}.")


@stats_app.command("show")
@cli_errors
def show(release_id: str, cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """A release's parameters and the cells it releases."""
    with officer_client(cred) as c:
        view = StatsClient(c).get(release_id)
    if json_out:
        print_json(view.to_json())
        return
    s, doc = view.summary, view.document
    assert s is not None
    say(
        f"Release {s.release_id} ({s.state}) of {doc['agency']}, {s.period_start} to "
        f"{s.period_end}: epsilon {s.epsilon:g}, threshold {doc['privacy']['threshold']}, "
        f"durations clamped to {doc['privacy']['clamp_days']} days."
    )
    for t in doc["tables"]:
        say(f"{t['name']} (noise sd {t['noise_sd']:g}): {t['title']}")
        for cell in t["cells"]:
            key = ", ".join(str(cell[d["name"]]) for d in t["dimensions"])
            say(f"  {key}: {cell['value']}")
        if not t["cells"]:
            say("  (every cell below the threshold)")


@stats_app.command("export")
@cli_errors
def export(
    release_id: str,
    fmt: FormatOpt = "csv",
    out: OutOpt = None,
    cred: CredOpt = None,
) -> None:
    """A final release as CSV (HTCDS/CTDC column names) or as its canonical JSON."""
    if fmt not in ("csv", "json"):
        fail("--format must be csv or json.", 2)
    with officer_client(cred) as c:
        view = StatsClient(c).get(release_id)
    assert view.summary is not None
    if view.summary.state != "final":
        fail(f"Release {release_id} is a draft: a supervisor must approve it before it leaves.")
    text = release_csv(view.document) if fmt == "csv" else view.document_bytes.decode() + "\n"
    _write(text, out, json_text=fmt == "json")


@stats_app.command("federation")
@cli_errors
def federation(
    start: FromOpt, end: ToOpt, fmt: FormatOpt = "csv", out: OutOpt = None, cred: CredOpt = None
) -> None:
    """The federation table of the period: this node's final release and the releases
    peers sent it, combined (each agency's newest)."""
    if fmt not in ("csv", "json"):
        fail("--format must be csv or json.", 2)
    with officer_client(cred) as c:
        table = StatsClient(c).federation(start, end)
    text = federation_csv(table) if fmt == "csv" else canonical(table).decode() + "\n"
    _write(text, out, json_text=fmt == "json")


@stats_app.command("combine")
@cli_errors
def combine_cmd(
    files: Annotated[list[Path], typer.Argument(help="Exported JSON releases, one per agency.")],
    fmt: FormatOpt = "csv",
    out: OutOpt = None,
) -> None:
    """Combine agencies' exported JSON releases into the federation table (offline)."""
    if fmt not in ("csv", "json"):
        fail("--format must be csv or json.", 2)
    docs: list[dict[str, Any]] = []
    for f in files:
        # The same checks as a release arriving from a peer: bounded, well formed, and
        # only the tables this software defines.
        try:
            if f.stat().st_size > MAX_RELEASE_FILE_BYTES:
                fail(f"{f} is larger than a release can be ({MAX_RELEASE_FILE_BYTES:,} bytes).")
            doc = json.loads(f.read_text(encoding="utf-8"))
        except OSError as e:
            fail(f"{f} cannot be read ({e.strerror or type(e).__name__}).")
        except (ValueError, UnicodeDecodeError, RecursionError):
            fail(f"{f} is not a JSON release.")
        agency = doc.get("agency") if isinstance(doc, dict) else None
        try:
            docs.append(dict(validate(doc, agency if isinstance(agency, str) else "")))
        except MlaxError as e:
            fail(f"{f}: {e.message}")
    try:
        table = combine(docs)
    except MlaxError as e:
        fail(e.message)
    text = federation_csv(table) if fmt == "csv" else canonical(table).decode() + "\n"
    _write(text, out, json_text=fmt == "json")


def register(app: typer.Typer) -> None:
    app.add_typer(stats_app, name="stats", help="Statistics releases with differential privacy.")
