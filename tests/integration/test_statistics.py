"""Statistics releases through the CLI on the live federation (docs/statistics.md):
drafted by an officer, approved by a supervisor, exported with small cells absent,
refused over the yearly budget, sent to the peers on approval, and combined into the
federation table (offline from exported files, and on a third agency's node)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from node.client.stats import StatsClient

if TYPE_CHECKING:
    from conftest import Cli, LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"
THRESHOLD = 11  # the default [statistics] threshold
EPSILON, BUDGET = 1.0, 4.0  # the default epsilon per release and yearly budget


def test_release_approve_export_budget_and_combine(
    live: LiveFederation, cli: Cli, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    period = ("--from", f"{today.year}-01-01", "--to", today.isoformat())
    officer, supervisor = live.credential(GB, "officer"), live.credential(GB, "supervisor")

    preview = cli.json("stats", "preview", *period, "--as", officer, "--json")
    assert preview["summary"] is None
    assert preview["document"]["privacy"]["epsilon"] == EPSILON
    spent_before = preview["budget"][0]["spent"] - EPSILON

    drafted = cli.json("stats", "release", *period, "--as", officer, "--json")
    release_id = drafted["summary"]["release_id"]
    assert drafted["summary"]["state"] == "draft"

    # A draft does not leave the node, and an officer cannot approve it.
    refused = cli.refusal(cli.run("stats", "export", release_id, "--as", officer))
    assert refused == (
        f"Release {release_id} is a draft: a supervisor must approve it before it leaves."
    )
    role = cli.refusal(cli.run("stats", "approve", release_id, "--as", officer))
    assert role == "The officer role may not call Approve."

    approved = cli.run("stats", "approve", release_id, "--as", supervisor)
    assert approved.returncode == 0, approved.stderr
    assert f"Approved release {release_id}: it is final." in approved.stdout

    out = tmp_path / "gb.csv"
    exported = cli.run("stats", "export", release_id, "--as", officer, "--out", out)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    # Small cells are absent: every released count reached the threshold (on its noisy
    # value), and the cells not listed are the suppressed ones.
    counts = [r for r in rows if r["measure"] == "count"]
    assert all(int(r["value"]) >= THRESHOLD for r in counts)
    shown = cli.run("stats", "show", release_id, "--as", officer)
    assert shown.returncode == 0, shown.stderr
    assert f"Release {release_id} (final) of {GB}" in shown.stdout
    summary = cli.json("stats", "list", "--as", officer, "--json")[0]
    assert summary["release_id"] == release_id
    assert summary["cells_released"] == len(rows)
    assert summary["cells_suppressed"] > 0

    # The ledger has the drafting and the approval, with the epsilon and no counts.
    kinds = [(k, e) for k, e in live.ledger_kinds(GB) if e.get("release_id") == release_id]
    assert [k for k, _ in kinds] == ["stats.release_drafted", "stats.release_approved"]
    assert float(kinds[0][1]["epsilon"]) == pytest.approx(EPSILON)
    assert kinds[1][1]["supervisor"] == "gb-nca-supervisor"
    assert kinds[0][1]["officer"] == "gb-nca-officer"

    # Spend the rest of the year's budget; the next release is refused, saying by how much.
    stats = StatsClient(live.client(GB))
    left = round((BUDGET - spent_before - EPSILON) / EPSILON)
    for _ in range(left):
        stats.draft(*period[1::2])
    over = cli.refusal(cli.run("stats", "release", *period, "--as", officer))
    assert over.endswith(f"over its budget of {BUDGET:g} by {EPSILON:g}.")

    # Another agency's final release combines with this one into the federation table.
    fr_id = StatsClient(live.client(FR)).draft(*period[1::2]).summary.release_id  # type: ignore[union-attr]
    StatsClient(live.client(FR, "supervisor")).approve(fr_id)
    fr_officer = live.credential(FR, "officer")
    files = []
    for rid, cred, name in ((release_id, officer, "gb"), (fr_id, fr_officer, "fr")):
        path = tmp_path / f"{name}.json"
        result = cli.run("stats", "export", rid, "--format", "json", "--as", cred, "--out", path)
        assert result.returncode == 0, result.stderr
        files.append(path)
    combined = cli.run("stats", "combine", *files, "--format", "json")
    assert combined.returncode == 0, combined.stderr
    doc = json.loads(files[0].read_text())
    assert doc["release_id"] == release_id
    assert {t["name"] for t in doc["tables"]} >= {"cases_by_peer", "victim_id_queries"}
    table = json.loads(combined.stdout)
    assert table["agencies"] == [FR, GB]
    assert {r["agency"] for r in table["per_agency"]} == {FR, GB}
    assert all(r["agencies_reporting"] >= 1 for r in table["cells"])

    # Approved releases travel to every peer as envelopes of their own type: NG's node
    # combines the two it received into the federation table.
    ng = StatsClient(live.client(NG))

    def both_received() -> bool:
        return bool(ng.federation(*period[1::2])["agencies"] == [FR, GB])

    live.wait_for(both_received, 20, "NG holds GB's and FR's releases")
    csv_out = cli.run("stats", "federation", *period, "--as", live.credential(NG, "officer"))
    assert csv_out.returncode == 0, csv_out.stderr
    header = csv_out.stdout.splitlines()[0].split(",")
    assert header[:4] == ["period_start", "period_end", "table", "measure"]
    assert "agencies_suppressed" in header
    assert "noise_sd" in header
    # NG drafted nothing; its listing names the period it holds others' releases of.
    listed = cli.run("stats", "list", "--as", live.credential(NG, "officer"))
    assert listed.returncode == 0, listed.stderr
    assert f"can be built for: {period[1]} to {period[3]}" in listed.stdout
