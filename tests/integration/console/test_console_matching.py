"""Victim identification in the console: hit and no hit, a refused date, a CSV batch and
its export, a follow-up that opens a case, and results that stay in their own console."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from node.client.cases import CaseClient
from node.client.matching import MatchClient

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"
# Held at NG only; unlike anything other tests load.
RECORDS = """ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth
NG-CON-0001,Adaeze,Nwachukwu,F,2002-05-17,NGA,Enugu
NG-CON-0002,Ifeoma,Chukwuemeka,F,1998-10-03,NGA,Onitsha
"""
HELD = {
    "given_name": "Adaeze",
    "family_name": "Nwachukwu",
    "sex": "F",
    "date_of_birth": "2002-05-17",
    "nationality": "NGA",
    "place_of_birth": "",
}
NOT_HELD = {**HELD, "given_name": "Zephyrine", "family_name": "Quillfeather",
            "date_of_birth": "1963-09-27", "nationality": ""}  # fmt: skip
NAMES = ("Adaeze", "Nwachukwu", "Zephyrine", "Quillfeather", "Ifeoma", "Chukwuemeka")
_ROW = re.compile(r"<tr class=\"(result-[a-z-]+)\">(.*?)</tr>", re.S)


@pytest.fixture(scope="module")
def records(live: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    path: Path = tmp_path_factory.mktemp("match-records") / "victims.csv"
    path.write_text(RECORDS, encoding="utf-8")
    loaded = MatchClient(live.client(NG, "officer")).load(path)
    assert loaded.records >= 2


def _rows(page: str) -> list[tuple[str, str]]:
    """(row class, row text without tags) of the results table."""
    table = page.split('id="match-results"', 1)[1].split("</table>", 1)[0]
    return [(css, re.sub(r"<[^>]+>", " ", body)) for css, body in _ROW.findall(table)]


def _by_peer(page: str) -> dict[str, tuple[str, str]]:
    out = {}
    for css, text in _rows(page):
        peer = next(p for p in (GB, FR, NG) if p in text)
        out[peer] = (css, text)
    return out


def _urls(response: Any) -> list[str]:
    """Every URL a browser would have visited or been sent to in this flow."""
    out = [str(r.url) for r in [*response.history, response]]
    out += [r.headers.get("location", "") for r in response.history]
    return out


def _search(client: Any, token: str, person: dict[str, str], **extra: Any) -> Any:
    page = client.post("/match", data={**person, "csrf": token, **extra})
    assert page.status_code == 200, page.text
    assert page.history
    assert page.history[0].status_code == 303
    assert re.fullmatch(r"/match/results/[A-Za-z0-9_-]{20,}", page.url.path), page.url
    return page


def _ledger_count(live: Any, agency: str, kind: str) -> int:
    return sum(1 for k, _ in live.ledger_kinds(agency) if k == kind)


def test_the_form_has_every_field_labelled(console_for: Any) -> None:
    client, _ = console_for(GB, "officer")
    page = client.get("/match")
    assert page.status_code == 200, page.text
    for label in ("Given name", "Family name", "Sex", "Date of birth", "Nationality",
                  "Place of birth", "CSV file", "Agencies to ask"):  # fmt: skip
        assert label in page.text
    assert "YYYY, YYYY-MM or YYYY-MM-DD" in page.text
    for column in ("given_name", "family_name", "sex", "date_of_birth", "nationality",
                   "place_of_birth"):  # fmt: skip
        dom_id = "f-" + column.replace("_", "-")
        assert f'<label for="{dom_id}">' in page.text
        assert f'id="{dom_id}"' in page.text
    assert '<label for="f-batch-file">CSV file</label>' in page.text
    assert 'value="NG-NAPTIP"' in page.text
    assert 'value="FR-OCRTEH"' in page.text
    assert ">Search</button>" in page.text
    assert ">Search all</button>" in page.text
    assert 'enctype="multipart/form-data"' in page.text


def test_hit_and_no_hit(console_for: Any, csrf: Any, records: None) -> None:
    client, _ = console_for(GB, "officer")
    token = csrf(client)
    hit = _search(client, token, HELD)
    answers = _by_peer(hit.text)
    assert set(answers) == {FR, NG}
    css, text = answers[NG]
    assert css in ("result-hit-strong", "result-hit-possible")
    assert "hit (strong)" in text or "hit (possible)" in text
    assert f"{NG}:" in text  # the reference a follow-up quotes
    assert answers[FR][0] == "result-no-hit"
    assert "no hit" in answers[FR][1]
    assert hit.text.count(">Open follow-up</button>") == 1
    assert 'href="' + hit.url.path + '.csv"' in hit.text

    miss = _search(client, token, NOT_HELD)
    assert {css for css, _ in _rows(miss.text)} == {"result-no-hit"}
    assert "Open follow-up" not in miss.text

    # Names only ever travel in POST bodies: no URL of either flow carries one, and the
    # results page shows none (the console keeps them in memory, to prefill a follow-up).
    for response in (hit, miss):
        for url in _urls(response):
            assert not any(name in url for name in NAMES), url
        assert not any(name in response.text for name in NAMES)


def test_only_the_chosen_agency_is_asked(console_for: Any, csrf: Any, records: None) -> None:
    client, _ = console_for(GB, "officer")
    page = _search(client, csrf(client), HELD, peer=NG)
    assert set(_by_peer(page.text)) == {NG}


def test_a_bad_date_is_refused_beside_the_form_and_nothing_is_asked(
    console_for: Any, csrf: Any, live: Any
) -> None:
    client, _ = console_for(GB, "officer")
    before = _ledger_count(live, GB, "match.query")
    page = client.post("/match", data={**HELD, "date_of_birth": "2002-13-45", "csrf": csrf(client)})
    assert page.status_code == 400
    assert not page.history
    error = re.search(r'<p class="field-error" id="f-date-of-birth-error">([^<]+)</p>', page.text)
    assert error, page.text
    assert "Month 13 is not 1 to 12." in error.group(1)
    assert 'id="match-problem"' in page.text
    # What was typed is kept, from the POST body; the URL stays /match.
    assert 'value="Adaeze"' in page.text
    assert 'value="2002-13-45"' in page.text
    assert page.url.path == "/match"
    assert not page.url.query
    assert _ledger_count(live, GB, "match.query") == before


def test_a_person_too_thin_to_match_is_said_so(console_for: Any, csrf: Any) -> None:
    # As in a batch: each agency's answer is "unmatchable", with why.
    client, _ = console_for(GB, "officer")
    page = client.post("/match", data={**HELD, "date_of_birth": "", "csrf": csrf(client)})
    assert page.status_code == 200
    assert "/match/results/" in str(page.url)
    thin = re.findall(r'<tr class="(result-[a-z-]+)"', page.text)
    assert thin
    assert set(thin) == {"result-unmatchable"}
    assert "birth year" in page.text
    assert "Adaeze" not in page.text


def test_csv_batch_and_its_export(console_for: Any, csrf: Any, records: None) -> None:
    client, _ = console_for(GB, "officer")
    batch = (
        "ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth\n"
        '=HYPERLINK("http://evil.example"),Ifeoma,Chukwuemeka,F,1998-10-03,NGA,\n'
        "thin,,Okeke,,,,\n"
        ",Zephyrine,Quillfeather,F,1963-09-27,,\n"
    )
    page = client.post(
        "/match/batch",
        data={"csrf": csrf(client), "peer": [NG, FR]},
        files={"file": ("people.csv", batch.encode(), "text/csv")},
    )
    assert page.status_code == 200, page.text
    assert page.history
    assert page.history[0].status_code == 303
    rows = _rows(page.text)
    assert len(rows) == 6  # three people, two agencies
    first = [(css, text) for css, text in rows if "HYPERLINK" in text]
    assert {css for css, _ in first} >= {"result-no-hit"}
    assert any(css.startswith("result-hit-") for css, _ in first)
    thin = [css for css, text in rows if " thin " in text]
    assert thin == ["result-unmatchable", "result-unmatchable"]
    assert "unmatchable" in page.text
    last = [css for css, text in rows if "line 4" in text]
    assert last == ["result-no-hit", "result-no-hit"]
    for url in _urls(page):
        assert not any(name in url for name in NAMES), url

    export = client.get(page.url.path + ".csv")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    assert export.headers["content-disposition"].startswith("attachment;")
    table = list(csv.reader(io.StringIO(export.text)))
    assert table[0] == ["query", "label", "peer", "result", "band", "reference", "detail"]
    labels = {row[1] for row in table[1:]}
    assert '\'=HYPERLINK("http://evil.example")' in labels
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in table for cell in row)
    assert {row[3] for row in table[1:]} >= {"no hit", "unmatchable"}


def test_a_bad_csv_row_is_named_and_nothing_is_asked(
    console_for: Any, csrf: Any, live: Any
) -> None:
    client, _ = console_for(GB, "officer")
    before = _ledger_count(live, GB, "match.query")
    header = "given_name,family_name,sex,date_of_birth,nationality,place_of_birth\n"
    batch = header + "A,B,Q,,,\nAda,Obi,F,1999,NGA,\nC,D,F,1999-13-01,,\n"
    page = client.post(
        "/match/batch",
        data={"csrf": csrf(client)},
        files={"file": ("people.csv", batch.encode(), "text/csv")},
    )
    assert page.status_code == 400
    # Every bad row is named by its line; the good one between them is not asked about.
    assert "2 row(s) cannot be asked about" in page.text
    assert "Line 2, column sex" in page.text
    assert "Line 4, column date_of_birth" in page.text
    assert 'id="batch-problem"' in page.text
    bad_header = client.post(
        "/match/batch",
        data={"csrf": csrf(client)},
        files={"file": ("people.csv", b"name,dob\nA,1990\n", "text/csv")},
    )
    assert bad_header.status_code == 400
    assert "line 1 has no column" in bad_header.text
    assert _ledger_count(live, GB, "match.query") == before


def test_follow_up_opens_a_case(console_for: Any, csrf: Any, live: Any, records: None) -> None:
    client, _ = console_for(GB, "officer")
    token = csrf(client)
    results = _search(client, token, HELD, peer=NG)
    reference = re.search(r'name="reference" value="([^"]+)"', results.text)
    assert reference
    assert reference.group(1).startswith(f"{NG}:")
    rid = results.url.path.rsplit("/", 1)[1]

    query = re.search(r'name="query" value="(\d+)"', results.text)
    assert query

    with structlog.testing.capture_logs() as logs:
        form = client.post(
            "/match/follow-up",
            data={
                "csrf": token,
                "reference": reference.group(1),
                "rid": rid,
                "query": query.group(1),
            },
        )
    assert form.status_code == 200, form.text
    assert reference.group(1) in form.text
    assert "Protection of and assistance to the victim" in form.text
    assert '<label for="f-justification">' in form.text
    # The person searched for is filled in, from the search this console holds.
    assert 'id="f-given-name" name="given_name" type="text" value="Adaeze"' in form.text
    assert 'name="date_of_birth" type="text" value="2002-05-17"' in form.text

    fields = {
        "csrf": token,
        "reference": reference.group(1),
        "rid": rid,
        "query": query.group(1),
        "purpose": "victim-assistance",
        "justification": "A possible victim was found in Manchester; she needs assistance.",
        "urgency": "ordinary",
        **HELD,
    }
    before = len(CaseClient(live.client(GB)).cases(limit=1000))
    missing = client.post("/match/follow-up/open", data=fields)
    assert missing.status_code == 400
    error = re.search(r'<p class="field-error" id="f-email-error">([^<]+)</p>', missing.text)
    assert error
    assert "email" in error.group(1)
    assert "found in Manchester" in missing.text  # what was typed is kept
    assert 'value="Nwachukwu"' in missing.text
    # A follow-up names the person sought: without a name it is refused beside the field.
    nameless = {**fields, "email": "liaison@nca.example", "given_name": "", "family_name": ""}
    unnamed = client.post("/match/follow-up/open", data=nameless)
    assert unnamed.status_code == 400
    assert 'id="f-family-name-error">a given name or a family name is required.' in unnamed.text
    assert len(CaseClient(live.client(GB)).cases(limit=1000)) == before

    with structlog.testing.capture_logs() as more:
        opened = client.post(
            "/match/follow-up/open", data={**fields, "email": "liaison@nca.example"}
        )
    logged = json.dumps(logs + more, default=str)
    assert "console_match_follow_up" in logged
    assert not any(name in logged for name in NAMES)
    assert opened.status_code == 200, opened.text
    assert opened.history
    assert opened.history[0].status_code == 303
    found = re.fullmatch(r"/cases/([^/]+)", opened.url.path)
    assert found, opened.url
    assert "Follow-up" in opened.text
    assert NG in opened.text
    view = CaseClient(live.client(GB)).get(found.group(1), content=True)
    assert view.summary.peer == NG
    assert view.form is not None
    assert view.form.victim_id.person.family_name == "Nwachukwu"
    for url in _urls(opened) + _urls(form):
        assert not any(name in url for name in NAMES), url


def test_results_belong_to_their_console(console_for: Any, csrf: Any, records: None) -> None:
    first, _ = console_for(GB, "officer")
    page = _search(first, csrf(first), NOT_HELD, peer=NG)
    path = page.url.path
    other, _ = console_for(GB, "supervisor")
    assert other.get(path).status_code == 404
    assert other.get(path + ".csv").status_code == 404
    assert first.get(path).status_code == 200
    assert first.get("/match/results/not-a-result").status_code == 404


def test_an_auditor_cannot_search(console_for: Any) -> None:
    client, _ = console_for(GB, "auditor")
    assert client.get("/match").status_code == 403


def test_at_most_twenty_result_sets_are_kept() -> None:
    from types import SimpleNamespace

    from node.console.pages import matching

    console = SimpleNamespace(state={})
    for i in range(matching.MAX_RESULT_SETS + 5):
        matching._keep(console, matching.ResultSet(f"r{i}", 0, 1, False, ()))  # type: ignore[arg-type]
    kept = list(console.state[matching.STATE_KEY])
    assert len(kept) == matching.MAX_RESULT_SETS
    assert kept[0] == "r5"
    assert kept[-1] == f"r{matching.MAX_RESULT_SETS + 4}"
