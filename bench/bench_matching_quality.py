"""Victim matching quality: precision, recall and F1 at the shipped thresholds.

A seeded synthetic holder set (`bench/synthetic_people.py`: nine name traditions,
transliteration variants, native scripts, planted relatives and namesakes) is turned
into the index a holder would publish, and queries with known truth are matched
against it exactly as a querier does: its tokens looked up, the matched token kinds
of each record graded by `exchange.matching.score.band`.

Figures are over (query, holder record) pairs: a hit is true when the record is the
query's true identity. Precision = true hits / hits; recall = true hits / queries whose
person the holder holds. For "any" hit (possible or strong), for "strong" and for
"possible" alone, in the "easy" setting (at most one mild corruption) and the "hard"
one (several corruptions on every query). Diagnostics split recall by what the query and the
record know of the date of birth, and count false hits whose record agrees with all
the query says (a namesake in the same year when only the year is known): no
threshold can tell those apart. Every false hit is attributed to the score rule that
made it (`score.rule`) and classed by what the two people share, names and date
(`false_hits_by_rule`, `false_hits_by_rule_and_class`; `--false-hits` prints the table).
"any_without_year_alone" is "any" without the hits
made on the year alone (`score` grades the whole name spelled alike on the year as
possible): the precision-first operating point, for comparison. "exact_name_ceiling"
is an oracle that knows each query's true names and hits every record of those names
on a date the query's date could be: the best precision any matcher on these fields
can have while finding everyone. "exact_name_unique_year" is the same oracle answering a
year-only case (the query or the candidate knows only the year) only when one record of
those names could be the person: what perfect names could reach by leaving the
ambiguous year-only cases unanswered. Each line also gives the holder's cost: real tokens
per record and the time `record_tokens` takes per record.

The "febrl" setting is a FEBRL-like proxy of the issue's held-back benchmark (its own
holder set of clean originals and duplicates with one to three modifications; see
`synthetic_people.febrl_duplicate`). Beside ours, every line gives a plain non-private
matcher on the same fields (`plain_p99`, `plain_best`: bigram Dice and a date score, at
thresholds chosen on seed 101; `--tune-plain` prints the thresholds this seed would
choose).

Beside these pair-level figures, "answers" gives the answer level: what a node tells the
officer (node/services/match_querier.py), one answer per query and holder: no hit, or
the best band with the reference of ONE record, among the records of that band the one
sharing the most matched token kinds, then the lowest handle. Handles are random 16
bytes, so the bench stands for their order with a SHA-256 of the record's pid
(`ANSWER_TIE_BREAK`), not the pid itself (planted relatives get higher pids than their
originals). Precision = hit answers naming the person sought / hit answers; recall =
those / queries whose person is held; per band too; and the share of hit answers that
name someone else while the person is held (a wrong disclosure request where the right
one was possible) and while the person is not held. The held-back benchmark of the issue
was run through real nodes: its figures are answer-level.

The OPRF is a keyed bijection on tokens, so matching on the tokens themselves gives
the same answers; `--with-oprf` shows it on a sample, through blind evaluation,
finalisation and the published 8-byte truncation, and reports whether every band
agreed.

Prints one JSON object per line on stdout and a table on stderr.
Run: .venv/bin/python bench/bench_matching_quality.py [--holder N] [--queries N] [--seed S]
     [--settings easy hard febrl] [--with-oprf] [--tune-plain] [--false-hits] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import synthetic_people as sp  # bench/, first on sys.path when run

from exchange.matching import oprf
from exchange.matching.normalise import words
from exchange.matching.records import parse_csv_row, parse_query_row
from exchange.matching.score import Band, band, rule
from exchange.matching.tokens import Token, record_tokens

TARGET_RECALL = 0.90
TARGET_PRECISION = 0.99
PUBLISHED_BYTES = 8  # what node.services.matching publishes of each OPRF output
YEAR_ALONE = frozenset({"S.y"})  # the token kinds that meet on the year alone
_RANK = {Band.STRONG: 2, Band.POSSIBLE: 1}  # as node.services.match_querier ranks bands
ANSWER_TIE_BREAK = "sha256(pid) for the random handle, lowest first"


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
class AnswerCounts:
    """Answers (one per query) of one band level: hits naming the person sought, hits
    naming another record while the person is held, and while the person is not held."""

    true_hits: int = 0
    wrong_held: int = 0
    wrong_absent: int = 0
    present: int = 0

    def figures(self) -> dict[str, float]:
        hits = self.true_hits + self.wrong_held + self.wrong_absent
        counts = Counts(self.true_hits, self.wrong_held + self.wrong_absent, self.present)
        return counts.figures() | {
            "hits": hits,
            "false_hits": self.wrong_held + self.wrong_absent,
            "wrong_while_held": round(self.wrong_held / hits, 4) if hits else 0.0,
            "wrong_while_not_held": round(self.wrong_absent / hits, 4) if hits else 0.0,
        }


@dataclass
class Answers:
    """Answer-level tallies: any hit, strong answers, possible answers."""

    any_hit: AnswerCounts = field(default_factory=AnswerCounts)
    strong: AnswerCounts = field(default_factory=AnswerCounts)
    possible: AnswerCounts = field(default_factory=AnswerCounts)
    # queries whose person got a band but whose answer named another record
    person_outranked: int = 0

    def add(self, query: sp.Query, answer: tuple[Band, int] | None, truth_banded: bool) -> None:
        for level, counted in (
            (self.any_hit, answer is not None),
            (self.strong, answer is not None and answer[0] is Band.STRONG),
            (self.possible, answer is not None and answer[0] is Band.POSSIBLE),
        ):
            level.present += query.truth is not None
            if not counted or answer is None:
                continue
            if answer[1] == query.truth:
                level.true_hits += 1
            elif query.truth is not None:
                level.wrong_held += 1
            else:
                level.wrong_absent += 1
        if truth_banded and (answer is None or answer[1] != query.truth):
            self.person_outranked += 1

    def report(self) -> dict[str, object]:
        return {
            "any": self.any_hit.figures(),
            "strong": self.strong.figures(),
            "possible": self.possible.figures(),
            "person_banded_other_named": self.person_outranked,
            "tie_break": ANSWER_TIE_BREAK,
        }


def _handle(pid: int) -> bytes:
    """What stands for a record's random handle in the answer's tie-break."""
    return hashlib.sha256(b"bench handle %d" % pid).digest()[:16]


def node_answer(
    kinds: dict[int, set[str]], bands: dict[int, Band | None]
) -> tuple[Band, int] | None:
    """The one answer a node gives for a query and a holder (match_querier._ask_peer): the
    best band, then the most matched kinds, then the lowest handle."""
    best: tuple[tuple[int, int, bytes], Band, int] | None = None
    for pid, grade in bands.items():
        if grade is None:
            continue
        key = (-_RANK[grade], -len(kinds[pid]), _handle(pid))
        if best is None or key < best[0]:
            best = (key, grade, pid)
    return None if best is None else (best[1], best[2])


@dataclass
class Tally:
    """Everything counted for one setting."""

    any_hit: Counts = field(default_factory=Counts)
    strong: Counts = field(default_factory=Counts)
    possible: Counts = field(default_factory=Counts)  # hits graded "possible" (not strong)
    ceiling: Counts = field(default_factory=Counts)
    ceiling_unique: Counts = field(default_factory=Counts)
    # Any hit, leaving out records met on the year alone (one side knows only the year):
    # the operating point a precision-first deployment would get by not answering those.
    no_year_alone: Counts = field(default_factory=Counts)
    recall_by_dates: dict[str, list[int]] = field(default_factory=dict)
    indistinguishable_false_hits: int = 0
    # False hits by the score rule that made them and by what the two people share.
    false_by_rule: Counter[tuple[str, str]] = field(default_factory=Counter)
    answers: Answers = field(default_factory=Answers)


def _precision_of(date_text: str) -> str:
    return "full" if len(date_text) == 10 else "partial"


@dataclass
class IndexCost:
    """What publishing the holder set cost: real tokens per record and time per record."""

    records: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def figures(self) -> dict[str, float]:
        return {
            "tokens_per_record": round(self.tokens / self.records, 2),
            "token_ms_per_record": round(1000 * self.seconds / self.records, 3),
        }


def build_index(pop: sp.Population, cost: IndexCost | None = None) -> dict[bytes, list[int]]:
    """Token value -> holder pids: the published index, before the OPRF."""
    cost = cost if cost is not None else IndexCost()
    index: dict[bytes, list[int]] = defaultdict(list)
    for pid, row in pop.holder.items():
        record = parse_csv_row(row.as_dict() | {"ref": f"R{pid}"}, pid)
        start = time.perf_counter()
        tokens = record_tokens(record)
        cost.seconds += time.perf_counter() - start
        cost.records += 1
        cost.tokens += len(tokens)
        for token in tokens:
            index[token.value].append(pid)
    return index


def _canonical(person: sp.Person) -> tuple[str, ...]:
    return tuple(sorted(v[0] for v in person.given + person.family))


def _compatible(query_dob: str, record_dob: str) -> bool:
    """Dates the query's date could be, given the corruptions the generator makes."""
    if len(query_dob) < 10 or len(record_dob) < 10:
        return query_dob[:4] == record_dob[:4]
    year_gap = abs(int(query_dob[:4]) - int(record_dob[:4]))
    return year_gap <= 1 and sorted(query_dob[5:].split("-")) == sorted(record_dob[5:].split("-"))


