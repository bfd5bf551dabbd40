"""The checks every field kind of `exchange.forms.spec` is made of: characters and length
of text, entries of a list, dates and instants, and the shapes of coded text (agency ids,
countries, language tags...). Each raises one error naming the field. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from datetime import date
from typing import Any

from exchange.agency import AGENCY_ID_RE
from exchange.forms.base import (
    MAX_INSTANT_MS,
    MIN_YEAR,
    FormFieldTooLargeError,
    fail,
    format_instant,
    utc,
)

# C0 controls and DEL, and the bidirectional overrides and isolates that can make text
# display in another order than it reads. Multi-line text may hold tab, LF and CR.
_BIDI = "\u202a-\u202e\u2066-\u2069"
BAD_LINE_CHARS = re.compile(f"[\x00-\x1f\x7f{_BIDI}]")
BAD_TEXT_CHARS = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f{_BIDI}]")
PARTIAL_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
FULL_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
COUNTRY_RE = re.compile(r"[A-Z]{2}")
# language[-script][-region](-variant)*: the subset of BCP 47 that names a language.
LANGUAGE_RE = re.compile(
    r"[a-z]{2,3}(?:-[a-z]{4})?(?:-(?:[a-z]{2}|\d{3}))?(?:-(?:[a-z\d]{5,8}|\d[a-z\d]{3}))*",
    re.IGNORECASE,
)
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
PHONE_RE = re.compile(r"\+?\d[\d ().-]{4,30}")
INTERPOL_RE = re.compile(r"[A-Z]-[1-9]\d{0,5}/(?:[1-9]|1[0-2])-(\d{4})")
MATCH_REF_RE = re.compile(r"[A-Za-z0-9._~:+/=-]{8,256}")
MAX_LANGUAGE_CHARS = 35


# --- shapes of coded text ------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """What a coded text value must look like, and the sentence for one that does not.

    `name` is what the value is, as docs/forms.md names the field's type; `pattern`, when
    the test is a regular expression, lets a console check the value as it is typed. An
    empty value is left to the field's `required` unless `skip_empty` is false.
    """

    name: str
    test: Callable[[str], bool]
    problem: Callable[[str], str]
    pattern: str = ""
    skip_empty: bool = True


def _matching(
    name: str,
    regex: re.Pattern[str],
    problem: Callable[[str], str],
    *,
    max_chars: int = 0,
    skip_empty: bool = True,
) -> Shape:
    def test(value: str) -> bool:
        return (not max_chars or len(value) <= max_chars) and bool(regex.fullmatch(value))

    return Shape(name, test, problem, regex.pattern, skip_empty)


AGENCY_ID = _matching(
    "agency id",
    AGENCY_ID_RE,
    lambda v: f"{v!r} is not an agency id of the form CC-NAME, such as GB-NCA.",
)
COUNTRY = _matching(
    "country",
    COUNTRY_RE,
    lambda v: f"{v!r} is not an ISO 3166-1 alpha-2 country code such as NG or GB.",
    skip_empty=False,
)
LANGUAGE = _matching(
    "BCP 47 tag",
    LANGUAGE_RE,
    lambda v: f"{v!r} is not a BCP 47 language tag such as en, fr or pt-BR.",
    max_chars=MAX_LANGUAGE_CHARS,
)
EMAIL = _matching("email address", EMAIL_RE, lambda v: f"{v!r} is not an email address.")
PHONE = _matching(
    "phone number",
    PHONE_RE,
    lambda v: f"{v!r} is not a phone number (digits, optionally +, spaces, dashes).",
)
INTERPOL_NOTICE = _matching(
    "INTERPOL notice",
    INTERPOL_RE,
    lambda v: f"{v!r} is not an INTERPOL notice reference such as A-1234/5-2026.",
)
MATCH_REFERENCE = _matching(
    "match reference",
    MATCH_REF_RE,
    lambda v: "must be the reference of a hit: 8 to 256 letters, digits or . _ ~ : + / = -.",
)
FILE_NAME = Shape(
    "file name",
    lambda v: "/" not in v and "\\" not in v and v.strip() not in (".", ".."),
    lambda v: f"{v!r} is not a plain file name.",
)

# --- checks --------------------------------------------------------------------------------


def check_text(
    field: str, value: str, limit: int, *, required: str = "", multiline: bool = False
) -> None:
    """Length, characters and presence of one free-text field.

    `required`, when given, is the sentence raised for an empty value.
    """
    if len(value) > limit:
        raise FormFieldTooLargeError(
            field, f"is {len(value):,} characters long; the limit is {limit:,}."
        )
    bad = (BAD_TEXT_CHARS if multiline else BAD_LINE_CHARS).search(value)
    if bad is not None:
        what = "control or text-direction" if multiline else "line break or control"
        fail(field, f"contains a {what} character (U+{ord(bad.group()):04X}).")
    if required and not value.strip():
        fail(field, required)


def check_count(field: str, items: Sized, limit: int, *, required: str = "") -> None:
    if len(items) > limit:
        raise FormFieldTooLargeError(field, f"has {len(items):,} entries; the limit is {limit:,}.")
    if required and not items:
        fail(field, required)


def check_unique(field: str, values: Sequence[Any], describe: Callable[[Any], str]) -> None:
    seen: set[Any] = set()
    for i, value in enumerate(values):
        if value in seen:
            fail(f"{field}[{i}]", f"{describe(value)} is listed twice.")
        seen.add(value)


def check_instant(field: str, value: int, now_ms: int | None, *, future: bool) -> None:
    """0 (not given), or an instant within range, and after `now_ms` when `future`."""
    if value == 0:
        return
    if not 0 < value <= MAX_INSTANT_MS:
        fail(field, f"{value} ms is not a time between 1970 and 9999.")
    if future and now_ms is not None and value <= now_ms:
        fail(field, f"{format_instant(value)} is in the past.")


def check_calendar_date(
    field: str, value: str, now_ms: int | None, *, partial: bool, required: str = ""
) -> None:
    """A calendar date (YYYY-MM-DD, or YYYY-MM / YYYY when `partial`), not in the future."""
    if not value:
        if required:
            fail(field, required)
        return
    m = (PARTIAL_DATE_RE if partial else FULL_DATE_RE).fullmatch(value)
    shape = "YYYY-MM-DD, YYYY-MM or YYYY" if partial else "YYYY-MM-DD"
    if m is None:
        fail(field, f"{value!r} is not a date of the form {shape}.")
    year, month, day = (int(p) for p in [*value.split("-"), "1", "1"][:3])
    try:
        earliest = date(year, month, day)
    except ValueError:
        fail(field, f"{value!r} is not a real date.")
    if year < MIN_YEAR:
        fail(field, f"{value!r} is before {MIN_YEAR}.")
    if now_ms is not None and earliest > utc(now_ms).date():
        fail(field, f"{value} is in the future.")
