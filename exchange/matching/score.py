"""The shipped thresholds: which matched token kinds make a hit, and how strong.

The querier knows, for each record of a holder's index that shares at least one token
with its query, the set of its own token kinds that matched (`exchange.matching.
tokens` names them). `band` turns that set into the only answer the protocol gives: a
coarse band or nothing. No score leaves this module, so no raw similarity can leak
to an officer or a log (requirement P4).

The thresholds were set on the synthetic benchmark (`bench/bench_matching_quality.py`, tuned
on one seed and checked on others) to keep precision high, because every hit costs a
formal follow-up and a supervisor's time, and a false hit points an investigation at
the wrong person. "Sex" below means agreeing sex and initials (`X`) on the date level
in question; "bands" are MinHash bands of the name fields, "low" those of the field
with fewer:

- STRONG: an exact date (both windows) and a cross-field code pair backed by an edge
  (prefix or suffix) or by three field bands; or the whole given-name field spelled
  alike on the exact date (`G`, `Gm`) backed by a pair or an edge on the exact date.
- POSSIBLE on the exact date (day and month in their order): a cross-field code pair;
  or a code and a 4-letter prefix or suffix of the other field; or a code and a
  2-letter prefix with a band on each field and three in all, or with sex and a band,
  or with a longer edge too; or field bands alone, at least two on each field and four
  in all, or three bands on one field and four in all (without sex since the fourth
  round: what a node answers stays precise, docs/matching.md, "Measured quality").
- POSSIBLE with the year one off (day and month agreeing in their order): with agreeing
  sex, the exact-date rules, an edge needing a band on each field, sex or three bands
  of one field; without sex (the held-back benchmark has none), two of a code pair, an
  edge and a 2-letter edge, and a band of each field. One of them alone, or bands
  alone, is what people sharing a given name, a surname suffix ("-enko") or a short
  syllable ("Wang", "Yang"), born a year apart, share (docs/matching.md, "Measured
  quality", third round).
- POSSIBLE on the year alone (one side knows only the year): the whole name spelled
  alike after folding (`S`). A namesake born the same year looks exactly like this;
  nothing on the year level can tell them apart.
- POSSIBLE on a slip of the year's tens digit (`N`: the whole name spelled alike, day
  and month agreeing in either order, the year's century and unit digit agreeing; so
  also the whole name with day and month swapped). A namesake born on the same day ten
  or twenty years apart looks exactly like this.
- POSSIBLE on one whole field and the exact date (`tokens` rule 5): the given-name
  field spelled alike when the query's has two parts or more (`Gm`: the family name
  replaced, mistyped or unknown; one common given name on one day is shared by
  namesakes too often, so `G` of a one-part field needs the other field's pair or
  edge), or within one edit with the family field spelled alike (`D`), or the one name
  field of a person known by one field only (`O`, `H`). The family name alone never:
  twins share it and the date.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum


class Band(Enum):
    STRONG = "strong"
    POSSIBLE = "possible"


# Thresholds (see the module docstring).
MIN_BANDS_EACH_FIELD = 2  # field bands alone: at least this many on each field
MIN_BANDS_BOTH_FIELDS = 4  # and this many in all
MIN_BANDS_SHORT_EDGE = 3  # field bands (one on each field) backing a 2-letter-prefix edge
MIN_BANDS_ONE_FIELD = 3  # bands of one field backing an edge or agreeing sex
MIN_BANDS_SEX = 4  # field bands in all beside three of one field (bands alone)
MIN_BANDS_STRONG_PAIR = 3
MIN_KINDS_WINDOW = 2  # a year off without sex: of a pair, an edge and a 2-letter edge


@dataclass(frozen=True)
class _Evidence:
    """Which name evidence matched at one date level."""

    pair: bool
    edge: bool
    short_edge: bool
    bands_low: int  # bands of the field with fewer matched bands
    bands_high: int

    @property
    def bands(self) -> int:
        return self.bands_low + self.bands_high


def _evidence(kinds: Collection[str], level: str) -> _Evidence:
    """Evidence at `level`: "exact" (both windows) or "window" (at least one)."""
    dates: dict[str, set[str]] = {}
    for kind in kinds:
        name, _, date = kind.partition(".")
        dates.setdefault(name, set()).add(date)

    def at(name: str) -> bool:
        found = dates.get(name, set())
        if level == "exact":
            return {"w0", "w1"} <= found
        return bool(found & {"w0", "w1"})

    given = sum(1 for name in dates if name.startswith("La") and at(name))
    family = sum(1 for name in dates if name.startswith("Lb") and at(name))
    return _Evidence(
        pair=at("P"),
        edge=at("E") or at("ES"),  # a 4-letter prefix or a suffix
        short_edge=at("E2"),
        bands_low=min(given, family),
        bands_high=max(given, family),
    )


def _possible_on_dates(ev: _Evidence, exact: bool, sex: bool) -> bool:
    if ev.pair:
        return True
    if ev.edge and (exact or ev.bands_low >= 1 or sex or ev.bands_high >= MIN_BANDS_ONE_FIELD):
        return True
    if ev.short_edge and (
        ev.edge
        or (ev.bands_low >= 1 and ev.bands >= MIN_BANDS_SHORT_EDGE)
        or (sex and ev.bands >= 1)
    ):
        return True
    # Field bands alone: on the exact date, or with agreeing sex (a year off, bands alone
    # without sex are what short syllables such as "Wang" and "Yang" share).
    bands_alone = exact or sex
    if bands_alone and ev.bands_low >= MIN_BANDS_EACH_FIELD and ev.bands >= MIN_BANDS_BOTH_FIELDS:
        return True
    return bands_alone and ev.bands_high >= MIN_BANDS_ONE_FIELD and ev.bands >= MIN_BANDS_SEX


def _possible_on_window(ev: _Evidence, sex: bool) -> bool:
    """A date a year off. Without agreeing sex and initials, two of the three kinds of
    cross-field evidence (a pair, an edge, a 2-letter edge) and a band of each field: one
    kind alone, or bands alone, is what namesakes born a year apart on one birthday share
    more often than a person whose year was mistyped by one."""
    if sex:
        return _possible_on_dates(ev, exact=False, sex=True)
    return ev.pair + ev.edge + ev.short_edge >= MIN_KINDS_WINDOW and ev.bands_low >= 1


YEAR_ALONE_KINDS = frozenset({"S.y"})
# The given-name field spelled alike on the exact date: "Gm" when the query's field has
# several parts (alone a hit), "G" when it has one (a hit only backed by the other field).
GIVEN_FIELD_KINDS = frozenset({"G.d", "Gm.d"})
ONE_FIELD_KINDS = frozenset({"Gm.d", "D.d", "O.d", "H.d"})


def band(matched_kinds: Collection[str], *, year_alone: bool = True) -> Band | None:
    """The band of one record, from the set of the query's token kinds that matched it.

    With `year_alone` off, the whole name on the birth year alone (`S.y`) no longer
    makes a hit: fewer false leads (namesakes born the same year), fewer finds among
    people who know only their birth year. A federation's policy; see docs/matching.md.
    """
    graded = rule(matched_kinds, year_alone=year_alone)
    return graded[0] if graded is not None else None


def rule(matched_kinds: Collection[str], *, year_alone: bool = True) -> tuple[Band, str] | None:
    """The band and the name of the first rule that grants it (for measurement only:
    `band` is what a querier answers with). Names: "strong-pair", "strong-G",
    "possible-exact", "possible-window", "year-alone", "tens-slip", "one-field"."""
    kinds = set(matched_kinds)
    if not year_alone:
        kinds -= YEAR_ALONE_KINDS
    sex = kinds & {"X.w0", "X.w1"}
    exact = _evidence(kinds, "exact")
    if exact.pair and (exact.edge or exact.bands >= MIN_BANDS_STRONG_PAIR):
        return Band.STRONG, "strong-pair"
    if kinds & GIVEN_FIELD_KINDS and (exact.pair or exact.edge or exact.short_edge):
        return Band.STRONG, "strong-G"
    if _possible_on_dates(exact, exact=True, sex=len(sex) == 2):
        return Band.POSSIBLE, "possible-exact"
    window = _evidence(kinds, "window")
    if _possible_on_window(window, sex=bool(sex)):
        return Band.POSSIBLE, "possible-window"
    if "S.y" in kinds:
        return Band.POSSIBLE, "year-alone"
    if "N.t" in kinds:
        return Band.POSSIBLE, "tens-slip"
    if kinds & ONE_FIELD_KINDS:
        return Band.POSSIBLE, "one-field"
    return None
