"""Case forms: structured MLA, extradition and victim-identification requests, and the
details each case transition carries, with validation. Pure: no I/O.

The wire messages are `mlax.v1.CaseForm` and `mlax.v1.TransitionDetails`
(proto/mlax/v1/forms.proto). This package

- builds them from the readable mappings of a TOML or JSON form file or CLI flags
  (`form_from_mapping`, `details_from_mapping`): vocabulary slugs such as
  `"untoc-art18"`, ISO dates, unknown keys and values rejected;
- validates them (`validate_form`, `validate_details`), raising one error per bad field
  that names it by its dotted path (`offences[1].description`), the same path a form
  file uses, so an officer finds the line to fix;
- answers the questions the case machinery asks of a form (`case_type_of`,
  `urgency_of`, `parties_of`, `deadline_of`) and renders forms and details as labelled
  rows for a timeline (`describe_form`, `describe_details`).

All of it derives from one field table per proto message (`blocks.py`, `requests.py`,
`details.py`, made of the field kinds of `spec.py`): each field's kind, limits,
requirement, label and rule are written once. `schema.py` renders the tables as the
field tables of docs/forms.md and as a JSON-able schema a console builds its forms
from. Every vocabulary (slug <-> proto enum value <-> label) is defined once, in
`vocab.py`, and exported for CLIs that list the choices.

Modules: `base` (limits, errors, case types), `vocab`, `checks` (text, list, date
checks and shapes), `reading` (form-file conventions), `spec` (field kinds), `blocks`,
`requests` and `details` (the field tables and cross-field rules), `api` (the functions
below), `schema` (docs and console).
"""

from __future__ import annotations

from exchange.forms.api import (
    case_type_of,
    deadline_of,
    describe_details,
    describe_form,
    details_from_bytes,
    details_from_mapping,
    form_from_bytes,
    form_from_mapping,
    form_keys,
    message_type_of,
    parties_of,
    urgency_of,
    validate_details,
    validate_form,
)
from exchange.forms.base import (
    LINE_CHARS,
    LONG_CHARS,
    MAX_ALIASES,
    MAX_ATTACHMENT_REFS,
    MAX_CONDITIONS,
    MAX_DETAILS_BYTES,
    MAX_FORM_BYTES,
    MAX_IDENTIFIERS,
    MAX_INSTANT_MS,
    MAX_LEGAL_BASES,
    MAX_NATIONALITIES,
    MAX_OFFENCES,
    MAX_PERSONS,
    MAX_QUESTIONS,
    MAX_WARRANTS,
    NAME_CHARS,
    TEXT_CHARS,
    CaseType,
    FormFieldError,
    FormFieldTooLargeError,
)
from exchange.forms.vocab import (
    ACTION_DETAILS,
    ASSISTANCE_TYPES,
    ENTITY_KINDS,
    EXTRADITION_KINDS,
    IDENTIFIER_KINDS,
    LEGAL_BASES,
    OFFENCE_CATEGORIES,
    PERSON_ROLES,
    REFUSAL_GROUNDS,
    URGENCIES,
    VICTIM_ID_PURPOSES,
    WARRANT_KINDS,
    Term,
    Vocabulary,
)

__all__ = [
    "ACTION_DETAILS",
    "ASSISTANCE_TYPES",
    "ENTITY_KINDS",
    "EXTRADITION_KINDS",
    "IDENTIFIER_KINDS",
    "LEGAL_BASES",
    "LINE_CHARS",
    "LONG_CHARS",
    "MAX_ALIASES",
    "MAX_ATTACHMENT_REFS",
    "MAX_CONDITIONS",
    "MAX_DETAILS_BYTES",
    "MAX_FORM_BYTES",
    "MAX_IDENTIFIERS",
    "MAX_INSTANT_MS",
    "MAX_LEGAL_BASES",
    "MAX_NATIONALITIES",
    "MAX_OFFENCES",
    "MAX_PERSONS",
    "MAX_QUESTIONS",
    "MAX_WARRANTS",
    "NAME_CHARS",
    "OFFENCE_CATEGORIES",
    "PERSON_ROLES",
    "REFUSAL_GROUNDS",
    "TEXT_CHARS",
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
    "form_keys",
    "message_type_of",
    "parties_of",
    "urgency_of",
    "validate_details",
    "validate_form",
]
