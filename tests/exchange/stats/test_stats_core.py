"""exchange.stats: tables over fixed cells, the plan, suppression on noisy values, the
yearly budget, the published document, export columns and the federation table."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.errors import InvalidFieldError
from exchange.matching.records import ALPHA2_TO_ALPHA3, PartialDate
from exchange.stats import release as rel
from exchange.stats.export import combine, csv_cell, federation_csv, release_csv, release_rows
from exchange.stats.facts import (
    REFUSAL_GROUNDS,
    CaseFact,
    QueryFact,
    age_band,
    person_sought,
    refusal_ground,
)
from exchange.stats.tables import PROFILE_TABLE, TABLES, TABLES_BY_NAME, true_values

PEERS = ("FR-OCRTEH", "NG-NAPTIP")
BY_PEER = TABLES_BY_NAME["cases_by_peer"]
ACKED = TABLES_BY_NAME["cases_acknowledged"]
ACK_DAYS = TABLES_BY_NAME["days_to_acknowledgement"]


def case(peer: str = "FR-OCRTEH", **kw: object) -> CaseFact:
    fields: dict[str, object] = {
        "case_type": "mla",
        "direction": "sent",
        "peer": peer,
        "urgency": "ordinary",
        "outcome": "open",
    }
    fields.update(kw)
    return CaseFact(**fields)  # type: ignore[arg-type]


def test_every_cell_of_the_domain_is_there_before_any_fact() -> None:
    values = true_values(BY_PEER, [], PEERS, 90)
    # 3 case types x 2 directions x (2 peers + "other"): all zero, none missing.
    assert len(values) == 3 * 2 * 3
    assert set(values.values()) == {0}


def test_a_peer_no_longer_listed_counts_as_other_and_a_unit_falls_in_one_cell() -> None:
    facts = [case(), case(), case("XX-GONE")]
    values = true_values(BY_PEER, facts, PEERS, 90)
    assert values[("mla", "sent", "FR-OCRTEH")] == 2
    assert values[("mla", "sent", "other")] == 1
    assert sum(values.values()) == len(facts)
    for table in TABLES:
        if table.measure == "count":
            assert sum(true_values(table, facts, PEERS, 90).values()) <= len(facts)


def test_durations_are_clamped_before_summing() -> None:
    facts = [case(ack_days=3), case(ack_days=400), case()]
    assert true_values(ACK_DAYS, facts, PEERS, 30)[("mla", "sent", "ordinary")] == 33
    assert true_values(ACKED, facts, PEERS, 30)[("mla", "sent", "ordinary")] == 2
    assert ACK_DAYS.sensitivity(30) == 30
    assert ACKED.sensitivity(30) == 1


def test_queries_count_in_query_tables_only() -> None:
    facts = [QueryFact("hit_strong"), QueryFact("no_hit"), case()]
    values = true_values(TABLES_BY_NAME["victim_id_queries"], facts, PEERS, 90)
    assert values[("hit_strong",)] == 1
    assert sum(values.values()) == 2
    assert sum(true_values(BY_PEER, facts, PEERS, 90).values()) == 1


def test_the_plan_splits_epsilon_evenly_and_scales_by_sensitivity() -> None:
    plans = rel.plan(TABLES, 1.1, 90)
    assert math.isclose(sum(p.epsilon for p in plans), 1.1)
    for p in plans:
        assert math.isclose(p.scale, p.sensitivity * len(TABLES) / 1.1)
    with pytest.raises(rel.InvalidFieldError):
        rel.plan(TABLES, 0.0, 90)


def test_suppression_looks_at_noisy_values_only_and_sums_follow_their_counts() -> None:
    plans = rel.plan((ACKED, ACK_DAYS), 1.0, 90)
    noisy = {
        # The true counts do not appear here at all: only what the noise made of them.
        "cases_acknowledged": {("mla", "sent", "ordinary"): 10, ("mla", "sent", "urgent"): 11},
        "days_to_acknowledgement": {
            ("mla", "sent", "ordinary"): 500,
            ("mla", "sent", "urgent"): -4,
        },
    }
    out = rel.suppressed(plans, noisy, threshold=11)
    assert out["cases_acknowledged"] == {("mla", "sent", "urgent"): 11}
    # The sum whose count is suppressed is left out; a negative noisy sum shows as 0.
    assert out["days_to_acknowledgement"] == {("mla", "sent", "urgent"): 0}


def test_the_budget_refuses_saying_by_how_much_and_charges_every_year_touched() -> None:
    assert rel.charge({}, (2026,), 1.0, 4.0) == {2026: 1.0}
    assert rel.charge({2026: 3.0}, (2026,), 1.0, 4.0) == {2026: 4.0}  # exactly full is fine
    with pytest.raises(rel.BudgetExceededError) as e:
        rel.charge({2026: 3.5}, (2026,), 1.0, 4.0)
    assert str(e.value) == (
        "A release of epsilon 1 would bring 2026's spending to 4.5, over its budget of 4 by 0.5."
    )
    period = rel.Period.parse("2025-12-01", "2026-01-31")
    assert period.years == (2025, 2026)
    assert rel.charge({2025: 0.5}, period.years, 1.0, 4.0) == {2025: 1.5, 2026: 1.0}
    with pytest.raises(rel.BudgetExceededError, match="2025's spending"):
        rel.charge({2025: 3.5}, period.years, 1.0, 4.0)


def test_a_period_is_two_dates_in_order() -> None:
    p = rel.Period.parse("2026-01-01", "2026-01-01")
    assert p.end_ms - p.start_ms == 86_400_000
    assert p.contains(p.start_ms)
    assert not p.contains(p.end_ms)
    for start, end in (("2026-02-01", "2026-01-01"), ("yesterday", "2026-01-01")):
        with pytest.raises(rel.InvalidFieldError):
            rel.Period.parse(start, end)


def _doc(agency: str, value: int, sd_scale: float = 1.0) -> dict[str, object]:
    plans = rel.plan((BY_PEER,), sd_scale, 90)
    params = rel.Parameters(
        agency, rel.Period.parse("2026-01-01", "2026-06-30"), 1.0, 11, 90, "opendp 0.16.0"
    )
    released = {"cases_by_peer": {("mla", "sent", "FR-OCRTEH"): value}}
    return rel.document(f"r-{agency}", params, plans, released, PEERS)


def test_the_document_states_its_guarantee_and_omits_suppressed_cells() -> None:
    doc = _doc("GB-NCA", 14)
    privacy = doc["privacy"]
    assert isinstance(privacy, dict)
    assert privacy["epsilon"] == 1.0
    assert privacy["mechanism"] == "discrete_laplace"
    assert privacy["threshold"] == 11
    assert privacy["clamp_days"] == 90
    [table] = doc["tables"]  # type: ignore[misc]
    assert table["sensitivity"] == 1
    assert table["scale"] == 1.0
    assert table["epsilon"] == 1.0
    assert table["cells"] == [
        {"case_type": "mla", "direction": "sent", "peer": "FR-OCRTEH", "value": 14}
    ]
    assert json.loads(rel.canonical(doc)) == doc
    assert rel.digest(doc) == rel.digest(json.loads(rel.canonical(doc)))


def test_csv_columns_follow_htcds_ctdc_names_where_they_exist() -> None:
    plans = rel.plan((PROFILE_TABLE,), 1.0, 90)
    params = rel.Parameters(
        "GB-NCA", rel.Period.parse("2026-01-01", "2026-06-30"), 1.0, 11, 90, "opendp"
    )
    released = {PROFILE_TABLE.name: {("no_hit", "female", "18--20"): 12}}
    doc = rel.document("r", params, plans, released, PEERS)
    rows = list(csv.DictReader(io.StringIO(release_csv(doc))))
    assert rows == [
        {
            "agency": "GB-NCA",
            "period_start": "2026-01-01",
            "period_end": "2026-06-30",
            "table": "victim_id_queries_by_profile",
            "measure": "count",
            "result": "no_hit",
            "gender": "female",
            "ageBroad": "18--20",
            "value": "12",
            "epsilon": "1.0",
            "noise_sd": str(doc["tables"][0]["noise_sd"]),  # type: ignore[index]
        }
    ]
    assert release_rows(_doc("GB-NCA", 14))[0]["peer"] == "FR-OCRTEH"


def test_noise_sd_is_the_discrete_laplace_standard_deviation() -> None:
    scale = 2.0
    t = math.exp(-1 / scale)
    weights = {k: t ** abs(k) for k in range(-200, 201)}
    var = sum(k * k * w for k, w in weights.items()) / sum(weights.values())
    assert math.isclose(rel.noise_sd(scale), math.sqrt(var), rel_tol=1e-9)


def test_combining_sums_released_cells_and_adds_the_noise_variances() -> None:
    a, b, c = _doc("GB-NCA", 14), _doc("FR-OCRTEH", 20, 2.0), _doc("NG-NAPTIP", 0)
    c["tables"][0]["cells"] = []  # type: ignore[index]  # NG suppressed the cell
    table = combine([a, b, c])
    cell = next(
        r
        for r in table["cells"]
        if r["table"] == "cases_by_peer"
        and r["peer"] == "FR-OCRTEH"
        and r["case_type"] == "mla"
        and r["direction"] == "sent"
    )
    sd_a, sd_b = a["tables"][0]["noise_sd"], b["tables"][0]["noise_sd"]  # type: ignore[index]
    assert cell["value"] == 34
    assert cell["agencies_reporting"] == 2
    assert cell["agencies_suppressed"] == 1
    assert cell["noise_sd"] == round(math.hypot(sd_a, sd_b), 6)
    # The cells every agency suppressed are counted per table, without values or a list;
    # each agency's noise is listed.
    assert len(table["cells"]) == 1
    assert table["suppressed"] == {"cases_by_peer": len(BY_PEER.domain(PEERS)) - 1}
    assert {r["agency"] for r in table["per_agency"]} == {"GB-NCA", "FR-OCRTEH", "NG-NAPTIP"}
    assert "34" in federation_csv(table)


def test_combining_refuses_mixed_periods_and_one_agency_twice() -> None:
    a, b = _doc("GB-NCA", 14), _doc("GB-NCA", 15)
    with pytest.raises(rel.InvalidFieldError, match="one agency"):
        combine([a, b])
    b["agency"] = "FR-OCRTEH"
    b["period"] = {"start": "2026-01-01", "end": "2026-12-31"}
    with pytest.raises(rel.InvalidFieldError, match="different periods"):
        combine([a, b])


def test_a_peers_release_is_checked_whole_and_bounded_on_arrival() -> None:
    good = json.loads(rel.canonical(_doc("FR-OCRTEH", 14)))
    assert rel.validate(good, "FR-OCRTEH") == good
    with pytest.raises(rel.InvalidFieldError, match="names another"):
        rel.validate(good, "NG-NAPTIP")

    def broken(change: object) -> dict[str, object]:
        doc = json.loads(rel.canonical(good))
        change(doc)  # type: ignore[operator]
        return doc  # type: ignore[no-any-return]

    cell = lambda d: d["tables"][0]["cells"][0]  # noqa: E731
    dims = lambda d: d["tables"][0]["dimensions"]  # noqa: E731
    for doc, problem in (
        ([], "JSON object of format"),
        (broken(lambda d: d.update(format="v0")), "JSON object of format"),
        (broken(lambda d: cell(d).update(peer="XX-NEW")), "outside its dimension"),
        (broken(lambda d: cell(d).update(value=True)), "an integer"),
        (broken(lambda d: cell(d).update(extra=1)), "its dimensions and value"),
        (broken(lambda d: d["tables"][0].update(scale=-1)), "above 0"),
        (broken(lambda d: d["period"].update(end="2025-01-01")), "ends"),
        (broken(lambda d: d.update(tables=[d["tables"][0]] * 2)), "share a name"),
        (broken(lambda d: d.update(tables=[d["tables"][0]] * 65)), "at most 64"),
        (
            broken(lambda d: dims(d).extend({"name": f"d{i}", "values": ["a"]} for i in range(2))),
            "case_type, direction, peer",
        ),
    ):
        with pytest.raises(rel.InvalidFieldError, match=problem):
            rel.validate(doc, "FR-OCRTEH")


def test_the_published_vector_is_what_the_code_produces() -> None:
    from pathlib import Path

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(__file__).resolve().parents[3] / "docs" / "vectors" / "statistics.json"
    vector = json.loads(path.read_text("utf-8"))
    body = vector["release_json"].encode()
    doc = json.loads(body)
    assert rel.canonical(doc) == body
    assert rel.digest(doc).hex() == vector["release_sha256"]
    a = vector["approval"]
    message = rel.approval_message(a["release_id"], rel.digest(doc), a["supervisor"], a["at"])
    assert message.hex() == a["message"]
    key = serialization.load_pem_public_key(a["public_key_pem"].encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(bytes.fromhex(a["signature"]), message, ec.ECDSA(hashes.SHA256()))
    assert rel.validate(doc, doc["agency"]) == doc


def test_a_release_goes_to_the_coordinators_when_named_else_to_every_member() -> None:
    members = ["AT-UNODC", "FR-OCRTEH", "GB-NCA", "NG-NAPTIP"]
    assert rel.recipients(members, [], "GB-NCA") == ["AT-UNODC", "FR-OCRTEH", "NG-NAPTIP"]
    assert rel.recipients(members, ["AT-UNODC"], "GB-NCA") == ["AT-UNODC"]
    # The coordinator's own release goes to the other coordinators only.
    assert rel.recipients(members, ["AT-UNODC"], "AT-UNODC") == []
    assert rel.recipients(members, ["AT-UNODC", "FR-OCRTEH"], "AT-UNODC") == ["FR-OCRTEH"]


# -- refusal grounds and the person a follow-up seeks ----------------------------------

REFUSED = TABLES_BY_NAME["cases_refused_by_ground"]
BY_SEX = TABLES_BY_NAME["victim_id_follow_ups_by_sex"]
BY_AGE = TABLES_BY_NAME["victim_id_follow_ups_by_age"]
BY_NATIONALITY = TABLES_BY_NAME["victim_id_follow_ups_by_nationality"]
COUNTRIES = ("FR", "GB", "NG")
ISO_COUNTRIES = tuple(sorted(ALPHA2_TO_ALPHA3))


def test_a_refusal_counts_under_the_first_ground_it_states() -> None:
    details = fpb.TransitionDetails(
        refuse=fpb.Refusal(
            grounds=[fpb.REFUSAL_GROUND_OWN_NATIONAL, fpb.REFUSAL_GROUND_DEATH_PENALTY],
            explanation="x",
        )
    )
    assert refusal_ground(details) == "own_national"
    assert refusal_ground(fpb.TransitionDetails()) == "not_recorded"
    # The cells are the form vocabulary's grounds, fixed, plus not_recorded.
    assert REFUSAL_GROUNDS[-1] == "not_recorded"
    assert "no_dual_criminality" in REFUSAL_GROUNDS
    assert "fiscal_offence" not in REFUSAL_GROUNDS  # UNTOC forbids it; not in the forms
    facts = [
        case(outcome="refused", refusal_ground="own_national"),
        case(outcome="refused"),  # details purged: not recorded
        case(outcome="executed", refusal_ground="own_national"),  # not refused: not here
    ]
    values = true_values(REFUSED, facts, PEERS, 90)
    assert len(values) == 3 * 2 * len(REFUSAL_GROUNDS)
    assert values[("mla", "sent", "own_national")] == 1
    assert values[("mla", "sent", "not_recorded")] == 1
    assert sum(values.values()) == 2


END, MID = dt.date(2025, 12, 31), dt.date(2025, 6, 30)


@pytest.mark.parametrize(
    ("born", "on", "band"),
    [
        (PartialDate(2007, 12, 31), END, "18--20"),  # 18 on the last day of 2025
        (PartialDate(2008, 1, 1), END, "9--17"),  # 17 on that day
        (PartialDate(2007), END, "18--20"),  # 18 whatever the day of 2007
        (PartialDate(2007), MID, "not_recorded"),  # 17 or 18 on 30 June: two bands
        (PartialDate(2000), MID, "24--26"),  # 24 or 25: one band
        (PartialDate(2007, 6), dt.date(2025, 6, 15), "not_recorded"),  # 17 or 18
        (PartialDate(2007, 5), MID, "18--20"),
        (PartialDate(1950, 3, 1), END, "48+"),
        (PartialDate(2026, 1, 1), END, "not_recorded"),  # born after the day
        (None, END, "not_recorded"),
    ],
)
def test_the_age_band_is_ctdc_s_at_the_period_s_end_and_never_a_guess(
    born: PartialDate | None, on: dt.date, band: str
) -> None:
    assert age_band(born, on) == band


def _follow_up_form(**person: str) -> fpb.CaseForm:
    return fpb.CaseForm(victim_id=fpb.VictimIdRequest(person=fpb.VictimSought(**person)))


def test_the_person_sought_becomes_a_sex_an_age_band_and_a_nationality_only() -> None:
    on = dt.date(2025, 12, 31)
    form = _follow_up_form(given_name="Ana", sex="f", date_of_birth="2009-04", nationality="FRA")
    assert person_sought(form, on, COUNTRIES) == ("female", "9--17", "FR")
    # Alpha-2 accepted as on the form; a country outside the directory is "other".
    assert person_sought(_follow_up_form(given_name="A", nationality="de"), on, COUNTRIES) == (
        "not_recorded",
        "not_recorded",
        "other",
    )
    assert person_sought(_follow_up_form(family_name="B", sex="X"), on, COUNTRIES)[0] == "other"
    # No person, an invalid one, or another kind of form: nothing recorded.
    nothing = ("not_recorded",) * 3
    assert person_sought(fpb.CaseForm(victim_id=fpb.VictimIdRequest()), on, COUNTRIES) == nothing
    assert person_sought(_follow_up_form(sex="F"), on, COUNTRIES) == nothing  # no name
    assert person_sought(fpb.CaseForm(mla=fpb.MlaRequest()), on, COUNTRIES) == nothing


def test_a_follow_up_falls_in_one_cell_of_each_demographic_table() -> None:
    follow_ups = [
        case(
            case_type="victim-id",
            outcome="executed",
            sex="female",
            age_band="9--17",
            nationality="NG",
        ),
        case(case_type="victim-id", direction="received", outcome="refused", nationality="RO"),
        case(),  # an MLA request is no follow-up
    ]
    for table in (BY_SEX, BY_AGE, BY_NATIONALITY):
        values = true_values(table, follow_ups, PEERS, 90, COUNTRIES)
        assert table.sensitivity(90) == 1
        assert sum(values.values()) == 2
    assert true_values(BY_SEX, follow_ups, PEERS, 90)[("sent", "disclosed", "female")] == 1
    assert true_values(BY_AGE, follow_ups, PEERS, 90)[("sent", "disclosed", "9--17")] == 1
    by_nationality = true_values(BY_NATIONALITY, follow_ups, PEERS, 90, COUNTRIES)
    # The cells come from the directory's countries, fixed before the data: a nationality
    # outside them counts as "other".
    assert [c[2] for c in by_nationality][:5] == ["FR", "GB", "NG", "other", "not_recorded"]
    assert by_nationality[("sent", "disclosed", "NG")] == 1
    assert by_nationality[("received", "not_disclosed", "other")] == 1
    assert len(by_nationality) == 2 * 2 * (len(COUNTRIES) + 2)


def test_the_federation_csv_has_a_column_for_every_dimension_even_when_all_is_suppressed() -> None:
    plans = rel.plan((BY_NATIONALITY, BY_SEX), 1.0, 90)
    params = rel.Parameters(
        "GB-NCA", rel.Period.parse("2026-01-01", "2026-06-30"), 1.0, 11, 90, "opendp"
    )
    released = {BY_NATIONALITY.name: {("sent", "disclosed", "FR"): 12}, BY_SEX.name: {}}
    doc = rel.document("r", params, plans, released, PEERS, COUNTRIES)
    assert rel.validate(json.loads(rel.canonical(doc)), "GB-NCA")
    header = federation_csv(combine([doc])).splitlines()[0].split(",")
    assert {"direction", "disclosure", "gender", "citizenship"} <= set(header)
    assert "sex" not in header


# -- what a hostile peer's release cannot do (security review F1-F3) ------------------


def _peer_doc(agency: str, peers: int, tag: str) -> dict[str, Any]:
    """A release with the largest peer and nationality dimensions allowed (as many agency
    ids as a release may list, every ISO country), nothing released: the most cells a
    peer can make every agency's combine account for."""
    tables = [BY_PEER, TABLES_BY_NAME["victim_id_follow_ups_by_nationality"]]
    plans = rel.plan(tables, 1.0, 90)
    params = rel.Parameters(
        agency, rel.Period.parse("2026-01-01", "2026-06-30"), 1.0, 11, 90, "opendp"
    )
    values = [f"{tag}-P{i}" for i in range(peers)]
    released: dict[str, dict[tuple[str, ...], int]] = {t.name: {} for t in tables}
    doc = rel.document(f"r-{agency}", params, plans, released, values, ISO_COUNTRIES)
    return json.loads(rel.canonical(doc))  # type: ignore[no-any-return]


