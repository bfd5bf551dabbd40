"""The plain facts a release is computed from: one per privacy unit.

A unit is one case (`CaseFact`) or one person asked about in a victim-identification
query (`QueryFact`). Facts carry categories and whole days only, never names or content.
"""

from __future__ import annotations

from dataclasses import dataclass

from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.forms.vocab import OFFENCE_CATEGORIES as OFFENCE_VOCAB

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
