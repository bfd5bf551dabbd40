"""Case forms: built from form files, validated field by field, details per action."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import EnumDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange._proto.mlax.v1 import envelope_pb2
from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.case import Action, Urgency
from exchange.errors import InvalidFieldError, MalformedError, MlaxError, OversizedError
from exchange.forms import (
    ACTION_DETAILS,
    ASSISTANCE_TYPES,
    ENTITY_KINDS,
    EXTRADITION_KINDS,
    IDENTIFIER_KINDS,
    LEGAL_BASES,
    MAX_FORM_BYTES,
    OFFENCE_CATEGORIES,
    PERSON_ROLES,
    REFUSAL_GROUNDS,
    URGENCIES,
    VICTIM_ID_PURPOSES,
    WARRANT_KINDS,
    CaseType,
    FormFieldError,
    FormFieldTooLargeError,
    Vocabulary,
    case_type_of,
    deadline_of,
    describe_details,
    describe_form,
    details_from_bytes,
    details_from_mapping,
    form_from_bytes,
    form_from_mapping,
    message_type_of,
    parties_of,
    urgency_of,
    validate_details,
    validate_form,
)
from exchange.wire import parse

ROOT = Path(__file__).resolve().parents[2]
FORMS_DIR = ROOT / "deploy" / "forms"


def ms(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))


NOW = ms(datetime(2026, 11, 15, 12, 0, tzinfo=UTC))
DAY = 86_400_000
DELETE = object()


# --- form mappings, as tomllib returns them ------------------------------------------------


def contact() -> dict[str, Any]:
    return {
        "name": "DS Helen Marsh",
        "position": "Modern Slavery and Human Trafficking Unit",
        "email": "helen.marsh@nca.example",
        "phone": "+44 20 7946 0000",
    }


def mla_data() -> dict[str, Any]:
    return {
        "requesting_authority": {"agency_id": "GB-NCA", "name": "National Crime Agency"},
        "requested_authority": {
            "agency_id": "NG-NAPTIP",
            "name": "National Agency for the Prohibition of Trafficking in Persons",
        },
        "legal_basis": ["untoc-art18", "palermo-protocol"],
        "offences": [
            {
                "description": "Human trafficking for forced labour.",
                "legal_provision": "Modern Slavery Act 2015, s. 2",
                "maximum_penalty": "Life imprisonment",
            },
            {
                "description": "Money laundering.",
                "legal_provision": "Proceeds of Crime Act 2002, s. 327",
            },
        ],
        "summary_of_facts": "Eleven women recruited in Benin City were made to work in Salford.",
        "persons": [
            {
                "role": "suspect",
                "name": "Osagie EDOBOR",
                "date_of_birth": date(1984, 7, 12),
                "nationalities": ["ng"],
                "identifiers": [{"kind": "passport", "value": "A10293847", "issuer": "NG"}],
            },
            {
                "kind": "legal-person",
                "role": "third-party",
                "name": "Northgate Care Staffing Ltd",
            },
        ],
        "assistance_sought": ["banking-records", "witness-hearing"],
        "assistance_details": "Statements of two accounts since 2025-01-01.",
        "confidentiality": {"required": True, "requirements": "Do not notify the holders."},
        "urgency": "urgent",
        "urgency_reason": "Funds are about to be moved.",
        "requested_deadline": "2026-12-31",
        "contact_officer": contact(),
        "language": "en",
    }


def extradition_data() -> dict[str, Any]:
    return {
        "kind": "extradition",
        "requesting_authority": {"agency_id": "GB-NCA", "name": "National Crime Agency"},
        "requested_authority": {"agency_id": "NG-NAPTIP", "name": "NAPTIP"},
        "legal_basis": [{"instrument": "untoc-art16", "article": "art. 16(4)"}],
        "person_sought": {
            "family_name": "IGBINEDION",
            "given_names": "Efosa Daniel",
            "aliases": ["Efe Daniels"],
            "date_of_birth": "1979-02",
            "nationalities": ["NG"],
            "last_known_location": "Benin City",
        },
        "warrants_or_judgments": [
            {
                "kind": "arrest-warrant",
                "reference": "WMC/2026/118342",
                "issuing_authority": "Westminster Magistrates' Court",
                "issued_on": date(2026, 10, 2),
            }
        ],
        "offences": [
            {
                "description": "Human trafficking.",
                "legal_provision": "Modern Slavery Act 2015, s. 2",
                "maximum_penalty": "Life imprisonment",
            }
        ],
        "summary_of_facts": "He recruited eleven women with false offers of care work.",
        "interpol_notice": "A-10482/9-2026",
        "urgency": "ordinary",
        "contact_officer": contact(),
        "language": "en-GB",
    }


def victim_id_data() -> dict[str, Any]:
    return {
        "requesting_authority": {"agency_id": "FR-OCRTEH", "name": "OCRTEH"},
        "requested_authority": {"agency_id": "NG-NAPTIP", "name": "NAPTIP"},
        "match_reference": "mref_9f2c1e77a0b44d1c",
        "person": {
            "given_name": "Blessing",
            "family_name": "Okonkwo",
            "sex": "F",
            "date_of_birth": "1999-04-12",
        },
        "purpose": "repatriation",
        "legal_basis": ["palermo-protocol"],
        "justification": (
            "A presumed victim in Lyon asks to return home; we must verify her nationality."
        ),
        "contact_officer": {"name": "Cdt Claire Roux", "email": "c.roux@ocrteh.example"},
        "language": "fr",
    }


DATA = {
    CaseType.MLA: mla_data,
    CaseType.EXTRADITION: extradition_data,
    CaseType.VICTIM_ID: victim_id_data,
}


def put(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `data` with the value at dotted `path` replaced (or deleted)."""
    data = copy.deepcopy(data)
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    node: Any = data
    for part in parts[:-1]:
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return data


def build(case_type: CaseType, data: dict[str, Any], now_ms: int = NOW) -> pb.CaseForm:
    return form_from_mapping(case_type, data, now_ms=now_ms)


