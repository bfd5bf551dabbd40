"""The plain facts a release is computed from: one per privacy unit.

A unit is one case (`CaseFact`) or one person asked about in a victim-identification
query (`QueryFact`). Facts carry categories and whole days only, never names or content:
a follow-up's person sought becomes a sex, an age band and a nationality here, and
nothing else of them is kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.errors import InvalidFieldError
from exchange.forms.requests import victim_sought
from exchange.forms.vocab import OFFENCE_CATEGORIES as OFFENCE_VOCAB
from exchange.forms.vocab import REFUSAL_GROUNDS as REFUSAL_VOCAB
from exchange.matching.records import ALPHA2_TO_ALPHA3, PartialDate

CASE_TYPES = ("mla", "extradition", "victim-id")
DIRECTIONS = ("sent", "received")
URGENCIES = ("emergency", "urgent", "ordinary")
# Where a case stands at the end of the period.
OUTCOMES = ("open", "executed", "partially_executed", "refused", "withdrawn", "closed")
# An offence's optional `category` in the forms (exchange.forms.vocab.OFFENCE_CATEGORIES,
# slugs with "_"); a case whose form records none (or was purged) is "not_recorded".
OFFENCE_CATEGORIES = (
    "trafficking_sexual_exploitation",
    "trafficking_forced_labour",
    "trafficking_other",
    "forced_labour",
    "smuggling",
    "other",
    "not_recorded",
)
# A refusal's grounds in the forms (exchange.forms.vocab.REFUSAL_GROUNDS, slugs with "_"):
# a refused case counts under the first ground its refusal states; one whose step details
# can no longer be read (purged) is "not_recorded".
REFUSAL_GROUNDS = (
    *(t.slug.replace("-", "_") for t in REFUSAL_VOCAB.terms),
    "not_recorded",
)
# Whether a victim-identification follow-up ended with the identity disclosed (the
# holder's report of execution), by where the case stands at the end of the period.
DISCLOSURES = ("disclosed", "not_disclosed")
# The best answer any agency gave for one person asked about.
QUERY_RESULTS = ("hit_strong", "hit_possible", "no_hit", "unmatchable", "not_answered")
SEXES = ("female", "male", "other", "not_recorded")
# CTDC's `ageBroad` bands.
AGE_BANDS = (
    "0--8",
    "9--17",
    "18--20",
    "21--23",
    "24--26",
    "27--29",
    "30--38",
    "39--47",
    "48+",
    "not_recorded",
)
NOT_RECORDED = "not_recorded"
# A nationality outside the countries of the directory's agencies (the nationality
# dimension's values: those countries' ISO 3166 alpha-2 codes, "other", "not_recorded").
OTHER_COUNTRY = "other"
CLOCK_RESULTS = ("met", "missed")


@dataclass(frozen=True)
class CaseFact:
    """One case of this agency, sent or received, opened in the period.

    `ack_days` and `execution_days` are whole days from submission to acknowledgement and
    to (full) execution, None when that has not happened; `*_on_time` whether the legal
    clock was met, None when it has not run out and was not met yet.
    """

    case_type: str
    direction: str
    peer: str
    urgency: str
    outcome: str
    offence_category: str = NOT_RECORDED
    # A refused case: the first ground its refusal states.
    refusal_ground: str = NOT_RECORDED
    # A victim-identification follow-up: the person sought, as categories only.
    sex: str = NOT_RECORDED
    age_band: str = NOT_RECORDED
    nationality: str = NOT_RECORDED
    ack_days: int | None = None
    execution_days: int | None = None
    ack_on_time: bool | None = None
    response_on_time: bool | None = None


@dataclass(frozen=True)
class QueryFact:
    """One person this agency asked the federation about, in the period."""

    result: str
    sex: str = NOT_RECORDED
    age_band: str = NOT_RECORDED
    nationality: str = NOT_RECORDED


def offence_category(form: fpb.CaseForm) -> str:
    """The category of a case: that of the first offence of its form that records one
    (a request lists its principal offence first), else `not_recorded`. A
    victim-identification request has no offences."""
    which = form.WhichOneof("form")
    if which == "mla":
        offences = list(form.mla.offences)
    elif which == "extradition":
        offences = list(form.extradition.offences)
    else:
        offences = []
    for offence in offences:
        term = OFFENCE_VOCAB.term(offence.category)
        if term is not None:
            return term.slug.replace("-", "_")
    return NOT_RECORDED


def refusal_ground(details: fpb.TransitionDetails) -> str:
    """The ground a refusal's details state first (a refusal lists its principal ground
    first), else `not_recorded`."""
    if details.WhichOneof("details") == "refuse":
        for ground in details.refuse.grounds:
            term = REFUSAL_VOCAB.term(ground)
            if term is not None:
                return term.slug.replace("-", "_")
    return NOT_RECORDED


_SEXES = {"F": "female", "M": "male", "X": "other"}
_ALPHA3_TO_ALPHA2 = {a3: a2 for a2, a3 in ALPHA2_TO_ALPHA3.items()}


def age_band(born: PartialDate | None, on: dt.date) -> str:
    """CTDC's `ageBroad` band of someone born on `born` (possibly partial), on day `on`:
    `not_recorded` when the date is unknown, after `on`, or so partial that the person's
    possible ages fall in two bands."""
    if born is None:
        return NOT_RECORDED
    first = dt.date(born.year, born.month or 1, born.day or 1)
    if born.month is None:
        last = dt.date(born.year, 12, 31)
    elif born.day is None:
        next_month = dt.date(born.year + born.month // 12, born.month % 12 + 1, 1)
        last = next_month - dt.timedelta(days=1)
    else:
        last = first
    if first > on:
        return NOT_RECORDED
    bands = {_band(_age(last, on)), _band(_age(first, on))}
    return bands.pop() if len(bands) == 1 else NOT_RECORDED


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _band(age: int) -> str:
    if age < 0:
        return NOT_RECORDED
    for band in AGE_BANDS[:-1]:
        low, _, high = band.partition("--")
        if not high:  # "48+"
            return band
        if int(low) <= age <= int(high):
            return band
    return NOT_RECORDED


def person_sought(
    form: fpb.CaseForm, on: dt.date, countries: Sequence[str]
) -> tuple[str, str, str]:
    """The sex, age band (on day `on`) and nationality of the person a victim-identification
    form seeks, each `not_recorded` when the form does not hold it; a nationality outside
    `countries` (ISO alpha-2) is `other`. A form of another kind, or whose person is not
    a valid match query, records none."""
    if form.WhichOneof("form") != "victim_id" or not form.victim_id.HasField("person"):
        return NOT_RECORDED, NOT_RECORDED, NOT_RECORDED
    try:
        person = victim_sought(form.victim_id.person)
    except InvalidFieldError:
        return NOT_RECORDED, NOT_RECORDED, NOT_RECORDED
    sex = _SEXES.get(person.sex, NOT_RECORDED)
    nationality = NOT_RECORDED
    if person.nationality:
        alpha2 = _ALPHA3_TO_ALPHA2.get(person.nationality, "")
        nationality = alpha2 if alpha2 in countries else OTHER_COUNTRY
    return sex, age_band(person.date_of_birth, on), nationality
