"""Case forms: structured MLA, extradition and victim-identification requests, and the
details each case transition carries, with validation. Pure: no I/O.

The wire messages are `mlax.v1.CaseForm` and `mlax.v1.TransitionDetails`
(proto/mlax/v1/forms.proto). This module

- builds them from the readable mappings of a TOML or JSON form file or CLI flags
  (`form_from_mapping`, `details_from_mapping`): vocabulary slugs such as
  `"untoc-art18"`, ISO dates, unknown keys and values rejected;
- validates them (`validate_form`, `validate_details`), raising one error per bad field
  that names it by its dotted path (`offences[1].description`), the same path a form
  file uses, so an officer finds the line to fix;
- answers the questions the case machinery asks of a form (`case_type_of`,
  `urgency_of`, `parties_of`, `deadline_of`) and renders forms and details as labelled
  rows for a timeline (`describe_form`, `describe_details`).

Every vocabulary (slug <-> proto enum value <-> label) is defined once, below, and
exported for CLIs that list the choices. docs/forms.md documents every field and rule.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from types import MappingProxyType
from typing import Any, Generic, NoReturn, TypeVar, cast

from exchange._proto.mlax.v1 import envelope_pb2
from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.agency import AGENCY_ID_RE
from exchange.case import Action, Urgency
from exchange.errors import InvalidFieldError, OversizedError
from exchange.wire import parse

__all__ = [
    "ACTION_DETAILS",
    "ASSISTANCE_TYPES",
    "ENTITY_KINDS",
    "EXTRADITION_KINDS",
    "IDENTIFIER_KINDS",
    "LEGAL_BASES",
    "PERSON_ROLES",
    "REFUSAL_GROUNDS",
    "URGENCIES",
    "VICTIM_ID_PURPOSES",
    "WARRANT_KINDS",
    "CaseType",
    "FormFieldError",
    "FormFieldTooLargeError",
    "Term",
    "Vocabulary",
    "case_type_of",
    "deadline_of",
    "describe_details",
    "describe_form",
    "details_from_bytes",
    "details_from_mapping",
    "form_from_bytes",
    "form_from_mapping",
    "message_type_of",
    "parties_of",
    "urgency_of",
    "validate_details",
    "validate_form",
]

# --- limits --------------------------------------------------------------------------------

# Characters (code points) of one text field.
NAME_CHARS = 200  # names, references, identifiers, articles
LINE_CHARS = 500  # legal provisions, penalties, places, addresses
TEXT_CHARS = 4_000  # descriptions, reasons, notes, questions
LONG_CHARS = 20_000  # summary of facts, assistance details, answers, reports

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
_DAY = timedelta(days=1)
_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_YEAR = 1900

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


def _fail(field: str, problem: str) -> NoReturn:
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


def _a(noun: str) -> str:
    """`noun` with its indefinite article: "an MLA request", "a refusal"."""
    article = "an" if noun[:1].lower() in "aeiou" or noun.startswith("MLA") else "a"
    return f"{article} {noun}"


_ONEOF_OF_CASE_TYPE = {
    CaseType.MLA: "mla",
    CaseType.EXTRADITION: "extradition",
    CaseType.VICTIM_ID: "victim_id",
}
_CASE_TYPE_OF_ONEOF = {v: k for k, v in _ONEOF_OF_CASE_TYPE.items()}
_MESSAGE_TYPES = {
    CaseType.MLA: envelope_pb2.MESSAGE_TYPE_MLA_REQUEST,
    CaseType.EXTRADITION: envelope_pb2.MESSAGE_TYPE_EXTRADITION_REQUEST,
    CaseType.VICTIM_ID: envelope_pb2.MESSAGE_TYPE_VICTIM_ID_REQUEST,
}
_ALL_CASE_TYPES = frozenset(CaseType)
_MLA_LIKE = frozenset({CaseType.MLA, CaseType.VICTIM_ID})
_EXTRADITION_ONLY = frozenset({CaseType.EXTRADITION})

# --- vocabularies --------------------------------------------------------------------------

V = TypeVar("V", bound=int)


@dataclass(frozen=True)
class Term(Generic[V]):
    """One choice of a vocabulary: its slug in form files, its proto value, its label.

    `needs_details` (legal bases only) names what `details` must then hold, and
    `case_types` the case types the instrument may serve as a basis for.
    """

    slug: str
    value: V
    label: str
    needs_details: str = ""
    case_types: frozenset[CaseType] = _ALL_CASE_TYPES


@dataclass(frozen=True)
class Vocabulary(Generic[V]):
    """A closed list of choices mirroring one proto enum (without its UNSPECIFIED)."""

    noun: str
    terms: tuple[Term[V], ...]

    def __post_init__(self) -> None:
        slugs = [t.slug for t in self.terms]
        values = [t.value for t in self.terms]
        if len(set(slugs)) != len(slugs) or len(set(values)) != len(values) or 0 in values:
            raise ValueError(f"Vocabulary {self.noun}: slugs and values must be unique, not 0.")

    def __iter__(self) -> Iterator[Term[V]]:
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)

    def slugs(self) -> tuple[str, ...]:
        return tuple(t.slug for t in self.terms)

    def term(self, value: int) -> Term[V] | None:
        """The term of a proto value, or None for UNSPECIFIED and unknown values."""
        for t in self.terms:
            if t.value == value:
                return t
        return None

    def label(self, value: int) -> str:
        """The label of a proto value; a placeholder for one this version does not know."""
        t = self.term(value)
        return t.label if t is not None else f"unknown {self.noun} ({value})"

    def check(self, field: str, value: int) -> Term[V]:
        """The term of a proto value, or raise naming `field`."""
        t = self.term(value)
        if t is None:
            if value == 0:
                _fail(field, f"{_a(self.noun)} is required.")
            _fail(field, f"{value} is not a known {self.noun}; accepted: {self._accepted()}.")
        return t

    def from_slug(self, field: str, slug: str) -> V:
        """The proto value of `slug` (case and `_`/`-` insensitive), or raise listing choices."""
        wanted = slug.strip().lower().replace("_", "-")
        for t in self.terms:
            if t.slug == wanted:
                return t.value
        _fail(field, f"{slug!r} is not a known {self.noun}; accepted: {self._accepted()}.")

    def _accepted(self) -> str:
        return ", ".join(self.slugs())


def _vocab(noun: str, *terms: Term[V]) -> Vocabulary[V]:
    return Vocabulary(noun, terms)


LEGAL_BASES = _vocab(
    "legal basis",
    Term("untoc-art18", pb.LEGAL_INSTRUMENT_UNTOC_ART18, "UNTOC art. 18", case_types=_MLA_LIKE),
    Term(
        "untoc-art16",
        pb.LEGAL_INSTRUMENT_UNTOC_ART16,
        "UNTOC art. 16",
        case_types=_EXTRADITION_ONLY,
    ),
    Term("palermo-protocol", pb.LEGAL_INSTRUMENT_PALERMO_PROTOCOL, "Palermo Protocol"),
    Term(
        "smuggling-protocol",
        pb.LEGAL_INSTRUMENT_SMUGGLING_PROTOCOL,
        "Smuggling of Migrants Protocol",
    ),
    Term("uncac-art46", pb.LEGAL_INSTRUMENT_UNCAC_ART46, "UNCAC art. 46", case_types=_MLA_LIKE),
    Term(
        "uncac-art44",
        pb.LEGAL_INSTRUMENT_UNCAC_ART44,
        "UNCAC art. 44",
        case_types=_EXTRADITION_ONLY,
    ),
    Term(
        "budapest-convention",
        pb.LEGAL_INSTRUMENT_BUDAPEST_CONVENTION,
        "Budapest Convention on Cybercrime",
    ),
    Term(
        "european-mla-convention-1959",
        pb.LEGAL_INSTRUMENT_ECMLA_1959,
        "European Convention on Mutual Assistance in Criminal Matters (1959)",
        case_types=_MLA_LIKE,
    ),
    Term(
        "european-extradition-convention-1957",
        pb.LEGAL_INSTRUMENT_EUROPEAN_CONVENTION_EXTRADITION_1957,
        "European Convention on Extradition (1957)",
        case_types=_EXTRADITION_ONLY,
    ),
    Term(
        "bilateral-mla-treaty",
        pb.LEGAL_INSTRUMENT_BILATERAL_MLA_TREATY,
        "Bilateral MLA treaty",
        needs_details="the title of the treaty",
        case_types=_MLA_LIKE,
    ),
    Term(
        "bilateral-extradition-treaty",
        pb.LEGAL_INSTRUMENT_BILATERAL_EXTRADITION_TREATY,
        "Bilateral extradition treaty",
        needs_details="the title of the treaty",
        case_types=_EXTRADITION_ONLY,
    ),
    Term("reciprocity", pb.LEGAL_INSTRUMENT_RECIPROCITY, "Reciprocity"),
    Term("other", pb.LEGAL_INSTRUMENT_OTHER, "Other", needs_details="a description"),
)

# The instrument serving the other purpose, suggested when one is cited for the wrong one.
_COUNTERPART = {
    "untoc-art18": "untoc-art16",
    "uncac-art46": "uncac-art44",
    "european-mla-convention-1959": "european-extradition-convention-1957",
    "bilateral-mla-treaty": "bilateral-extradition-treaty",
}
_COUNTERPART |= {v: k for k, v in _COUNTERPART.items()}

ASSISTANCE_TYPES = _vocab(
    "assistance type",
    Term("taking-evidence", pb.ASSISTANCE_TYPE_TAKING_EVIDENCE, "Taking evidence or statements"),
    Term("witness-hearing", pb.ASSISTANCE_TYPE_WITNESS_HEARING, "Witness hearing"),
    Term("search-and-seizure", pb.ASSISTANCE_TYPE_SEARCH_AND_SEIZURE, "Search and seizure"),
    Term("freezing-of-assets", pb.ASSISTANCE_TYPE_FREEZING_OF_ASSETS, "Freezing of assets"),
    Term(
        "confiscation-of-assets",
        pb.ASSISTANCE_TYPE_CONFISCATION_OF_ASSETS,
        "Confiscation of assets",
    ),
    Term("banking-records", pb.ASSISTANCE_TYPE_BANKING_RECORDS, "Banking and financial records"),
    Term(
        "e-evidence-preservation",
        pb.ASSISTANCE_TYPE_E_EVIDENCE_PRESERVATION,
        "Preservation of electronic evidence",
    ),
    Term(
        "e-evidence-production",
        pb.ASSISTANCE_TYPE_E_EVIDENCE_PRODUCTION,
        "Production of electronic evidence",
    ),
    Term("service-of-documents", pb.ASSISTANCE_TYPE_SERVICE_OF_DOCUMENTS, "Service of documents"),
    Term(
        "locating-persons",
        pb.ASSISTANCE_TYPE_LOCATING_PERSONS,
        "Identifying and locating persons",
    ),
    Term(
        "temporary-transfer",
        pb.ASSISTANCE_TYPE_TEMPORARY_TRANSFER,
        "Temporary transfer of detained persons",
    ),
    Term("other", pb.ASSISTANCE_TYPE_OTHER, "Other assistance"),
)

URGENCIES = _vocab(
    "urgency",
    Term("emergency", pb.URGENCY_EMERGENCY, "Emergency"),
    Term("urgent", pb.URGENCY_URGENT, "Urgent"),
    Term("ordinary", pb.URGENCY_ORDINARY, "Ordinary"),
)

ENTITY_KINDS = _vocab(
    "kind of person",
    Term("natural-person", pb.ENTITY_KIND_NATURAL_PERSON, "Natural person"),
    Term("legal-person", pb.ENTITY_KIND_LEGAL_PERSON, "Legal person"),
)

PERSON_ROLES = _vocab(
    "role",
    Term("suspect", pb.PERSON_ROLE_SUSPECT, "Suspect"),
    Term("accused", pb.PERSON_ROLE_ACCUSED, "Accused"),
    Term("victim", pb.PERSON_ROLE_VICTIM, "Victim"),
    Term("witness", pb.PERSON_ROLE_WITNESS, "Witness"),
    Term("expert", pb.PERSON_ROLE_EXPERT, "Expert"),
    Term("account-holder", pb.PERSON_ROLE_ACCOUNT_HOLDER, "Account holder"),
    Term("third-party", pb.PERSON_ROLE_THIRD_PARTY, "Third party"),
)

IDENTIFIER_KINDS = _vocab(
    "identifier kind",
    Term("passport", pb.IDENTIFIER_KIND_PASSPORT, "Passport"),
    Term("national-id", pb.IDENTIFIER_KIND_NATIONAL_ID, "National identity number"),
    Term("driving-licence", pb.IDENTIFIER_KIND_DRIVING_LICENCE, "Driving licence"),
    Term("phone-number", pb.IDENTIFIER_KIND_PHONE_NUMBER, "Phone number"),
    Term("email-address", pb.IDENTIFIER_KIND_EMAIL_ADDRESS, "Email address"),
    Term("bank-account", pb.IDENTIFIER_KIND_BANK_ACCOUNT, "Bank account"),
    Term(
        "company-registration",
        pb.IDENTIFIER_KIND_COMPANY_REGISTRATION,
        "Company registration",
    ),
    Term("online-account", pb.IDENTIFIER_KIND_ONLINE_ACCOUNT, "Online account"),
    Term("ip-address", pb.IDENTIFIER_KIND_IP_ADDRESS, "IP address"),
    Term(
        "vehicle-registration",
        pb.IDENTIFIER_KIND_VEHICLE_REGISTRATION,
        "Vehicle registration",
    ),
    Term("other", pb.IDENTIFIER_KIND_OTHER, "Other identifier"),
)

EXTRADITION_KINDS = _vocab(
    "kind of extradition request",
    Term(
        "provisional-arrest",
        pb.EXTRADITION_KIND_PROVISIONAL_ARREST,
        "Request for provisional arrest",
    ),
    Term("extradition", pb.EXTRADITION_KIND_EXTRADITION, "Extradition request"),
    Term(
        "supplementary-information",
        pb.EXTRADITION_KIND_SUPPLEMENTARY_INFORMATION,
        "Supplementary information",
    ),
    Term(
        "surrender-arrangements",
        pb.EXTRADITION_KIND_SURRENDER_ARRANGEMENTS,
        "Surrender arrangements",
    ),
)

WARRANT_KINDS = _vocab(
    "kind of warrant or judgment",
    Term("arrest-warrant", pb.WARRANT_KIND_ARREST_WARRANT, "Arrest warrant"),
    Term("conviction-judgment", pb.WARRANT_KIND_CONVICTION_JUDGMENT, "Conviction judgment"),
)

VICTIM_ID_PURPOSES = _vocab(
    "purpose",
    Term(
        "victim-assistance",
        pb.VICTIM_ID_PURPOSE_VICTIM_ASSISTANCE,
        "Protection of and assistance to the victim",
    ),
    Term("repatriation", pb.VICTIM_ID_PURPOSE_REPATRIATION, "Repatriation"),
    Term(
        "criminal-proceedings",
        pb.VICTIM_ID_PURPOSE_CRIMINAL_PROCEEDINGS,
        "Criminal investigation or prosecution",
    ),
    Term("family-tracing", pb.VICTIM_ID_PURPOSE_FAMILY_TRACING, "Family tracing"),
)

# No bank-secrecy or fiscal-offence ground: UNTOC art. 18(8), 18(22) and 16(15) forbid them.
REFUSAL_GROUNDS = _vocab(
    "refusal ground",
    Term("political-offence", pb.REFUSAL_GROUND_POLITICAL_OFFENCE, "Political offence"),
    Term("military-offence", pb.REFUSAL_GROUND_MILITARY_OFFENCE, "Military offence"),
    Term("ne-bis-in-idem", pb.REFUSAL_GROUND_NE_BIS_IN_IDEM, "Ne bis in idem"),
    Term(
        "no-dual-criminality",
        pb.REFUSAL_GROUND_NO_DUAL_CRIMINALITY,
        "Lack of dual criminality",
    ),
    Term(
        "essential-interests",
        pb.REFUSAL_GROUND_ESSENTIAL_INTERESTS,
        "Sovereignty, security, ordre public or other essential interests",
    ),
    Term(
        "death-penalty",
        pb.REFUSAL_GROUND_DEATH_PENALTY,
        "Death penalty without sufficient assurances",
    ),
    Term(
        "torture-or-persecution",
        pb.REFUSAL_GROUND_TORTURE_OR_PERSECUTION,
        "Risk of torture or persecution",
    ),
    Term(
        "statute-of-limitations",
        pb.REFUSAL_GROUND_STATUTE_OF_LIMITATIONS,
        "Statute of limitations",
    ),
    Term(
        "insufficient-information",
        pb.REFUSAL_GROUND_INSUFFICIENT_INFORMATION,
        "Insufficient information",
    ),
    Term("own-national", pb.REFUSAL_GROUND_OWN_NATIONAL, "Person sought is a national"),
    Term("other", pb.REFUSAL_GROUND_OTHER, "Other ground"),
)

# Which TransitionDetails kind (oneof field) each action carries; SUBMIT carries none.
ACTION_DETAILS: Mapping[Action, str | None] = MappingProxyType(
    {
        Action.SUBMIT: None,
        Action.ACKNOWLEDGE: "acknowledge",
        Action.REQUEST_INFO: "request_info",
        Action.PROVIDE_INFO: "provide_info",
        Action.ACCEPT: "accept",
        Action.REFUSE: "refuse",
        Action.START_EXECUTION: "start_execution",
        Action.REPORT_PARTIAL: "report",
        Action.REPORT_EXECUTED: "report",
        Action.WITHDRAW: "withdraw",
        Action.CLOSE: "close",
    }
)

# --- shapes --------------------------------------------------------------------------------

# C0 controls and DEL, and the bidirectional overrides and isolates that can make text
# display in another order than it reads. Multi-line text may hold tab, LF and CR.
_BIDI = "\u202a-\u202e\u2066-\u2069"
_BAD_LINE_CHARS = re.compile(f"[\x00-\x1f\x7f{_BIDI}]")
_BAD_TEXT_CHARS = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f{_BIDI}]")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_PARTIAL_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_FULL_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# language[-script][-region](-variant)*: the subset of BCP 47 that names a language.
_LANGUAGE_RE = re.compile(
    r"[a-z]{2,3}(?:-[a-z]{4})?(?:-(?:[a-z]{2}|\d{3}))?(?:-(?:[a-z\d]{5,8}|\d[a-z\d]{3}))*",
    re.IGNORECASE,
)
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_PHONE_RE = re.compile(r"\+?\d[\d ().-]{4,30}")
_INTERPOL_RE = re.compile(r"[A-Z]-[1-9]\d{0,5}/(?:[1-9]|1[0-2])-(\d{4})")
_MATCH_REF_RE = re.compile(r"[A-Za-z0-9._~:+/=-]{8,256}")


def _check_text(
    field: str,
    value: str,
    limit: int,
    *,
    required: str = "",
    multiline: bool = False,
) -> None:
    """Length, characters and presence of one text field.

    `required`, when given, is the sentence raised for an empty value.
    """
    if len(value) > limit:
        raise FormFieldTooLargeError(
            field, f"is {len(value):,} characters long; the limit is {limit:,}."
        )
    bad = (_BAD_TEXT_CHARS if multiline else _BAD_LINE_CHARS).search(value)
    if bad is not None:
        what = "control or text-direction character" if multiline else "line break or control"
        _fail(field, f"contains a {what} character (U+{ord(bad.group()):04X}).")
    if required and not value.strip():
        _fail(field, required)


def _check_count(field: str, items: Sized, limit: int, *, required: str = "") -> None:
    if len(items) > limit:
        raise FormFieldTooLargeError(field, f"has {len(items):,} entries; the limit is {limit:,}.")
    if required and not items:
        _fail(field, required)


def _check_texts(field: str, values: Sequence[str], limit: int, max_items: int) -> None:
    _check_count(field, values, max_items)
    for i, value in enumerate(values):
        _check_text(f"{field}[{i}]", value, limit, required="an entry may not be empty.")


def _check_unique(field: str, values: Sequence[Any], describe: Callable[[Any], str]) -> None:
    seen: set[Any] = set()
    for i, value in enumerate(values):
        if value in seen:
            _fail(f"{field}[{i}]", f"{describe(value)} is listed twice.")
        seen.add(value)


def _check_instant(field: str, value: int, now_ms: int | None, *, future: bool) -> None:
    """0 (not given), or an instant within range, and after `now_ms` when `future`."""
    if value == 0:
        return
    if not 0 < value <= MAX_INSTANT_MS:
        _fail(field, f"{value} ms is not a time between 1970 and 9999.")
    if future and now_ms is not None and value <= now_ms:
        _fail(field, f"{_format_instant(value)} is in the past.")


def _check_calendar_date(
    field: str, value: str, now_ms: int | None, *, partial: bool, required: str = ""
) -> None:
    if not value:
        if required:
            _fail(field, required)
        return
    m = (_PARTIAL_DATE_RE if partial else _FULL_DATE_RE).fullmatch(value)
    shape = "YYYY-MM-DD, YYYY-MM or YYYY" if partial else "YYYY-MM-DD"
    if m is None:
        _fail(field, f"{value!r} is not a date of the form {shape}.")
    year, month, day = (int(p) for p in [*value.split("-"), "1", "1"][:3])
    try:
        earliest = date(year, month, day)
    except ValueError:
        _fail(field, f"{value!r} is not a real date.")
    if year < _MIN_YEAR:
        _fail(field, f"{value!r} is before {_MIN_YEAR}.")
    if now_ms is not None and earliest > _utc(now_ms).date():
        _fail(field, f"{value} is in the future.")


def _check_countries(field: str, values: Sequence[str]) -> None:
    _check_count(field, values, MAX_NATIONALITIES)
    for i, value in enumerate(values):
        if not _COUNTRY_RE.fullmatch(value):
            _fail(
                f"{field}[{i}]",
                f"{value!r} is not an ISO 3166-1 alpha-2 country code such as NG or GB.",
            )
    _check_unique(field, values, repr)


# --- validation: shared parts ------------------------------------------------------------


def _check_authority(field: str, present: bool, authority: pb.Authority, what: str) -> None:
    if not present:
        _fail(field, f"the {what} authority is required.")
    agency = authority.agency_id
    if not agency:
        _fail(f"{field}.agency_id", f"the {what} agency id is required.")
    if not AGENCY_ID_RE.fullmatch(agency):
        _fail(
            f"{field}.agency_id",
            f"{agency!r} is not an agency id of the form CC-NAME, such as GB-NCA.",
        )
    _check_text(f"{field}.name", authority.name, NAME_CHARS, required="a name is required.")


def _check_parties(
    requesting_present: bool,
    requesting: pb.Authority,
    requested_present: bool,
    requested: pb.Authority,
) -> None:
    _check_authority("requesting_authority", requesting_present, requesting, "requesting")
    _check_authority("requested_authority", requested_present, requested, "requested")
    if requesting.agency_id == requested.agency_id:
        _fail(
            "requested_authority.agency_id",
            f"a request from {requesting.agency_id} cannot be addressed to itself.",
        )


def _check_legal_bases(
    items: Sequence[pb.LegalBasis], case_type: CaseType, *, required: bool
) -> None:
    field = "legal_basis"
    _check_count(
        field,
        items,
        MAX_LEGAL_BASES,
        required=f"{_a(case_type.label)} needs at least one legal basis." if required else "",
    )
    for i, basis in enumerate(items):
        here = f"{field}[{i}]"
        term = LEGAL_BASES.check(f"{here}.instrument", basis.instrument)
        if case_type not in term.case_types:
            purpose = "extradition" if term.case_types == _EXTRADITION_ONLY else "MLA"
            hint = _COUNTERPART.get(term.slug)
            _fail(
                f"{here}.instrument",
                f"{term.slug} is a legal basis for {purpose}, not for {_a(case_type.label)}"
                + (f" (use {hint})." if hint else "."),
            )
        _check_text(f"{here}.article", basis.article, NAME_CHARS)
        needs = f"{term.slug} needs {term.needs_details} here." if term.needs_details else ""
        _check_text(f"{here}.details", basis.details, TEXT_CHARS, required=needs)
    _check_unique(
        field,
        [(b.instrument, b.article.strip(), b.details.strip()) for b in items],
        lambda key: f"the legal basis {LEGAL_BASES.label(key[0])}",
    )


def _check_offences(
    items: Sequence[pb.Offence], case_type: CaseType, *, required: bool, extradition: bool
) -> None:
    _check_count(
        "offences",
        items,
        MAX_OFFENCES,
        required=f"{_a(case_type.label)} needs at least one offence." if required else "",
    )
    for i, offence in enumerate(items):
        here = f"offences[{i}]"
        _check_text(
            f"{here}.description",
            offence.description,
            TEXT_CHARS,
            required="each offence needs a description.",
            multiline=True,
        )
        _check_text(
            f"{here}.legal_provision",
            offence.legal_provision,
            LINE_CHARS,
            required="each offence needs the provision of law that defines it.",
        )
        _check_text(
            f"{here}.maximum_penalty",
            offence.maximum_penalty,
            LINE_CHARS,
            required=(
                "extradition needs the maximum penalty the law provides for each offence."
                if extradition
                else ""
            ),
        )
        _check_text(f"{here}.penalty_imposed", offence.penalty_imposed, LINE_CHARS)
        _check_text(f"{here}.remaining_sentence", offence.remaining_sentence, LINE_CHARS)
        imposed = bool(offence.penalty_imposed.strip())
        remaining = bool(offence.remaining_sentence.strip())
        if imposed and not remaining and extradition:
            _fail(
                f"{here}.remaining_sentence",
                "for enforcement of a sentence, state the part still to be served.",
            )
        if remaining and not imposed:
            _fail(
                f"{here}.penalty_imposed",
                "a remaining sentence needs the penalty imposed.",
            )


def _check_identifiers(field: str, items: Sequence[pb.Identifier]) -> None:
    _check_count(field, items, MAX_IDENTIFIERS)
    for i, ident in enumerate(items):
        here = f"{field}[{i}]"
        IDENTIFIER_KINDS.check(f"{here}.kind", ident.kind)
        _check_text(f"{here}.value", ident.value, NAME_CHARS, required="a value is required.")
        _check_text(f"{here}.issuer", ident.issuer, NAME_CHARS)


def _check_persons(items: Sequence[pb.Person], now_ms: int | None) -> None:
    _check_count("persons", items, MAX_PERSONS)
    for i, person in enumerate(items):
        here = f"persons[{i}]"
        kind = ENTITY_KINDS.check(f"{here}.kind", person.kind)
        PERSON_ROLES.check(f"{here}.role", person.role)
        _check_text(f"{here}.name", person.name, NAME_CHARS, required="a name is required.")
        if person.date_of_birth and kind.value == pb.ENTITY_KIND_LEGAL_PERSON:
            _fail(f"{here}.date_of_birth", "a legal person has no date of birth.")
        _check_calendar_date(f"{here}.date_of_birth", person.date_of_birth, now_ms, partial=True)
        _check_countries(f"{here}.nationalities", person.nationalities)
        _check_identifiers(f"{here}.identifiers", person.identifiers)
        _check_text(f"{here}.address", person.address, LINE_CHARS, multiline=True)
        _check_text(f"{here}.notes", person.notes, TEXT_CHARS, multiline=True)


def _check_urgency(urgency: int, reason: str) -> None:
    term = URGENCIES.check("urgency", urgency)
    ordinary = term.value == pb.URGENCY_ORDINARY
    required = "" if ordinary else f"{_a(term.slug)} request must say why it cannot wait."
    _check_text("urgency_reason", reason, TEXT_CHARS, required=required, multiline=True)


def _check_contact(present: bool, officer: pb.ContactOfficer) -> None:
    field = "contact_officer"
    if not present:
        _fail(field, "a contact officer is required.")
    _check_text(f"{field}.name", officer.name, NAME_CHARS, required="a name is required.")
    _check_text(f"{field}.position", officer.position, NAME_CHARS)
    _check_text(f"{field}.email", officer.email, 254)
    _check_text(f"{field}.phone", officer.phone, 40)
    if not officer.email and not officer.phone:
        _fail(f"{field}.email", "give the contact officer's email address or phone number.")
    if officer.email and not _EMAIL_RE.fullmatch(officer.email):
        _fail(f"{field}.email", f"{officer.email!r} is not an email address.")
    if officer.phone and not _PHONE_RE.fullmatch(officer.phone):
        _fail(
            f"{field}.phone",
            f"{officer.phone!r} is not a phone number (digits, optionally +, spaces, dashes).",
        )


def _check_language(tag: str) -> None:
    if not tag:
        _fail("language", "the language of the form is required, as a tag such as en or fr.")
    if len(tag) > 35 or not _LANGUAGE_RE.fullmatch(tag):
        _fail("language", f"{tag!r} is not a BCP 47 language tag such as en, fr or pt-BR.")


# --- validation: the three forms --------------------------------------------------------


def _check_mla(req: pb.MlaRequest, now_ms: int | None) -> None:
    ct = CaseType.MLA
    _check_parties(
        req.HasField("requesting_authority"),
        req.requesting_authority,
        req.HasField("requested_authority"),
        req.requested_authority,
    )
    _check_legal_bases(req.legal_basis, ct, required=True)
    _check_offences(req.offences, ct, required=True, extradition=False)
    _check_text(
        "summary_of_facts",
        req.summary_of_facts,
        LONG_CHARS,
        required="a summary of the facts is required.",
        multiline=True,
    )
    _check_persons(req.persons, now_ms)
    _check_count(
        "assistance_sought",
        req.assistance_sought,
        len(ASSISTANCE_TYPES),
        required="an MLA request needs at least one type of assistance sought.",
    )
    other = False
    for i, value in enumerate(req.assistance_sought):
        term = ASSISTANCE_TYPES.check(f"assistance_sought[{i}]", value)
        other = other or term.value == pb.ASSISTANCE_TYPE_OTHER
    _check_unique("assistance_sought", req.assistance_sought, ASSISTANCE_TYPES.label)
    _check_text(
        "assistance_details",
        req.assistance_details,
        LONG_CHARS,
        required="describe the other assistance sought." if other else "",
        multiline=True,
    )
    conf = req.confidentiality
    _check_text("confidentiality.requirements", conf.requirements, TEXT_CHARS, multiline=True)
    if conf.requirements.strip() and not conf.required:
        _fail(
            "confidentiality.requirements",
            "state requirements only when confidentiality.required is true.",
        )
    _check_common(req, now_ms)


def _check_common(
    req: pb.MlaRequest | pb.ExtraditionRequest | pb.VictimIdRequest, now_ms: int | None
) -> None:
    _check_urgency(req.urgency, req.urgency_reason)
    _check_instant("requested_deadline", req.requested_deadline, now_ms, future=True)
    _check_contact(req.HasField("contact_officer"), req.contact_officer)
    _check_language(req.language)


_NEEDS_FULL_REQUEST = frozenset(
    {pb.EXTRADITION_KIND_PROVISIONAL_ARREST, pb.EXTRADITION_KIND_EXTRADITION}
)


def _check_extradition(req: pb.ExtraditionRequest, now_ms: int | None) -> None:
    ct = CaseType.EXTRADITION
    kind = EXTRADITION_KINDS.check("kind", req.kind)
    full = kind.value in _NEEDS_FULL_REQUEST
    _check_parties(
        req.HasField("requesting_authority"),
        req.requesting_authority,
        req.HasField("requested_authority"),
        req.requested_authority,
    )
    _check_legal_bases(req.legal_basis, ct, required=full)
    _check_person_sought(req.HasField("person_sought"), req.person_sought, now_ms)
    _check_warrants(req.warrants_or_judgments, now_ms, required=full, kind=kind)
    _check_offences(req.offences, ct, required=full, extradition=True)
    if full and not any(
        w.kind == pb.WARRANT_KIND_CONVICTION_JUDGMENT for w in req.warrants_or_judgments
    ):
        for i, offence in enumerate(req.offences):
            if offence.penalty_imposed.strip():
                _fail(
                    f"offences[{i}].penalty_imposed",
                    "a penalty imposed needs a conviction judgment among warrants_or_judgments.",
                )
    _check_text(
        "summary_of_facts",
        req.summary_of_facts,
        LONG_CHARS,
        required=f"{_a(kind.label.lower())} needs a summary of the facts." if full else "",
        multiline=True,
    )
    if req.interpol_notice:
        m = _INTERPOL_RE.fullmatch(req.interpol_notice)
        if m is None:
            _fail(
                "interpol_notice",
                f"{req.interpol_notice!r} is not an INTERPOL notice reference such as "
                "A-1234/5-2026.",
            )
        if now_ms is not None and int(m.group(1)) > _utc(now_ms).year:
            _fail("interpol_notice", f"{req.interpol_notice} is dated in a future year.")
    if kind.value == pb.EXTRADITION_KIND_PROVISIONAL_ARREST and req.urgency == pb.URGENCY_ORDINARY:
        _fail(
            "urgency",
            "provisional arrest is asked for in urgency: choose urgent or emergency.",
        )
    _check_text(
        "related_case_ref",
        req.related_case_ref,
        NAME_CHARS,
        required="" if full else f"{_a(kind.label.lower())} must name the case it relates to.",
    )
    _check_text(
        "details",
        req.details,
        LONG_CHARS,
        required="" if full else f"{_a(kind.label.lower())} needs its content in details.",
        multiline=True,
    )
    _check_common(req, now_ms)


def _check_person_sought(present: bool, person: pb.PersonSought, now_ms: int | None) -> None:
    field = "person_sought"
    if not present:
        _fail(field, "an extradition-related request needs the person sought.")
    _check_text(
        f"{field}.family_name",
        person.family_name,
        NAME_CHARS,
        required="the family name of the person sought is required.",
    )
    _check_text(f"{field}.given_names", person.given_names, NAME_CHARS)
    _check_texts(f"{field}.aliases", person.aliases, NAME_CHARS, MAX_ALIASES)
    _check_calendar_date(f"{field}.date_of_birth", person.date_of_birth, now_ms, partial=True)
    _check_text(f"{field}.place_of_birth", person.place_of_birth, LINE_CHARS)
    _check_countries(f"{field}.nationalities", person.nationalities)
    _check_text(
        f"{field}.identifying_features", person.identifying_features, TEXT_CHARS, multiline=True
    )
    _check_text(
        f"{field}.last_known_location", person.last_known_location, LINE_CHARS, multiline=True
    )
    _check_identifiers(f"{field}.identifiers", person.identifiers)


def _check_warrants(
    items: Sequence[pb.WarrantOrJudgment],
    now_ms: int | None,
    *,
    required: bool,
    kind: Term[Any],
) -> None:
    field = "warrants_or_judgments"
    _check_count(
        field,
        items,
        MAX_WARRANTS,
        required=(
            f"{_a(kind.label.lower())} needs at least one arrest warrant or conviction judgment."
            if required
            else ""
        ),
    )
    for i, warrant in enumerate(items):
        here = f"{field}[{i}]"
        WARRANT_KINDS.check(f"{here}.kind", warrant.kind)
        _check_text(
            f"{here}.reference", warrant.reference, NAME_CHARS, required="a reference is required."
        )
        _check_text(
            f"{here}.issuing_authority",
            warrant.issuing_authority,
            NAME_CHARS,
            required="the issuing authority is required.",
        )
        _check_calendar_date(
            f"{here}.issued_on",
            warrant.issued_on,
            now_ms,
            partial=False,
            required="the date of issue is required.",
        )


def _check_victim_id(req: pb.VictimIdRequest, now_ms: int | None) -> None:
    _check_parties(
        req.HasField("requesting_authority"),
        req.requesting_authority,
        req.HasField("requested_authority"),
        req.requested_authority,
    )
    if not req.match_reference:
        _fail("match_reference", "the reference from the holder's hit answer is required.")
    if not _MATCH_REF_RE.fullmatch(req.match_reference):
        _fail(
            "match_reference",
            "must be the reference of a hit: 8 to 256 letters, digits or . _ ~ : + / = -.",
        )
    VICTIM_ID_PURPOSES.check("purpose", req.purpose)
    _check_legal_bases(req.legal_basis, CaseType.VICTIM_ID, required=True)
    _check_text(
        "justification",
        req.justification,
        TEXT_CHARS,
        required="say why the identity is needed and how it will be protected.",
        multiline=True,
    )
    _check_common(req, now_ms)


# --- the public API: forms -------------------------------------------------------------

_Request = pb.MlaRequest | pb.ExtraditionRequest | pb.VictimIdRequest


def case_type_of(form: pb.CaseForm) -> CaseType:
    """The case type of a form; raise for an empty one."""
    which = form.WhichOneof("form")
    if which is None:
        _fail("form", "the case form is empty: it needs an mla, extradition or victim_id request.")
    return _CASE_TYPE_OF_ONEOF[which]


def _request_of(form: pb.CaseForm) -> _Request:
    case_type = case_type_of(form)
    if case_type is CaseType.MLA:
        return form.mla
    if case_type is CaseType.EXTRADITION:
        return form.extradition
    return form.victim_id


def message_type_of(case_type: CaseType) -> int:
    """The envelope MessageType that carries a form of `case_type`."""
    return _MESSAGE_TYPES[case_type]


def validate_form(form: pb.CaseForm, *, now_ms: int | None) -> None:
    """Raise a `FormFieldError` (or `FormFieldTooLargeError`) for the first bad field.

    With `now_ms`, dates are also checked against the clock (deadline not passed, birth
    and warrant dates not in the future): the sender does this on entry. A receiving
    node passes None and checks structure only, since delivery can lag.
    """
    case_type = case_type_of(form)
    if case_type is CaseType.MLA:
        _check_mla(form.mla, now_ms)
    elif case_type is CaseType.EXTRADITION:
        _check_extradition(form.extradition, now_ms)
    else:
        _check_victim_id(form.victim_id, now_ms)


def form_from_bytes(data: bytes, *, now_ms: int | None = None) -> pb.CaseForm:
    """Parse a received form strictly (size, encoding, no unknown fields) and validate it."""
    form = parse(pb.CaseForm, data, "case form", MAX_FORM_BYTES)
    validate_form(form, now_ms=now_ms)
    return form


def urgency_of(form: pb.CaseForm) -> Urgency:
    """The urgency of a form, as the case state machine's enum."""
    term = URGENCIES.check("urgency", _request_of(form).urgency)
    return Urgency(term.slug)