def rejected(field: str, call: Callable[[], object], cls: type[MlaxError] = FormFieldError) -> str:
    """Run `call`, expect `cls` naming `field` in one sentence; return the message."""
    with pytest.raises(cls) as info:
        call()
    err = info.value
    assert isinstance(err, FormFieldError | FormFieldTooLargeError)
    assert err.field == field, err.message
    assert err.message.startswith(f"Field {field}: "), err.message
    assert err.message.endswith("."), err.message
    assert "\n" not in err.message
    return err.message


# --- valid forms ---------------------------------------------------------------------------


def test_mla_form_from_mapping() -> None:
    form = build(CaseType.MLA, mla_data())
    req = form.mla
    assert case_type_of(form) is CaseType.MLA
    assert list(req.legal_basis) == [
        pb.LegalBasis(instrument=pb.LEGAL_INSTRUMENT_UNTOC_ART18),
        pb.LegalBasis(instrument=pb.LEGAL_INSTRUMENT_PALERMO_PROTOCOL),
    ]
    assert list(req.assistance_sought) == [
        pb.ASSISTANCE_TYPE_BANKING_RECORDS,
        pb.ASSISTANCE_TYPE_WITNESS_HEARING,
    ]
    suspect, company = req.persons
    assert suspect.kind == pb.ENTITY_KIND_NATURAL_PERSON  # the default
    assert suspect.date_of_birth == "1984-07-12"
    assert list(suspect.nationalities) == ["NG"]
    assert company.kind == pb.ENTITY_KIND_LEGAL_PERSON
    assert req.confidentiality.required
    # A deadline date means the end of that day, UTC.
    assert req.requested_deadline == ms(datetime(2027, 1, 1, tzinfo=UTC)) - 1
    assert urgency_of(form) is Urgency.URGENT
    assert parties_of(form) == ("GB-NCA", "NG-NAPTIP")
    assert deadline_of(form) == req.requested_deadline
    assert message_type_of(case_type_of(form)) == envelope_pb2.MESSAGE_TYPE_MLA_REQUEST == 2


def test_extradition_form_from_mapping() -> None:
    form = build(CaseType.EXTRADITION, extradition_data())
    req = form.extradition
    assert req.kind == pb.EXTRADITION_KIND_EXTRADITION
    assert req.person_sought.date_of_birth == "1979-02"
    assert req.warrants_or_judgments[0].issued_on == "2026-10-02"
    assert urgency_of(form) is Urgency.ORDINARY
    assert deadline_of(form) is None
    assert message_type_of(CaseType.EXTRADITION) == envelope_pb2.MESSAGE_TYPE_EXTRADITION_REQUEST


def test_victim_id_form_from_mapping() -> None:
    form = build(CaseType.VICTIM_ID, victim_id_data())
    assert form.victim_id.purpose == pb.VICTIM_ID_PURPOSE_REPATRIATION
    assert urgency_of(form) is Urgency.ORDINARY  # the default
    assert parties_of(form) == ("FR-OCRTEH", "NG-NAPTIP")
    assert message_type_of(CaseType.VICTIM_ID) == envelope_pb2.MESSAGE_TYPE_VICTIM_ID_REQUEST


def test_readable_variants_are_accepted() -> None:
    data = put(mla_data(), "legal_basis", "UNTOC_ART18")  # one slug, any case, _ or -
    data = put(data, "assistance_sought", "banking-records")
    data = put(data, "confidentiality", True)
    data = put(data, "case_type", "MLA")
    data = put(data, "persons[0].date_of_birth", 1984)  # TOML reads a bare year as a number
    data = put(data, "requested_deadline", "2026-12-31T17:00:00+01:00")
    req = build(CaseType.MLA, data).mla
    assert [b.instrument for b in req.legal_basis] == [pb.LEGAL_INSTRUMENT_UNTOC_ART18]
    assert req.persons[0].date_of_birth == "1984"
    assert req.requested_deadline == ms(datetime(2026, 12, 31, 16, 0, tzinfo=UTC))
    # TOML's own date-time values work as well as strings.
    zone = timezone(timedelta(hours=-5))
    data = put(data, "requested_deadline", datetime(2026, 12, 31, 12, 0, tzinfo=zone))
    assert build(CaseType.MLA, data).mla.requested_deadline == ms(
        datetime(2026, 12, 31, 17, 0, tzinfo=UTC)
    )


def test_json_null_means_absent() -> None:
    data = put(mla_data(), "requested_deadline", None)
    data = put(data, "persons", None)
    req = build(CaseType.MLA, data).mla
    assert req.requested_deadline == 0
    assert len(req.persons) == 0


@pytest.mark.parametrize(
    ("name", "case_type"),
    [("mla-request.toml", CaseType.MLA), ("extradition-request.toml", CaseType.EXTRADITION)],
)
def test_example_form_files_load(name: str, case_type: CaseType) -> None:
    with (FORMS_DIR / name).open("rb") as f:
        data = tomllib.load(f)
    assert data["case_type"] == case_type.value
    form = build(case_type, data)
    # They stay valid as time passes: no deadline is set, every date is in the past.
    validate_form(form, now_ms=ms(datetime.now(UTC)))
    requesting, requested = parties_of(form)
    deployed = {p.stem.upper() for p in (ROOT / "deploy" / "federation").glob("*.toml")}
    assert {requesting, requested} <= deployed
    rows = dict(describe_form(form))
    assert rows["Requesting authority"] == "National Crime Agency (GB-NCA)"
    assert form_from_bytes(form.SerializeToString(), now_ms=NOW) == form


# --- each bad field named --------------------------------------------------------------------

