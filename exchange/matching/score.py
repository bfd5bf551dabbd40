"""The shipped thresholds: which matched token kinds make a hit, and how strong.

The querier knows, for each record of a holder's index that shares at least one token
with its query, the set of its own token kinds that matched (`exchange.matching.
tokens` names them). `band` turns that set into the only answer the protocol gives: a
coarse band or nothing. No score leaves this module, so no raw similarity can leak
to an officer or a log (requirement P4).

The thresholds were set on the synthetic benchmark (`bench/matching_quality.py`) to
keep precision high, because every hit costs a formal follow-up and a supervisor's
time, and a false hit points an investigation at the wrong person:

- STRONG: an exact date (both windows) and the full name, or a cross-field code pair
  backed by a prefix edge or by field bands.
- POSSIBLE, with a date at most a year off and the day and month agreeing in either
  order: a full-name or cross-field code pair; or a code and a 4-letter prefix of the
  other field (with field-band support when the year is off); or a code and a
  2-letter prefix with field-band support or agreeing sex; or field bands on both
  fields (at least two bands on each and four in all); or, on the exact date only,
  agreeing sex and initials with three bands on one field and four in all.
- POSSIBLE on the year alone (one side knows only the year): the full name or a
  code pair, with all six field bands agreeing.
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
MIN_BANDS_SHORT_EDGE = 3  # field bands backing a 2-letter-prefix edge
MIN_BANDS_SEX = 4  # field bands backing agreeing sex and initials (exact date)
MIN_BANDS_ONE_FIELD_SEX = 3
MIN_BANDS_YEAR = 6  # field bands backing a name match on the year alone
MIN_BANDS_STRONG_PAIR = 3


@dataclass(frozen=True)
class _Evidence:
    """Which name evidence matched at one date level."""

    full: bool
    pair: bool
    edge: bool
    short_edge: bool
    bands_low: int  # bands of the field with fewer matched bands
    bands_high: int

    @property
    def bands(self) -> int:
        return self.bands_low + self.bands_high


def _evidence(kinds: Collection[str], level: str) -> _Evidence:
    """Evidence at `level`: "exact" (both windows), "window" (at least one) or "year"."""
    dates: dict[str, set[str]] = {}
    for kind in kinds:
        name, _, date = kind.partition(".")
        dates.setdefault(name, set()).add(date)

    def at(name: str) -> bool:
        found = dates.get(name, set())
        if level == "exact":
            return {"w0", "w1"} <= found
        if level == "window":
            return bool(found & {"w0", "w1"})
        return "y" in found

    given = sum(1 for name in dates if name.startswith("La") and at(name))
    family = sum(1 for name in dates if name.startswith("Lb") and at(name))
    return _Evidence(
        full=at("F"),
        pair=at("P"),
        edge=at("E"),
        short_edge=at("E2"),
        bands_low=min(given, family),
        bands_high=max(given, family),
    )


def _possible_on_dates(ev: _Evidence, exact: bool, sex: bool) -> bool:
    if ev.full or ev.pair:
        return True
    if ev.edge and (exact or ev.bands_low >= 1 or sex):
        return True
    if ev.short_edge and exact and (ev.bands_low >= 1 or sex) and ev.bands >= MIN_BANDS_SHORT_EDGE:
        return True
    if ev.bands_low >= MIN_BANDS_EACH_FIELD and ev.bands >= MIN_BANDS_BOTH_FIELDS:
        return True
    return exact and sex and ev.bands_high >= MIN_BANDS_ONE_FIELD_SEX and ev.bands >= MIN_BANDS_SEX


def band(matched_kinds: Collection[str]) -> Band | None:
    """The band of one record, from the set of the query's token kinds that matched it."""
    kinds = set(matched_kinds)
    sex = "X.d" in kinds
    exact = _evidence(kinds, "exact")
    if exact.full or (exact.pair and (exact.edge or exact.bands >= MIN_BANDS_STRONG_PAIR)):
        return Band.STRONG
    if _possible_on_dates(exact, exact=True, sex=sex):
        return Band.POSSIBLE
    if _possible_on_dates(_evidence(kinds, "window"), exact=False, sex=sex):
        return Band.POSSIBLE
    year = _evidence(kinds, "year")
    if (year.full or year.pair) and year.bands >= MIN_BANDS_YEAR:
        return Band.POSSIBLE
    return None
