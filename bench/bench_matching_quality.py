"""Victim matching quality: precision, recall and F1 at the shipped thresholds.

A seeded synthetic holder set (`bench/synthetic_people.py`: nine name traditions,
transliteration variants, native scripts, planted relatives and namesakes) is turned
into the index a holder would publish, and queries with known truth are matched
against it exactly as a querier does: its tokens looked up, the matched token kinds
of each record graded by `exchange.matching.score.band`.

Figures are over (query, holder record) pairs: a hit is true when the record is the
query's true identity. Precision = true hits / hits; recall = true hits / queries whose
person the holder holds. Both for "any" hit (possible or strong) and for "strong"
alone, in the "easy" setting (at most one mild corruption) and the "hard" one (several
corruptions on every query). Diagnostics split recall by what the query and the
record know of the date of birth, and count false hits whose record agrees with all
the query says (a namesake in the same year when only the year is known): no
threshold can tell those apart. "any_without_year_alone" is "any" without the hits
made on the year alone (`score` grades the whole name spelled alike on the year as
possible): the precision-first operating point, for comparison.

The OPRF is a keyed bijection on tokens, so matching on the tokens themselves gives
the same answers; `--with-oprf` shows it on a sample, through blind evaluation,
finalisation and the published 8-byte truncation, and reports whether every band
agreed.

Prints one JSON object per line on stdout and a table on stderr.
Run: .venv/bin/python bench/bench_matching_quality.py [--holder N] [--queries N] [--seed S]
     [--with-oprf] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import synthetic_people as sp  # bench/, first on sys.path when run

from exchange.matching import oprf
from exchange.matching.records import parse_csv_row, parse_query_row
from exchange.matching.score import Band, band
from exchange.matching.tokens import Token, record_tokens

TARGET_RECALL = 0.95
TARGET_PRECISION = 0.99
PUBLISHED_BYTES = 8  # what node.services.matching publishes of each OPRF output
YEAR_ALONE = frozenset({"S.y"})  # the token kinds that meet on the year alone


@dataclass
class Counts:
    """Hits of one band level over one setting."""

    true_hits: int = 0
    false_hits: int = 0
    present: int = 0

    def figures(self) -> dict[str, float]:
        hits = self.true_hits + self.false_hits
        precision = self.true_hits / hits if hits else 1.0
        recall = self.true_hits / self.present if self.present else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


@dataclass
class Tally:
    """Everything counted for one setting."""

    any_hit: Counts = field(default_factory=Counts)
    strong: Counts = field(default_factory=Counts)
    # Any hit, leaving out records met on the year alone (one side knows only the year):
    # the operating point a precision-first deployment would get by not answering those.
    no_year_alone: Counts = field(default_factory=Counts)
    recall_by_dates: dict[str, list[int]] = field(default_factory=dict)
    indistinguishable_false_hits: int = 0


def _precision_of(date_text: str) -> str:
    return "full" if len(date_text) == 10 else "partial"


def build_index(pop: sp.Population) -> dict[bytes, list[int]]:
    """Token value -> holder pids: the published index, before the OPRF."""
    index: dict[bytes, list[int]] = defaultdict(list)
    for pid, row in pop.holder.items():
        record = parse_csv_row(row.as_dict() | {"ref": f"R{pid}"}, pid)
        for token in record_tokens(record):
            index[token.value].append(pid)
    return index


def matched_kinds(tokens: Iterable[Token], index: dict[bytes, list[int]]) -> dict[int, set[str]]:
    """Per holder record, the query's token kinds it shares (what the querier computes)."""
    kinds: dict[int, set[str]] = defaultdict(set)
    for token in tokens:
        for pid in index.get(token.value, ()):
            kinds[pid].add(token.kind)
    return kinds


def _indistinguishable(query: sp.Query, record: sp.Row) -> bool:
    """A false hit whose record agrees with every name part and the year the query gives."""
    q, r = query.row, record
    return (
        sorted((q.given_name + " " + q.family_name).split())
        == sorted((r.given_name + " " + r.family_name).split())
        and q.date_of_birth[:4] == r.date_of_birth[:4]
        and (len(q.date_of_birth) < 10 or len(r.date_of_birth) < 10)
    )


def evaluate(
    pop: sp.Population, index: dict[bytes, list[int]], queries: Sequence[sp.Query]
) -> Tally:
    tally = Tally()
    for query in queries:
        person = parse_query_row(query.row.as_dict(), 0)
        kinds = matched_kinds(record_tokens(person), index)
        bands = {pid: band(k) for pid, k in kinds.items()}
        _count(tally, pop, query, bands, {pid: band(k - YEAR_ALONE) for pid, k in kinds.items()})
    return tally


def _count(
    tally: Tally,
    pop: sp.Population,
    query: sp.Query,
    bands: dict[int, Band | None],
    dated: dict[int, Band | None],
) -> None:
    if query.truth is not None:
        tally.any_hit.present += 1
        tally.strong.present += 1
        tally.no_year_alone.present += 1
        key = f"query_{_precision_of(query.row.date_of_birth)}/record_" + _precision_of(
            pop.holder[query.truth].date_of_birth
        )
        found = tally.recall_by_dates.setdefault(key, [0, 0])
        found[1] += 1
        found[0] += bands.get(query.truth) is not None
    for pid, grade in bands.items():
        if grade is None:
            continue
        true = pid == query.truth
        for counts, counted in ((tally.any_hit, True), (tally.strong, grade is Band.STRONG)):
            if counted:
                counts.true_hits += true
                counts.false_hits += not true
        if not true and _indistinguishable(query, pop.holder[pid]):
            tally.indistinguishable_false_hits += 1
    for pid, grade in dated.items():
        if grade is not None:
            tally.no_year_alone.true_hits += pid == query.truth
            tally.no_year_alone.false_hits += pid != query.truth