MLA_BAD: list[tuple[str, Any, str]] = [
    ("legal_basis", DELETE, "legal_basis"),
    ("legal_basis", [], "legal_basis"),
    ("legal_basis", ["bank-secrecy-waiver"], "legal_basis[0]"),
    ("legal_basis", ["untoc-art16"], "legal_basis[0].instrument"),
    ("legal_basis", ["european-extradition-convention-1957"], "legal_basis[0].instrument"),
    ("legal_basis", [{"instrument": "bilateral-mla-treaty"}], "legal_basis[0].details"),
    ("legal_basis", [{"instrument": "other", "article": "art. 3"}], "legal_basis[0].details"),
    ("legal_basis", [{"article": "art. 18"}], "legal_basis[0].instrument"),
    ("legal_basis", ["reciprocity", "reciprocity"], "legal_basis[1]"),
    ("legal_basis", [{"instrument": "reciprocity", "treaty": "x"}], "legal_basis[0].treaty"),
    ("legal_basis", 18, "legal_basis"),
    ("offences", DELETE, "offences"),
    ("offences", "trafficking", "offences"),
    ("offences[1].description", "  ", "offences[1].description"),
    ("offences[0].legal_provision", DELETE, "offences[0].legal_provision"),
    ("offences[0].remaining_sentence", "2 years", "offences[0].penalty_imposed"),
    ("offences[0].penalty", "life", "offences[0].penalty"),
    ("offences[0].category", "slavery", "offences[0].category"),
    ("summary_of_facts", DELETE, "summary_of_facts"),
    ("summary_of_facts", ["facts"], "summary_of_facts"),
    ("assistance_sought", DELETE, "assistance_sought"),
    ("assistance_sought", ["mind-reading"], "assistance_sought[0]"),
    ("assistance_sought", ["banking-records", "banking-records"], "assistance_sought[1]"),
    ("assistance_sought", [3], "assistance_sought[0]"),
    ("persons[0].role", DELETE, "persons[0].role"),
    ("persons[0].role", "bystander", "persons[0].role"),
    ("persons[0].kind", "robot", "persons[0].kind"),
    ("persons[0].name", "", "persons[0].name"),
    ("persons[0].name", "Osagie\nEDOBOR", "persons[0].name"),
    ("persons[0].name", "Osagie \u202eROBODE", "persons[0].name"),
    ("persons[0].date_of_birth", "1990-02-30", "persons[0].date_of_birth"),
    ("persons[0].date_of_birth", "12/07/1984", "persons[0].date_of_birth"),
    ("persons[0].date_of_birth", "1850", "persons[0].date_of_birth"),
    ("persons[0].date_of_birth", "2027", "persons[0].date_of_birth"),
    ("persons[0].date_of_birth", datetime(1984, 7, 12, tzinfo=UTC), "persons[0].date_of_birth"),
    ("persons[1].date_of_birth", "2001-05-01", "persons[1].date_of_birth"),
    ("persons[0].nationalities", ["Nigeria"], "persons[0].nationalities[0]"),
    ("persons[0].nationalities", ["NG", "ng"], "persons[0].nationalities[1]"),
    ("persons[0].identifiers", [{"kind": "passport"}], "persons[0].identifiers[0].value"),
    ("persons[0].identifiers", [{"kind": "dna", "value": "x"}], "persons[0].identifiers[0].kind"),
    ("persons[0].identifiers", [{"value": "x"}], "persons[0].identifiers[0].kind"),
    ("persons", ["Osagie EDOBOR"], "persons[0]"),
    ("confidentiality", {"requirements": "Tell no one."}, "confidentiality.requirements"),
    ("confidentiality", "yes", "confidentiality"),
    ("confidentiality", {"required": "yes"}, "confidentiality.required"),
    ("urgency", "asap", "urgency"),
    ("urgency_reason", DELETE, "urgency_reason"),
    ("requested_deadline", "2026-11-14", "requested_deadline"),
    ("requested_deadline", "2026-11-15T11:59:59Z", "requested_deadline"),
    ("requested_deadline", "2026-12-31T17:00:00", "requested_deadline"),
    ("requested_deadline", "2026-02-30", "requested_deadline"),
    ("requested_deadline", "next week", "requested_deadline"),
    ("requested_deadline", 1_800_000_000_000, "requested_deadline"),
    ("requested_deadline", "1969-12-31", "requested_deadline"),
    ("contact_officer", DELETE, "contact_officer"),
    ("contact_officer.name", "", "contact_officer.name"),
    ("contact_officer.email", "helen at nca", "contact_officer.email"),
    ("contact_officer.phone", "call the switchboard", "contact_officer.phone"),
    ("contact_officer.rank", "DS", "contact_officer.rank"),
    ("language", DELETE, "language"),
    ("language", "english", "language"),
    ("language", "e", "language"),
    ("requesting_authority", DELETE, "requesting_authority"),
    ("requesting_authority.agency_id", "nca", "requesting_authority.agency_id"),
    ("requesting_authority.agency_id", DELETE, "requesting_authority.agency_id"),
    ("requested_authority.agency_id", "GB-NCA", "requested_authority.agency_id"),
    ("requested_authority.name", "", "requested_authority.name"),
    ("requested_authority", "NG-NAPTIP", "requested_authority"),
    ("colour", "blue", "colour"),
    ("case_type", "extradition", "case_type"),
    ("kind", "extradition", "kind"),  # an extradition key is unknown in an MLA form
]


@pytest.mark.parametrize(("path", "value", "field"), MLA_BAD)
def test_bad_mla_field_is_named(path: str, value: Any, field: str) -> None:
    rejected(field, lambda: build(CaseType.MLA, put(mla_data(), path, value)))


def test_urgency_reason_is_required_for_emergency_only() -> None:
    data = put(mla_data(), "urgency_reason", DELETE)
    msg = rejected("urgency_reason", lambda: build(CaseType.MLA, put(data, "urgency", "emergency")))
    assert "an emergency request" in msg
    build(CaseType.MLA, put(data, "urgency", "ordinary"))


def test_contact_needs_email_or_phone() -> None:
    data = put(mla_data(), "contact_officer.email", DELETE)
    build(CaseType.MLA, data)
    data = put(data, "contact_officer.phone", DELETE)
    rejected("contact_officer.email", lambda: build(CaseType.MLA, data))


