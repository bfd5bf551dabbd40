"""The tables of a release: their dimensions, their cells, and true values from facts.

Every table's cells are fixed before any data is read: the product of its dimensions'
values (the peer dimension takes the directory's other agencies, plus "other" for an
agency no longer listed; the nationality dimension the ISO alpha-2 countries of the
directory's agencies, plus "other" and "not_recorded"). A cell no fact falls in is 0 and
gets noise like any other, so which cells exist says nothing about the data. A unit (one
case or one person asked about) falls in at most one cell of each table: a count table's
L1 sensitivity is 1, a sum table's is its clamp bound (durations are clamped to
`clamp_days` before summing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product

from exchange.stats.facts import (
    AGE_BANDS,
    CASE_TYPES,
    CLOCK_RESULTS,
    DIRECTIONS,
    DISCLOSURES,
    NOT_RECORDED,
    OFFENCE_CATEGORIES,
    OTHER_COUNTRY,
    OUTCOMES,
    QUERY_RESULTS,
    REFUSAL_GROUNDS,
    SEXES,
    URGENCIES,
    CaseFact,
    QueryFact,
)

Cell = tuple[str, ...]
Fact = CaseFact | QueryFact
OTHER_PEER = "other"

# The values of every dimension but `peer`, which the directory gives.
DOMAINS: Mapping[str, tuple[str, ...]] = {
    "case_type": CASE_TYPES,
    "direction": DIRECTIONS,
    "urgency": URGENCIES,
    "outcome": OUTCOMES,
    "offence_category": OFFENCE_CATEGORIES,
    "refusal_ground": REFUSAL_GROUNDS,
    "disclosure": DISCLOSURES,
    "clock": CLOCK_RESULTS,
    "result": QUERY_RESULTS,
    "sex": SEXES,
    "age_band": AGE_BANDS,
}
COUNT = "count"
SUM_DAYS = "sum_days"


@dataclass(frozen=True)
class TableDef:
    """One table: which unit it counts, its dimensions and how a fact maps to a cell.

    `cell` gives the fact's cell, or None when the fact is not in this table. A sum
    table adds `days` (clamped) per fact and names the count table over the same cells
    whose noisy count decides its suppression (`count_table`).
    """

    name: str
    title: str
    unit: str  # "case" or "query"
    dimensions: tuple[str, ...]
    cell: Callable[[Fact], Cell | None]
    measure: str = COUNT
    days: Callable[[Fact], int | None] | None = field(default=None, compare=False)
    count_table: str = ""

    def sensitivity(self, clamp_days: int) -> int:
        """How much one unit can change this table, summed over its cells (L1)."""
        return clamp_days if self.measure == SUM_DAYS else 1

    def domain(self, peers: Sequence[str], countries: Sequence[str] = ()) -> list[Cell]:
        """Every cell of the table, in a fixed order."""
        return [
            tuple(c) for c in product(*(values_of(d, peers, countries) for d in self.dimensions))
        ]


def values_of(
    dimension: str, peers: Sequence[str], countries: Sequence[str] = ()
) -> tuple[str, ...]:
    """A dimension's values: fixed, or from the directory (peers, their countries)."""
    if dimension == "peer":
        return (*sorted(peers), OTHER_PEER)
    if dimension == "nationality":
        return (*sorted(set(countries)), OTHER_COUNTRY, NOT_RECORDED)
    return DOMAINS[dimension]


def _case(fn: Callable[[CaseFact], Cell | None]) -> Callable[[Fact], Cell | None]:
    return lambda f: fn(f) if isinstance(f, CaseFact) else None


def _query(fn: Callable[[QueryFact], Cell | None]) -> Callable[[Fact], Cell | None]:
    return lambda f: fn(f) if isinstance(f, QueryFact) else None


def _clock_cell(f: CaseFact, on_time: bool | None) -> Cell | None:
    if on_time is None:
        return None
    return (f.direction, f.urgency, CLOCK_RESULTS[0 if on_time else 1])


def _ack_days(f: Fact) -> int | None:
    return f.ack_days if isinstance(f, CaseFact) else None


def _execution_days(f: Fact) -> int | None:
    return f.execution_days if isinstance(f, CaseFact) else None


def _follow_up(value: Callable[[CaseFact], str]) -> Callable[[Fact], Cell | None]:
    """A follow-up's cell: direction, whether the identity was disclosed, `value`."""

    def cell(f: CaseFact) -> Cell | None:
        if f.case_type != "victim-id":
            return None
        return (f.direction, DISCLOSURES[0 if f.outcome == "executed" else 1], value(f))

    return _case(cell)


_TYPE_DIR_URG = ("case_type", "direction", "urgency")