def ceiling(pop: sp.Population, queries: Sequence[sp.Query]) -> tuple[Counts, Counts]:
    """Two oracles that know every query's true names.

    The first finds every held person and also hits every other record of the same names
    on a date the query's could be. No matcher on these fields does better; its precision
    bounds every matcher's at full recall. The second is the same, except where the query
    or a candidate record knows only the birth year: there it hits only when exactly one
    record of those names could be the person, and otherwise answers nothing. It shows
    what a precision-first matcher with perfect names could reach by leaving the
    ambiguous year-only cases unanswered (a namesake born the same year is still hit
    when the person sought is not held)."""
    by_name: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for pid, person in pop.people.items():
        by_name[_canonical(person)].append(pid)
    counts, unique = Counts(), Counts()
    for query in queries:
        counts.present += query.truth is not None
        unique.present += query.truth is not None
        if query.person is None:
            continue
        q_dob = query.row.date_of_birth
        candidates = [
            pid
            for pid in by_name[_canonical(query.person)]
            if pid == query.truth or _compatible(q_dob, pop.holder[pid].date_of_birth)
        ]
        year_only = len(q_dob) < 10 or any(
            len(pop.holder[pid].date_of_birth) < 10 for pid in candidates
        )
        for level in (counts, unique):
            if level is unique and year_only and len(candidates) != 1:
                continue
            level.true_hits += sum(pid == query.truth for pid in candidates)
            level.false_hits += sum(pid != query.truth for pid in candidates)
    return counts, unique


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
        truth_banded = query.truth is not None and bands.get(query.truth) is not None
        tally.answers.add(query, node_answer(kinds, bands), truth_banded)
        _count(tally, pop, query, bands, {pid: band(k - YEAR_ALONE) for pid, k in kinds.items()})
        for pid, k in kinds.items():
            graded = rule(k)
            if graded is not None and pid != query.truth:
                tally.false_by_rule[(graded[1], pair_class(query, pop, pid))] += 1
    tally.ceiling, tally.ceiling_unique = ceiling(pop, queries)
    return tally