def test_other_assistance_needs_details() -> None:
    data = put(mla_data(), "assistance_sought", ["other"])
    build(CaseType.MLA, data)
    rejected("assistance_details", lambda: build(CaseType.MLA, put(data, "assistance_details", "")))


def test_messages_help_fix_the_field() -> None:
    msg = rejected("legal_basis", lambda: build(CaseType.MLA, put(mla_data(), "legal_basis", [])))
    assert msg == "Field legal_basis: an MLA request needs at least one legal basis."
    msg = rejected(
        "assistance_sought[0]",
        lambda: build(CaseType.MLA, put(mla_data(), "assistance_sought", ["mind-reading"])),
    )
    assert "'mind-reading' is not a known assistance type" in msg
    assert all(slug in msg for slug in ASSISTANCE_TYPES.slugs())
    msg = rejected(
        "legal_basis[0].instrument",
        lambda: build(CaseType.MLA, put(mla_data(), "legal_basis", ["untoc-art16"])),
    )
    assert "(use untoc-art18)" in msg
    msg = rejected("colour", lambda: build(CaseType.MLA, put(mla_data(), "colour", "blue")))
    assert "unknown field" in msg
    assert "summary_of_facts" in msg


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("summary_of_facts", 20_000),
        ("offences[0].description", 4_000),
        ("persons[0].name", 200),
        ("assistance_details", 20_000),
    ],
)
def test_text_limits(path: str, limit: int) -> None:
    build(CaseType.MLA, put(mla_data(), path, "x" * limit))
    rejected(
        path,
        lambda: build(CaseType.MLA, put(mla_data(), path, "x" * (limit + 1))),
        FormFieldTooLargeError,
    )


def test_list_limits() -> None:
    offence = mla_data()["offences"][0]
    rejected(
        "offences",
        lambda: build(CaseType.MLA, put(mla_data(), "offences", [offence] * 101)),
        FormFieldTooLargeError,
    )
    person = {"role": "witness", "name": "W"}
    rejected(
        "persons",
        lambda: build(CaseType.MLA, put(mla_data(), "persons", [person] * 201)),
        FormFieldTooLargeError,
    )


def test_error_classes_carry_statuses() -> None:
    assert issubclass(FormFieldError, InvalidFieldError)
    assert FormFieldError("x", "bad.").status == "INVALID_ARGUMENT"
    assert issubclass(FormFieldTooLargeError, OversizedError)
    assert FormFieldTooLargeError("x", "long.").status == "RESOURCE_EXHAUSTED"


EXTRADITION_BAD: list[tuple[str, Any, str]] = [
    ("kind", DELETE, "kind"),
    ("kind", "deportation", "kind"),
    ("person_sought", DELETE, "person_sought"),
    ("person_sought.family_name", "", "person_sought.family_name"),
    ("person_sought.aliases", ["Efe", ""], "person_sought.aliases[1]"),
    ("person_sought.date_of_birth", "1979-13", "person_sought.date_of_birth"),
    ("person_sought.height", "1.80 m", "person_sought.height"),
    ("warrants_or_judgments", DELETE, "warrants_or_judgments"),
    ("warrants_or_judgments[0].kind", "summons", "warrants_or_judgments[0].kind"),
    ("warrants_or_judgments[0].reference", "", "warrants_or_judgments[0].reference"),
    (
        "warrants_or_judgments[0].issuing_authority",
        DELETE,
        "warrants_or_judgments[0].issuing_authority",
    ),
    ("warrants_or_judgments[0].issued_on", DELETE, "warrants_or_judgments[0].issued_on"),
    ("warrants_or_judgments[0].issued_on", "2026-11", "warrants_or_judgments[0].issued_on"),
    ("warrants_or_judgments[0].issued_on", "2026-12-01", "warrants_or_judgments[0].issued_on"),
    ("offences", [], "offences"),
    ("offences[0].maximum_penalty", DELETE, "offences[0].maximum_penalty"),
    ("offences[0].penalty_imposed", "6 years", "offences[0].remaining_sentence"),
    ("summary_of_facts", DELETE, "summary_of_facts"),
    ("legal_basis", DELETE, "legal_basis"),
    ("legal_basis", ["untoc-art18"], "legal_basis[0].instrument"),
    ("legal_basis", [{"instrument": "bilateral-extradition-treaty"}], "legal_basis[0].details"),
    ("interpol_notice", "RED-1234", "interpol_notice"),
    ("interpol_notice", "A-1234/13-2026", "interpol_notice"),
    ("interpol_notice", "A-1234/5-2027", "interpol_notice"),
    ("assistance_sought", ["banking-records"], "assistance_sought"),
]


@pytest.mark.parametrize(("path", "value", "field"), EXTRADITION_BAD)
def test_bad_extradition_field_is_named(path: str, value: Any, field: str) -> None:
    rejected(field, lambda: build(CaseType.EXTRADITION, put(extradition_data(), path, value)))


def test_extradition_for_enforcement_of_a_sentence() -> None:
    data = put(extradition_data(), "offences[0].penalty_imposed", "6 years' imprisonment")
    data = put(data, "offences[0].remaining_sentence", "4 years and 2 months")
    # A penalty imposed needs the conviction judgment that imposed it.
    rejected("offences[0].penalty_imposed", lambda: build(CaseType.EXTRADITION, data))
    judgment = {
        "kind": "conviction-judgment",
        "reference": "T2025/0412",
        "issuing_authority": "Manchester Crown Court",
        "issued_on": "2025-11-20",
    }
    data = put(data, "warrants_or_judgments", [judgment])
    offence = build(CaseType.EXTRADITION, data).extradition.offences[0]
    assert offence.remaining_sentence == "4 years and 2 months"


