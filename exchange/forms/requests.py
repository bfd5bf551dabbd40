"""The field tables of the three requests of a `CaseForm`: `MlaRequest`,
`ExtraditionRequest` and `VictimIdRequest`, with their cross-field rules. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.errors import InvalidFieldError
from exchange.forms.base import (
    LINE_CHARS,
    LONG_CHARS,
    MAX_ALIASES,
    MAX_PERSONS,
    MAX_WARRANTS,
    NAME_CHARS,
    TEXT_CHARS,
    CaseType,
    a,
    fail,
    join,
    utc,
)
from exchange.forms.blocks import (
    CONFIDENTIALITY,
    PERSON,
    identifiers,
    legal_bases,
    nationalities,
    offences,
    request,
)
from exchange.forms.checks import (
    INTERPOL_NOTICE,
    INTERPOL_RE,
    MATCH_REFERENCE,
)
from exchange.forms.reading import at
from exchange.forms.spec import (
    CalendarDate,
    Choice,
    Ctx,
    Group,
    Many,
    MessageSpec,
    Rule,
    Text,
    Unique,
)
from exchange.forms.vocab import (
    ASSISTANCE_TYPES,
    EXTRADITION_KINDS,
    VICTIM_ID_PURPOSES,
    WARRANT_KINDS,
)
from exchange.matching.records import QUERY_COLUMNS, VictimQuery, parse_query_row

# --- MlaRequest ----------------------------------------------------------------------------


def _confidentiality_row(req: Any) -> str:
    conf = req.confidentiality
    return join(["Required", conf.requirements], ": ") if conf.required else ""


MLA_REQUEST = request(
    pb.MlaRequest,
    (
        legal_bases(f"{a(CaseType.MLA.label)} needs at least one legal basis."),
        offences(f"{a(CaseType.MLA.label)} needs at least one offence."),
        Text(
            "summary_of_facts",
            size=LONG_CHARS,
            multiline=True,
            required="a summary of the facts is required.",
            label="Summary of facts",
        ),
        Many(
            "persons",
            item=Group(spec=PERSON),
            max_items=MAX_PERSONS,
            numbered=True,
            label="Person",
            note="optional: persons and entities concerned",
        ),
        Many(
            "assistance_sought",
            item=Choice(vocab=ASSISTANCE_TYPES),
            max_items=len(ASSISTANCE_TYPES),
            required="an MLA request needs at least one type of assistance sought.",
            unique=Unique(lambda v: v, ASSISTANCE_TYPES.label),
            label="Assistance sought",
        ),
        Text(
            "assistance_details",
            size=LONG_CHARS,
            multiline=True,
            required=lambda req, ctx: (
                "describe the other assistance sought."
                if pb.ASSISTANCE_TYPE_OTHER in req.assistance_sought
                else ""
            ),
            label="Assistance details",
            note="what exactly is sought; required when `assistance_sought` has `other`",
        ),
        Group(
            "confidentiality",
            spec=CONFIDENTIALITY,
            shorthand="required",
            label="Confidentiality",
            show=_confidentiality_row,
            note="optional; `confidentiality = true` is short for `{ required = true }`",
        ),
    ),
)

# --- ExtraditionRequest --------------------------------------------------------------------

_NEEDS_FULL_REQUEST = frozenset(
    {pb.EXTRADITION_KIND_PROVISIONAL_ARREST, pb.EXTRADITION_KIND_EXTRADITION}
)


def _full(req: Any) -> bool:
    """Provisional arrest and extradition state the case; the follow-ups refer to one."""
    return req.kind in _NEEDS_FULL_REQUEST


def _kind(req: Any) -> str:
    return a(EXTRADITION_KINDS.label(req.kind).lower())


_FULL_ONLY = "for `provisional-arrest` and `extradition`"
_FOLLOW_UPS = "for `supplementary-information` and `surrender-arrangements`"


def _penalty_needs_judgment(req: Any, prefix: str, ctx: Ctx) -> None:
    if not _full(req) or any(
        w.kind == pb.WARRANT_KIND_CONVICTION_JUDGMENT for w in req.warrants_or_judgments
    ):
        return
    for i, offence in enumerate(req.offences):
        if offence.penalty_imposed.strip():
            fail(
                f"offences[{i}].penalty_imposed",
                "a penalty imposed needs a conviction judgment among warrants_or_judgments.",
            )


def _notice_not_dated_ahead(req: Any, prefix: str, ctx: Ctx) -> None:
    m = INTERPOL_RE.fullmatch(req.interpol_notice)
    if m is not None and ctx.now_ms is not None and int(m.group(1)) > utc(ctx.now_ms).year:
        fail("interpol_notice", f"{req.interpol_notice} is dated in a future year.")


def _provisional_arrest_is_urgent(req: Any, prefix: str, ctx: Ctx) -> None:
    if req.kind == pb.EXTRADITION_KIND_PROVISIONAL_ARREST and req.urgency == pb.URGENCY_ORDINARY:
        fail("urgency", "provisional arrest is asked for in urgency: choose urgent or emergency.")


def _warrant_text(w: Any) -> str:
    return join(
        [
            f"{WARRANT_KINDS.label(w.kind)} {w.reference}",
            w.issuing_authority,
            f"issued {w.issued_on}" if w.issued_on else "",
        ]
    )


PERSON_SOUGHT = MessageSpec(
    pb.PersonSought,
    (
        Text(
            "family_name",
            size=NAME_CHARS,
            required="the family name of the person sought is required.",
            label="Family name",
            row="Person sought",
            show=lambda p: join([p.family_name.upper(), p.given_names]),
        ),
        Text("given_names", size=NAME_CHARS, label="Given names", shown_in="family_name"),
        Many(
            "aliases",
            item=Text(size=NAME_CHARS, required="an entry may not be empty."),
            max_items=MAX_ALIASES,
            label="Aliases",
            note="none empty",
        ),
        CalendarDate(
            "date_of_birth",
            partial=True,
            label="Date of birth",
            row="Born",
            show=lambda p: join([p.date_of_birth, p.place_of_birth]),
        ),
        Text("place_of_birth", size=LINE_CHARS, label="Place of birth", shown_in="date_of_birth"),
        nationalities("/", row="Nationality"),
        Text(
            "identifying_features",
            size=TEXT_CHARS,
            multiline=True,
            label="Identifying features",
            note="physical description, scars, tattoos",
        ),
        Text(
            "last_known_location",
            size=LINE_CHARS,
            multiline=True,
            label="Last known location",
        ),
        identifiers("; ", "Identifiers"),
    ),
)

WARRANT_OR_JUDGMENT = MessageSpec(
    pb.WarrantOrJudgment,
    (
        Choice("kind", vocab=WARRANT_KINDS, label="Kind", note="section 8.8"),
        Text("reference", size=NAME_CHARS, required="a reference is required.", label="Reference"),
        Text(
            "issuing_authority",
            size=NAME_CHARS,
            required="the issuing authority is required.",
            label="Issuing authority",
        ),
        CalendarDate(
            "issued_on",
            required="the date of issue is required.",
            label="Issued on",
            note="a full date",
        ),
    ),
    summary=_warrant_text,
)

EXTRADITION_REQUEST = request(
    pb.ExtraditionRequest,
    lead=(
        Choice("kind", vocab=EXTRADITION_KINDS, label="Kind", note="section 8.7"),
        Text(
            "related_case_ref",
            size=NAME_CHARS,
            required=lambda req, ctx: (
                "" if _full(req) else f"{_kind(req)} must name the case it relates to."
            ),
            label="Related case",
            note=f"required {_FOLLOW_UPS}: the case they follow",
            check_after="interpol_notice",
        ),
    ),
    own=(
        legal_bases(
            lambda req, ctx: (
                f"{a(CaseType.EXTRADITION.label)} needs at least one legal basis."
                if _full(req)
                else ""
            )
        ),
        Group(
            "person_sought",
            spec=PERSON_SOUGHT,
            required="an extradition-related request needs the person sought.",
            expand=True,
            label="Person sought",
        ),
        Many(
            "warrants_or_judgments",
            item=Group(spec=WARRANT_OR_JUDGMENT),
            max_items=MAX_WARRANTS,
            required=lambda req, ctx: (
                f"{_kind(req)} needs at least one arrest warrant or conviction judgment."
                if _full(req)
                else ""
            ),
            numbered=True,
            label="Warrant or judgment",
            note=f"at least one {_FULL_ONLY}",
        ),
        offences(
            lambda req, ctx: (
                f"{a(CaseType.EXTRADITION.label)} needs at least one offence." if _full(req) else ""
            ),
            f"at least one {_FULL_ONLY}; each with `maximum_penalty`",
        ),
        Text(
            "summary_of_facts",
            size=LONG_CHARS,
            multiline=True,
            required=lambda req, ctx: (
                f"{_kind(req)} needs a summary of the facts." if _full(req) else ""
            ),
            label="Summary of facts",
            note=f"required {_FULL_ONLY}",
        ),
        Text(
            "interpol_notice",
            shape=INTERPOL_NOTICE,
            upper=True,
            label="INTERPOL notice",
            note="optional; `L-N/M-YYYY` such as `A-1234/5-2026` (a letter, a number of up "
            "to 6 digits, the month 1–12, the year; upper-cased on reading); the year not in "
            "the future (clock rule)",
        ),
        Text(
            "details",
            size=LONG_CHARS,
            multiline=True,
            required=lambda req, ctx: (
                "" if _full(req) else f"{_kind(req)} needs its content in details."
            ),
            label="Details",
            note=f"required {_FOLLOW_UPS}: the information, or the proposed date, place and escort",
        ),
    ),
    rules=(
        Rule(
            "offences",
            _penalty_needs_judgment,
            "An offence with `penalty_imposed` (enforcement of a sentence) needs a "
            "`conviction-judgment` among `warrants_or_judgments`.",
        ),
        Rule(
            "interpol_notice",
            _notice_not_dated_ahead,
            "An INTERPOL notice is not dated in a future year (clock rule).",
        ),
        Rule(
            "interpol_notice",
            _provisional_arrest_is_urgent,
            "`provisional-arrest` is asked for in urgency: `urgency` may not be `ordinary`.",
        ),
    ),
)

# --- VictimIdRequest -----------------------------------------------------------------------

_COLUMN_PROBLEM = re.compile(r"Line \d+, column (\w+): (.*)", re.DOTALL)


def victim_sought(person: Any, prefix: str = "person") -> VictimQuery:
    """The person a `VictimSought` describes, as a match query: the rules of a match query
    (`exchange.matching.records`) and its normalisation (alpha-2 nationality to alpha-3,
    sex upper-cased), in one place for the form and the holder's agreement check.

    Raises `FormFieldError` naming the field (`person.<field>` of the request).
    """
    row = {column: getattr(person, column) for column in QUERY_COLUMNS}
    try:
        return parse_query_row(row, 1)
    except InvalidFieldError as e:
        found = _COLUMN_PROBLEM.fullmatch(e.message)
        column, problem = found.groups() if found else ("given_name", e.message)
        fail(at(prefix, column), problem)


def _sought_is_a_match_query(person: Any, prefix: str, ctx: Ctx) -> None:
    victim_sought(person, prefix)


def _sought_text(p: Any) -> str:
    return join(
        [
            join([p.given_name, p.family_name], " "),
            p.sex,
            f"born {p.date_of_birth}" if p.date_of_birth else "",
            f"in {p.place_of_birth}" if p.place_of_birth else "",
            p.nationality,
        ]
    )


VICTIM_SOUGHT = MessageSpec(
    pb.VictimSought,
    (
        Text("given_name", size=NAME_CHARS, label="Given name"),
        Text("family_name", size=NAME_CHARS, label="Family name"),
        Text("sex", size=NAME_CHARS, label="Sex", note="`F`, `M`, `X` or empty"),
        Text(
            "date_of_birth",
            size=NAME_CHARS,
            label="Date of birth",
            note="`YYYY-MM-DD`, `YYYY-MM`, `YYYY` or empty",
        ),
        Text(
            "nationality",
            size=NAME_CHARS,
            label="Nationality",
            note="ISO 3166 alpha-3 (alpha-2 accepted) or empty",
        ),
        Text("place_of_birth", size=NAME_CHARS, label="Place of birth"),
    ),
    rules=(
        Rule(
            "place_of_birth",
            _sought_is_a_match_query,
            "The rules of a match query (docs/matching.md): a given or a family name, "
            "at most 200 characters each.",
        ),
    ),
    summary=_sought_text,
)

VICTIM_ID_REQUEST = request(
    pb.VictimIdRequest,
    (
        legal_bases(
            f"{a(CaseType.VICTIM_ID.label)} needs at least one legal basis.",
            check_after="purpose",
        ),
        Text(
            "match_reference",
            shape=MATCH_REFERENCE,
            required="the reference from the holder's hit answer is required.",
            label="Match reference",
            note="8 to 256 of `A-Z a-z 0-9 . _ ~ : + / = -` (hex, base64, UUIDs)",
        ),
        Group(
            "person",
            spec=VICTIM_SOUGHT,
            required="the person you are looking for is required, as in your match query: "
            "the holder checks it against the record before disclosing anything.",
            label="Person sought",
            note="the person the querier is looking for, as it knows them; the holder "
            "grades it against the record behind the reference (docs/matching.md)",
        ),
        Choice("purpose", vocab=VICTIM_ID_PURPOSES, label="Purpose", note="section 8.9"),
        Text(
            "justification",
            size=TEXT_CHARS,
            multiline=True,
            required="say why the identity is needed and how it will be protected.",
            label="Justification",
        ),
    ),
)

# The request of each case type: the CaseForm oneof field that holds it, and its spec.
REQUESTS: Mapping[CaseType, tuple[str, MessageSpec]] = MappingProxyType(
    {
        CaseType.MLA: ("mla", MLA_REQUEST),
        CaseType.EXTRADITION: ("extradition", EXTRADITION_REQUEST),
        CaseType.VICTIM_ID: ("victim_id", VICTIM_ID_REQUEST),
    }
)