def pair_class(query: sp.Query, pop: sp.Population, pid: int) -> str:
    """What a falsely hit record's person shares with the person asked for: their names
    (canonical spellings) and their dates of birth as written in the query and the record."""
    asked, other = query.person, pop.people[pid]
    if asked is None:
        return "unknown"
    same_given = [v[0] for v in asked.given] == [v[0] for v in other.given]
    same_family = [v[0] for v in asked.family] == [v[0] for v in other.family]
    shared = {v[0] for v in asked.given + asked.family} & {v[0] for v in other.given + other.family}
    names = (
        "same name" if same_given and same_family
        else "same given" if same_given
        else "same family" if same_family
        else "a shared part" if shared
        else "other names"
    )  # fmt: skip
    q, r = query.row.date_of_birth, pop.holder[pid].date_of_birth
    if len(q) < 10 or len(r) < 10:
        dates = "same year" if q[:4] == r[:4] else "other year"
    elif q == r:
        dates = "same day"
    elif q[:4] == r[:4] and q[5:] == r[8:] + "-" + r[5:7]:
        dates = "day/month swapped"
    elif q[5:] == r[5:]:
        dates = "same birthday, other year"
    else:
        dates = "other date"
    return f"{names}, {dates}"


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
        tally.possible.present += 1
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
        for counts, counted in (
            (tally.any_hit, True),
            (tally.strong, grade is Band.STRONG),
            (tally.possible, grade is Band.POSSIBLE),
        ):
            if counted:
                counts.true_hits += true
                counts.false_hits += not true
        if not true and _indistinguishable(query, pop.holder[pid]):
            tally.indistinguishable_false_hits += 1
    for pid, grade in dated.items():
        if grade is not None:
            tally.no_year_alone.true_hits += pid == query.truth
            tally.no_year_alone.false_hits += pid != query.truth