def test_provisional_arrest_is_never_ordinary() -> None:
    data = put(extradition_data(), "kind", "provisional-arrest")
    msg = rejected("urgency", lambda: build(CaseType.EXTRADITION, data))
    assert "urgent or emergency" in msg
    data = put(put(data, "urgency", "emergency"), "urgency_reason", "He flies out tonight.")
    build(CaseType.EXTRADITION, data)


@pytest.mark.parametrize("kind", ["supplementary-information", "surrender-arrangements"])
def test_follow_up_extradition_requests(kind: str) -> None:
    minimal = {
        key: extradition_data()[key]
        for key in (
            "requesting_authority",
            "requested_authority",
            "person_sought",
            "contact_officer",
            "language",
        )
    }
    data = put(minimal, "kind", kind)
    rejected("related_case_ref", lambda: build(CaseType.EXTRADITION, data))
    data = put(data, "related_case_ref", "GB-NCA/2026/0117")
    rejected("details", lambda: build(CaseType.EXTRADITION, data))
    data = put(data, "details", "Handover at Lagos airport on 12 January, escorted by NCA.")
    # No legal basis, warrant, offence or summary needed: they were in the first request.
    form = build(CaseType.EXTRADITION, data)
    assert form.extradition.related_case_ref == "GB-NCA/2026/0117"


VICTIM_ID_BAD: list[tuple[str, Any, str]] = [
    ("match_reference", DELETE, "match_reference"),
    ("match_reference", "short", "match_reference"),
    ("match_reference", "has spaces in it", "match_reference"),
    ("purpose", DELETE, "purpose"),
    ("purpose", "curiosity", "purpose"),
    ("legal_basis", DELETE, "legal_basis"),
    ("legal_basis", ["uncac-art44"], "legal_basis[0].instrument"),
    ("justification", "", "justification"),
    # The person sought (issue 14): required, and held to the rules of a match query.
    ("person", DELETE, "person"),
    ("person", {"sex": "F", "date_of_birth": "1999"}, "person.family_name"),
    ("person.date_of_birth", "12/04/1999", "person.date_of_birth"),
    ("person.sex", "female", "person.sex"),
    ("person.nationality", "Nigeria", "person.nationality"),
    ("contact_officer.email", "c.roux@", "contact_officer.email"),
    ("summary_of_facts", "x", "summary_of_facts"),
]


@pytest.mark.parametrize(("path", "value", "field"), VICTIM_ID_BAD)
def test_bad_victim_id_field_is_named(path: str, value: Any, field: str) -> None:
    rejected(field, lambda: build(CaseType.VICTIM_ID, put(victim_id_data(), path, value)))


def test_mapping_must_be_a_table() -> None:
    rejected("form", lambda: form_from_mapping(CaseType.MLA, ["x"], now_ms=NOW))  # type: ignore[arg-type]


# --- the clock ---------------------------------------------------------------------------


def test_past_deadline_rejected_only_when_now_is_given() -> None:
    form = build(CaseType.MLA, mla_data())
    later = form.mla.requested_deadline + 1
    validate_form(form, now_ms=None)  # a receiving node: delivery can lag
    rejected("requested_deadline", lambda: validate_form(form, now_ms=later))
    assert form_from_bytes(form.SerializeToString()) == form


def test_future_dates_rejected_only_when_now_is_given() -> None:
    form = build(CaseType.EXTRADITION, extradition_data())
    early = NOW - 365 * DAY
    form.extradition.interpol_notice = ""
    validate_form(form, now_ms=None)
    rejected("warrants_or_judgments[0].issued_on", lambda: validate_form(form, now_ms=early))


# --- forms that did not come from a mapping -----------------------------------------------


def test_empty_form_rejected() -> None:
    rejected("form", lambda: validate_form(pb.CaseForm(), now_ms=None))
    rejected("form", lambda: case_type_of(pb.CaseForm()))
    rejected("form", lambda: urgency_of(pb.CaseForm()))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "urgency", 99), "urgency"),
        (lambda r: setattr(r, "urgency", 0), "urgency"),
        (lambda r: r.assistance_sought.append(0), "assistance_sought[2]"),
        (lambda r: r.assistance_sought.append(77), "assistance_sought[2]"),
        (lambda r: setattr(r.legal_basis[0], "instrument", 0), "legal_basis[0].instrument"),
        (lambda r: setattr(r.persons[0], "kind", 0), "persons[0].kind"),
        (lambda r: setattr(r.offences[0], "category", 99), "offences[0].category"),
        (lambda r: setattr(r, "requested_deadline", -5), "requested_deadline"),
        (lambda r: setattr(r, "requested_deadline", 2**62), "requested_deadline"),
        (lambda r: setattr(r.persons[0], "date_of_birth", "1984-7-1"), "persons[0].date_of_birth"),
        (lambda r: r.ClearField("requested_authority"), "requested_authority"),
        (
            lambda r: setattr(r.requesting_authority, "agency_id", "GB-"),
            "requesting_authority.agency_id",
        ),
        (lambda r: setattr(r, "summary_of_facts", "tab\tand\nnewline ok\x07"), "summary_of_facts"),
    ],
)
def test_bad_wire_values_are_named(mutate: Callable[[pb.MlaRequest], None], field: str) -> None:
    form = build(CaseType.MLA, mla_data())
    mutate(form.mla)
    rejected(field, lambda: validate_form(form, now_ms=None))


def test_urgency_of_rejects_unknown_value() -> None:
    form = build(CaseType.MLA, mla_data())
    form.mla.urgency = 42  # type: ignore[assignment]
    rejected("urgency", lambda: urgency_of(form))


def test_round_trip_through_protobuf() -> None:
    for case_type, data in DATA.items():
        form = build(case_type, data())
        wire = form.SerializeToString(deterministic=True)
        again = form_from_bytes(wire, now_ms=NOW)
        assert again == form
        assert again.SerializeToString(deterministic=True) == wire
        assert describe_form(again) == describe_form(form)


