"""CSV and JSON of a release, and the federation table combining several agencies'.

Columns take the Human Trafficking Case Data Standard (HTCDS) / CTDC name where the
field exists there (`COLUMNS`; docs/statistics.md has the table); MLAX's own fields keep
their names. Every row carries the epsilon and the noise's standard deviation of its table.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from exchange.errors import InvalidFieldError
from exchange.stats.release import FORMAT

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
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def release_csv(doc: Mapping[str, Any]) -> str:
    return to_csv(release_rows(doc))


def combine(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The federation table: each cell summed over the agencies that released it.

    Noise adds up: a total's standard deviation is the root of the sum of the
    contributing agencies' variances (`noise_sd`), and each agency's own is listed. A cell
    some agency suppressed is the sum of the others, with `agencies_suppressed` saying how
    many left it out (their true values may be anywhere below the threshold); a cell every
    agency left out is listed in `suppressed`, without a value.
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
    per_agency = []
    for doc in sorted(docs, key=lambda d: d["agency"]):
        for t in doc["tables"]:
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
            names = [d["name"] for d in t["dimensions"]]
            released = {tuple(c[n] for n in names): c["value"] for c in t["cells"]}
            domain = _product([d["values"] for d in t["dimensions"]])
            for key in domain:
                ident = (t["name"], tuple(zip(names, key, strict=True)))
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
                if key in released:
                    entry["value"] += released[key]
                    entry["agencies_reporting"] += 1
                    entry["_var"] += float(t["noise_sd"]) ** 2
                else:
                    entry["agencies_suppressed"] += 1
    rows = []
    suppressed = []
    for ident in sorted(cells):
        entry = cells[ident]
        if not entry["agencies_reporting"]:
            # Suppressed everywhere: no value, only which cell it is.
            suppressed.append({"table": ident[0], **dict(ident[1])})
            continue
        entry["noise_sd"] = round(math.sqrt(entry.pop("_var")), 6)
        rows.append(entry)
    start, end = periods.pop()
    return {
        "format": "mlax-federation-statistics/v1",
        "period": {"start": start, "end": end},
        "agencies": sorted(agencies),
        "cells": rows,
        "suppressed": suppressed,
        "per_agency": per_agency,
    }


def _product(values: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [()]
    for vs in values:
        out = [(*o, v) for o in out for v in vs]
    return out


def federation_csv(table: Mapping[str, Any]) -> str:
    """The combined cells as CSV, dimension columns named as in `release_rows`: every
    dimension of the combined tables has its column, whether or not a cell of it was
    released, so the columns do not depend on the data."""
    rows = table["cells"]
    used = {k for r in (*rows, *table["suppressed"]) for k in r} - {
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
