"""A release: its plan (scales and epsilons), suppression on noisy values, the canonical
document that states its guarantee, and the yearly budget.

The node draws the noise (OpenDP's discrete Laplace, `node.services.stats`); everything
before and after the draw is here. Suppression looks only at noisy values, so it is
post-processing and costs no privacy; a true count never decides anything released.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from exchange.agency import AGENCY_ID_RE, COUNTRY_RE
from exchange.encoding import CTX_STATS_APPROVAL, pae, sha256
from exchange.errors import ConflictError, InvalidFieldError
from exchange.stats.facts import NOT_RECORDED, OTHER_COUNTRY
from exchange.stats.tables import (
    DOMAINS,
    OTHER_PEER,
    SUM_DAYS,
    TABLES_BY_NAME,
    Cell,
    TableDef,
    values_of,
)

FORMAT = "mlax-statistics/v1"
MECHANISM = "discrete_laplace"
# Budgets are compared with this much slack: OpenDP reports each table's epsilon as a
# float that rounds up, and ten of them must still add up to the configured epsilon.
EPSILON_SLACK = 1e-9
_DAY_MS = 86_400_000


class BudgetExceededError(ConflictError):
    """A release that would spend more epsilon than a year's budget has left
    (FAILED_PRECONDITION: only next year's budget, or a larger one, lets it through)."""


@dataclass(frozen=True)
class Period:
    """The days a release covers, both inclusive, in UTC."""

    start: date
    end: date

    @classmethod
    def parse(cls, start: str, end: str) -> Period:
        try:
            if len(start) != 10 or len(end) != 10:
                raise ValueError
            first, last = date.fromisoformat(start), date.fromisoformat(end)
        except ValueError:
            raise InvalidFieldError(
                f"A period is two dates like 2026-01-01 (got {start[:40]!r} to {end[:40]!r})."
            ) from None
        if last < first:
            raise InvalidFieldError(f"The period ends ({end}) before it starts ({start}).")
        return cls(first, last)

    @property
    def start_ms(self) -> int:
        return (
            int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp())
            * 1000
        )

    @property
    def end_ms(self) -> int:
        """The first millisecond after the period."""
        after = self.end + timedelta(days=1)
        return int(datetime(after.year, after.month, after.day, tzinfo=UTC).timestamp()) * 1000

    def contains(self, at_ms: int) -> bool:
        return self.start_ms <= at_ms < self.end_ms

    @property
    def years(self) -> tuple[int, ...]:
        """The calendar years the period touches: each one's budget pays for a release."""
        return tuple(range(self.start.year, self.end.year + 1))


@dataclass(frozen=True)
class TablePlan:
    """One table's share of a release: its sensitivity, noise scale and epsilon."""

    table: TableDef
    sensitivity: int
    scale: float
    epsilon: float

    @property
    def noise_sd(self) -> float:
        return noise_sd(self.scale)


def noise_sd(scale: float) -> float:
    """Standard deviation of discrete Laplace noise, P(k) proportional to exp(-|k|/scale)."""
    t = math.exp(-1.0 / scale)
    return math.sqrt(2 * t) / (1 - t)


def plan(tables: Sequence[TableDef], epsilon: float, clamp_days: int) -> list[TablePlan]:
    """Split `epsilon` evenly over the tables (basic composition): a table whose one unit
    changes it by at most `sensitivity` gets scale sensitivity / (epsilon / n)."""
    if not tables:
        raise InvalidFieldError("A release needs at least one table.")
    if not epsilon > 0:
        raise InvalidFieldError("A release's epsilon must be positive.")
    share = epsilon / len(tables)
    return [
        TablePlan(t, t.sensitivity(clamp_days), t.sensitivity(clamp_days) / share, share)
        for t in tables
    ]