TABLES: tuple[TableDef, ...] = (
    TableDef(
        "cases_by_peer",
        "Requests sent and received, by type and peer agency",
        "case",
        ("case_type", "direction", "peer"),
        _case(lambda f: (f.case_type, f.direction, f.peer)),
    ),
    TableDef(
        "cases_by_outcome",
        "Requests by type, urgency and where they stand at the end of the period",
        "case",
        ("case_type", "direction", "urgency", "outcome"),
        _case(lambda f: (f.case_type, f.direction, f.urgency, f.outcome)),
    ),
    TableDef(
        "cases_by_offence",
        "Requests by type and offence category",
        "case",
        ("case_type", "direction", "offence_category"),
        _case(lambda f: (f.case_type, f.direction, f.offence_category)),
    ),
    TableDef(
        "cases_acknowledged",
        "Requests acknowledged",
        "case",
        _TYPE_DIR_URG,
        _case(lambda f: None if f.ack_days is None else (f.case_type, f.direction, f.urgency)),
    ),
    TableDef(
        "days_to_acknowledgement",
        "Days from submission to acknowledgement, summed (each clamped)",
        "case",
        _TYPE_DIR_URG,
        _case(lambda f: None if f.ack_days is None else (f.case_type, f.direction, f.urgency)),
        SUM_DAYS,
        _ack_days,
        "cases_acknowledged",
    ),
    TableDef(
        "cases_executed",
        "Requests executed in full",
        "case",
        _TYPE_DIR_URG,
        _case(
            lambda f: None if f.execution_days is None else (f.case_type, f.direction, f.urgency)
        ),
    ),
    TableDef(
        "days_to_execution",
        "Days from submission to execution in full, summed (each clamped)",
        "case",
        _TYPE_DIR_URG,
        _case(
            lambda f: None if f.execution_days is None else (f.case_type, f.direction, f.urgency)
        ),
        SUM_DAYS,
        _execution_days,
        "cases_executed",
    ),
    TableDef(
        "acknowledgement_clock",
        "Acknowledgement legal clock met or missed, by urgency",
        "case",
        ("direction", "urgency", "clock"),
        _case(lambda f: _clock_cell(f, f.ack_on_time)),
    ),
    TableDef(
        "response_clock",
        "Response legal clock (acceptance or refusal) met or missed, by urgency",
        "case",
        ("direction", "urgency", "clock"),
        _case(lambda f: _clock_cell(f, f.response_on_time)),
    ),
    TableDef(
        "victim_id_queries",
        "People asked about in victim-identification queries, by best answer",
        "query",
        ("result",),
        _query(lambda f: (f.result,)),
    ),
    TableDef(
        "victim_id_follow_ups",
        "Victim-identification follow-ups (requests for the identity), by outcome",
        "case",
        ("direction", "outcome"),
        _case(lambda f: (f.direction, f.outcome) if f.case_type == "victim-id" else None),
    ),
    TableDef(
        "cases_refused_by_ground",
        "Requests refused, by type and the first ground the refusal states",
        "case",
        ("case_type", "direction", "refusal_ground"),
        _case(
            lambda f: (
                (f.case_type, f.direction, f.refusal_ground) if f.outcome == "refused" else None
            )
        ),
    ),
    # The person a follow-up seeks, one dimension per table: a case (one person sought)
    # is in one cell of each, so each keeps sensitivity 1.
    TableDef(
        "victim_id_follow_ups_by_sex",
        "Victim-identification follow-ups and disclosures, by the sex of the person sought",
        "case",
        ("direction", "disclosure", "sex"),
        _follow_up(lambda f: f.sex),
    ),
    TableDef(
        "victim_id_follow_ups_by_age",
        "Victim-identification follow-ups and disclosures, by the age band of the person "
        "sought at the end of the period",
        "case",
        ("direction", "disclosure", "age_band"),
        _follow_up(lambda f: f.age_band),
    ),
    TableDef(
        "victim_id_follow_ups_by_nationality",
        "Victim-identification follow-ups and disclosures, by the nationality of the person sought",
        "case",
        ("direction", "disclosure", "nationality"),
        _follow_up(lambda f: f.nationality),
    ),
)
# Needs the sex and age band of the people asked about, which a node does not keep
# (queries are blinded); for agencies that record them beside their queries.
PROFILE_TABLE = TableDef(
    "victim_id_queries_by_profile",
    "People asked about, by best answer, sex and age band",
    "query",
    ("result", "sex", "age_band"),
    _query(lambda f: (f.result, f.sex, f.age_band)),
)
TABLES_BY_NAME: Mapping[str, TableDef] = {t.name: t for t in (*TABLES, PROFILE_TABLE)}


def true_values(
    table: TableDef,
    facts: Iterable[Fact],
    peers: Sequence[str],
    clamp_days: int,
    countries: Sequence[str] = (),
) -> dict[Cell, int]:
    """The table's exact value in every cell of its domain (0 where no fact falls)."""
    cells = table.domain(peers, countries)
    values = dict.fromkeys(cells, 0)
    known_peers = set(peers)
    known_countries = {*countries, NOT_RECORDED}
    peer_at = table.dimensions.index("peer") if "peer" in table.dimensions else -1
    country_at = table.dimensions.index("nationality") if "nationality" in table.dimensions else -1
    for fact in facts:
        cell = table.cell(fact)
        if cell is None:
            continue
        if peer_at >= 0 and cell[peer_at] not in known_peers:
            cell = (*cell[:peer_at], OTHER_PEER, *cell[peer_at + 1 :])
        if country_at >= 0 and cell[country_at] not in known_countries:
            cell = (*cell[:country_at], OTHER_COUNTRY, *cell[country_at + 1 :])
        if cell not in values:
            raise ValueError(f"{table.name}: {cell} is not one of its cells")
        if table.measure == SUM_DAYS:
            assert table.days is not None
            values[cell] += min(max(table.days(fact) or 0, 0), clamp_days)
        else:
            values[cell] += 1
    return values
