"""`mlax match query`: what each person asked about gets, read off the answers of every
agency: hit (band, reference, what to do next), no hit, unmatchable (with why), or not
answered (with why, and exit status 4); a batch file checked whole before anything is
asked, every bad row named by its line."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from node.cli import app, match_cmd
from node.client import MatchAnswer

HEADER = "ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth\n"


class FakeDesk:
    """Stands for the officer client and MatchClient: answers from `answer(i, person)`."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[list[dict[str, Any]]] = []

    def __enter__(self) -> FakeDesk:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def query(
        self, people: Sequence[dict[str, Any]], peers: Sequence[str], timeout_ms: int
    ) -> Iterator[MatchAnswer]:
        self.asked.append(list(people))
        for i, person in enumerate(people):
            for peer, result, band in self.answer(i, person):
                yield MatchAnswer(
                    query=i,
                    peer=peer,
                    result=result,
                    band=band,
                    reference=f"{peer}:ab12" if result == "hit" else "",
                    detail={
                        "unmatchable": "Too little to match: a birth year and two name parts.",
                        "over-quota": "NG-NAPTIP allows GB-NCA 48 evaluations an hour.",
                        "unavailable": "FR-OCRTEH did not answer (UNAVAILABLE: down).",
                    }.get(result, ""),
                    query_id="q1",
                )


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("MLAX_CREDENTIAL", raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    return CliRunner()


def _serve(monkeypatch: pytest.MonkeyPatch, desk: FakeDesk) -> None:
    monkeypatch.setattr(match_cmd, "officer_client", lambda cred: desk)
    monkeypatch.setattr(match_cmd, "MatchClient", lambda client: client)


def _by_name(i: int, person: dict[str, Any]) -> list[tuple[str, str, str]]:
    name = person["family_name"]
    if name == "Eze":
        return [("FR-OCRTEH", "no-hit", ""), ("NG-NAPTIP", "hit", "strong")]
    if name == "Okafor":
        return [("FR-OCRTEH", "unavailable", ""), ("NG-NAPTIP", "no-hit", "")]
    if name == "Quota":
        return [("FR-OCRTEH", "no-hit", ""), ("NG-NAPTIP", "over-quota", "")]
    if not name or not person["date_of_birth"]:
        return [("FR-OCRTEH", "unmatchable", ""), ("NG-NAPTIP", "unmatchable", "")]
    return [("FR-OCRTEH", "no-hit", ""), ("NG-NAPTIP", "no-hit", "")]


def _batch(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(HEADER + rows)
    return path


def test_each_outcome_reads_differently_and_not_answered_exits_4(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    desk = FakeDesk(_by_name)
    _serve(monkeypatch, desk)
    path = _batch(
        tmp_path,
        "p1,Chiamaka,Eze,F,2002-06-14,NGA,\n"
        "p2,Ada,Okafor,F,1999,NGA,\n"
        "p3,Bola,Quota,F,1998,NGA,\n"
        "p4,Madonna,,F,1990,,\n"
        "p5,Wilhelmina,Quarrington,F,1951-02-27,,\n",
    )
    result = runner.invoke(app, ["match", "query", "--batch", str(path), "--as", "x.json"])
    assert result.exit_code == match_cmd.EXIT_NOT_ANSWERED == 4, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "p1: FR-OCRTEH no hit; NG-NAPTIP HIT (strong), reference NG-NAPTIP:ab12"
    assert lines[1].startswith("p2: FR-OCRTEH NOT ANSWERED (unavailable): FR-OCRTEH did not")
    assert "NG-NAPTIP NOT ANSWERED (over quota): NG-NAPTIP allows GB-NCA" in lines[2]
    assert lines[3].startswith("p4: FR-OCRTEH unmatchable: Too little to match")
    assert lines[4] == "p5: FR-OCRTEH no hit; NG-NAPTIP no hit"
    assert "5 people: 1 with a hit, 1 no hit, 1 unmatchable, 2 not answered" in result.stdout
    assert "mlax match follow-up NG-NAPTIP:ab12" in result.stdout
    # A follow-up names the person looked for (issue 14): the hint says how.
    assert "--given-name ... --family-name ... --date-of-birth ..." in result.stdout
    assert "their 'no hit' is unknown" in result.stderr


def test_json_carries_each_persons_outcome(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _serve(monkeypatch, FakeDesk(_by_name))
    path = _batch(tmp_path, "p1,Chiamaka,Eze,F,2002,NGA,\np4,Madonna,,F,1990,,\n")
    result = runner.invoke(
        app, ["match", "query", "--batch", str(path), "--json", "--as", "x.json"]
    )
    assert result.exit_code == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["outcome"] for d in docs] == ["hit", "unmatchable"]
    assert docs[1]["answers"]["NG-NAPTIP"]["result"] == "unmatchable"
    assert docs[1]["answers"]["NG-NAPTIP"]["detail"].startswith("Too little")


def test_a_single_query_says_what_a_batch_says(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _serve(monkeypatch, FakeDesk(_by_name))
    single = runner.invoke(
        app, ["match", "query", "--given-name", "Madonna", "--dob", "1990", "--as", "x.json"]
    )
    assert single.exit_code == 0, single.stderr
    assert single.stdout.splitlines()[0].startswith("FR-OCRTEH: unmatchable: Too little")
    path = _batch(tmp_path, "p4,Madonna,,,1990,,\n")
    batch = runner.invoke(app, ["match", "query", "--batch", str(path), "--as", "x.json"])
    assert batch.exit_code == 0
    assert "FR-OCRTEH unmatchable: Too little" in batch.stdout


def test_every_bad_row_is_named_by_its_line_and_nothing_is_asked(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    desk = FakeDesk(_by_name)
    _serve(monkeypatch, desk)
    path = _batch(
        tmp_path,
        "p1,Chiamaka,Eze,F,2002-06-14,NGA,\n"  # line 2
        "p2,Ada,Okafor,F,1999-13-40,NGA,\n"  # line 3: no such date
        "p3,Bola,Ade,Q,1998,NGA,\n"  # line 4: no such sex
        "p4,Efe,Obi,F,1997,NGA,Lagos,extra\n"  # line 5: a value too many
        "p5,Wilhelmina,Quarrington,F,1951-02-27,,\n",  # line 6
    )
    result = runner.invoke(app, ["match", "query", "--batch", str(path), "--as", "x.json"])
    assert result.exit_code == 1
    assert desk.asked == []
    err = result.stderr.splitlines()
    assert err[0].startswith("Line 3, column date_of_birth")
    assert err[1].startswith("Line 4, column sex")
    assert err[2].startswith("Line 5:")
    assert err[3] == (
        f"error: {path} has 3 row(s) that cannot be asked about; nothing was asked "
        "(--skip-invalid asks about the rest)."
    )

    skipping = runner.invoke(
        app, ["match", "query", "--batch", str(path), "--skip-invalid", "--as", "x.json"]
    )
    assert skipping.exit_code == 0, skipping.stderr
    assert [p["family_name"] for p in desk.asked[0]] == ["Eze", "Quarrington"]
    assert "skipped line 3: Line 3, column date_of_birth" in skipping.stdout
    assert "skipped line 5" in skipping.stdout


def test_an_unknown_column_is_refused_before_anything_is_asked(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    desk = FakeDesk(_by_name)
    _serve(monkeypatch, desk)
    path = tmp_path / "people.csv"
    path.write_text(HEADER.strip() + ",dob\np1,Ada,Okafor,F,,NGA,,1999\n")
    result = runner.invoke(app, ["match", "query", "--batch", str(path), "--as", "x.json"])
    assert result.exit_code == 1
    assert "line 1 has a column 'dob'" in result.stderr
    assert desk.asked == []
    path.write_text("given_name,family_name\nAda,Okafor\n")
    result = runner.invoke(app, ["match", "query", "--batch", str(path), "--as", "x.json"])
    assert result.exit_code == 1
    assert "line 1 has no column sex" in result.stderr
    assert desk.asked == []