def test_received_bytes_are_parsed_strictly() -> None:
    wire = build(CaseType.MLA, mla_data()).SerializeToString()
    with pytest.raises(MalformedError):
        form_from_bytes(wire + b"\xf8\x3f\x01")  # field 1023, which v1 does not define
    with pytest.raises(MalformedError):
        form_from_bytes(wire[:-3])
    with pytest.raises(OversizedError):
        form_from_bytes(b"\x00" * (MAX_FORM_BYTES + 1))


# --- vocabularies --------------------------------------------------------------------------

VOCABULARIES: list[tuple[Vocabulary[Any], EnumDescriptor]] = [
    (LEGAL_BASES, pb.LegalInstrument.DESCRIPTOR),
    (ASSISTANCE_TYPES, pb.AssistanceType.DESCRIPTOR),
    (URGENCIES, pb.Urgency.DESCRIPTOR),
    (ENTITY_KINDS, pb.EntityKind.DESCRIPTOR),
    (PERSON_ROLES, pb.PersonRole.DESCRIPTOR),
    (IDENTIFIER_KINDS, pb.IdentifierKind.DESCRIPTOR),
    (EXTRADITION_KINDS, pb.ExtraditionKind.DESCRIPTOR),
    (WARRANT_KINDS, pb.WarrantKind.DESCRIPTOR),
    (VICTIM_ID_PURPOSES, pb.VictimIdPurpose.DESCRIPTOR),
    (REFUSAL_GROUNDS, pb.RefusalGround.DESCRIPTOR),
    (OFFENCE_CATEGORIES, pb.OffenceCategory.DESCRIPTOR),
]


@pytest.mark.parametrize(("vocab", "enum"), VOCABULARIES, ids=lambda v: getattr(v, "noun", ""))
def test_vocabulary_covers_its_enum(vocab: Vocabulary[Any], enum: EnumDescriptor) -> None:
    wire_values = {v.number for v in enum.values if v.number != 0}
    assert {t.value for t in vocab} == wire_values
    for term in vocab:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", term.slug), term.slug
        assert term.label
        assert vocab.from_slug("x", term.slug) == term.value
        assert vocab.label(term.value) == term.label
    assert vocab.term(0) is None
    assert "unknown" in vocab.label(999)


def test_urgency_slugs_match_the_case_machine() -> None:
    assert set(URGENCIES.slugs()) == {u.value for u in Urgency}


def test_legal_bases_serve_their_case_types() -> None:
    serve = {t.slug: t.case_types for t in LEGAL_BASES}
    assert CaseType.EXTRADITION not in serve["untoc-art18"]
    assert serve["untoc-art16"] == {CaseType.EXTRADITION}
    assert serve["palermo-protocol"] == set(CaseType)
    assert {t.slug for t in LEGAL_BASES if t.needs_details} == {
        "bilateral-mla-treaty",
        "bilateral-extradition-treaty",
        "other",
    }


def test_no_refusal_on_bank_secrecy_or_fiscal_grounds() -> None:
    # UNTOC art. 18(8) and 18(22): neither may be the reason for refusing assistance.
    names = " ".join(v.name for v in pb.RefusalGround.DESCRIPTOR.values).lower()
    for word in ("bank", "secrecy", "fiscal"):
        assert word not in names
    msg = rejected(
        "grounds[0]",
        lambda: details_from_mapping(
            Action.REFUSE, {"grounds": ["bank-secrecy"], "explanation": "Banking law."}
        ),
    )
    assert "political-offence" in msg


# --- transition details ----------------------------------------------------------------------

SHA = "ab" * 32
EVIDENCE = {
    "attachment_id": "0190f5a2-7c3e-7b51-9a1e-3f2d4c5b6a79",
    "name": "statements-2025.pdf",
    "sha256": SHA,
    "size": 1_048_576,
}

VALID_DETAILS: dict[Action, dict[str, Any]] = {
    Action.SUBMIT: {},
    Action.ACKNOWLEDGE: {"reference": "NAPTIP/MLA/2026/311", "note": "Assigned to the Edo desk."},
    Action.REQUEST_INFO: {
        "questions": ["Which branch holds account 0001234567?", "Is W1 willing to testify?"],
        "reply_by": "2026-12-15",
    },
    Action.PROVIDE_INFO: {"answers": "The Ring Road branch; yes.", "documents": [EVIDENCE]},
    Action.ACCEPT: {"conditions": ["Speciality: use only for Operation Kestrel."]},
    Action.REFUSE: {
        "grounds": ["no-dual-criminality", "insufficient-information"],
        "explanation": "The conduct described is not an offence here as stated.",
    },
    Action.START_EXECUTION: {"executing_authority": "NAPTIP Benin Zonal Command"},
    Action.REPORT_PARTIAL: {
        "summary": "Bank statements obtained; witness hearings scheduled.",
        "assistance_executed": ["banking-records"],
        "evidence": [EVIDENCE],
    },
    Action.REPORT_EXECUTED: {
        "summary": "All assistance executed.",
        "assistance_executed": ["banking-records", "witness-hearing"],
    },
    Action.WITHDRAW: {"reason": "The suspects pleaded guilty."},
    Action.CLOSE: {"outcome": "Convicted at Manchester Crown Court."},
}


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
def test_details_per_action(action: Action) -> None:
    details = details_from_mapping(action, VALID_DETAILS[action], now_ms=NOW)
    assert details.WhichOneof("details") == ACTION_DETAILS[action]
    again = details_from_bytes(action, details.SerializeToString(), now_ms=NOW)
    assert again == details
    rows = describe_details(details)
    assert all(label and value for label, value in rows)
    if action is not Action.SUBMIT:
        assert rows
    for other in Action:
        if ACTION_DETAILS[other] != ACTION_DETAILS[action]:
            with pytest.raises(FormFieldError):
                validate_details(other, details)


def test_every_action_has_a_details_kind() -> None:
    assert set(ACTION_DETAILS) == set(Action)
    kinds = {f.name for f in pb.TransitionDetails.DESCRIPTOR.oneofs_by_name["details"].fields}
    assert {k for k in ACTION_DETAILS.values() if k} == kinds


