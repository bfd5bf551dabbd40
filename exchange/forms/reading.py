"""Reading the values of a form file (TOML, JSON) or CLI flags: the conventions every field
kind of `exchange.forms.spec` shares. Each helper raises a `FormFieldError` naming the
field by its dotted path. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

from exchange.forms.base import DAY, EPOCH, MAX_INSTANT_MS, MS, fail
from exchange.forms.checks import FULL_DATE_RE


def what(value: object) -> str:
    """How a value of the wrong type is named in an error: "a number", "a table"."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a value of type {type(value).__name__}"


def at(prefix: str, key: str) -> str:
    """The dotted path of `key` inside the table at `prefix` ("" is the top level)."""
    return f"{prefix}.{key}" if prefix else key


def table(path: str, data: object, keys: Sequence[str]) -> Mapping[str, object]:
    """`data` as a table whose keys are all among `keys`; raise naming the first other."""
    if not isinstance(data, Mapping):
        fail(path or "form", f"expected a table of fields, not {what(data)}.")
    for key in data:
        if not isinstance(key, str):
            fail(path or "form", f"field names must be text, not {what(key)}.")
        if key not in keys:
            fail(at(path, key), f"unknown field; the accepted fields are {', '.join(keys)}.")
    return data


def as_text(field: str, value: object) -> str:
    """Text, trimmed; None is the empty text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        fail(field, f"expected text, not {what(value)}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        fail(field, "is not valid Unicode text.")
    return value.strip()


def as_list(field: str, value: object, single: type | tuple[type, ...], noun: str) -> list[object]:
    """A list of entries; None is empty and one value of type `single` a list of one."""
    if value is None:
        return []
    if isinstance(value, single):
        return [value]
    if not isinstance(value, list | tuple):
        fail(field, f"expected a list of {noun}, not {what(value)}.")
    return list(value)


def as_instant(field: str, value: object) -> int:
    """Unix ms of an ISO date (the end of that day, UTC) or an ISO date and time with zone."""
    shape = "an ISO date such as 2026-12-31 or a date and time with zone, 2026-12-31T17:00Z"
    if isinstance(value, str):
        text = value.strip()
        try:
            if FULL_DATE_RE.fullmatch(text):
                value = date.fromisoformat(text)
            else:
                value = datetime.fromisoformat(text)
        except ValueError:
            fail(field, f"{text!r} is not {shape}.")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            fail(field, f"{value.isoformat()} has no time zone; add one, such as Z or +01:00.")
        ms = (value - EPOCH) // MS
    elif isinstance(value, date):
        end = datetime(value.year, value.month, value.day, tzinfo=UTC)
        try:
            ms = (end + DAY - EPOCH) // MS - 1
        except OverflowError:
            ms = MAX_INSTANT_MS
    else:
        fail(field, f"expected {shape}, not {what(value)}.")
    if not 0 < ms <= MAX_INSTANT_MS:
        fail(field, "must be a time between 1970 and 9999.")
    return int(ms)


def as_calendar_date(field: str, value: object) -> str:
    """An ISO calendar date as text: a string, a TOML date, or a bare year number."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        fail(field, "expected a date without a time, such as 1990-05-01.")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 9999:
        return str(value)  # a bare year, as TOML reads `date_of_birth = 1990`
    return as_text(field, value)