# --- a plain, non-private matcher on the same fields -------------------------------------
#
# What the issue compares against on the held-back benchmark: bigram Dice over each name
# field (the two fields paired in whichever order agrees better) and over the whole name,
# plus a date agreement score; a pair is a hit when the sum (0 to 4) reaches a threshold.
# Names are only transliterated and case-folded (`normalise.words`): no phonetic folding,
# no codes. Candidates are the records sharing enough whole-name bigrams (blocking).

# Thresholds chosen on seed 101 per setting (`--tune-plain` prints them): "p99" the best F1
# at precision >= 0.99, "best" the best F1 at any precision.
PLAIN_THRESHOLDS = {
    "easy": {"p99": 3.6667, "best": 3.6667},
    "hard": {"p99": 3.6667, "best": 3.3364},
    "febrl": {"p99": 3.6667, "best": 3.3391},
}
PLAIN_BLOCK_DICE = 0.45  # whole-name Dice a candidate needs (below it no threshold is met)
PLAIN_FLOOR = 2.5  # pair scores kept for the threshold sweep


@dataclass(frozen=True)
class _Plain:
    given: frozenset[str]
    family: frozenset[str]
    whole: frozenset[str]
    date: tuple[int, int, int] | None  # year, month, day (0: unknown)


def _plain_grams(text: str) -> frozenset[str]:
    grams: set[str] = set()
    for word in words(text):
        padded = f"^{word}$"
        grams.update(padded[i : i + 2] for i in range(len(padded) - 1))
    return frozenset(grams)


def _plain(row: sp.Row) -> _Plain:
    given, family = _plain_grams(row.given_name), _plain_grams(row.family_name)
    pieces = [int(p) for p in row.date_of_birth.split("-") if p]
    date = None
    if pieces:
        year, month, day = [*pieces, 0, 0][:3]
        date = (year, month, day)
    return _Plain(given, family, given | family, date)