def recipients(members: Sequence[str], coordinators: Sequence[str], own: str) -> list[str]:
    """Where an approved release goes: the statistics coordinators the directory names (a
    regional body, UNODC), else every member; never the releasing agency itself."""
    return sorted({a for a in (coordinators or members) if a != own})


@dataclass(frozen=True)
class Parameters:
    """Everything the guarantee depends on, published with the numbers."""

    agency: str
    period: Period
    epsilon: float
    threshold: int
    clamp_days: int
    library: str


def suppressed(
    plans: Sequence[TablePlan], noisy: Mapping[str, Mapping[Cell, int]], threshold: int
) -> dict[str, dict[Cell, int]]:
    """The cells that are released: a count cell whose NOISY value reaches `threshold`,
    a sum cell whose table's count cell does; negative noisy sums show as 0."""
    out: dict[str, dict[Cell, int]] = {}
    for p in plans:
        if p.table.measure != SUM_DAYS:
            out[p.table.name] = {c: v for c, v in noisy[p.table.name].items() if v >= threshold}
    for p in plans:
        if p.table.measure == SUM_DAYS:
            kept = out.get(p.table.count_table, {})
            out[p.table.name] = {c: max(v, 0) for c, v in noisy[p.table.name].items() if c in kept}
    return out


def document(
    release_id: str,
    params: Parameters,
    plans: Sequence[TablePlan],
    released: Mapping[str, Mapping[Cell, int]],
    peers: Sequence[str],
    countries: Sequence[str] = (),
) -> dict[str, Any]:
    """The release as published: its parameters, and per table its guarantee and cells.

    A cell of a table's domain that is not listed was suppressed. `peers` and `countries`
    (the directory's other agencies and its agencies' countries) give the dimensions the
    directory fixes.
    """
    tables = []
    for p in plans:
        t = p.table
        cells = [
            {**dict(zip(t.dimensions, cell, strict=True)), "value": value}
            for cell, value in sorted(released[t.name].items())
        ]
        tables.append(
            {
                "name": t.name,
                "title": t.title,
                "unit": t.unit,
                "measure": t.measure,
                "dimensions": [
                    {"name": d, "values": list(values_of(d, peers, countries))}
                    for d in t.dimensions
                ],
                "sensitivity": p.sensitivity,
                "scale": p.scale,
                "epsilon": p.epsilon,
                "noise_sd": round(p.noise_sd, 6),
                "suppressed_with": t.count_table or t.name,
                "cells": cells,
            }
        )
    return {
        "format": FORMAT,
        "release_id": release_id,
        "agency": params.agency,
        "period": {"start": params.period.start.isoformat(), "end": params.period.end.isoformat()},
        "privacy": {
            "definition": "pure epsilon-differential privacy",
            "unit": "one case (sent or received) or one person asked about in a query",
            "mechanism": MECHANISM,
            "library": params.library,
            "epsilon": params.epsilon,
            "composition": "basic: the tables' epsilons add up to the release's",
            "threshold": params.threshold,
            "suppression": "a cell whose noisy count is below the threshold is left out",
            "clamp_days": params.clamp_days,
        },
        "tables": tables,
    }


def approval_message(release_id: str, digest: bytes, supervisor: str, at_ms: int) -> bytes:
    """What a supervisor signs to approve a release (four-eyes); the node checks it."""
    return pae(
        CTX_STATS_APPROVAL,
        release_id.encode(),
        digest,
        supervisor.encode(),
        at_ms.to_bytes(8, "big", signed=True),
    )