def oprf_check(pop: sp.Population, queries: Sequence[sp.Query], sample: int) -> dict[str, object]:
    """Match `sample` queries through the real OPRF (blind, evaluate, finalize, truncate).

    The holder set is cut to the records the sample's queries touch in plain matching
    plus as many random others, so that the OPRF work stays small; the bands of both
    runs are compared pair by pair.
    """
    plain_index = build_index(pop)
    chosen = list(queries[:sample])
    touched: set[int] = set()
    plain: dict[tuple[int, int], Band | None] = {}
    for i, query in enumerate(chosen):
        person = parse_query_row(query.row.as_dict(), 0)
        for pid, shared in matched_kinds(record_tokens(person), plain_index).items():
            plain[(i, pid)] = band(shared)
            touched.add(pid)
    others = [pid for pid in pop.holder if pid not in touched][: len(touched)]
    key = oprf.generate_key()
    start = time.perf_counter()
    published: dict[bytes, list[int]] = defaultdict(list)
    evaluations = 0
    for pid in [*touched, *others]:
        record = parse_csv_row(pop.holder[pid].as_dict() | {"ref": f"R{pid}"}, pid)
        for token in record_tokens(record):
            published[oprf.evaluate(key, token.value)[:PUBLISHED_BYTES]].append(pid)
            evaluations += 1
    through: dict[tuple[int, int], Band | None] = {}
    blind_rounds = 0
    for i, query in enumerate(chosen):
        tokens = record_tokens(parse_query_row(query.row.as_dict(), 0))
        outputs = []
        for token in tokens:
            blind, blinded = oprf.blind(token.value)
            evaluated = oprf.blind_evaluate(key, blinded)  # the holder's side
            outputs.append(oprf.finalize(token.value, blind, evaluated)[:PUBLISHED_BYTES])
            blind_rounds += 1
        kinds: dict[int, set[str]] = defaultdict(set)
        for token, out in zip(tokens, outputs, strict=True):
            for pid in published.get(out, ()):
                kinds[pid].add(token.kind)
        for pid, k in kinds.items():
            through[(i, pid)] = band(k)
    agree = {p: b for p, b in plain.items() if b is not None} == {
        p: b for p, b in through.items() if b is not None
    }
    return {
        "oprf_sample_queries": len(chosen),
        "oprf_holder_records": len(touched) + len(others),
        "oprf_evaluations": evaluations,
        "oprf_blind_rounds": blind_rounds,
        "oprf_seconds": round(time.perf_counter() - start, 2),
        "oprf_bands_agree": agree,
        "oprf_hits": sum(b is not None for b in through.values()),
    }


def report(
    setting: str, tally: Tally, holder: int, queries: int, seconds: float
) -> dict[str, object]:
    any_hit, strong = tally.any_hit.figures(), tally.strong.figures()
    return {
        "bench": "matching_quality",
        "setting": setting,
        "holder_records": holder,
        "queries": queries,
        "queries_with_truth": tally.any_hit.present,
        "any": any_hit | {"false_hits": tally.any_hit.false_hits},
        "strong": strong | {"false_hits": tally.strong.false_hits},
        "any_without_year_alone": tally.no_year_alone.figures()
        | {"false_hits": tally.no_year_alone.false_hits},
        "recall_by_dates": {
            k: round(found / total, 4)
            for k, (found, total) in sorted(tally.recall_by_dates.items())
        },
        "indistinguishable_false_hits": tally.indistinguishable_false_hits,
        "target": {"recall": TARGET_RECALL, "precision": TARGET_PRECISION},
        "meets_target": any_hit["recall"] >= TARGET_RECALL
        and any_hit["precision"] >= TARGET_PRECISION,
        "seconds": round(seconds, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holder", type=int, default=20_000, help="people in the holder set")
    parser.add_argument("--queries", type=int, default=2_000, help="queries per setting")
    parser.add_argument("--seed", type=int, default=20260611)
    parser.add_argument("--with-oprf", action="store_true", help="also match a sample via OPRF")
    parser.add_argument("--oprf-sample", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="a small run for smoke tests")
    args = parser.parse_args(argv)
    if args.quick:
        args.holder, args.queries, args.oprf_sample = 2_000, 300, 15
    start = time.perf_counter()
    generator = sp.Generator(args.seed)
    pop = generator.population(args.holder)
    index = build_index(pop)
    built = time.perf_counter() - start
    lines = []
    for setting in ("easy", "hard"):
        t0 = time.perf_counter()
        queries = generator.queries(pop, args.queries, setting)
        line = report(setting, evaluate(pop, index, queries), len(pop.holder), len(queries),
                      built + time.perf_counter() - t0)  # fmt: skip
        if args.with_oprf:
            line |= oprf_check(pop, queries, args.oprf_sample)
        lines.append(line)
        print(json.dumps(line), flush=True)
    _table(lines)
    return 0


def _table(lines: Sequence[dict[str, object]]) -> None:
    print(f"{'setting':8} {'band':7} {'precision':>9} {'recall':>7} {'f1':>7}", file=sys.stderr)
    for line in lines:
        for level in ("any", "strong"):
            f = line[level]
            assert isinstance(f, dict)
            print(
                f"{line['setting']!s:8} {level:7} {f['precision']:9.4f} {f['recall']:7.4f} "
                f"{f['f1']:7.4f}",
                file=sys.stderr,
            )


if __name__ == "__main__":
    raise SystemExit(main())