def parties_of(form: pb.CaseForm) -> tuple[str, str]:
    """(requesting agency id, requested agency id) of a form."""
    req = _request_of(form)
    return req.requesting_authority.agency_id, req.requested_authority.agency_id


def deadline_of(form: pb.CaseForm) -> int | None:
    """The requested deadline (unix ms), or None when the form sets none."""
    return _request_of(form).requested_deadline or None


# --- reading mappings ------------------------------------------------------------------


def _what(value: object) -> str:
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


class _Reader:
    """Typed access to one table of a form mapping, with the dotted path of each key."""

    def __init__(self, path: str, data: object, keys: Sequence[str]) -> None:
        if not isinstance(data, Mapping):
            _fail(path or "form", f"expected a table of fields, not {_what(data)}.")
        self.prefix = f"{path}." if path else ""
        for key in data:
            if not isinstance(key, str):
                _fail(path or "form", f"field names must be text, not {_what(key)}.")
            if key not in keys:
                _fail(
                    self.at(key),
                    f"unknown field; the accepted fields are {', '.join(keys)}.",
                )
        self.data: Mapping[str, object] = data

    def at(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> object:
        return self.data.get(key)

    def text(self, key: str) -> str:
        return _as_text(self.at(key), self.data.get(key))

    def texts(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            _fail(self.at(key), f"expected a list of text, not {_what(value)}.")
        return [_as_text(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]

    def tables(self, key: str) -> list[tuple[str, object]]:
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, Mapping):
            value = [value]
        if not isinstance(value, list | tuple):
            _fail(self.at(key), f"expected a list of tables, not {_what(value)}.")
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]

    def choice(self, key: str, vocab: Vocabulary[V], default: str = "") -> V:
        """The value of a slug; UNSPECIFIED (0) when absent and without default."""
        value = self.data.get(key)
        if value is None:
            if not default:
                return cast(V, 0)
            value = default
        if not isinstance(value, str):
            _fail(self.at(key), f"expected one of {', '.join(vocab.slugs())}, not {_what(value)}.")
        return vocab.from_slug(self.at(key), value)

    def choices(self, key: str, vocab: Vocabulary[V]) -> list[V]:
        return [
            vocab.from_slug(f"{self.at(key)}[{i}]", slug) for i, slug in enumerate(self.texts(key))
        ]

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            _fail(self.at(key), f"expected true or false, not {_what(value)}.")
        return value

    def instant(self, key: str) -> int:
        value = self.data.get(key)
        return 0 if value is None else _as_instant(self.at(key), value)

    def calendar_date(self, key: str) -> str:
        field, value = self.at(key), self.data.get(key)
        if value is None:
            return ""
        if isinstance(value, datetime):
            _fail(field, "expected a date without a time, such as 1990-05-01.")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 9999:
            return str(value)  # a bare year, as TOML reads `date_of_birth = 1990`
        return _as_text(field, value)


def _as_text(field: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        _fail(field, f"expected text, not {_what(value)}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _fail(field, "is not valid Unicode text.")
    return value.strip()


def _as_instant(field: str, value: object) -> int:
    """Unix ms of an ISO date (the end of that day, UTC) or an ISO date and time with zone."""
    shape = "an ISO date such as 2026-12-31 or a date and time with zone, 2026-12-31T17:00Z"
    if isinstance(value, str):
        text = value.strip()
        try:
            if _FULL_DATE_RE.fullmatch(text):
                value = date.fromisoformat(text)
            else:
                value = datetime.fromisoformat(text)
        except ValueError:
            _fail(field, f"{text!r} is not {shape}.")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            _fail(field, f"{value.isoformat()} has no time zone; add one, such as Z or +01:00.")
        ms = (value - _EPOCH) // _MS
    elif isinstance(value, date):
        end = datetime(value.year, value.month, value.day, tzinfo=UTC)
        try:
            ms = (end + _DAY - _EPOCH) // _MS - 1
        except OverflowError:
            ms = MAX_INSTANT_MS
    else:
        _fail(field, f"expected {shape}, not {_what(value)}.")
    if not 0 < ms <= MAX_INSTANT_MS:
        _fail(field, "must be a time between 1970 and 9999.")
    return int(ms)


def _authority_from(path: str, data: object) -> pb.Authority:
    r = _Reader(path, data, ("agency_id", "name"))
    return pb.Authority(agency_id=r.text("agency_id").upper(), name=r.text("name"))


def _legal_bases_from(r: _Reader) -> list[pb.LegalBasis]:
    """Each legal basis is a slug, or a table {instrument, article, details}."""
    out: list[pb.LegalBasis] = []
    value = r.raw("legal_basis")
    if value is None:
        items: list[object] = []
    elif isinstance(value, str | Mapping):
        items = [value]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        _fail("legal_basis", f"expected a list of legal bases, not {_what(value)}.")
    for i, item in enumerate(items):
        here = f"legal_basis[{i}]"
        if isinstance(item, str):
            out.append(pb.LegalBasis(instrument=LEGAL_BASES.from_slug(here, item)))
            continue
        b = _Reader(here, item, ("instrument", "article", "details"))
        out.append(
            pb.LegalBasis(
                instrument=b.choice("instrument", LEGAL_BASES),
                article=b.text("article"),
                details=b.text("details"),
            )
        )
    return out


def _offences_from(r: _Reader) -> list[pb.Offence]:
    keys = (
        "description",
        "legal_provision",
        "maximum_penalty",
        "penalty_imposed",
        "remaining_sentence",
    )
    out = []
    for path, item in r.tables("offences"):
        o = _Reader(path, item, keys)
        out.append(pb.Offence(**{k: o.text(k) for k in keys}))
    return out


def _identifiers_from(r: _Reader) -> list[pb.Identifier]:
    out = []
    for path, item in r.tables("identifiers"):
        i = _Reader(path, item, ("kind", "value", "issuer"))
        out.append(
            pb.Identifier(
                kind=i.choice("kind", IDENTIFIER_KINDS),
                value=i.text("value"),
                issuer=i.text("issuer"),
            )
        )
    return out


def _countries_from(r: _Reader, key: str) -> list[str]:
    return [c.upper() for c in r.texts(key)]


def _persons_from(r: _Reader) -> list[pb.Person]:
    keys = (
        "kind",
        "role",
        "name",
        "date_of_birth",
        "nationalities",
        "identifiers",
        "address",
        "notes",
    )
    out = []
    for path, item in r.tables("persons"):
        p = _Reader(path, item, keys)
        out.append(
            pb.Person(
                kind=p.choice("kind", ENTITY_KINDS, default="natural-person"),
                role=p.choice("role", PERSON_ROLES),
                name=p.text("name"),
                date_of_birth=p.calendar_date("date_of_birth"),
                nationalities=_countries_from(p, "nationalities"),
                identifiers=_identifiers_from(p),
                address=p.text("address"),
                notes=p.text("notes"),
            )
        )
    return out


def _contact_from(r: _Reader) -> pb.ContactOfficer | None:
    if not r.has("contact_officer"):
        return None
    c = _Reader(
        r.at("contact_officer"), r.raw("contact_officer"), ("name", "position", "email", "phone")
    )
    return pb.ContactOfficer(
        name=c.text("name"),
        position=c.text("position"),
        email=c.text("email"),
        phone=c.text("phone"),
    )


def _confidentiality_from(r: _Reader) -> pb.Confidentiality | None:
    value = r.raw("confidentiality")
    if value is None:
        return None
    if isinstance(value, bool):
        return pb.Confidentiality(required=value)
    c = _Reader("confidentiality", value, ("required", "requirements"))
    return pb.Confidentiality(required=c.boolean("required"), requirements=c.text("requirements"))


def _common_from(r: _Reader) -> dict[str, Any]:
    """Fields every request shares, as keyword arguments of its message."""
    common: dict[str, Any] = {
        "urgency": r.choice("urgency", URGENCIES, default="ordinary"),
        "urgency_reason": r.text("urgency_reason"),
        "requested_deadline": r.instant("requested_deadline"),
        "language": r.text("language"),
        "contact_officer": _contact_from(r),
    }
    for key in ("requesting_authority", "requested_authority"):
        if r.has(key):
            common[key] = _authority_from(key, r.raw(key))
    return common


_COMMON_KEYS = (
    "case_type",
    "requesting_authority",
    "requested_authority",
    "urgency",
    "urgency_reason",
    "requested_deadline",
    "contact_officer",
    "language",
)
_MLA_KEYS = (
    *_COMMON_KEYS,
    "legal_basis",
    "offences",
    "summary_of_facts",
    "persons",
    "assistance_sought",
    "assistance_details",
    "confidentiality",
)
_EXTRADITION_KEYS = (
    *_COMMON_KEYS,
    "kind",
    "legal_basis",
    "person_sought",
    "warrants_or_judgments",
    "offences",
    "summary_of_facts",
    "interpol_notice",
    "related_case_ref",
    "details",
)
_VICTIM_ID_KEYS = (*_COMMON_KEYS, "match_reference", "purpose", "legal_basis", "justification")


def _mla_from(r: _Reader) -> pb.MlaRequest:
    return pb.MlaRequest(
        legal_basis=_legal_bases_from(r),
        offences=_offences_from(r),
        summary_of_facts=r.text("summary_of_facts"),
        persons=_persons_from(r),
        assistance_sought=r.choices("assistance_sought", ASSISTANCE_TYPES),
        assistance_details=r.text("assistance_details"),
        confidentiality=_confidentiality_from(r),
        **_common_from(r),
    )


def _person_sought_from(r: _Reader) -> pb.PersonSought | None:
    if not r.has("person_sought"):
        return None
    keys = (
        "family_name",
        "given_names",
        "aliases",
        "date_of_birth",
        "place_of_birth",
        "nationalities",
        "identifying_features",
        "last_known_location",
        "identifiers",
    )
    p = _Reader("person_sought", r.raw("person_sought"), keys)
    return pb.PersonSought(
        family_name=p.text("family_name"),
        given_names=p.text("given_names"),
        aliases=p.texts("aliases"),
        date_of_birth=p.calendar_date("date_of_birth"),
        place_of_birth=p.text("place_of_birth"),
        nationalities=_countries_from(p, "nationalities"),
        identifying_features=p.text("identifying_features"),
        last_known_location=p.text("last_known_location"),
        identifiers=_identifiers_from(p),
    )


def _warrants_from(r: _Reader) -> list[pb.WarrantOrJudgment]:
    out = []
    for path, item in r.tables("warrants_or_judgments"):
        w = _Reader(path, item, ("kind", "reference", "issuing_authority", "issued_on"))
        out.append(
            pb.WarrantOrJudgment(
                kind=w.choice("kind", WARRANT_KINDS),
                reference=w.text("reference"),
                issuing_authority=w.text("issuing_authority"),
                issued_on=w.calendar_date("issued_on"),
            )
        )
    return out


def _extradition_from(r: _Reader) -> pb.ExtraditionRequest:
    return pb.ExtraditionRequest(
        kind=r.choice("kind", EXTRADITION_KINDS),
        legal_basis=_legal_bases_from(r),
        person_sought=_person_sought_from(r),
        warrants_or_judgments=_warrants_from(r),
        offences=_offences_from(r),
        summary_of_facts=r.text("summary_of_facts"),
        interpol_notice=r.text("interpol_notice").upper(),
        related_case_ref=r.text("related_case_ref"),
        details=r.text("details"),
        **_common_from(r),
    )


def _victim_id_from(r: _Reader) -> pb.VictimIdRequest:
    return pb.VictimIdRequest(
        match_reference=r.text("match_reference"),
        purpose=r.choice("purpose", VICTIM_ID_PURPOSES),
        legal_basis=_legal_bases_from(r),
        justification=r.text("justification"),
        **_common_from(r),
    )


def form_from_mapping(case_type: CaseType, data: Mapping[str, Any], *, now_ms: int) -> pb.CaseForm:
    """Build and validate a form from a mapping as parsed from TOML, JSON or CLI flags.

    Keys are the proto field names (docs/forms.md); vocabulary values are slugs;
    instants are ISO dates (end of that day, UTC) or ISO datetimes with a zone. An
    optional `case_type` key must agree with `case_type`. Unknown keys and values are
    rejected naming the field. The form is then checked with `validate_form(now_ms)`.
    """
    keys = {
        CaseType.MLA: _MLA_KEYS,
        CaseType.EXTRADITION: _EXTRADITION_KEYS,
        CaseType.VICTIM_ID: _VICTIM_ID_KEYS,
    }[case_type]
    r = _Reader("", data, keys)
    if r.has("case_type"):
        stated = r.text("case_type").lower().replace("_", "-")
        if stated != case_type.value:
            _fail(
                "case_type",
                f"the form says {stated!r}, but it was read as {_a(case_type.label)}.",
            )
    if case_type is CaseType.MLA:
        form = pb.CaseForm(mla=_mla_from(r))
    elif case_type is CaseType.EXTRADITION:
        form = pb.CaseForm(extradition=_extradition_from(r))
    else:
        form = pb.CaseForm(victim_id=_victim_id_from(r))
    validate_form(form, now_ms=now_ms)
    return form


# --- transition details ------------------------------------------------------------------


def _check_attachment_refs(field: str, items: Sequence[pb.AttachmentRef]) -> None:
    _check_count(field, items, MAX_ATTACHMENT_REFS)
    for i, ref in enumerate(items):
        here = f"{field}[{i}]"
        if len(ref.attachment_id) != 16:
            _fail(f"{here}.attachment_id", "must be 16 bytes (a UUID).")
        _check_text(f"{here}.name", ref.name, 255, required="a file name is required.")
        if "/" in ref.name or "\\" in ref.name or ref.name.strip() in (".", ".."):
            _fail(f"{here}.name", f"{ref.name!r} is not a plain file name.")
        if len(ref.sha256) != 32:
            _fail(f"{here}.sha256", "must be a 32-byte SHA-256 digest.")
    _check_unique(field, [ref.attachment_id for ref in items], lambda a: f"Attachment {a.hex()}")


def validate_details(
    action: Action, details: pb.TransitionDetails, *, now_ms: int | None = None
) -> None:
    """Raise for details whose kind does not match `action`, or for their first bad field.

    With `now_ms`, a request for information's `reply_by` must also be in the future.
    """
    want = ACTION_DETAILS[action]
    have = details.WhichOneof("details")
    if want is None:
        if have is not None:
            _fail(have, f"{action.value} carries no details: the case form is its content.")
        return
    if have != want:
        _fail(
            "details",
            f"a {action.value} transition carries {want} details, not {have or 'none'}.",
        )
    if want == "acknowledge":
        ack = details.acknowledge
        _check_text("reference", ack.reference, NAME_CHARS)
        _check_text("note", ack.note, TEXT_CHARS, multiline=True)
    elif want == "request_info":
        info = details.request_info
        _check_count(
            "questions",
            info.questions,
            MAX_QUESTIONS,
            required="a request for information needs at least one question.",
        )
        for i, question in enumerate(info.questions):
            _check_text(
                f"questions[{i}]",
                question,
                TEXT_CHARS,
                required="a question may not be empty.",
                multiline=True,
            )
        _check_instant("reply_by", info.reply_by, now_ms, future=True)
    elif want == "provide_info":
        provided = details.provide_info
        _check_text(
            "answers",
            provided.answers,
            LONG_CHARS,
            required="the information provided is required.",
            multiline=True,
        )
        _check_attachment_refs("documents", provided.documents)
    elif want == "accept":
        accept = details.accept
        _check_count("conditions", accept.conditions, MAX_CONDITIONS)
        for i, condition in enumerate(accept.conditions):
            _check_text(
                f"conditions[{i}]",
                condition,
                TEXT_CHARS,
                required="a condition may not be empty.",
                multiline=True,
            )
        _check_text("note", accept.note, TEXT_CHARS, multiline=True)
    elif want == "refuse":
        refusal = details.refuse
        _check_count(
            "grounds",
            refusal.grounds,
            len(REFUSAL_GROUNDS),
            required="a refusal must state at least one ground.",
        )
        for i, ground in enumerate(refusal.grounds):
            REFUSAL_GROUNDS.check(f"grounds[{i}]", ground)
        _check_unique("grounds", refusal.grounds, REFUSAL_GROUNDS.label)
        _check_text(
            "explanation",
            refusal.explanation,
            TEXT_CHARS,
            required="a refusal must explain how its grounds apply.",
            multiline=True,
        )
    elif want == "start_execution":
        start = details.start_execution
        _check_text("executing_authority", start.executing_authority, NAME_CHARS)
        _check_text("note", start.note, TEXT_CHARS, multiline=True)
    elif want == "report":
        report = details.report
        final = action is Action.REPORT_EXECUTED
        if report.final != final:
            _fail(
                "final",
                f"a {action.value} report must have final = {'true' if final else 'false'}.",
            )
        _check_text(
            "summary",
            report.summary,
            LONG_CHARS,
            required="an execution report needs a summary.",
            multiline=True,
        )
        _check_count("assistance_executed", report.assistance_executed, len(ASSISTANCE_TYPES))
        for i, value in enumerate(report.assistance_executed):
            ASSISTANCE_TYPES.check(f"assistance_executed[{i}]", value)
        _check_unique("assistance_executed", report.assistance_executed, ASSISTANCE_TYPES.label)
        _check_attachment_refs("evidence", report.evidence)
    elif want == "withdraw":
        _check_text(
            "reason",
            details.withdraw.reason,
            TEXT_CHARS,
            required="a withdrawal must give its reason.",
            multiline=True,
        )
    else:
        _check_text("outcome", details.close.outcome, TEXT_CHARS, multiline=True)


def details_from_bytes(
    action: Action, data: bytes, *, now_ms: int | None = None
) -> pb.TransitionDetails:
    """Parse received transition details strictly and validate them against `action`."""
    details = parse(pb.TransitionDetails, data, "transition details", MAX_DETAILS_BYTES)
    validate_details(action, details, now_ms=now_ms)
    return details


def _attachment_refs_from(r: _Reader, key: str) -> list[pb.AttachmentRef]:
    out = []
    for path, item in r.tables(key):
        a = _Reader(path, item, ("attachment_id", "name", "sha256", "size"))
        try:
            attachment_id = uuid.UUID(a.text("attachment_id")).bytes
        except ValueError:
            _fail(a.at("attachment_id"), "expected a UUID, as 32 hexadecimal digits.")
        digest = a.text("sha256").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            _fail(a.at("sha256"), "expected a SHA-256 digest, as 64 hexadecimal digits.")
        size = a.raw("size")
        if size is None:
            _fail(a.at("size"), "the file size in bytes is required.")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**63:
            _fail(a.at("size"), f"expected a size in bytes, not {_what(size)}.")
        out.append(
            pb.AttachmentRef(
                attachment_id=attachment_id,
                name=a.text("name"),
                sha256=bytes.fromhex(digest),
                size=size,
            )
        )
    return out


_DETAILS_KEYS: Mapping[str, tuple[str, ...]] = {
    "acknowledge": ("reference", "note"),
    "request_info": ("questions", "reply_by"),
    "provide_info": ("answers", "documents"),
    "accept": ("conditions", "note"),
    "refuse": ("grounds", "explanation"),
    "start_execution": ("executing_authority", "note"),
    "report": ("summary", "assistance_executed", "evidence"),
    "withdraw": ("reason",),
    "close": ("outcome",),
}


def details_from_mapping(
    action: Action, data: Mapping[str, Any], *, now_ms: int | None = None
) -> pb.TransitionDetails:
    """Build and validate the details of `action` from a mapping (TOML, JSON, CLI flags).

    Keys are the fields of the action's details message; `final` of a report follows
    from the action. SUBMIT takes an empty mapping: the form is its content.
    """
    kind = ACTION_DETAILS[action]
    if kind is None:
        if data:
            _fail("details", f"{action.value} carries no details: the case form is its content.")
        return pb.TransitionDetails()
    r = _Reader("", data, _DETAILS_KEYS[kind])
    details = pb.TransitionDetails()
    if kind == "acknowledge":
        details.acknowledge.CopyFrom(
            pb.Acknowledgement(reference=r.text("reference"), note=r.text("note"))
        )
    elif kind == "request_info":
        details.request_info.CopyFrom(
            pb.InfoRequest(questions=r.texts("questions"), reply_by=r.instant("reply_by"))
        )
    elif kind == "provide_info":
        details.provide_info.CopyFrom(
            pb.InfoProvided(
                answers=r.text("answers"), documents=_attachment_refs_from(r, "documents")
            )
        )
    elif kind == "accept":
        details.accept.CopyFrom(
            pb.Acceptance(conditions=r.texts("conditions"), note=r.text("note"))
        )
    elif kind == "refuse":
        details.refuse.CopyFrom(
            pb.Refusal(
                grounds=r.choices("grounds", REFUSAL_GROUNDS), explanation=r.text("explanation")
            )
        )
    elif kind == "start_execution":
        details.start_execution.CopyFrom(
            pb.ExecutionStart(
                executing_authority=r.text("executing_authority"), note=r.text("note")
            )
        )
    elif kind == "report":
        details.report.CopyFrom(
            pb.ExecutionReport(
                summary=r.text("summary"),
                assistance_executed=r.choices("assistance_executed", ASSISTANCE_TYPES),
                evidence=_attachment_refs_from(r, "evidence"),
                final=action is Action.REPORT_EXECUTED,
            )
        )
    elif kind == "withdraw":
        details.withdraw.CopyFrom(pb.Withdrawal(reason=r.text("reason")))
    else:
        details.close.CopyFrom(pb.Closure(outcome=r.text("outcome")))
    validate_details(action, details, now_ms=now_ms)
    return details


# --- describing, for timelines ----------------------------------------------------------

Rows = list[tuple[str, str]]


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _format_instant(ms: int) -> str:
    try:
        return _utc(ms).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, ValueError):
        return f"{ms} ms"


def _join(parts: Sequence[str], sep: str = ", ") -> str:
    return sep.join(p for p in parts if p)


def _legal_basis_text(items: Sequence[pb.LegalBasis]) -> str:
    out = []
    for b in items:
        text = LEGAL_BASES.label(b.instrument)
        if b.details:
            text += f" ({b.details})"
        if b.article:
            text += f", {b.article}"
        out.append(text)
    return "; ".join(out)


def _identifier_text(ident: pb.Identifier) -> str:
    text = f"{IDENTIFIER_KINDS.label(ident.kind)} {ident.value}"
    return f"{text} ({ident.issuer})" if ident.issuer else text


def _offence_text(o: pb.Offence) -> str:
    facts = _join(
        [
            o.legal_provision,
            f"maximum penalty: {o.maximum_penalty}" if o.maximum_penalty else "",
            f"penalty imposed: {o.penalty_imposed}" if o.penalty_imposed else "",
            f"remaining: {o.remaining_sentence}" if o.remaining_sentence else "",
        ],
        "; ",
    )
    return f"{o.description} ({facts})" if facts else o.description


def _person_text(p: pb.Person) -> str:
    head = f"{PERSON_ROLES.label(p.role)}: {p.name}"
    if p.kind == pb.ENTITY_KIND_LEGAL_PERSON:
        head += " (legal person)"
    return _join(
        [
            head,
            f"born {p.date_of_birth}" if p.date_of_birth else "",
            "/".join(p.nationalities),
            ", ".join(_identifier_text(i) for i in p.identifiers),
            p.address,
            p.notes,
        ],
        "; ",
    )


def _authority_text(a: pb.Authority) -> str:
    return f"{a.name} ({a.agency_id})" if a.name else a.agency_id


def _contact_text(c: pb.ContactOfficer) -> str:
    return _join([c.name, c.position, c.email, c.phone])


def _common_rows(req: _Request) -> Rows:
    rows: Rows = []
    urgency = URGENCIES.label(req.urgency)
    rows.append(("Urgency", f"{urgency}: {req.urgency_reason}" if req.urgency_reason else urgency))
    if req.requested_deadline:
        rows.append(("Requested deadline", _format_instant(req.requested_deadline)))
    rows.append(("Contact officer", _contact_text(req.contact_officer)))
    rows.append(("Language", req.language))
    return rows


def describe_form(form: pb.CaseForm) -> Rows:
    """(label, value) rows of a form for a case timeline; empty optional fields omitted."""
    case_type = case_type_of(form)
    req = _request_of(form)
    rows: Rows = [("Case type", case_type.title)]
    if isinstance(req, pb.ExtraditionRequest):
        rows.append(("Kind", EXTRADITION_KINDS.label(req.kind)))
        if req.related_case_ref:
            rows.append(("Related case", req.related_case_ref))
    rows.append(("Requesting authority", _authority_text(req.requesting_authority)))
    rows.append(("Requested authority", _authority_text(req.requested_authority)))
    if req.legal_basis:
        rows.append(("Legal basis", _legal_basis_text(req.legal_basis)))
    if isinstance(req, pb.MlaRequest):
        rows += [(f"Offence {i}", _offence_text(o)) for i, o in enumerate(req.offences, 1)]
        rows.append(("Summary of facts", req.summary_of_facts))
        rows += [(f"Person {i}", _person_text(p)) for i, p in enumerate(req.persons, 1)]
        assistance = "; ".join(ASSISTANCE_TYPES.label(a) for a in req.assistance_sought)
        rows.append(("Assistance sought", assistance))
        if req.assistance_details:
            rows.append(("Assistance details", req.assistance_details))
        conf = req.confidentiality
        if conf.required:
            rows.append(("Confidentiality", _join(["Required", conf.requirements], ": ")))
    elif isinstance(req, pb.ExtraditionRequest):
        p = req.person_sought
        rows.append(("Person sought", _join([p.family_name.upper(), p.given_names])))
        if p.aliases:
            rows.append(("Aliases", "; ".join(p.aliases)))
        if p.date_of_birth or p.place_of_birth:
            rows.append(("Born", _join([p.date_of_birth, p.place_of_birth])))
        if p.nationalities:
            rows.append(("Nationality", "/".join(p.nationalities)))
        if p.identifying_features:
            rows.append(("Identifying features", p.identifying_features))
        if p.last_known_location:
            rows.append(("Last known location", p.last_known_location))
        if p.identifiers:
            rows.append(("Identifiers", "; ".join(_identifier_text(i) for i in p.identifiers)))
        for i, w in enumerate(req.warrants_or_judgments, 1):
            text = _join(
                [
                    f"{WARRANT_KINDS.label(w.kind)} {w.reference}",
                    w.issuing_authority,
                    f"issued {w.issued_on}" if w.issued_on else "",
                ]
            )
            rows.append((f"Warrant or judgment {i}", text))
        rows += [(f"Offence {i}", _offence_text(o)) for i, o in enumerate(req.offences, 1)]
        if req.summary_of_facts:
            rows.append(("Summary of facts", req.summary_of_facts))
        if req.interpol_notice:
            rows.append(("INTERPOL notice", req.interpol_notice))
        if req.details:
            rows.append(("Details", req.details))
    else:
        rows.append(("Match reference", req.match_reference))
        rows.append(("Purpose", VICTIM_ID_PURPOSES.label(req.purpose)))
        rows.append(("Justification", req.justification))
    return rows + _common_rows(req)


def _attachment_text(ref: pb.AttachmentRef) -> str:
    return f"{ref.name} ({ref.size:,} bytes, sha256 {ref.sha256.hex()[:16]}…)"


def describe_details(details: pb.TransitionDetails) -> Rows:
    """(label, value) rows of transition details for a case timeline."""
    kind = details.WhichOneof("details")
    rows: Rows = []
    if kind == "acknowledge":
        ack = details.acknowledge
        rows += [("Their reference", ack.reference), ("Note", ack.note)]
    elif kind == "request_info":
        info = details.request_info
        rows += [(f"Question {i}", q) for i, q in enumerate(info.questions, 1)]
        if info.reply_by:
            rows.append(("Reply by", _format_instant(info.reply_by)))
    elif kind == "provide_info":
        provided = details.provide_info
        rows.append(("Answers", provided.answers))
        rows += [
            (f"Document {i}", _attachment_text(d)) for i, d in enumerate(provided.documents, 1)
        ]
    elif kind == "accept":
        accept = details.accept
        rows += [(f"Condition {i}", c) for i, c in enumerate(accept.conditions, 1)]
        rows.append(("Note", accept.note))
    elif kind == "refuse":
        refusal = details.refuse
        rows.append(("Grounds", "; ".join(REFUSAL_GROUNDS.label(g) for g in refusal.grounds)))
        rows.append(("Explanation", refusal.explanation))
    elif kind == "start_execution":
        start = details.start_execution
        rows += [("Executing authority", start.executing_authority), ("Note", start.note)]
    elif kind == "report":
        report = details.report
        rows.append(("Report", "final" if report.final else "partial"))
        rows.append(("Summary", report.summary))
        executed = "; ".join(ASSISTANCE_TYPES.label(a) for a in report.assistance_executed)
        rows.append(("Assistance executed", executed))
        rows += [(f"Evidence {i}", _attachment_text(e)) for i, e in enumerate(report.evidence, 1)]
    elif kind == "withdraw":
        rows.append(("Reason", details.withdraw.reason))
    elif kind == "close":
        rows.append(("Outcome", details.close.outcome))
    return [(label, value) for label, value in rows if value]