def test_combining_the_largest_releases_counts_what_is_suppressed_without_listing_it() -> None:
    # 998 peers (+ "other"), different in each of four agencies; every country (+ 2).
    docs = [_peer_doc(a, 998, a[:2]) for a in ("GB-NCA", "FR-OCRTEH", "NG-NAPTIP", "XX-ONE")]
    for d in docs:
        assert rel.validate(d, d["agency"]) == d
    table = combine(docs)
    by_peer = 2 * len(rel.DOMAINS["case_type"]) * (4 * 998 + 1)  # "other" is shared
    assert table["suppressed"] == {
        "cases_by_peer": by_peer,
        "victim_id_follow_ups_by_nationality": 2 * 2 * (len(ISO_COUNTRIES) + 2),
    }
    assert table["cells"] == []
    assert len(rel.canonical(table)) < 5_000


def test_a_release_larger_than_the_bounds_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _peer_doc("FR-OCRTEH", 998, "FR")  # 5994 + 1008 cells
    monkeypatch.setattr(rel, "MAX_DOMAIN_PER_RELEASE", 7_000)
    with pytest.raises(rel.InvalidFieldError, match="or 7000 in a release"):
        rel.validate(doc, "FR-OCRTEH")
    monkeypatch.setattr(rel, "MAX_DOMAIN_PER_TABLE", 1_000)
    with pytest.raises(rel.InvalidFieldError, match="more than 1000 cells in a table"):
        rel.validate(doc, "FR-OCRTEH")