def canonical(doc: Mapping[str, Any]) -> bytes:
    """The exact bytes a supervisor approves and a peer receives: sorted keys, no spaces."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(doc: Mapping[str, Any]) -> bytes:
    return sha256(canonical(doc))


def charge(
    spent: Mapping[int, float], years: Sequence[int], epsilon: float, budget: float
) -> dict[int, float]:
    """Each year's spending after a release of `epsilon` over a period touching `years`,
    or a refusal naming the year and by how much it would go over."""
    after = dict(spent)
    for year in years:
        total = spent.get(year, 0.0) + epsilon
        if total > budget + EPSILON_SLACK:
            raise BudgetExceededError(
                f"A release of epsilon {epsilon:g} would bring {year}'s spending to "
                f"{total:g}, over its budget of {budget:g} by {total - budget:g}."
            )
        after[year] = total
    return after


# What a peer's release may hold: anything larger or stranger is refused on arrival, so
# combining releases does bounded work on well-formed documents only. A release's tables
# and dimensions are the ones this software defines (tables.TABLES_BY_NAME): a table or
# dimension this node does not know is refused, since the release was approved as a whole
# and its numbers could not be read (nor combined) without knowing what they count.
MAX_TABLES = 64
MAX_VALUES = 1000
# A table's domain (the product of its dimensions' sizes) and all tables' domains summed:
# the largest real table (cases by peer, 1000 agencies) has about 10,000 cells.
MAX_DOMAIN_PER_TABLE = 100_000
MAX_DOMAIN_PER_RELEASE = 200_000
MAX_CELLS_PER_RELEASE = 100_000
# Epsilon, scale and noise sd lie in (0, MAX_PARAMETER]; a cell value or threshold in
# [0, MAX_VALUE]: sums of them over any federation stay exact and finite.
MAX_PARAMETER = 1e6
MAX_VALUE = 10**12
_TEXT = 200


def _text(value: object, what: str, limit: int = _TEXT) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidFieldError(f"Release field {what}: text of 1 to {limit} characters.")
    return value


def _number(value: object, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_PARAMETER
    ):
        raise InvalidFieldError(
            f"Release field {what}: a number above 0 and at most {MAX_PARAMETER:g}."
        )
    return float(value)


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VALUE:
        raise InvalidFieldError(f"Release field {what}: an integer from 0 to {MAX_VALUE}.")
    return value


# The values a peer's release may give the dimensions whose values come from its
# directory (`tables.values_of`): country codes as the directory writes them (two capital
# letters, `exchange.agency.COUNTRY_RE`: a directory may list a country code outside
# ISO 3166-1, and its agencies' releases must still be accepted everywhere) and agency
# ids, each with the fixed values beside them. Anything else (an escape sequence, a
# spreadsheet formula) is refused before it can reach a terminal, a CSV or the console.
_NATIONALITY_VALUES = frozenset({OTHER_COUNTRY, NOT_RECORDED})


def _directory_value(dimension: str, value: str) -> bool:
    if dimension == "nationality":
        return value in _NATIONALITY_VALUES or COUNTRY_RE.fullmatch(value) is not None
    if dimension == "peer":
        return value == OTHER_PEER or AGENCY_ID_RE.fullmatch(value) is not None
    return True


def validate(doc: object, sender: str) -> Mapping[str, Any]:
    """A peer's release as received, if it is a well-formed, bounded document of
    `sender` whose tables and dimensions this software defines; else the first problem,
    in one sentence."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InvalidFieldError(f"A statistics release is a JSON object of format {FORMAT}.")
    _text(doc.get("release_id"), "release_id", 36)
    if doc.get("agency") != sender:
        raise InvalidFieldError(f"Release field agency: a release of {sender} names another.")
    period = doc.get("period")
    if not isinstance(period, dict):
        raise InvalidFieldError("Release field period: an object with start and end.")
    Period.parse(
        _text(period.get("start"), "period.start", 10), _text(period.get("end"), "period.end", 10)
    )
    privacy = doc.get("privacy")
    if not isinstance(privacy, dict):
        raise InvalidFieldError("Release field privacy: an object.")
    _number(privacy.get("epsilon"), "privacy.epsilon")
    _integer(privacy.get("threshold"), "privacy.threshold")
    tables = doc.get("tables")
    if not isinstance(tables, list) or len(tables) > MAX_TABLES:
        raise InvalidFieldError(f"Release field tables: a list of at most {MAX_TABLES}.")
    names = set()
    domain_total = cell_total = 0
    for i, t in enumerate(tables):
        where = f"tables[{i}]"
        if not isinstance(t, dict):
            raise InvalidFieldError(f"Release field {where}: an object.")
        name = _text(t.get("name"), f"{where}.name", 64)
        known = TABLES_BY_NAME.get(name)
        if known is None:
            raise InvalidFieldError(f"Release field {where}.name: not a table this node knows.")
        names.add(name)
        if t.get("measure") != known.measure:
            raise InvalidFieldError(f"Release field {where}.measure: {known.measure} expected.")
        for key in ("scale", "epsilon", "noise_sd"):
            _number(t.get(key), f"{where}.{key}")
        dims = t.get("dimensions")
        if not isinstance(dims, list) or len(dims) != len(known.dimensions):
            raise InvalidFieldError(
                f"Release field {where}.dimensions: {', '.join(known.dimensions)}."
            )
        domain: dict[str, set[str]] = {}
        size = 1
        for j, (d, expected) in enumerate(zip(dims, known.dimensions, strict=True)):
            if (
                not isinstance(d, dict)
                or d.get("name") != expected
                or not isinstance(d.get("values"), list)
            ):
                raise InvalidFieldError(
                    f"Release field {where}.dimensions[{j}]: {expected} and its values."
                )
            values = d["values"]
            if not 0 < len(values) <= MAX_VALUES:
                raise InvalidFieldError(
                    f"Release field {where}.dimensions[{j}].values: 1 to {MAX_VALUES} values."
                )
            vs = {_text(v, f"{where}.dimensions[{j}].values", 64) for v in values}
            if len(vs) != len(values) or (expected in DOMAINS and vs != set(DOMAINS[expected])):
                raise InvalidFieldError(
                    f"Release field {where}.dimensions[{j}].values: not the values of {expected}."
                )
            if not all(_directory_value(expected, v) for v in vs):
                raise InvalidFieldError(
                    f"Release field {where}.dimensions[{j}].values: {expected} takes "
                    + (
                        "country codes (two capital letters), other and not_recorded only."
                        if expected == "nationality"
                        else "agency ids (CC-NAME) and other only."
                    )
                )
            domain[expected] = vs
            size *= len(values)
        domain_total += size
        if size > MAX_DOMAIN_PER_TABLE or domain_total > MAX_DOMAIN_PER_RELEASE:
            raise InvalidFieldError(
                f"Release field {where}: more than {MAX_DOMAIN_PER_TABLE} cells in a table or "
                f"{MAX_DOMAIN_PER_RELEASE} in a release."
            )
        cells = t.get("cells")
        if not isinstance(cells, list) or len(cells) > size:
            raise InvalidFieldError(f"Release field {where}.cells: at most one per cell.")
        cell_total += len(cells)
        if cell_total > MAX_CELLS_PER_RELEASE:
            raise InvalidFieldError(
                f"Release field tables: more than {MAX_CELLS_PER_RELEASE} cells released."
            )
        seen: set[tuple[str, ...]] = set()
        for k, c in enumerate(cells):
            if not isinstance(c, dict) or set(c) != {*domain, "value"}:
                raise InvalidFieldError(
                    f"Release field {where}.cells[{k}]: its dimensions and value."
                )
            if any(not isinstance(c[n], str) or c[n] not in vs for n, vs in domain.items()):
                raise InvalidFieldError(
                    f"Release field {where}.cells[{k}]: a value outside its dimension."
                )
            place = tuple(c[n] for n in known.dimensions)
            if place in seen:
                raise InvalidFieldError(f"Release field {where}.cells[{k}]: a cell listed twice.")
            seen.add(place)
            _integer(c["value"], f"{where}.cells[{k}].value")
    if len(names) != len(tables):
        raise InvalidFieldError("Release field tables: two tables share a name.")
    return doc
