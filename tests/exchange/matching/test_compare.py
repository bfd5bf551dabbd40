"""The holder's grade of the person a follow-up seeks against the record behind its
reference (issue 14, privacy hole 2): matches, weak, or does not match."""

from __future__ import annotations

import pytest

from exchange.matching.compare import Agreement, agreement
from exchange.matching.records import PartialDate, VictimQuery, VictimRecord

BLESSING = VictimRecord(
    "NG-V-0001", "Blessing", "Okonkwo", "F", PartialDate(1999, 4, 12), "NGA", "Benin City"
)
OLENA = VictimRecord("NG-V-0002", "Олена", "Шевченко", "F", PartialDate(2001, 11, 3), "UKR")


@pytest.mark.parametrize(
    ("sought", "record"),
    [
        (VictimQuery("Blessing", "Okonkwo", "F", PartialDate(1999, 4, 12)), BLESSING),
        # Given and family name swapped, no sex: what an officer often types.
        (VictimQuery("Okonkwo", "Blessing", "", PartialDate(1999, 4, 12)), BLESSING),
        # Another script, the date exact.
        (VictimQuery("Olena", "Shevchenko", "", PartialDate(2001, 11, 3)), OLENA),
        (BLESSING.query(), BLESSING),
    ],
)
def test_the_person_a_hit_was_found_for_matches(sought: VictimQuery, record: VictimRecord) -> None:
    assert agreement(sought, record) is Agreement.MATCHES


def test_a_birth_year_alone_is_weak_whatever_the_queriers_policy() -> None:
    # The querier's node may count the whole name on the year alone as a possible hit;
    # the holder cannot see that policy, so such an honest follow-up is weak, not a mismatch.
    sought = VictimQuery("Blessing", "Okonkwo", "F", PartialDate(1999))
    assert agreement(sought, BLESSING) is Agreement.WEAK


@pytest.mark.parametrize(
    "sought",
    [
        # Somebody else entirely.
        VictimQuery("Maria", "Gonzalez", "F", PartialDate(1980, 1, 1), "ESP"),
        # A twin sister: same family name, same date, another given name.
        VictimQuery("Chioma", "Okonkwo", "F", PartialDate(1999, 4, 12), "NGA"),
        # The person of another record of the same holder.
        OLENA.query(),
        # Too little to grade: one name and no date of birth.
        VictimQuery("Blessing", "", "F"),
    ],
)
def test_a_reference_for_another_record_does_not_match(sought: VictimQuery) -> None:
    assert agreement(sought, BLESSING) is Agreement.DOES_NOT_MATCH


def test_the_grade_is_what_the_querier_could_have_been_told() -> None:
    # Each record agrees with itself and with nobody else of the holder's.
    records = [BLESSING, OLENA]
    grades = {(q.ref, r.ref): agreement(q.query(), r) for q in records for r in records}
    assert grades == {
        ("NG-V-0001", "NG-V-0001"): Agreement.MATCHES,
        ("NG-V-0001", "NG-V-0002"): Agreement.DOES_NOT_MATCH,
        ("NG-V-0002", "NG-V-0001"): Agreement.DOES_NOT_MATCH,
        ("NG-V-0002", "NG-V-0002"): Agreement.MATCHES,
    }
    assert Agreement.DOES_NOT_MATCH.words == "does not match"