def _dice(a: frozenset[str], b: frozenset[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


def _date_agreement(a: tuple[int, int, int] | None, b: tuple[int, int, int] | None) -> float:
    """Agreeing parts of the date, each a third: a year one off counts half, and day and
    month are compared in the order that agrees better; a part one side lacks counts 0."""
    if a is None or b is None:
        return 0.0
    year = 1.0 if a[0] == b[0] else 0.5 if abs(a[0] - b[0]) == 1 else 0.0

    def md(x: tuple[int, int], y: tuple[int, int]) -> int:
        return sum(1 for p, q in zip(x, y, strict=True) if p and p == q)

    days = max(md((a[1], a[2]), (b[1], b[2])), md((a[1], a[2]), (b[2], b[1])))
    return (year + days) / 3


def plain_name_score(q: _Plain, r: _Plain) -> float:
    """Dice of each field (paired in the better order) and of the whole name: 0 to 3."""
    fields = max(
        _dice(q.given, r.given) + _dice(q.family, r.family),
        _dice(q.given, r.family) + _dice(q.family, r.given),
    )
    return fields + _dice(q.whole, r.whole)


@dataclass
class PlainScores:
    """Pair scores at or above `PLAIN_FLOOR` (score, true) and the queries with truth."""

    pairs: list[tuple[float, bool]] = field(default_factory=list)
    present: int = 0

    def at(self, threshold: float) -> Counts:
        counts = Counts(present=self.present)
        for score, true in self.pairs:
            if score >= threshold:
                counts.true_hits += true
                counts.false_hits += not true
        return counts

    def sweep(self) -> dict[str, float]:
        """The thresholds of the best F1 at precision >= 0.99 and of the best F1."""
        best = {"p99": (0.0, 4.0), "best": (0.0, 4.0)}  # (f1, threshold)
        true = false = 0
        ordered = sorted(self.pairs, reverse=True)
        for i, (score, is_true) in enumerate(ordered):
            true += is_true
            false += not is_true
            if i + 1 < len(ordered) and ordered[i + 1][0] == score:
                continue  # a threshold takes every pair of its score
            f = Counts(true, false, self.present).figures()
            if f["f1"] > best["best"][0]:
                best["best"] = (f["f1"], score)
            if f["precision"] >= TARGET_PRECISION and f["f1"] > best["p99"][0]:
                best["p99"] = (f["f1"], score)
        return {k: round(v[1], 4) for k, v in best.items()}


def plain_scores(pop: sp.Population, queries: Sequence[sp.Query]) -> PlainScores:
    """Score every candidate pair of every query; records of one spelled name are blocked,
    and their name similarity computed, once."""
    names: dict[tuple[str, str], int] = {}
    plains: list[_Plain] = []
    holders: list[list[tuple[int, _Plain]]] = []
    for pid, row in pop.holder.items():
        rec = _plain(row)
        at = names.setdefault((row.given_name, row.family_name), len(plains))
        if at == len(plains):
            plains.append(rec)
            holders.append([])
        holders[at].append((pid, rec))
    postings: dict[str, list[int]] = defaultdict(list)
    for at, rec in enumerate(plains):
        for gram in rec.whole:
            postings[gram].append(at)
    sizes = [len(rec.whole) for rec in plains]
    out = PlainScores()
    for query in queries:
        out.present += query.truth is not None
        q = _plain(query.row)
        if not q.whole:
            continue
        shared = Counter(itertools.chain.from_iterable(postings.get(g, ()) for g in q.whole))
        need = len(q.whole)
        for at, common in shared.items():
            if 2 * common < PLAIN_BLOCK_DICE * (need + sizes[at]):
                continue
            name = plain_name_score(q, plains[at])
            if name + 1 < PLAIN_FLOOR:
                continue
            for pid, rec in holders[at]:
                score = name + _date_agreement(q.date, rec.date)
                if score >= PLAIN_FLOOR:
                    out.pairs.append((score, pid == query.truth))
    return out


def plain_report(setting: str, scores: PlainScores, tune: bool) -> dict[str, object]:
    line: dict[str, object] = {}
    for name, threshold in PLAIN_THRESHOLDS[setting].items():
        line[f"plain_{name}"] = scores.at(threshold).figures() | {"threshold": threshold}
    if tune:
        line["plain_tuned_here"] = scores.sweep()
    return line


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


def _by_rule(false_by_rule: Counter[tuple[str, str]]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for (name, _), n in false_by_rule.items():
        out[name] += n
    return dict(sorted(out.items()))


def report(
    setting: str, tally: Tally, holder: int, queries: int, seconds: float
) -> dict[str, object]:
    any_hit = tally.any_hit.figures()
    return {
        "bench": "matching_quality",
        "setting": setting,
        "holder_records": holder,
        "queries": queries,
        "queries_with_truth": tally.any_hit.present,
        "any": any_hit | {"false_hits": tally.any_hit.false_hits},
        "strong": tally.strong.figures() | {"false_hits": tally.strong.false_hits},
        "possible": tally.possible.figures() | {"false_hits": tally.possible.false_hits},
        "any_without_year_alone": tally.no_year_alone.figures()
        | {"false_hits": tally.no_year_alone.false_hits},
        "recall_by_dates": {
            k: round(found / total, 4)
            for k, (found, total) in sorted(tally.recall_by_dates.items())
        },
        "indistinguishable_false_hits": tally.indistinguishable_false_hits,
        "false_hits_by_rule": _by_rule(tally.false_by_rule),
        "false_hits_by_rule_and_class": {
            f"{r}: {c}": n for (r, c), n in sorted(tally.false_by_rule.items())
        },
        "answers": tally.answers.report(),
        "exact_name_ceiling": tally.ceiling.figures() | {"false_hits": tally.ceiling.false_hits},
        "exact_name_unique_year": tally.ceiling_unique.figures()
        | {"false_hits": tally.ceiling_unique.false_hits},
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
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=("easy", "hard", sp.FEBRL),
        default=["easy", "hard", sp.FEBRL],
    )
    parser.add_argument(
        "--tune-plain", action="store_true", help="also print the plain matcher's best thresholds"
    )
    parser.add_argument(
        "--false-hits", action="store_true", help="also print the false hits by rule and class"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.holder, args.queries, args.oprf_sample = 2_000, 300, 15
    lines = []
    # The planted settings share one holder set; the FEBRL-like one has its own, from its
    # own generator, so that each setting's figures do not depend on which others ran.
    built: dict[bool, tuple[sp.Generator, sp.Population, dict[bytes, list[int]], IndexCost]] = {}
    for setting in args.settings:
        start = time.perf_counter()
        febrl = setting == sp.FEBRL
        if febrl not in built:
            generator = sp.Generator(args.seed)
            pop = (
                generator.febrl_population(args.holder)
                if febrl
                else generator.population(args.holder)
            )
            cost = IndexCost()
            built[febrl] = (generator, pop, build_index(pop, cost), cost)
        generator, pop, index, cost = built[febrl]
        queries = generator.queries(pop, args.queries, setting)
        line = report(setting, evaluate(pop, index, queries), len(pop.holder), len(queries),
                      time.perf_counter() - start)  # fmt: skip
        line |= {"seed": args.seed} | cost.figures()
        line |= plain_report(setting, plain_scores(pop, queries), args.tune_plain)
        if args.with_oprf:
            line |= oprf_check(pop, queries, args.oprf_sample)
        lines.append(line)
        print(json.dumps(line), flush=True)
    _table(lines)
    if args.false_hits:
        _false_hit_table(lines)
    return 0


def _false_hit_table(lines: Sequence[dict[str, object]]) -> None:
    """Every false hit by the score rule that made it and what the two people share."""
    print(
        f"{'setting':8} {'rule':15} {'what the two people share':45} {'false':>5}", file=sys.stderr
    )
    for line in lines:
        classes = line["false_hits_by_rule_and_class"]
        assert isinstance(classes, dict)
        for key, n in classes.items():
            name, _, what = key.partition(": ")
            print(f"{line['setting']!s:8} {name:15} {what:45} {n:5}", file=sys.stderr)


def _table(lines: Sequence[dict[str, object]]) -> None:
    print(f"{'setting':8} {'band':10} {'precision':>9} {'recall':>7} {'f1':>7}", file=sys.stderr)
    for line in lines:
        answers = line["answers"]
        assert isinstance(answers, dict)
        pair_levels = (
            "any", "strong", "possible", "exact_name_ceiling", "exact_name_unique_year",
            "plain_p99", "plain_best",
        )  # fmt: skip
        rows = [(level[:10] if level[:5] != "exact" else level[11:21], line[level])
                for level in pair_levels]  # fmt: skip
        rows += [(f"answer {level[:3]}", answers[level]) for level in ("any", "strong", "possible")]
        for name, f in rows:
            assert isinstance(f, dict)
            print(
                f"{line['setting']!s:8} {name:10} {f['precision']:9.4f} {f['recall']:7.4f} "
                f"{f['f1']:7.4f}",
                file=sys.stderr,
            )
        print(
            f"{line['setting']!s:8} tokens per record {line['tokens_per_record']}, "
            f"{line['token_ms_per_record']} ms per record",
            file=sys.stderr,
        )


if __name__ == "__main__":
    raise SystemExit(main())