def _refused(change: Callable[[dict[str, Any]], object], problem: str) -> None:
    doc: dict[str, Any] = json.loads(rel.canonical(_doc("FR-OCRTEH", 14)))
    change(doc)
    with pytest.raises(rel.InvalidFieldError, match=problem) as e:
        rel.validate(doc, "FR-OCRTEH")
    assert str(e.value).count(". ") == 0
    assert str(e.value).endswith(".")


def test_numbers_out_of_range_are_refused() -> None:
    table = lambda d: d["tables"][0]  # noqa: E731
    cell = lambda d: d["tables"][0]["cells"][0]  # noqa: E731
    _refused(lambda d: table(d).update(noise_sd=1e200), "noise_sd: a number above 0")
    _refused(lambda d: table(d).update(noise_sd=1e154), "noise_sd: a number above 0")
    _refused(lambda d: table(d).update(epsilon=0), "epsilon: a number above 0")
    _refused(lambda d: d["privacy"].update(epsilon=2e6), "privacy.epsilon: a number above 0")
    _refused(lambda d: cell(d).update(value=-5), "an integer from 0")
    _refused(lambda d: cell(d).update(value=10**12 + 1), "an integer from 0")
    _refused(lambda d: cell(d).update(peer=["FR-OCRTEH"]), "outside its dimension")


