"""Statistics: the federation table of a period as bar charts, drawn from the published
table only (docs/statistics.md, docs/console.md).

The page asks the node for the federation table it publishes (`Federation`, the table
`mlax stats federation` prints: this node's final release and the releases peers sent
it; by default for the newest period it holds releases of), and draws each of its
tables as a server-side SVG bar chart: one bar per released cell, its noise's standard
deviation as a whisker, how many cells every agency suppressed, and each agency's epsilon
and noise beside it. It reads no release of its own, no draft and no true value; the CSV
and JSON it offers are that same table. Officers, supervisors and auditors may read it,
as the node's role table says.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import Response

from exchange.policy import Role
from exchange.stats.export import DIMENSION_ORDER, federation_csv
from exchange.stats.release import Period, canonical
from exchange.stats.tables import TABLES, TABLES_BY_NAME
from node.client import NodeCallError
from node.client.stats import StatsClient
from node.console.app import Console, Refused
from node.console.security import Session

READERS = frozenset({Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR})
# Chart geometry (SVG user units): label column, plot width, bar height and gap.
LABEL_W, PLOT_W, VALUE_W = 300, 420, 150
BAR_H, GAP, TOP = 18, 6, 4
_ORDER = {t.name: i for i, t in enumerate(TABLES)}


@dataclass(frozen=True)
class Bar:
    """One released cell of a chart: its label, value, noise and geometry."""

    label: str
    value: int
    noise_sd: float
    reporting: int
    suppressed_by: int
    y: int
    width: float = 0.0
    low: float = 0.0
    high: float = 0.0

    @property
    def text_y(self) -> int:
        return self.y + BAR_H - 5


@dataclass(frozen=True)
class Chart:
    """One table of the federation table, laid out as a horizontal bar chart."""

    name: str
    title: str
    measure: str
    dimensions: tuple[str, ...]
    bars: tuple[Bar, ...]
    # How many cells every agency suppressed (no labels, no values).
    suppressed: int
    height: int
    scale_max: int

    @property
    def width(self) -> int:
        return LABEL_W + PLOT_W + VALUE_W


def _label(cell: Mapping[str, Any], dims: Sequence[str]) -> str:
    return " · ".join(str(cell.get(d, "")) for d in dims)


def _dims(rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    skip = {"table", "measure", "value", "agencies_reporting", "agencies_suppressed", "noise_sd"}
    used = {k for r in rows for k in r} - skip
    return tuple([d for d in DIMENSION_ORDER if d in used] + sorted(used - set(DIMENSION_ORDER)))


def _finite(value: object) -> float:
    """A published number as a float, 0 when it is not a finite one (nothing to draw)."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return out if math.isfinite(out) else 0.0


def charts(table: Mapping[str, Any]) -> list[Chart]:
    """Every table of a federation table as a chart: a bar per released cell (as
    published), and how many cells every agency suppressed."""
    by_table: dict[str, list[Mapping[str, Any]]] = {}
    for r in table.get("cells", []):
        by_table.setdefault(str(r["table"]), []).append(r)
    hidden: dict[str, int] = {str(k): int(v) for k, v in table.get("suppressed", {}).items()}
    for name in hidden:
        by_table.setdefault(name, [])
    out = []
    for name in sorted(by_table, key=lambda n: (_ORDER.get(n, len(_ORDER)), n)):
        shown = by_table[name]
        known = TABLES_BY_NAME.get(name)
        dims = known.dimensions if known else _dims(shown)
        top = max(
            (max(_finite(r["value"]), 0) + _finite(r["noise_sd"]) for r in shown), default=0.0
        )
        scale_max = max(1, int(min(top, 1e15) + 0.999))
        bars: list[Bar] = []
        for r in shown:
            value, sd = int(r["value"]), _finite(r["noise_sd"])
            y = TOP + len(bars) * (BAR_H + GAP)
            bars.append(
                Bar(
                    label=_label(r, dims),
                    value=value,
                    noise_sd=sd,
                    reporting=int(r["agencies_reporting"]),
                    suppressed_by=int(r["agencies_suppressed"]),
                    y=y,
                    width=round(PLOT_W * min(max(value, 0), scale_max) / scale_max, 1),
                    low=round(PLOT_W * min(max(value - sd, 0), scale_max) / scale_max, 1),
                    high=round(PLOT_W * min(max(value + sd, 0), scale_max) / scale_max, 1),
                )
            )
        measure = str(shown[0]["measure"]) if shown else (known.measure if known else "")
        out.append(
            Chart(
                name=name,
                title=known.title if known else name,
                measure=measure,
                dimensions=tuple(dims),
                bars=tuple(bars),
                suppressed=hidden.get(name, 0),
                height=TOP * 2 + len(bars) * (BAR_H + GAP),
                scale_max=scale_max,
            )
        )
    return out