def test_empty_details_still_state_their_kind() -> None:
    details = details_from_mapping(Action.ACKNOWLEDGE, {})
    assert details.WhichOneof("details") == "acknowledge"
    assert details_from_bytes(Action.ACKNOWLEDGE, details.SerializeToString()) == details
    rejected("details", lambda: validate_details(Action.ACKNOWLEDGE, pb.TransitionDetails()))


def test_submit_carries_no_details() -> None:
    assert details_from_mapping(Action.SUBMIT, {}) == pb.TransitionDetails()
    validate_details(Action.SUBMIT, pb.TransitionDetails())
    rejected("details", lambda: details_from_mapping(Action.SUBMIT, {"note": "x"}))
    ack = details_from_mapping(Action.ACKNOWLEDGE, {})
    rejected("acknowledge", lambda: validate_details(Action.SUBMIT, ack))


def test_reports_are_final_by_their_action() -> None:
    partial = details_from_mapping(Action.REPORT_PARTIAL, VALID_DETAILS[Action.REPORT_PARTIAL])
    final = details_from_mapping(Action.REPORT_EXECUTED, VALID_DETAILS[Action.REPORT_EXECUTED])
    assert not partial.report.final
    assert final.report.final
    rejected("final", lambda: validate_details(Action.REPORT_EXECUTED, partial))
    rejected("final", lambda: validate_details(Action.REPORT_PARTIAL, final))
    data = {**VALID_DETAILS[Action.REPORT_PARTIAL], "final": True}
    rejected("final", lambda: details_from_mapping(Action.REPORT_PARTIAL, data))
    assert ("Report", "final") in describe_details(final)


DETAILS_BAD: list[tuple[Action, dict[str, Any], str]] = [
    (Action.REFUSE, {"explanation": "No."}, "grounds"),
    (Action.REFUSE, {"grounds": ["political-offence"]}, "explanation"),
    (Action.REFUSE, {"grounds": ["other", "other"], "explanation": "x"}, "grounds[1]"),
    (Action.REFUSE, {"grounds": "because", "explanation": "x"}, "grounds[0]"),
    (Action.REQUEST_INFO, {}, "questions"),
    (Action.REQUEST_INFO, {"questions": ["Who?", " "]}, "questions[1]"),
    (Action.REQUEST_INFO, {"questions": ["Who?"], "reply_by": "2026-11-01"}, "reply_by"),
    (Action.REQUEST_INFO, {"questions": ["Who?"], "reply_by": "soon"}, "reply_by"),
    (Action.PROVIDE_INFO, {}, "answers"),
    (Action.ACCEPT, {"conditions": [""]}, "conditions[0]"),
    (Action.ACCEPT, {"conditions": "Speciality."}, None),
    (Action.WITHDRAW, {}, "reason"),
    (Action.WITHDRAW, {"reason": "x", "note": "y"}, "note"),
    (Action.REPORT_EXECUTED, {}, "summary"),
    (
        Action.REPORT_EXECUTED,
        {"summary": "s", "assistance_executed": ["x"]},
        "assistance_executed[0]",
    ),
    (
        Action.REPORT_PARTIAL,
        {"summary": "s", "evidence": [{**EVIDENCE, "attachment_id": "nope"}]},
        "evidence[0].attachment_id",
    ),
    (
        Action.REPORT_PARTIAL,
        {"summary": "s", "evidence": [{**EVIDENCE, "sha256": "ab"}]},
        "evidence[0].sha256",
    ),
    (
        Action.REPORT_PARTIAL,
        {"summary": "s", "evidence": [{**EVIDENCE, "name": "../etc/passwd"}]},
        "evidence[0].name",
    ),
    (
        Action.REPORT_PARTIAL,
        {"summary": "s", "evidence": [{**EVIDENCE, "name": ""}]},
        "evidence[0].name",
    ),
    (
        Action.REPORT_PARTIAL,
        {"summary": "s", "evidence": [{**EVIDENCE, "size": -1}]},
        "evidence[0].size",
    ),
    (
        Action.REPORT_PARTIAL,
        {"summary": "s", "evidence": [{**EVIDENCE, "size": "1 MB"}]},
        "evidence[0].size",
    ),
    (
        Action.REPORT_PARTIAL,
        {"summary": "s", "evidence": [{k: v for k, v in EVIDENCE.items() if k != "size"}]},
        "evidence[0].size",
    ),
    (Action.REPORT_PARTIAL, {"summary": "s", "evidence": [EVIDENCE, EVIDENCE]}, "evidence[1]"),
    (
        Action.PROVIDE_INFO,
        {"answers": "a", "documents": [{**EVIDENCE, "checksum": SHA}]},
        "documents[0].checksum",
    ),
]


@pytest.mark.parametrize(("action", "data", "field"), DETAILS_BAD)
def test_bad_details_field_is_named(
    action: Action, data: dict[str, Any], field: str | None
) -> None:
    if field is None:  # a single text where a list is expected is one entry
        details_from_mapping(action, data)
        return
    rejected(field, lambda: details_from_mapping(action, data, now_ms=NOW))


def test_reply_by_in_the_past_only_matters_with_now() -> None:
    data = {"questions": ["Who?"], "reply_by": "2026-11-01"}
    details = details_from_mapping(Action.REQUEST_INFO, data)
    validate_details(Action.REQUEST_INFO, details)
    rejected("reply_by", lambda: validate_details(Action.REQUEST_INFO, details, now_ms=NOW))


def test_bad_wire_details_are_named() -> None:
    refusal = pb.TransitionDetails(refuse=pb.Refusal(grounds=[0], explanation="x"))
    rejected("grounds[0]", lambda: validate_details(Action.REFUSE, refusal))
    ref = pb.AttachmentRef(attachment_id=b"\x01" * 15, name="a.pdf", sha256=b"\x00" * 32)
    report = pb.TransitionDetails(report=pb.ExecutionReport(summary="s", evidence=[ref]))
    rejected("evidence[0].attachment_id", lambda: validate_details(Action.REPORT_PARTIAL, report))