def test_combining_refuses_noise_that_does_not_square_to_a_finite_number() -> None:
    a, b = _doc("GB-NCA", 14), _doc("FR-OCRTEH", 20)
    b["tables"][0]["noise_sd"] = 1e200  # type: ignore[index]
    with pytest.raises(rel.InvalidFieldError, match="noise sd out of range"):
        combine([a, b])


def test_only_the_tables_and_dimensions_this_software_defines_are_taken() -> None:
    table = lambda d: d["tables"][0]  # noqa: E731
    dims = lambda d: d["tables"][0]["dimensions"]  # noqa: E731
    _refused(lambda d: table(d).update(name="made_up"), "not a table this node knows")
    _refused(lambda d: table(d).update(measure="sum_days"), "count expected")
    # A dimension named like a key of the combined cells cannot take another's place.
    for reserved in ("table", "measure", "value"):
        _refused(lambda d, r=reserved: dims(d)[2].update(name=r), "peer and its values")
    _refused(lambda d: dims(d)[0]["values"].append("other_type"), "not the values of case_type")
    _refused(lambda d: dims(d)[2]["values"].append("NG-NAPTIP"), "not the values of peer")
    _refused(lambda d: d["tables"][0]["cells"].append(d["tables"][0]["cells"][0]), "twice")


