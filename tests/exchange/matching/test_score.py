"""The shipped thresholds: which sets of matched token kinds are a hit, and how strong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.matching.score import Band, band

EXACT = ("w0", "w1")


def kinds(*names: str, dates: tuple[str, ...] = EXACT) -> set[str]:
    return {f"{n}.{d}" for n in names for d in dates}


BANDS_BOTH = ("La0", "La1", "Lb0", "Lb1")
ALL_BANDS = ("La0", "La1", "La2", "Lb0", "Lb1", "Lb2")


SEX = {"X.w0", "X.w1"}  # sex and initials agree on the exact date


@pytest.mark.parametrize(
    ("matched", "expected"),
    [
        (kinds("P", *ALL_BANDS), Band.STRONG),
        (kinds("P", "E"), Band.STRONG),
        (kinds("P", "ES"), Band.STRONG),  # a suffix edge backs a pair like a prefix edge
        (kinds("P", "La0", "Lb0", "Lb1"), Band.STRONG),
        (kinds("P"), Band.POSSIBLE),  # a code pair, nothing else
        (kinds("P", dates=("w1",)), None),  # a year off, no sex: a pair alone is too little
        (kinds("P", dates=("w1",)) | {"X.w1"}, Band.POSSIBLE),  # ... with sex it is a hit
        (kinds("P", "E2", "La0", "Lb0", dates=("w1",)), Band.POSSIBLE),  # ... or two kinds
        (kinds("P", "ES", "La1", "Lb2", dates=("w0",)), Band.POSSIBLE),  # and a band each
        (kinds("P", "E2", dates=("w1",)), None),
        (kinds("P", "E", "E2", "La0", "La1", "La2", dates=("w1",)), None),  # one field's bands
        (kinds("E"), Band.POSSIBLE),
        (kinds("ES"), Band.POSSIBLE),
        (kinds("E", dates=("w0",)), None),  # a year off needs support for an edge
        (kinds("E", "La0", "Lb0", dates=("w0",)), None),  # a year off, no sex: one kind
        (kinds("E", "La0", "Lb0", dates=("w0",)) | {"X.w0"}, Band.POSSIBLE),
        (kinds("ES", "La0", "La1", "La2", dates=("w0",)), None),  # one given name, "-enko"
        (kinds("ES", "Lb0", "Lb1", "Lb2", dates=("w0",)) | {"X.w0"}, Band.POSSIBLE),
        (kinds("E", dates=("w0",)) | {"X.w0"}, Band.POSSIBLE),  # sex on the shared window
        (kinds(*BANDS_BOTH), Band.POSSIBLE),  # bands alone on the exact date
        (kinds(*BANDS_BOTH, dates=("w0",)), None),  # ... a year off, short syllables share them
        (kinds(*BANDS_BOTH) | SEX, Band.POSSIBLE),
        (kinds("La0", "La1", "La2"), None),  # one field only: a twin looks like this
        (kinds("La0", "La1", "La2", "Lb0"), Band.POSSIBLE),  # one field's three, four in all
        (kinds("La0", "La1", "Lb0"), None),  # three bands in all: too little
        (kinds("La0", "La1", "Lb0", "Lb1"), Band.POSSIBLE),
        (kinds("La0", "La1", "Lb0", "Lb1") | SEX, Band.POSSIBLE),
        (kinds("La0", "La1", "Lb0", "Lb1") - {"Lb0.w1"}, None),  # bands alone, one a year off
        (kinds("La0", "La1", "Lb0", "Lb1") - {"Lb0.w1"} | {"X.w0"}, Band.POSSIBLE),  # ... sex
        (kinds("La0", "La1", "Lb0", "Lb1", dates=("w1",)), None),  # all a year off, no sex
        (kinds("La0", "La1", "La2", "Lb0", "Lb1", "Lb2", dates=("w1",)), None),
        (kinds("La0", "La1", "La2", "Lb0") | SEX, Band.POSSIBLE),  # sex and initials
        (kinds("La0", "La1", "La2", "Lb0", dates=("w1",)) | {"X.w1"}, Band.POSSIBLE),
        (kinds("E2", "La0", "La1", "La2"), None),  # a twin with a like given name
        (kinds("E2", "La0", "La1", "La2") | SEX, Band.POSSIBLE),
        (kinds("E2", "La0", "La1", "Lb0"), Band.POSSIBLE),  # a band on each field
        (kinds("E2", "E", dates=("w1",)), None),  # a year off without sex: no band
        (kinds("E2", "E", "La0", "Lb0", dates=("w1",)), Band.POSSIBLE),
        (kinds("E2") | SEX, None),  # sex and a short prefix, no band
        (kinds("E2", "Lb2") | SEX, Band.POSSIBLE),
        ({"S.y"}, Band.POSSIBLE),  # the whole name spelled alike, one side knows the year
        ({"N.t"}, Band.POSSIBLE),  # ... or on the birthday, the year's tens digit slipped
        ({"N.y", "N.w0", "S.t"}, None),  # the whole name counts on those date keys only
        (kinds("P", *ALL_BANDS, dates=("y",)), None),  # no such kinds on the year
        ({"Gm.d"}, Band.POSSIBLE),  # a given-name field of two parts spelled alike, same day
        ({"G.d"}, None),  # ... of one part: namesakes share one common name on one day
        ({"G.d"} | kinds("E"), Band.STRONG),  # ... unless the other field's beginning agrees
        ({"G.d"} | kinds("E2"), Band.STRONG),
        ({"Gm.d"} | kinds("ES"), Band.STRONG),
        ({"G.d"} | kinds("E", dates=("w0",)), None),
        ({"Gm.d"} | kinds("E", dates=("w0",)), Band.POSSIBLE),
        ({"D.d"}, Band.POSSIBLE),  # one edit in a short given name, the rest exact
        ({"O.d"}, Band.POSSIBLE),  # a person known by one name field
        ({"H.d"}, Band.POSSIBLE),  # a one-field query meets a family field
        ({"G.w0", "Gm.w1", "D.w1", "O.y"}, None),  # one-field kinds count on the exact date only
        (kinds("La0", dates=("y",)), None),
        (set(), None),
        (SEX, None),
        ({"X.w0"}, None),
    ],
)
def test_shipped_thresholds(matched: set[str], expected: Band | None) -> None:
    assert band(matched) is expected


def test_a_strong_band_needs_the_exact_date() -> None:
    assert band(kinds("P", "E", *ALL_BANDS, dates=("w0",))) is Band.POSSIBLE
    assert band({"S.y"}) is Band.POSSIBLE


def test_band_accepts_any_collection_and_ignores_unknown_kinds() -> None:
    assert band(sorted(kinds("P", "E"))) is Band.STRONG
    assert band(["Z.w0", "Z.w1"]) is None


_RANK = {None: 0, Band.POSSIBLE: 1, Band.STRONG: 2}
_ALL = sorted(
    kinds("P", "E", "ES", "E2", "X", *ALL_BANDS, dates=("w0", "w1"))
    | {"S.y", "N.t", "G.d", "D.d", "O.d", "H.d"}
)


@given(st.sets(st.sampled_from(_ALL)), st.sets(st.sampled_from(_ALL)))
def test_more_evidence_never_lowers_the_band(base: set[str], extra: set[str]) -> None:
    assert _RANK[band(base | extra)] >= _RANK[band(base)]


def test_the_year_alone_rule_can_be_switched_off() -> None:
    from exchange.matching.score import YEAR_ALONE_KINDS

    assert band(YEAR_ALONE_KINDS) is Band.POSSIBLE
    assert band(YEAR_ALONE_KINDS, year_alone=False) is None
    # Evidence beyond the year still counts when the rule is off.
    full = {"P.w0", "P.w1", *YEAR_ALONE_KINDS}
    assert band(full, year_alone=False) is band(full)
