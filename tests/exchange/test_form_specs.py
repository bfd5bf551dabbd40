"""The field specs of exchange/forms: every proto field has one, docs/forms.md is generated
from them, a console can build its forms from them, and the order they declare holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.case import Action
from exchange.forms import (
    ACTION_DETAILS,
    CaseType,
    FormFieldError,
    describe_form,
    form_from_mapping,
    form_keys,
    validate_form,
)
from exchange.forms.blocks import IDENTIFIER
from exchange.forms.checks import COUNTRY
from exchange.forms.schema import (
    ONEOF_HOLDERS,
    all_specs,
    coverage_problems,
    details_schema,
    doc_blocks,
    form_schema,
    render_doc,
)
from exchange.forms.spec import Choice, Many, MessageSpec, Text
from exchange.forms.vocab import IDENTIFIER_KINDS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "forms.md"
NOW = 1_794_744_000_000  # 2026-11-15 12:00 UTC


# --- every proto field has a spec ----------------------------------------------------------


def test_every_proto_field_has_a_spec_of_its_kind() -> None:
    assert coverage_problems() == []


def test_a_field_without_a_spec_is_reported() -> None:
    # As if a field `issuer` had been added to the proto and not to the table.
    partial = MessageSpec(
        pb.Identifier,
        (Choice("kind", vocab=IDENTIFIER_KINDS), Text("value", size=10)),
    )
    assert coverage_problems([partial]) == [
        f"{m} has no spec"
        for m in pb.DESCRIPTOR.message_types_by_name
        if m not in {"Identifier", *ONEOF_HOLDERS}
    ] + ["Identifier.issuer has no spec"]


def test_a_field_of_another_kind_is_reported() -> None:
    wrong = MessageSpec(
        pb.Identifier,
        (
            Choice("kind", vocab=IDENTIFIER_KINDS),
            Many("value", item=Text(size=10), max_items=1),
            Text("issuer", size=10),
        ),
    )
    problems = [p for p in coverage_problems([wrong]) if p.startswith("Identifier")]
    assert problems == ["Identifier.value: not a repeated field, specced otherwise"]


def test_text_needs_a_limit() -> None:
    with pytest.raises(ValueError, match="size limit or a shape"):
        Text("free_for_all")
    Text("code", shape=COUNTRY)  # a shape bounds its length


def test_rules_and_check_order_name_fields_of_the_table() -> None:
    with pytest.raises(ValueError, match="is not a field"):
        MessageSpec(pb.Identifier, (Text("value", size=1, check_after="nope"),))
    with pytest.raises(ValueError, match="one distinct name"):
        MessageSpec(pb.Identifier, (*IDENTIFIER.fields, Text("value", size=1)))


def test_every_list_and_text_is_bounded() -> None:
    for spec in all_specs():
        for f in spec.fields:
            item = f.item if isinstance(f, Many) else f
            if isinstance(f, Many):
                assert 0 < f.max_items <= 1_000, f"{spec.name}.{f.name}"
            if isinstance(item, Text):
                assert item.size is not None or item.shape is not None


def test_every_field_has_a_label_for_a_console() -> None:
    unlabelled = [f"{s.name}.{f.name}" for s in all_specs() for f in s.fields if not f.label]
    assert unlabelled == []


def test_oneof_members_have_specs() -> None:
    kinds = {f.name for f in pb.TransitionDetails.DESCRIPTOR.oneofs_by_name["details"].fields}
    assert set(ONEOF_HOLDERS["TransitionDetails"][1]) == kinds
    assert {k for k in ACTION_DETAILS.values() if k} == kinds
    forms = {f.name for f in pb.CaseForm.DESCRIPTOR.oneofs_by_name["form"].fields}
    assert set(ONEOF_HOLDERS["CaseForm"][1]) == forms


# --- docs/forms.md -------------------------------------------------------------------------


def test_docs_field_tables_are_generated_from_the_specs() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text) == text, "docs/forms.md is stale: run scripts/gen_forms_doc.py"


def test_docs_have_a_table_for_every_message() -> None:
    blocks = doc_blocks(DOC.read_text(encoding="utf-8"))
    documented = {b.partition(" ")[2] for b in blocks if " " in b}
    assert {spec.name for spec in all_specs()} <= documented
    assert {"shared", "list-limits", "text-classes", "actions"} <= set(blocks)


# --- a console's forms ---------------------------------------------------------------------


def _fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return list(schema["fields"])


@pytest.mark.parametrize("case_type", list(CaseType), ids=lambda c: c.value)
def test_form_schema_is_json_and_complete(case_type: CaseType) -> None:
    schema = form_schema(case_type)
    json.dumps(schema)  # JSON-able as it is
    assert schema["keys"] == list(form_keys(case_type))
    names = [f["name"] for f in _fields(schema)]
    assert sorted(names) == sorted(k for k in form_keys(case_type) if k != "case_type")
    by_name = {f["name"]: f for f in _fields(schema)}
    assert by_name["urgency"]["default"] == "ordinary"
    assert {c["slug"] for c in by_name["urgency"]["choices"]} == {
        "emergency",
        "urgent",
        "ordinary",
    }
    assert by_name["language"]["shape"]["pattern"]
    assert by_name["contact_officer"]["kind"] == "group"
    assert by_name["requesting_authority"]["required"] is True


def test_form_schema_nests_lists_of_messages() -> None:
    by_name = {f["name"]: f for f in _fields(form_schema(CaseType.MLA))}
    offences = by_name["offences"]
    assert offences["kind"] == "list"
    assert offences["max_items"] == 100
    inner = {f["name"]: f for f in offences["item"]["fields"]}
    assert inner["description"]["max_chars"] == 4_000
    assert inner["description"]["multiline"] is True
    assert inner["maximum_penalty"]["required"] == "conditional"
    assert by_name["assistance_details"]["required"] == "conditional"


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
def test_details_schema(action: Action) -> None:
    schema = details_schema(action)
    if ACTION_DETAILS[action] is None:
        assert schema is None
        return
    assert schema is not None
    json.dumps(schema)
    assert "final" not in {f["name"] for f in _fields(schema)}  # it follows from the action


# --- the order a table declares ------------------------------------------------------------


def _victim_id() -> dict[str, Any]:
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
        "justification": "We must verify her nationality.",
        "contact_officer": {"name": "Cdt Claire Roux", "email": "c.roux@ocrteh.example"},
        "language": "fr",
    }


def test_a_field_may_be_checked_after_another_than_it_is_shown() -> None:
    # The legal basis is shown with the parties, but checked after the purpose, as ever.
    form = form_from_mapping(CaseType.VICTIM_ID, _victim_id(), now_ms=NOW)
    labels = [label for label, _ in describe_form(form)]
    assert labels.index("Legal basis") < labels.index("Match reference")
    del form.victim_id.legal_basis[:]
    form.victim_id.match_reference = "short"
    with pytest.raises(FormFieldError) as info:
        validate_form(form, now_ms=None)
    assert info.value.field == "match_reference"


def test_form_file_keys_list_shared_fields_first() -> None:
    assert form_keys(CaseType.VICTIM_ID) == (
        "case_type",
        "requesting_authority",
        "requested_authority",
        "urgency",
        "urgency_reason",
        "requested_deadline",
        "contact_officer",
        "language",
        "match_reference",
        "purpose",
        "legal_basis",
        "justification",
        "person",
    )


def test_group_entries_read_like_their_shorthand() -> None:
    # A legal basis may be a slug: the shorthand of a table naming only its instrument.
    data = {**_victim_id(), "legal_basis": [{"instrument": "palermo-protocol"}]}
    long_form = form_from_mapping(CaseType.VICTIM_ID, data, now_ms=NOW)
    assert long_form == form_from_mapping(CaseType.VICTIM_ID, _victim_id(), now_ms=NOW)
