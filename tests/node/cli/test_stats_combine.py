"""`mlax stats combine` (offline, on exported files) checks each file as a release from a
peer is checked: a file that is not a release, or names a table this software does not
define, gets one sentence naming the file and a non-zero exit, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

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
