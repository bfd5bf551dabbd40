"""The field tables of the building blocks every request shares (authorities, legal
bases, offences, persons, identifiers, the contact officer) and of the fields shared by
the three requests. One `MessageSpec` per proto message, each field written once: its
kind, limits, requirement, label and rule in words (see `exchange.forms.spec`). Rules
between fields are the small functions here, each run right after the field it follows.
Pure.
"""

from __future__ import annotations

from typing import Any

from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.forms.base import (
    LINE_CHARS,
    MAX_IDENTIFIERS,
    MAX_LEGAL_BASES,
    MAX_NATIONALITIES,
    MAX_OFFENCES,
    NAME_CHARS,
    TEXT_CHARS,
    CaseType,
    a,
    fail,
    join,
)
from exchange.forms.checks import (
    AGENCY_ID,
    COUNTRY,
    EMAIL,
    LANGUAGE,
    PHONE,
)
from exchange.forms.reading import at
from exchange.forms.spec import (
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
    COUNTERPART,
    ENTITY_KINDS,
    EXTRADITION_ONLY,
    IDENTIFIER_KINDS,
    LEGAL_BASES,
    OFFENCE_CATEGORIES,
    PERSON_ROLES,
    URGENCIES,
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


def authority(what: str, note: str) -> Group:
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


def legal_bases(required: Required, check_after: str = "") -> Many:
    return Many(
        "legal_basis",
        item=Group(spec=LEGAL_BASIS, shorthand="instrument", plural="legal bases"),
        max_items=MAX_LEGAL_BASES,
        required=required,
        unique=Unique(
            lambda b: (b.instrument, b.article.strip(), b.details.strip()),
            lambda key: f"the legal basis {LEGAL_BASES.label(key[0])}",
            "no duplicates (same instrument, article and details)",
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
            OFFENCE_CATEGORIES.label(o.category) if o.category else "",
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
        Choice(
            "category",
            vocab=OFFENCE_CATEGORIES,
            optional=True,
            label="Category",
            note="what the offence is, for statistics (docs/statistics.md)",
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


def offences(required: Required, note: str = "") -> Many:
    return Many(
        "offences",
        item=Group(spec=OFFENCE),
        max_items=MAX_OFFENCES,
        required=required,
        numbered=True,
        label="Offence",
        note=note,
    )


def identifier_text(ident: Any) -> str:
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
    summary=identifier_text,
)


def identifiers(sep: str, label: str) -> Many:
    return Many(
        "identifiers",
        item=Group(spec=IDENTIFIER),
        max_items=MAX_IDENTIFIERS,
        sep=sep,
        label=label,
    )


def nationalities(sep: str, note: str = "", row: str = "") -> Many:
    return Many(
        "nationalities",
        item=Text(shape=COUNTRY, upper=True),
        max_items=MAX_NATIONALITIES,
        unique=Unique(lambda c: c, repr),
        sep=sep,
        label="Nationalities",
        row=row,
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
            ", ".join(identifier_text(i) for i in p.identifiers),
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
        nationalities("/", "for an entity: country of registration"),
        identifiers(", ", "Identifiers"),
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
    authority("requesting", ""),
    authority("requested", "another agency than the requesting one"),
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
        label="Reason for urgency",
        shown_in="urgency",
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


def request(
    proto: type[Any],
    own: tuple[Field, ...],
    rules: tuple[Rule, ...] = (),
    lead: tuple[Field, ...] = (),
) -> MessageSpec:
    """A request: `lead` fields, the parties, its own fields, then the other shared ones."""
    return MessageSpec(proto, (*lead, *SHARED_HEAD, *own, *SHARED_TAIL), (PARTIES_RULE, *rules))