# -- what a peer's dimension values may be, and what a CSV export of them shows --------

HOSTILE = '\x1b]0;pwned\x07\x1b[2J=HYPERLINK("http://x")'


def _nationality_doc() -> dict[str, Any]:
    plans = rel.plan((BY_NATIONALITY,), 1.0, 90)
    params = rel.Parameters(
        "FR-OCRTEH", rel.Period.parse("2026-01-01", "2026-06-30"), 1.0, 11, 90, "opendp"
    )
    released: dict[str, dict[tuple[str, ...], int]] = {
        BY_NATIONALITY.name: {("sent", "disclosed", "NG"): 12}
    }
    doc = rel.document("r", params, plans, released, PEERS, COUNTRIES)
    return json.loads(rel.canonical(doc))  # type: ignore[no-any-return]


def _renamed(doc: dict[str, Any], dimension: str, old: str, new: str) -> dict[str, Any]:
    """`doc` with one value of `dimension` renamed everywhere: a well-formed release."""
    t = doc["tables"][0]
    d = next(d for d in t["dimensions"] if d["name"] == dimension)
    d["values"] = [new if v == old else v for v in d["values"]]
    for c in t["cells"]:
        if c[dimension] == old:
            c[dimension] = new
    return doc


@pytest.mark.parametrize("value", [HOSTILE, "=1+1", "ng", "NGA", "N\u202eG", "unknown", ""])
def test_a_nationality_other_than_a_country_code_is_refused(value: str) -> None:
    good = _nationality_doc()
    assert rel.validate(good, "FR-OCRTEH") == good
    doc = _renamed(_nationality_doc(), "nationality", "NG", value)
    with pytest.raises(InvalidFieldError, match=r"dimensions\[2\]\.values") as e:
        rel.validate(doc, "FR-OCRTEH")
    assert str(e.value).count(". ") == 0
    assert str(e.value).endswith(".")