def per_agency(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each agency's guarantee: its threshold, total epsilon and every table's noise."""
    agencies: dict[str, dict[str, Any]] = {}
    for r in table.get("per_agency", []):
        a = agencies.setdefault(
            str(r["agency"]),
            {"agency": r["agency"], "threshold": r["threshold"], "epsilon": 0.0, "tables": []},
        )
        a["epsilon"] += float(r["epsilon"])
        a["tables"].append(r)
    return [agencies[k] for k in sorted(agencies)]


def _period(request: Request) -> tuple[str, str]:
    """The period asked for, else this year so far."""
    start = request.query_params.get("from", "")
    end = request.query_params.get("to", "")
    if start or end:
        period = Period.parse(start, end)  # refuses a malformed period with its sentence
        return period.start.isoformat(), period.end.isoformat()
    today = datetime.datetime.now(datetime.UTC).date()
    return f"{today.year}-01-01", today.isoformat()


def _readers_only(console: Console) -> None:
    if console.role not in READERS:
        raise Refused("Statistics are for officers, supervisors and auditors.", 403)


async def _table(console: Console, start: str, end: str) -> dict[str, Any] | None:
    """The federation table the node publishes for the period; None when it holds no
    release of it."""
    try:
        return await console.call(StatsClient(console.client).federation, start, end)
    except NodeCallError as e:
        if e.code == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def register(console: Console) -> None:
    @console.page("/stats")
    async def stats_page(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        explicit = bool(request.query_params.get("from") or request.query_params.get("to"))
        periods = await console.call(StatsClient(console.client).periods, 50)
        if not explicit and periods:
            start, end = periods[0]  # the newest
        else:
            start, end = _period(request)
        table = await _table(console, start, end)
        return console.render(
            request,
            session,
            "stats.html",
            {
                "start": start,
                "end": end,
                "table": table,
                "charts": charts(table) if table else [],
                "agencies": per_agency(table) if table else [],
                "periods": periods,
                "label_w": LABEL_W,
                "plot_w": PLOT_W,
                "bar_h": BAR_H,
            },
        )

    @console.page("/stats/federation.{fmt:str}")
    async def stats_download(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        fmt = request.path_params["fmt"]
        if fmt not in ("csv", "json"):
            raise Refused("The federation table downloads as csv or json.", 404)
        start, end = _period(request)
        table = await _table(console, start, end)
        if table is None:
            raise Refused(f"No release of {start} to {end} is held on this node.", 404)
        body = federation_csv(table) if fmt == "csv" else canonical(table).decode() + "\n"
        media = "text/csv" if fmt == "csv" else "application/json"
        return Response(
            body,
            media_type=f"{media}; charset=utf-8",
            headers={
                "Content-Disposition": (f'attachment; filename="federation-{start}-{end}.{fmt}"')
            },
        )


__all__ = ["READERS", "Bar", "Chart", "charts", "per_agency", "register"]
