"""CSV and JSON of a release, and the federation table combining several agencies'.

Columns take the Human Trafficking Case Data Standard (HTCDS) / CTDC name where the
field exists there (`COLUMNS`; docs/statistics.md has the table); MLAX's own fields keep
their names. Every row carries the epsilon and the noise's standard deviation of its table.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

from exchange.csv_cells import csv_cell
from exchange.errors import InvalidFieldError
from exchange.stats.release import FORMAT
from exchange.stats.tables import TABLES_BY_NAME

# Our dimension -> the HTCDS/CTDC column of the same meaning.
COLUMNS: Mapping[str, str] = {
    "sex": "gender",
    "age_band": "ageBroad",
    "nationality": "citizenship",
}
DIMENSION_ORDER = (
    "case_type",
    "direction",
    "peer",
    "urgency",
    "outcome",
    "offence_category",
    "refusal_ground",
    "disclosure",
    "clock",
    "result",
    "sex",
    "age_band",
    "nationality",
)


def column(dimension: str) -> str:
    return COLUMNS.get(dimension, dimension)


def _dimensions(tables: Sequence[Mapping[str, Any]]) -> list[str]:
    used = {d["name"] for t in tables for d in t["dimensions"]}
    return [d for d in DIMENSION_ORDER if d in used] + sorted(used - set(DIMENSION_ORDER))


def release_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per released cell, keyed by CSV column name."""
    rows = []
    dims = _dimensions(doc["tables"])
    for t in doc["tables"]:
        for cell in t["cells"]:
            row: dict[str, Any] = {
                "agency": doc["agency"],
                "period_start": doc["period"]["start"],
                "period_end": doc["period"]["end"],
                "table": t["name"],
                "measure": t["measure"],
            }
            row.update({column(d): cell.get(d, "") for d in dims})
            row.update(value=cell["value"], epsilon=t["epsilon"], noise_sd=t["noise_sd"])
            rows.append(row)
    return rows


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=[str(csv_cell(k)) for k in rows[0]], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows({str(csv_cell(k)): csv_cell(v) for k, v in r.items()} for r in rows)
    return out.getvalue()


def release_csv(doc: Mapping[str, Any]) -> str:
    return to_csv(release_rows(doc))