# --- describing ----------------------------------------------------------------------------


def test_describe_mla_form() -> None:
    rows = describe_form(build(CaseType.MLA, mla_data()))
    table = dict(rows)
    assert rows[0] == ("Case type", "Mutual legal assistance request")
    assert table["Legal basis"] == "UNTOC art. 18; Palermo Protocol"
    assert table["Assistance sought"] == "Banking and financial records; Witness hearing"
    assert table["Offence 1"] == (
        "Human trafficking for forced labour. "
        "(Modern Slavery Act 2015, s. 2; maximum penalty: Life imprisonment)"
    )
    assert table["Person 2"] == "Third party: Northgate Care Staffing Ltd (legal person)"
    assert table["Urgency"] == "Urgent: Funds are about to be moved."
    assert table["Requested deadline"] == "2026-12-31 23:59 UTC"
    assert table["Confidentiality"] == "Required: Do not notify the holders."
    assert all(value for _, value in rows)


def test_an_offence_category_is_optional_and_shown_when_given() -> None:
    # A form without it (every form before the field existed) stays valid.
    assert build(CaseType.MLA, mla_data()).mla.offences[0].category == 0
    data = put(mla_data(), "offences[0].category", "trafficking-forced-labour")
    form = build(CaseType.MLA, data)
    assert form.mla.offences[0].category == pb.OFFENCE_CATEGORY_TRAFFICKING_FORCED_LABOUR
    validate_form(form, now_ms=None)
    assert dict(describe_form(form))["Offence 1"].endswith(
        "maximum penalty: Life imprisonment; Trafficking for forced labour or services)"
    )


def test_describe_extradition_and_victim_id_forms() -> None:
    table = dict(describe_form(build(CaseType.EXTRADITION, extradition_data())))
    assert table["Kind"] == "Extradition request"
    assert table["Person sought"] == "IGBINEDION, Efosa Daniel"
    assert table["Legal basis"] == "UNTOC art. 16, art. 16(4)"
    assert table["Warrant or judgment 1"].startswith("Arrest warrant WMC/2026/118342")
    assert table["INTERPOL notice"] == "A-10482/9-2026"
    table = dict(describe_form(build(CaseType.VICTIM_ID, victim_id_data())))
    assert table["Case type"] == "Victim-identification request"
    assert table["Purpose"] == "Repatriation"
    assert table["Person sought"] == "Blessing Okonkwo, F, born 1999-04-12"


def test_describe_refusal() -> None:
    details = details_from_mapping(Action.REFUSE, VALID_DETAILS[Action.REFUSE])
    assert describe_details(details)[0] == (
        "Grounds",
        "Lack of dual criminality; Insufficient information",
    )


# --- fuzzing: bad input raises only MlaxError ------------------------------------------------

VALID_WIRE = [build(ct, data()).SerializeToString() for ct, data in DATA.items()]


@st.composite
def mutated_form(draw: st.DrawFn) -> bytes:
    wire = bytearray(draw(st.sampled_from(VALID_WIRE)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(wire) - 1))
        choice = draw(st.integers(0, 2))
        if choice == 0:
            wire[pos] = draw(st.integers(0, 255))
        elif choice == 1:
            del wire[pos : pos + draw(st.integers(1, 8))]
        else:
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        if not wire:
            break
    return bytes(wire)


def _only_mlax_errors(call: Callable[[], object]) -> None:
    try:
        call()
    except MlaxError as err:
        message = err.message
    else:
        return
    assert message.strip()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), mutated_form()), st.sampled_from([None, NOW]))
def test_validate_form_on_arbitrary_bytes_raises_only_mlax_errors(
    data: bytes, now_ms: int | None
) -> None:
    def check() -> None:
        form = parse(pb.CaseForm, data, "case form", MAX_FORM_BYTES)
        try:
            validate_form(form, now_ms=now_ms)
        finally:
            if form.WhichOneof("form") is not None:
                describe_form(form)  # renders whatever parsed, valid or not

    _only_mlax_errors(check)


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.dates()
    | st.datetimes(timezones=st.none() | st.just(UTC)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(CaseType)),
    st.data(),
)
def test_form_from_mapping_on_arbitrary_values_raises_only_mlax_errors(
    case_type: CaseType, data: st.DataObject
) -> None:
    base = DATA[case_type]()
    key = data.draw(st.sampled_from([*base, "persons", "offences", "confidentiality", "x"]))
    value = data.draw(JSONISH)
    _only_mlax_errors(lambda: form_from_mapping(case_type, {**base, key: value}, now_ms=NOW))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Action)), st.data())
def test_details_on_arbitrary_input_raise_only_mlax_errors(
    action: Action, data: st.DataObject
) -> None:
    raw = data.draw(st.binary(max_size=128))
    _only_mlax_errors(lambda: describe_details(details_from_bytes(action, raw)))
    base = VALID_DETAILS[action]
    keys = [*base, "grounds", "evidence", "questions", "x"]
    mapping = {data.draw(st.sampled_from(keys)): data.draw(JSONISH)}
    _only_mlax_errors(lambda: details_from_mapping(action, {**base, **mapping}, now_ms=NOW))


# --- the documentation -----------------------------------------------------------------------


def test_docs_cover_every_message_field_and_slug() -> None:
    doc = (ROOT / "docs" / "forms.md").read_text(encoding="utf-8")
    missing = [
        f"`{t.slug}` ({vocab.noun})"
        for vocab, _ in VOCABULARIES
        for t in vocab
        if f"`{t.slug}`" not in doc
    ]
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        if f"`{message.name}`" not in doc:
            missing.append(f"`{message.name}`")
        missing += [
            f"`{field.name}` ({message.name})"
            for field in message.fields
            if f"`{field.name}`" not in doc
        ]
    assert not missing, f"docs/forms.md does not mention {missing}"
