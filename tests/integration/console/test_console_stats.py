"""The console's Statistics page against the live federation (HTTP level).

GB and FR release last year's figures (nothing of this session's casework, and a budget
year no other test spends); GB's console charts the federation table its node publishes:
one bar per released cell, every cell all agencies suppressed listed as suppressed, each
agency's epsilon and noise, and the same table as CSV and JSON. Values a peer chose are
shown escaped. Supervisors and auditors may read it; the page needs a session.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from exchange.stats.export import federation_csv
from node.client.stats import StatsClient
from node.console.pages import stats as stats_page

if TYPE_CHECKING:
    from conftest import LiveFederation

    from .conftest import ConsoleFor

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR = "GB-NCA", "FR-OCRTEH"
_BAR = re.compile(r'<g class="bar">')
_SUPPRESSED = re.compile(r'<p class="suppressed-cells" id="[^"]*">(\d+) cells? suppressed by')


def _text(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">(.*?)</', page, re.S)
    assert found, page[:2000]
    return html.unescape(found.group(1)).strip()


@pytest.fixture(scope="module")
def last_year(live: LiveFederation) -> tuple[str, str]:
    """GB's and FR's approved releases of last year; GB's node holds both."""
    year = dt.datetime.now(dt.UTC).year - 1
    period = (f"{year}-01-01", f"{year}-12-31")
    for agency in (GB, FR):
        draft = StatsClient(live.client(agency)).draft(*period)
        assert draft.summary is not None
        StatsClient(live.client(agency, "supervisor")).approve(draft.summary.release_id)
    gb = StatsClient(live.client(GB))
    live.wait_for(
        lambda: gb.federation(*period)["agencies"] == [FR, GB], 20, "GB holds FR's release"
    )
    return period


def test_the_page_charts_the_published_federation_table(
    live: LiveFederation, console_for: ConsoleFor, last_year: tuple[str, str]
) -> None:
    start, end = last_year
    table = StatsClient(live.client(GB)).federation(start, end)
    client, _ = console_for(GB, "officer")

    page = client.get("/stats", params={"from": start, "to": end})

    assert page.status_code == 200, page.text
    assert 'href="/stats" aria-current="page"' in page.text
    assert _text(page.text, "stats-agencies") == f"{FR}, {GB}"
    # One bar per released cell, each with its value and noise; the cells every agency
    # suppressed are counted per table, without a value or a list.
    assert (
        len(_BAR.findall(page.text)) == len(table["cells"]) == int(_text(page.text, "stats-cells"))
    )
    suppressed = sum(int(n) for n in _SUPPRESSED.findall(page.text))
    total = sum(table["suppressed"].values())
    assert suppressed == total == int(_text(page.text, "stats-suppressed"))
    assert total, "last year holds no case: most cells are below the threshold"
    for cell in table["cells"][:5]:
        assert f">{cell['value']} ± {cell['noise_sd']:.1f}" in page.text
    # Each agency's epsilon, scale and noise per table, and its whole release's epsilon.
    for r in table["per_agency"]:
        assert f"<td>{r['agency']}</td><td><code>{r['table']}</code></td>" in page.text
    assert page.text.count("<td>whole release</td><td>1</td>") == 2

    # The same table, published as CSV and JSON.
    as_csv = client.get("/stats/federation.csv", params={"from": start, "to": end})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-disposition"] == (
        f'attachment; filename="federation-{start}-{end}.csv"'
    )
    assert as_csv.text == federation_csv(table)
    assert len(list(csv.DictReader(io.StringIO(as_csv.text)))) == len(table["cells"])
    as_json = client.get("/stats/federation.json", params={"from": start, "to": end})
    assert json.loads(as_json.text) == table


def test_without_a_period_the_page_shows_the_newest_final_release_or_says_none(
    console_for: ConsoleFor, last_year: tuple[str, str]
) -> None:
    start, end = last_year
    client, _ = console_for(GB, "supervisor")
    page = client.get("/stats")
    assert page.status_code == 200, page.text
    assert f'href="/stats?from={start}&amp;to={end}"' in page.text
    assert 'id="stats-agencies"' in page.text

    none = client.get("/stats", params={"from": "2001-01-01", "to": "2001-12-31"})
    assert none.status_code == 200
    assert "holds no final release of 2001-01-01 to 2001-12-31" in _text(none.text, "no-table")
    missing = client.get(
        "/stats/federation.csv",
        params={"from": "2001-01-01", "to": "2001-12-31"},
        headers={"accept": "application/json"},
    )
    assert missing.status_code == 404
    assert missing.text == "No release of 2001-01-01 to 2001-12-31 is held on this node.\n"
    bad = client.get(
        "/stats", params={"from": "yesterday", "to": end}, headers={"accept": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.text.startswith("A period is two dates like 2026-01-01")


def test_auditors_read_it_and_nobody_without_a_session(
    console_for: ConsoleFor, last_year: tuple[str, str]
) -> None:
    client, _ = console_for(GB, "auditor")
    start, end = last_year
    assert 'href="/stats"' in client.get("/me").text
    assert client.get("/stats", params={"from": start, "to": end}).status_code == 200
    client.cookies.clear()
    assert client.get("/stats").status_code == 401
    assert client.get("/stats/federation.json").status_code == 401


def test_values_a_peer_chose_are_shown_escaped(
    console_for: ConsoleFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = '<script>alert(1)</script>"\u202e'
    table: dict[str, Any] = {
        "format": "mlax-federation-statistics/v1",
        "period": {"start": "2025-01-01", "end": "2025-12-31"},
        "agencies": [FR, GB],
        "cells": [
            {
                "table": "cases_by_peer",
                "measure": "count",
                "case_type": "mla",
                "direction": "sent",
                "peer": hostile,
                "value": 40,
                "noise_sd": 15.2,
                "agencies_reporting": 1,
                "agencies_suppressed": 1,
            }
        ],
        "suppressed": {hostile: 3},
        "per_agency": [
            {
                "agency": FR,
                "table": hostile,
                "epsilon": 0.1,
                "scale": 10.0,
                "noise_sd": 15.2,
                "threshold": 11,
            }
        ],
    }
    monkeypatch.setattr(stats_page.StatsClient, "federation", lambda self, s, e: table)
    client, _ = console_for(GB, "officer")
    page = client.get("/stats", params={"from": "2025-01-01", "to": "2025-12-31"})
    assert page.status_code == 200, page.text
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in page.text
    assert "\u202e" not in page.text  # the bidi override is shown as an escape, not applied
    assert "40 ± 15.2 (1 suppressed)" in page.text