def combine(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The federation table: each cell summed over the agencies that released it.

    Noise adds up: a total's standard deviation is the root of the sum of the
    contributing agencies' variances (`noise_sd`), and each agency's own is listed. A cell
    some agency suppressed is the sum of the others, with `agencies_suppressed` saying how
    many left it out (their true values may be anywhere below the threshold); the cells
    every agency left out are counted per table in `suppressed` (table name -> cells), not
    listed. The work is bounded by the released cells and the tables' dimension sizes, never
    by the product of a table's dimensions (release.validate bounds those too).
    """
    if not docs:
        raise InvalidFieldError("Combining needs at least one release.")
    periods = {(d["period"]["start"], d["period"]["end"]) for d in docs}
    if any(d.get("format") != FORMAT for d in docs):
        raise InvalidFieldError(f"Every release must be of format {FORMAT}.")
    if len(periods) != 1:
        raise InvalidFieldError("Releases of different periods cannot be combined.")
    agencies = [d["agency"] for d in docs]
    if len(set(agencies)) != len(agencies):
        raise InvalidFieldError("Two releases of one agency cannot be combined.")
    cells: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    # Per table: its dimension names and each agency's value sets (its domain).
    domains: dict[str, tuple[tuple[str, ...], list[list[frozenset[str]]]]] = {}
    per_agency = []
    for doc in sorted(docs, key=lambda d: d["agency"]):
        for t in doc["tables"]:
            sd = float(t["noise_sd"])
            var = sd * sd
            if not math.isfinite(var):
                raise InvalidFieldError(f"Release of {doc['agency']}: a noise sd out of range.")
            per_agency.append(
                {
                    "agency": doc["agency"],
                    "table": t["name"],
                    "epsilon": t["epsilon"],
                    "scale": t["scale"],
                    "noise_sd": t["noise_sd"],
                    "threshold": doc["privacy"]["threshold"],
                }
            )
            names = tuple(d["name"] for d in t["dimensions"])
            known = domains.setdefault(t["name"], (names, []))
            if known[0] != names:
                raise InvalidFieldError(f"Releases differ in the dimensions of {t['name']}.")
            known[1].append([frozenset(d["values"]) for d in t["dimensions"]])
            for c in t["cells"]:
                ident = (t["name"], tuple((n, c[n]) for n in names))
                entry = cells.setdefault(
                    ident,
                    {
                        "table": t["name"],
                        "measure": t["measure"],
                        **dict(ident[1]),
                        "value": 0,
                        "agencies_reporting": 0,
                        "agencies_suppressed": 0,
                        "_var": 0.0,
                    },
                )
                entry["value"] += int(c["value"])
                entry["agencies_reporting"] += 1
                entry["_var"] += var
    rows = []
    shown: dict[str, int] = dict.fromkeys(domains, 0)
    for ident in sorted(cells):
        entry = cells[ident]
        key = [v for _, v in ident[1]]
        holding = sum(
            all(v in vs for v, vs in zip(key, dom, strict=True)) for dom in domains[ident[0]][1]
        )
        entry["agencies_suppressed"] = holding - entry["agencies_reporting"]
        sd = math.sqrt(entry.pop("_var"))
        if not math.isfinite(sd):
            raise InvalidFieldError(f"A combined cell of {ident[0]} has a noise out of range.")
        entry["noise_sd"] = round(sd, 6)
        shown[ident[0]] += 1
        rows.append(entry)
    start, end = periods.pop()
    return {
        "format": "mlax-federation-statistics/v1",
        "period": {"start": start, "end": end},
        "agencies": sorted(agencies),
        "cells": rows,
        # Suppressed everywhere: per table, how many cells (no value, no list).
        "suppressed": {
            name: _union_size(doms) - shown[name] for name, (_, doms) in sorted(domains.items())
        },
        "per_agency": per_agency,
    }


def _union_size(domains: Sequence[Sequence[frozenset[str]]]) -> int:
    """How many cells the union of the agencies' domains (each a product of value sets)
    holds, without listing them: the values of each dimension are grouped by which agencies
    have them, and a combination of groups counts when one agency has all of them."""
    groups: list[Counter[int]] = []
    for d in range(len(domains[0])):
        masks: dict[str, int] = {}
        for i, dom in enumerate(domains):
            for v in dom[d]:
                masks[v] = masks.get(v, 0) | 1 << i
        groups.append(Counter(masks.values()))
    total = 0
    for combo in product(*(g.items() for g in groups)):
        mask, size = (1 << len(domains)) - 1, 1
        for m, n in combo:
            mask &= m
            size *= n
        if mask:
            total += size
    return total


def federation_csv(table: Mapping[str, Any]) -> str:
    """The combined cells as CSV, dimension columns named as in `release_rows`: every
    dimension of the combined tables has its column, whether or not a cell of it was
    released, so the columns do not depend on the data."""
    rows = table["cells"]
    used = {
        d
        for name in table["suppressed"]
        if name in TABLES_BY_NAME
        for d in TABLES_BY_NAME[name].dimensions
    } | {k for r in rows for k in r} - {
        "table",
        "measure",
        "value",
        "agencies_reporting",
        "agencies_suppressed",
        "noise_sd",
    }
    dims = [d for d in DIMENSION_ORDER if d in used] + sorted(used - set(DIMENSION_ORDER))
    out = [
        {
            "period_start": table["period"]["start"],
            "period_end": table["period"]["end"],
            "table": r["table"],
            "measure": r["measure"],
            **{column(d): r.get(d, "") for d in dims},
            "value": r["value"],
            "noise_sd": r["noise_sd"],
            "agencies_reporting": r["agencies_reporting"],
            "agencies_suppressed": r["agencies_suppressed"],
        }
        for r in rows
    ]
    return to_csv(out)
