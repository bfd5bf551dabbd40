"""The field tables: one `MessageSpec` per message of proto/mlax/v1/forms.proto.

Each field is written once, here: its kind, limits, requirement, label and rule in
words. Reading form files, checking, describing for a timeline, docs/forms.md's field
tables and a console's forms all derive from these tables (`exchange.forms.spec`,
`exchange.forms.schema`); a test fails when a proto field has no spec. Rules between
fields are the small functions below, each run right after the field it follows. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.case import Action
from exchange.forms.base import (
    LINE_CHARS,
    LONG_CHARS,
    MAX_ALIASES,
    MAX_ATTACHMENT_REFS,
    MAX_CONDITIONS,
    MAX_IDENTIFIERS,
    MAX_LEGAL_BASES,
    MAX_NATIONALITIES,
    MAX_OFFENCES,
    MAX_PERSONS,
    MAX_QUESTIONS,
    MAX_WARRANTS,
    NAME_CHARS,
    TEXT_CHARS,
    CaseType,
    a,
    fail,
    join,
    utc,
)
from exchange.forms.checks import (
    AGENCY_ID,
    COUNTRY,
    EMAIL,
    FILE_NAME,
    INTERPOL_NOTICE,
    INTERPOL_RE,
    LANGUAGE,
    MATCH_REFERENCE,
    PHONE,
)
from exchange.forms.reading import at
from exchange.forms.spec import (
    Blob,
    ByteCount,
    CalendarDate,
    Choice,
    Ctx,
    Field,
    Flag,
    Group,
    Instant,
    Many,
    MessageSpec,
    Required,
    Rule,
    Text,
    Unique,
)
from exchange.forms.vocab import (
    ASSISTANCE_TYPES,
    COUNTERPART,
    ENTITY_KINDS,
    EXTRADITION_KINDS,
    EXTRADITION_ONLY,
    IDENTIFIER_KINDS,
    LEGAL_BASES,
    PERSON_ROLES,
    REFUSAL_GROUNDS,
    URGENCIES,
    VICTIM_ID_PURPOSES,
    WARRANT_KINDS,
)

# --- building blocks -----------------------------------------------------------------------


def _authority_spec(what: str) -> MessageSpec:
    return MessageSpec(
        pb.Authority,
        (
            Text(
                "agency_id",
                shape=AGENCY_ID,
                upper=True,
                required=f"the {what} agency id is required.",
                label="Agency",
                note="the directory id; upper-cased on reading",
            ),
            Text(
                "name",
                size=NAME_CHARS,
                required="a name is required.",
                label="Name",
                note="the competent authority, which may differ from the agency's name",
            ),
        ),
        summary=lambda x: f"{x.name} ({x.agency_id})" if x.name else x.agency_id,
    )


def _authority(what: str, note: str) -> Group:
    return Group(
        f"{what}_authority",
        spec=_authority_spec(what),
        required=f"the {what} authority is required.",
        label=f"{what.capitalize()} authority",
        note=note,
    )


def _legal_basis_serves_the_case(basis: Any, prefix: str, ctx: Ctx) -> None:
    term = LEGAL_BASES.term(basis.instrument)
    case_type = ctx.case_type
    if term is None or case_type is None or case_type in term.case_types:
        return
    purpose = "extradition" if term.case_types == EXTRADITION_ONLY else "MLA"
    hint = COUNTERPART.get(term.slug)
    fail(
        at(prefix, "instrument"),
        f"{term.slug} is a legal basis for {purpose}, not for {a(case_type.label)}"
        + (f" (use {hint})." if hint else "."),
    )


def _legal_basis_details(basis: Any, ctx: Ctx) -> str:
    term = LEGAL_BASES.term(basis.instrument)
    if term is None or not term.needs_details:
        return ""
    return f"{term.slug} needs {term.needs_details} here."


def _legal_basis_text(basis: Any) -> str:
    text = LEGAL_BASES.label(basis.instrument)
    if basis.details:
        text += f" ({basis.details})"
    if basis.article:
        text += f", {basis.article}"
    return text


LEGAL_BASIS = MessageSpec(
    pb.LegalBasis,
    (
        Choice(
            "instrument",
            vocab=LEGAL_BASES,
            label="Instrument",
            note="section 8.1; it must serve the form's case type",
        ),
        Text("article", size=NAME_CHARS, label="Article", note="e.g. `art. 18(3)(f)`"),
        Text(
            "details",
            size=TEXT_CHARS,
            required=_legal_basis_details,
            label="Details",
            note="the treaty's title for a bilateral treaty, a description for `other`, "
            "both required; else optional remarks",
        ),
    ),
    rules=(
        Rule(
            "instrument",
            _legal_basis_serves_the_case,
            "An instrument cited for the wrong kind of request is refused, its counterpart "
            "suggested.",
        ),
    ),
    summary=_legal_basis_text,
)


def _legal_bases(required: Required, check_after: str = "") -> Many:
    return Many(
        "legal_basis",
        item=Group(spec=LEGAL_BASIS, shorthand="instrument", plural="legal bases"),
        max_items=MAX_LEGAL_BASES,
        required=required,
        unique=Unique(
            lambda b: (b.instrument, b.article.strip(), b.details.strip()),
            lambda key: f"the legal basis {LEGAL_BASES.label(key[0])}",
        ),
        label="Legal basis",
        note="a slug, or a table `{ instrument, article, details }`",
        check_after=check_after,
    )


def _sentence_needs_penalty(offence: Any, prefix: str, ctx: Ctx) -> None:
    imposed = bool(offence.penalty_imposed.strip())
    remaining = bool(offence.remaining_sentence.strip())
    if imposed and not remaining and ctx.case_type is CaseType.EXTRADITION:
        fail(
            at(prefix, "remaining_sentence"),
            "for enforcement of a sentence, state the part still to be served.",
        )
    if remaining and not imposed:
        fail(at(prefix, "penalty_imposed"), "a remaining sentence needs the penalty imposed.")


def _offence_text(o: Any) -> str:
    facts = join(
        [
            o.legal_provision,
            f"maximum penalty: {o.maximum_penalty}" if o.maximum_penalty else "",
            f"penalty imposed: {o.penalty_imposed}" if o.penalty_imposed else "",
            f"remaining: {o.remaining_sentence}" if o.remaining_sentence else "",
        ],
        "; ",
    )
    return f"{o.description} ({facts})" if facts else o.description


OFFENCE = MessageSpec(
    pb.Offence,
    (
        Text(
            "description",
            size=TEXT_CHARS,
            multiline=True,
            required="each offence needs a description.",
            label="Description",
        ),
        Text(
            "legal_provision",
            size=LINE_CHARS,
            required="each offence needs the provision of law that defines it.",
            label="Legal provision",
            note="the provision of the requesting State's law",
        ),
        Text(
            "maximum_penalty",
            size=LINE_CHARS,
            required=lambda o, ctx: (
                "extradition needs the maximum penalty the law provides for each offence."
                if ctx.case_type is CaseType.EXTRADITION
                else ""
            ),
            label="Maximum penalty",
            note="required in extradition-related requests (dual criminality and "
            "thresholds); optional in MLA",
        ),
        Text(
            "penalty_imposed",
            size=LINE_CHARS,
            label="Penalty imposed",
            note="for the enforcement of a sentence",
        ),
        Text(
            "remaining_sentence",
            size=LINE_CHARS,
            label="Remaining sentence",
            note="needs `penalty_imposed`; in extradition, required when `penalty_imposed` "
            "is given",
        ),
    ),
    rules=(
        Rule(
            "remaining_sentence",
            _sentence_needs_penalty,
            "A remaining sentence needs the penalty imposed; in extradition a penalty "
            "imposed needs the remaining sentence.",
        ),
    ),
    summary=_offence_text,
)


def _offences(required: Required, note: str) -> Many:
    return Many(
        "offences",
        item=Group(spec=OFFENCE),
        max_items=MAX_OFFENCES,
        required=required,
        numbered=True,
        label="Offence",
        note=note,
    )


def _identifier_text(ident: Any) -> str:
    text = f"{IDENTIFIER_KINDS.label(ident.kind)} {ident.value}"
    return f"{text} ({ident.issuer})" if ident.issuer else text


IDENTIFIER = MessageSpec(
    pb.Identifier,
    (
        Choice("kind", vocab=IDENTIFIER_KINDS, label="Kind", note="section 8.6"),
        Text("value", size=NAME_CHARS, required="a value is required.", label="Value"),
        Text(
            "issuer",
            size=NAME_CHARS,
            label="Issuer",
            note="issuing country, bank, provider or registry",
        ),
    ),
    summary=_identifier_text,
)


def _identifiers(sep: str, label: str) -> Many:
    return Many(
        "identifiers",
        item=Group(spec=IDENTIFIER),
        max_items=MAX_IDENTIFIERS,
        sep=sep,
        label=label,
    )


def _nationalities(label: str, sep: str, note: str = "") -> Many:
    return Many(
        "nationalities",
        item=Text(shape=COUNTRY, upper=True),
        max_items=MAX_NATIONALITIES,
        unique=Unique(lambda c: c, repr),
        sep=sep,
        label=label,
        note=note,
    )


def _person_text(p: Any) -> str:
    head = f"{PERSON_ROLES.label(p.role)}: {p.name}"
    if p.kind == pb.ENTITY_KIND_LEGAL_PERSON:
        head += " (legal person)"
    return join(
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


def _legal_person_has_no_birth(person: Any, prefix: str, ctx: Ctx) -> None:
    if person.date_of_birth and person.kind == pb.ENTITY_KIND_LEGAL_PERSON:
        fail(at(prefix, "date_of_birth"), "a legal person has no date of birth.")


PERSON = MessageSpec(
    pb.Person,
    (
        Choice(
            "kind",
            vocab=ENTITY_KINDS,
            default="natural-person",
            label="Kind",
            note="`natural-person` when absent from a form file",
        ),
        Choice("role", vocab=PERSON_ROLES, label="Role"),
        Text(
            "name",
            size=NAME_CHARS,
            required="a name is required.",
            label="Name",
            note="full name, or registered name of an entity",
        ),
        CalendarDate(
            "date_of_birth",
            partial=True,
            label="Date of birth",
            note="natural persons only",
        ),
        _nationalities("Nationalities", "/", "for an entity: country of registration"),
        _identifiers(", ", "Identifiers"),
        Text(
            "address",
            size=LINE_CHARS,
            multiline=True,
            label="Address",
            note="last known address",
        ),
        Text("notes", size=TEXT_CHARS, multiline=True, label="Notes"),
    ),
    rules=(Rule("name", _legal_person_has_no_birth, "A legal person has no date of birth."),),
    summary=_person_text,
)


def _requirements_only_when_required(conf: Any, prefix: str, ctx: Ctx) -> None:
    if conf.requirements.strip() and not conf.required:
        fail(
            at(prefix, "requirements"),
            "state requirements only when confidentiality.required is true.",
        )


CONFIDENTIALITY = MessageSpec(
    pb.Confidentiality,
    (
        Flag(
            "required",
            label="Required",
            note="the requested State must keep the request and its content confidential, "
            "UNTOC art. 18(20)",
        ),
        Text(
            "requirements",
            size=TEXT_CHARS,
            multiline=True,
            label="Requirements",
            note='only when `required` is true, e.g. "do not notify the account holder"',
        ),
    ),
    rules=(
        Rule(
            "requirements",
            _requirements_only_when_required,
            "Requirements are stated only when confidentiality is required.",
        ),
    ),
)


def _email_or_phone(officer: Any, prefix: str, ctx: Ctx) -> None:
    if not officer.email and not officer.phone:
        fail(at(prefix, "email"), "give the contact officer's email address or phone number.")


CONTACT_OFFICER = MessageSpec(
    pb.ContactOfficer,
    (
        Text("name", size=NAME_CHARS, required="a name is required.", label="Name"),
        Text("position", size=NAME_CHARS, label="Position"),
        Text(
            "email",
            size=254,
            shape=EMAIL,
            label="Email",
            note="the shape `local@domain.tld`",
        ),
        Text(
            "phone",
            size=40,
            shape=PHONE,
            label="Phone",
            note="digits, an optional leading `+`, spaces, dots, dashes and parentheses "
            "(5 to 32 characters)",
        ),
    ),
    rules=(Rule("phone", _email_or_phone, "At least one of `email` and `phone`."),),
    summary=lambda c: join([c.name, c.position, c.email, c.phone]),
)

# --- the shared fields of every request ----------------------------------------------------


def _not_to_itself(req: Any, prefix: str, ctx: Ctx) -> None:
    requesting, requested = req.requesting_authority.agency_id, req.requested_authority.agency_id
    if requesting == requested:
        fail(
            "requested_authority.agency_id",
            f"a request from {requesting} cannot be addressed to itself.",
        )


def _urgency_reason(req: Any, ctx: Ctx) -> str:
    term = URGENCIES.term(req.urgency)
    if term is None or term.value == pb.URGENCY_ORDINARY:
        return ""
    return f"{a(term.slug)} request must say why it cannot wait."


def _urgency_row(req: Any) -> str:
    urgency = URGENCIES.label(req.urgency)
    return f"{urgency}: {req.urgency_reason}" if req.urgency_reason else urgency


SHARED_HEAD: tuple[Field, ...] = (
    _authority("requesting", ""),
    _authority("requested", "another agency than the requesting one"),
)
SHARED_TAIL: tuple[Field, ...] = (
    Choice(
        "urgency",
        vocab=URGENCIES,
        default="ordinary",
        label="Urgency",
        show=_urgency_row,
        note="`ordinary` when absent from a form file",
    ),
    Text(
        "urgency_reason",
        size=TEXT_CHARS,
        multiline=True,
        required=_urgency_reason,
        note="required unless `urgency` is `ordinary`",
    ),
    Instant("requested_deadline", label="Requested deadline"),
    Group(
        "contact_officer",
        spec=CONTACT_OFFICER,
        required="a contact officer is required.",
        label="Contact officer",
    ),
    Text(
        "language",
        shape=LANGUAGE,
        required="the language of the form is required, as a tag such as en or fr.",
        label="Language",
        note="the language of the form's free text: `en`, `fr`, `pt-BR`, `sr-Latn-RS`",
    ),
)
SHARED_NAMES = tuple(f.name for f in (*SHARED_HEAD, *SHARED_TAIL))
PARTIES_RULE = Rule(
    "requested_authority", _not_to_itself, "A request is addressed to another agency."
)


def _request(
    proto: type[Any],
    own: tuple[Field, ...],
    rules: tuple[Rule, ...] = (),
    lead: tuple[Field, ...] = (),
) -> MessageSpec:
    """A request: `lead` fields, the parties, its own fields, then the other shared ones."""
    return MessageSpec(proto, (*lead, *SHARED_HEAD, *own, *SHARED_TAIL), (PARTIES_RULE, *rules))


# --- MlaRequest ----------------------------------------------------------------------------


def _confidentiality_row(req: Any) -> str:
    conf = req.confidentiality
    return join(["Required", conf.requirements], ": ") if conf.required else ""


MLA_REQUEST = _request(
    pb.MlaRequest,
    (
        _legal_bases(f"{a(CaseType.MLA.label)} needs at least one legal basis."),
        _offences(f"{a(CaseType.MLA.label)} needs at least one offence.", "at least one"),
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
            label="Person sought",
            show=lambda p: join([p.family_name.upper(), p.given_names]),
        ),
        Text("given_names", size=NAME_CHARS),
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
            label="Born",
            show=lambda p: join([p.date_of_birth, p.place_of_birth]),
        ),
        Text("place_of_birth", size=LINE_CHARS),
        _nationalities("Nationality", "/"),
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
        _identifiers("; ", "Identifiers"),
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

EXTRADITION_REQUEST = _request(
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
        _legal_bases(
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
        _offences(
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

VICTIM_ID_REQUEST = _request(
    pb.VictimIdRequest,
    (
        _legal_bases(
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

# --- transition details --------------------------------------------------------------------

ATTACHMENT_REF = MessageSpec(
    pb.AttachmentRef,
    (
        Blob(
            "attachment_id",
            size=16,
            encoding="uuid",
            problem="must be 16 bytes (a UUID).",
            unreadable="expected a UUID, as 32 hexadecimal digits.",
            note="in a form file a UUID, with or without dashes",
        ),
        Text(
            "name",
            size=255,
            shape=FILE_NAME,
            required="a file name is required.",
            label="Name",
            note="no `/` or `\\`, not `.` or `..`",
        ),
        Blob(
            "sha256",
            size=32,
            encoding="hex",
            problem="must be a 32-byte SHA-256 digest.",
            unreadable="expected a SHA-256 digest, as 64 hexadecimal digits.",
            note="in a form file 64 hex digits",
        ),
        ByteCount("size", note="in a form file a non-negative integer, required"),
    ),
    summary=lambda r: f"{r.name} ({r.size:,} bytes, sha256 {r.sha256.hex()[:16]}…)",
)


def _attachments(name: str, label: str) -> Many:
    return Many(
        name,
        item=Group(spec=ATTACHMENT_REF),
        max_items=MAX_ATTACHMENT_REFS,
        unique=Unique(lambda ref: ref.attachment_id, lambda i: f"Attachment {i.hex()}"),
        numbered=True,
        label=label,
        note="evidence already sent as attachments of the case; ids unique",
    )


def _note() -> Text:
    return Text("note", size=TEXT_CHARS, multiline=True, label="Note")


def _report_is_final_by_its_action(report: Any, prefix: str, ctx: Ctx) -> None:
    final = ctx.action is Action.REPORT_EXECUTED
    if ctx.action is not None and report.final != final:
        fail(
            "final",
            f"a {ctx.action.value} report must have final = {'true' if final else 'false'}.",
        )


# The details of each kind, by their TransitionDetails oneof field (ACTION_DETAILS).
DETAILS: Mapping[str, MessageSpec] = MappingProxyType(
    {
        "acknowledge": MessageSpec(
            pb.Acknowledgement,
            (
                Text(
                    "reference",
                    size=NAME_CHARS,
                    label="Their reference",
                    note="the requested authority's own file reference",
                ),
                _note(),
            ),
        ),
        "request_info": MessageSpec(
            pb.InfoRequest,
            (
                Many(
                    "questions",
                    item=Text(
                        size=TEXT_CHARS, multiline=True, required="a question may not be empty."
                    ),
                    max_items=MAX_QUESTIONS,
                    required="a request for information needs at least one question.",
                    numbered=True,
                    label="Question",
                    note="none empty",
                ),
                Instant("reply_by", label="Reply by"),
            ),
        ),
        "provide_info": MessageSpec(
            pb.InfoProvided,
            (
                Text(
                    "answers",
                    size=LONG_CHARS,
                    multiline=True,
                    required="the information provided is required.",
                    label="Answers",
                ),
                _attachments("documents", "Document"),
            ),
        ),
        "accept": MessageSpec(
            pb.Acceptance,
            (
                Many(
                    "conditions",
                    item=Text(
                        size=TEXT_CHARS, multiline=True, required="a condition may not be empty."
                    ),
                    max_items=MAX_CONDITIONS,
                    numbered=True,
                    label="Condition",
                    note="none empty; e.g. the speciality rule or limits on use",
                ),
                _note(),
            ),
        ),
        "refuse": MessageSpec(
            pb.Refusal,
            (
                Many(
                    "grounds",
                    item=Choice(vocab=REFUSAL_GROUNDS),
                    max_items=len(REFUSAL_GROUNDS),
                    required="a refusal must state at least one ground.",
                    unique=Unique(lambda v: v, REFUSAL_GROUNDS.label),
                    label="Grounds",
                    note="section 8.10",
                ),
                Text(
                    "explanation",
                    size=TEXT_CHARS,
                    multiline=True,
                    required="a refusal must explain how its grounds apply.",
                    label="Explanation",
                ),
            ),
        ),
        "start_execution": MessageSpec(
            pb.ExecutionStart,
            (
                Text(
                    "executing_authority",
                    size=NAME_CHARS,
                    label="Executing authority",
                    note="e.g. a court or police unit",
                ),
                _note(),
            ),
        ),
        "report": MessageSpec(
            pb.ExecutionReport,
            (
                Flag(
                    "final",
                    readable=False,
                    label="Report",
                    show=lambda r: "final" if r.final else "partial",
                    note="true for `report_executed`, false for `report_partial`; in a form "
                    "file not a key: it follows from the action",
                ),
                Text(
                    "summary",
                    size=LONG_CHARS,
                    multiline=True,
                    required="an execution report needs a summary.",
                    label="Summary",
                ),
                Many(
                    "assistance_executed",
                    item=Choice(vocab=ASSISTANCE_TYPES),
                    max_items=len(ASSISTANCE_TYPES),
                    unique=Unique(lambda v: v, ASSISTANCE_TYPES.label),
                    label="Assistance executed",
                ),
                _attachments("evidence", "Evidence"),
            ),
            rules=(
                Rule(
                    "final",
                    _report_is_final_by_its_action,
                    "`final` matches the action: true for `report_executed`.",
                ),
            ),
        ),
        "withdraw": MessageSpec(
            pb.Withdrawal,
            (
                Text(
                    "reason",
                    size=TEXT_CHARS,
                    multiline=True,
                    required="a withdrawal must give its reason.",
                    label="Reason",
                ),
            ),
        ),
        "close": MessageSpec(
            pb.Closure,
            (Text("outcome", size=TEXT_CHARS, multiline=True, label="Outcome"),),
        ),
    }
)
