"""Limits, errors, case types and small helpers shared by the forms modules. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import NoReturn

from exchange.errors import InvalidFieldError, OversizedError

# --- limits --------------------------------------------------------------------------------

# Characters (code points) of one text field: the four classes of free text.
NAME_CHARS = 200  # names, references, identifiers, articles
LINE_CHARS = 500  # legal provisions, penalties, places, addresses
TEXT_CHARS = 4_000  # descriptions, reasons, notes, questions
LONG_CHARS = 20_000  # summary of facts, assistance details, answers, reports

# The class name of each limit, as docs/forms.md and a console show it.
TEXT_CLASSES = {NAME_CHARS: "name", LINE_CHARS: "line", TEXT_CHARS: "text", LONG_CHARS: "long"}

# Entries of one list.
MAX_LEGAL_BASES = 20
MAX_OFFENCES = 100
MAX_PERSONS = 200
MAX_IDENTIFIERS = 20
MAX_NATIONALITIES = 5
MAX_ALIASES = 50
MAX_WARRANTS = 50
MAX_QUESTIONS = 100
MAX_CONDITIONS = 50
MAX_ATTACHMENT_REFS = 1_000

# Serialised size of a CaseForm or TransitionDetails as received.
MAX_FORM_BYTES = 1024 * 1024
MAX_DETAILS_BYTES = 1024 * 1024

# Instants are unix milliseconds up to the end of year 9999.
MAX_INSTANT_MS = 253_402_300_799_999
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_YEAR = 1900

# --- errors --------------------------------------------------------------------------------


class FormFieldError(InvalidFieldError):
    """A form or details field with a value the protocol forbids.

    `field` is the dotted path of the field (`offences[1].description`), as written in
    a form file; the message is "Field <path>: <one sentence>".
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"Field {field}: {problem}")
        self.field = field


class FormFieldTooLargeError(OversizedError):
    """A text or list field beyond its limit; `field` is its dotted path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"Field {field}: {problem}")
        self.field = field


def fail(field: str, problem: str) -> NoReturn:
    raise FormFieldError(field, problem)


# --- case types ----------------------------------------------------------------------------


class CaseType(Enum):
    """The three kinds of case; the value is the slug a CLI or form file uses."""

    MLA = "mla"
    EXTRADITION = "extradition"
    VICTIM_ID = "victim-id"

    @property
    def label(self) -> str:
        """Short name used in sentences: "MLA request"."""
        return _CASE_TYPE_LABELS[self][0]

    @property
    def title(self) -> str:
        """Full name for display: "Mutual legal assistance request"."""
        return _CASE_TYPE_LABELS[self][1]


_CASE_TYPE_LABELS = {
    CaseType.MLA: ("MLA request", "Mutual legal assistance request"),
    CaseType.EXTRADITION: ("extradition-related request", "Extradition-related request"),
    CaseType.VICTIM_ID: ("victim-identification request", "Victim-identification request"),
}

# --- wording and time ----------------------------------------------------------------------


def a(noun: str) -> str:
    """`noun` with its indefinite article: "an MLA request", "a refusal"."""
    article = "an" if noun[:1].lower() in "aeiou" or noun.startswith("MLA") else "a"
    return f"{article} {noun}"


def join(parts: Sequence[str], sep: str = ", ") -> str:
    """The non-empty `parts` joined by `sep`."""
    return sep.join(p for p in parts if p)


def utc(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def format_instant(ms: int) -> str:
    try:
        return utc(ms).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, ValueError):
        return f"{ms} ms"