@pytest.mark.parametrize(
    "value", [HOSTILE, "=HYPERLINK(1)", "fr-ocrteh", "FR", "FR-", "FR-OCR\x1bTEH", "FR-\u202e"]
)
def test_a_peer_other_than_an_agency_id_is_refused(value: str) -> None:
    doc = _renamed(json.loads(rel.canonical(_doc("FR-OCRTEH", 14))), "peer", "FR-OCRTEH", value)
    with pytest.raises(InvalidFieldError, match="peer takes agency ids") as e:
        rel.validate(doc, "FR-OCRTEH")
    assert str(e.value).count(". ") == 0


def test_the_values_a_release_of_this_software_gives_are_taken() -> None:
    doc = _renamed(_nationality_doc(), "nationality", "NG", "XK")  # Kosovo, user-assigned
    assert rel.validate(doc, "FR-OCRTEH") == doc
    # a directory may list a code outside ISO 3166-1 (an EU agency): its releases are taken
    eu = _renamed(_nationality_doc(), "nationality", "NG", "EU")
    assert rel.validate(eu, "FR-OCRTEH") == eu
    for value in ("other", "not_recorded"):
        assert value in doc["tables"][0]["dimensions"][2]["values"]
    by_peer = json.loads(rel.canonical(_doc("FR-OCRTEH", 14)))
    assert "other" in by_peer["tables"][0]["dimensions"][2]["values"]
    assert rel.validate(by_peer, "FR-OCRTEH") == by_peer


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_the_csv_exports_never_carry_a_formula_or_a_control_character(start: str) -> None:
    # A release held from before its values were checked (release.validate refuses it now).
    doc = _renamed(_nationality_doc(), "nationality", "NG", start + HOSTILE)
    for text in (release_csv(doc), federation_csv(combine([doc]))):
        [row] = list(csv.DictReader(io.StringIO(text)))
        cell = row["citizenship"]
        # A formula start is kept behind a quote; a tab or CR shows as its escape.
        assert cell.startswith({"\t": "\\t", "\r": "\\r"}.get(start, "'" + start))
        assert not [c for c in text if not c.isprintable() and c != "\n"]
        assert "\\x1b]0;pwned\\x07\\x1b[2J" in cell
        assert row["value"] == "12"


def test_a_csv_cell_keeps_numbers_and_plain_text_as_they_are() -> None:
    assert csv_cell(12) == 12
    assert csv_cell(0.5) == 0.5
    assert csv_cell("GB-NCA") == "GB-NCA"
    assert csv_cell("18--20") == "18--20"
    assert csv_cell("a\u202eb\U000e0041") == "a\\u202eb\\U000e0041"
