"""Victim records and queries: CSV rows in, validated typed objects or a located error out."""

from __future__ import annotations

import pytest

from exchange.errors import InvalidFieldError, MalformedError
from exchange.matching.records import (
    QUERY_COLUMNS,
    RECORD_COLUMNS,
    PartialDate,
    VictimQuery,
    VictimRecord,
    parse_csv_row,
    parse_query_row,
)


def row(**changes: str) -> dict[str, str]:
    base = {
        "ref": "NG-V-0001",
        "given_name": "Blessing",
        "family_name": "Okonkwo",
        "sex": "F",
        "date_of_birth": "1999-04-12",
        "nationality": "NGA",
        "place_of_birth": "Benin City",
    }
    return base | changes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1999-04-12", PartialDate(1999, 4, 12)),
        ("1999-04", PartialDate(1999, 4)),
        ("1999", PartialDate(1999)),
        ("", None),
        ("  2000-02-29 ", PartialDate(2000, 2, 29)),
    ],
)
def test_partial_dates_parse(text: str, expected: PartialDate | None) -> None:
    assert PartialDate.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["1999-02-29", "1999-13", "1999-00-10", "99", "1999/04/12", "1850"]
)
def test_impossible_dates_are_refused(text: str) -> None:
    with pytest.raises(InvalidFieldError):
        PartialDate.parse(text)


def test_partial_dates_print_as_they_parse() -> None:
    for text in ("1999-04-12", "1999-04", "1999"):
        assert str(PartialDate.parse(text)) == text


def test_a_day_needs_a_month() -> None:
    with pytest.raises(InvalidFieldError, match="month"):
        PartialDate(1999, None, 3)


def test_a_row_becomes_a_normalised_record() -> None:
    record = parse_csv_row(row(sex="f", nationality="ng", given_name=" Blessing "), 2)
    assert record == VictimRecord(
        "NG-V-0001", "Blessing", "Okonkwo", "F", PartialDate(1999, 4, 12), "NGA", "Benin City"
    )
    assert record.query() == VictimQuery(
        "Blessing", "Okonkwo", "F", PartialDate(1999, 4, 12), "NGA", "Benin City"
    )


def test_names_in_any_script_and_empty_optional_fields_are_accepted() -> None:
    record = parse_csv_row(
        row(given_name="Олена", family_name="", sex="", date_of_birth="", nationality=""), 3
    )
    assert (record.given_name, record.sex, record.date_of_birth) == ("Олена", "", None)


@pytest.mark.parametrize(
    ("changes", "column"),
    [
        ({"ref": ""}, "ref"),
        ({"ref": " padded"}, "ref"),
        ({"given_name": "", "family_name": "  "}, "family_name"),
        ({"sex": "female"}, "sex"),
        ({"date_of_birth": "12/04/1999"}, "date_of_birth"),
        ({"nationality": "XY"}, "nationality"),
        ({"nationality": "NIGERIA"}, "nationality"),
        ({"given_name": "A" * 201}, "given_name"),
        ({"place_of_birth": "Benin\nCity"}, "place_of_birth"),
    ],
)
def test_errors_name_the_line_and_the_column(changes: dict[str, str], column: str) -> None:
    with pytest.raises(InvalidFieldError, match=f"^Line 7, column {column}: ") as err:
        parse_csv_row(row(**changes), 7)
    assert err.value.status == "INVALID_ARGUMENT"
    assert err.value.message.endswith(".")


def test_unknown_and_missing_columns_are_malformed() -> None:
    with pytest.raises(MalformedError, match="Line 4: column 'dob'"):
        parse_csv_row(row(dob="1999"), 4)
    missing = row()
    del missing["sex"]
    with pytest.raises(MalformedError, match="Line 4: column sex is missing"):
        parse_csv_row(missing, 4)


def test_iso_alpha2_and_alpha3_and_travel_document_codes() -> None:
    assert parse_csv_row(row(nationality="ua"), 1).nationality == "UKR"
    assert parse_csv_row(row(nationality="xk"), 1).nationality == "XKX"
    assert parse_csv_row(row(nationality="xxa"), 1).nationality == "XXA"


def test_query_rows_take_the_same_columns_without_ref() -> None:
    assert ("ref", *QUERY_COLUMNS) == RECORD_COLUMNS
    query = parse_query_row({c: v for c, v in row().items() if c != "ref"}, 1)
    assert query == VictimQuery(
        "Blessing", "Okonkwo", "F", PartialDate(1999, 4, 12), "NGA", "Benin City"
    )
    labelled = parse_query_row(row(), 1)  # a batch file's own label column is allowed
    assert labelled == query
    with pytest.raises(InvalidFieldError, match="Line 9, column sex"):
        parse_query_row(row(sex="?"), 9)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(InvalidFieldError, match="Column sex"):
        VictimQuery("Ana", "Pop", sex="f")
    with pytest.raises(InvalidFieldError, match="Column ref"):
        VictimRecord("", "Ana", "Pop")
    with pytest.raises(InvalidFieldError, match="Column nationality"):
        VictimRecord("R1", "Ana", "Pop", nationality="RO")  # objects hold alpha-3 only
