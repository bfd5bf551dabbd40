"""`mlax stats combine` (offline, on exported files) checks each file as a release from a
peer is checked: a file that is not a release, or names a table this software does not
define, gets one sentence naming the file and a non-zero exit, and nothing is written."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from node.cli import app


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("MLAX_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    return CliRunner()


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("not json", "is not a JSON release"),
        ("[" * 50_000, "is not a JSON release"),
        (json.dumps({"format": "something else"}), "A statistics release is a JSON object"),
    ],
)
def test_a_file_that_is_not_a_release_is_refused_in_one_sentence(
    runner: CliRunner, tmp_path: Path, content: str, said: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "table.csv"
    result = runner.invoke(app, ["stats", "combine", str(bad), "--out", str(out)])
    assert result.exit_code != 0
    assert said in result.stderr
    assert str(bad) in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


# -- `mlax stats federation` prints a peer's values inert --------------------------------

# A value a peer put in a release held from before release.validate checked the peer and
# nationality dimensions: window title, erase screen, a C1 CSI, a bidi override, a formula.
HOSTILE = '\x1b]0;pwned\x07\x1b[2J\x9b2J\u202e=HYPERLINK("http://x")'


def _hostile_table() -> dict[str, Any]:
    from exchange.stats import release as rel
    from exchange.stats.export import combine
    from exchange.stats.tables import TABLES_BY_NAME

    target = TABLES_BY_NAME["victim_id_follow_ups_by_nationality"]
    params = rel.Parameters(
        "NG-NAPTIP", rel.Period.parse("2025-01-01", "2025-01-31"), 1.0, 11, 90, "opendp"
    )
    plans = rel.plan((target,), 1.0, 90)
    doc = rel.document(
        "r-ng",
        params,
        plans,
        {target.name: {("sent", "disclosed", "NG"): 500}},
        ("GB-NCA",),
        ("NG",),
    )
    doc = json.loads(rel.canonical(doc))
    t = doc["tables"][0]
    t["dimensions"][2]["values"] = [
        HOSTILE if v == "NG" else v for v in t["dimensions"][2]["values"]
    ]
    t["cells"][0]["nationality"] = HOSTILE
    return combine([doc])


@pytest.fixture
def node_holding_hostile_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    from node.cli import stats_cmd

    table = _hostile_table()

    class FakeStats:
        def __init__(self, client: object) -> None:
            pass

        def federation(self, start: str, end: str) -> dict[str, Any]:
            return table

    @contextlib.contextmanager
    def fake_client(cred: object) -> Iterator[object]:
        yield object()

    monkeypatch.setattr(stats_cmd, "officer_client", fake_client)
    monkeypatch.setattr(stats_cmd, "StatsClient", FakeStats)
    return table


def _unsafe(text: str) -> list[str]:
    return [
        c for c in text if c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"}
    ]


def test_the_federation_table_prints_a_peers_value_inert(
    runner: CliRunner, node_holding_hostile_table: dict[str, Any], tmp_path: Path
) -> None:
    period = ["--from", "2025-01-01", "--to", "2025-01-31"]
    as_csv = runner.invoke(app, ["stats", "federation", *period])
    assert as_csv.exit_code == 0, as_csv.stderr
    assert not _unsafe(as_csv.stdout), _unsafe(as_csv.stdout)
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b2J\\u202e=HYPERLINK" in as_csv.stdout
    [row] = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert row["citizenship"].startswith("\\x1b")
    assert row["value"] == "500"

    # JSON: the same document, every character that could act on a terminal escaped.
    as_json = runner.invoke(app, ["stats", "federation", *period, "--format", "json"])
    assert as_json.exit_code == 0, as_json.stderr
    assert not _unsafe(as_json.stdout)
    assert json.loads(as_json.stdout) == node_holding_hostile_table

    # Written to a file, the CSV opens in a spreadsheet without running anything.
    out = tmp_path / "table.csv"
    written = runner.invoke(app, ["stats", "federation", *period, "--out", str(out)])
    assert written.exit_code == 0, written.stderr
    text = out.read_text(encoding="utf-8")
    assert not _unsafe(text)
    assert not any(
        c.startswith(("=", "+", "-", "@")) for r in csv.reader(io.StringIO(text)) for c in r
    )
