"""The vocabularies of the forms: each a closed list of choices mirroring one proto enum.

Every choice has its slug (as a form file or CLI writes it), its proto value and its
label; the tables are exported for CLIs and consoles that list the choices. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, TypeVar

from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.case import Action
from exchange.forms.base import CaseType, a, fail

_ALL_CASE_TYPES = frozenset(CaseType)
MLA_LIKE = frozenset({CaseType.MLA, CaseType.VICTIM_ID})
EXTRADITION_ONLY = frozenset({CaseType.EXTRADITION})

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
                fail(field, f"{a(self.noun)} is required.")
            fail(field, f"{value} is not a known {self.noun}; accepted: {self._accepted()}.")
        return t

    def from_slug(self, field: str, slug: str) -> V:
        """The proto value of `slug` (case and `_`/`-` insensitive), or raise listing choices."""
        wanted = slug.strip().lower().replace("_", "-")
        for t in self.terms:
            if t.slug == wanted:
                return t.value
        fail(field, f"{slug!r} is not a known {self.noun}; accepted: {self._accepted()}.")

    def _accepted(self) -> str:
        return ", ".join(self.slugs())


def _vocab(noun: str, *terms: Term[V]) -> Vocabulary[V]:
    return Vocabulary(noun, terms)


LEGAL_BASES = _vocab(
    "legal basis",
    Term("untoc-art18", pb.LEGAL_INSTRUMENT_UNTOC_ART18, "UNTOC art. 18", case_types=MLA_LIKE),
    Term(
        "untoc-art16",
        pb.LEGAL_INSTRUMENT_UNTOC_ART16,
        "UNTOC art. 16",
        case_types=EXTRADITION_ONLY,
    ),
    Term("palermo-protocol", pb.LEGAL_INSTRUMENT_PALERMO_PROTOCOL, "Palermo Protocol"),
    Term(
        "smuggling-protocol",
        pb.LEGAL_INSTRUMENT_SMUGGLING_PROTOCOL,
        "Smuggling of Migrants Protocol",
    ),
    Term("uncac-art46", pb.LEGAL_INSTRUMENT_UNCAC_ART46, "UNCAC art. 46", case_types=MLA_LIKE),
    Term(
        "uncac-art44",
        pb.LEGAL_INSTRUMENT_UNCAC_ART44,
        "UNCAC art. 44",
        case_types=EXTRADITION_ONLY,
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
        case_types=MLA_LIKE,
    ),
    Term(
        "european-extradition-convention-1957",
        pb.LEGAL_INSTRUMENT_EUROPEAN_CONVENTION_EXTRADITION_1957,
        "European Convention on Extradition (1957)",
        case_types=EXTRADITION_ONLY,
    ),
    Term(
        "bilateral-mla-treaty",
        pb.LEGAL_INSTRUMENT_BILATERAL_MLA_TREATY,
        "Bilateral MLA treaty",
        needs_details="the title of the treaty",
        case_types=MLA_LIKE,
    ),
    Term(
        "bilateral-extradition-treaty",
        pb.LEGAL_INSTRUMENT_BILATERAL_EXTRADITION_TREATY,
        "Bilateral extradition treaty",
        needs_details="the title of the treaty",
        case_types=EXTRADITION_ONLY,
    ),
    Term("reciprocity", pb.LEGAL_INSTRUMENT_RECIPROCITY, "Reciprocity"),
    Term("other", pb.LEGAL_INSTRUMENT_OTHER, "Other", needs_details="a description"),
)

# The instrument serving the other purpose, suggested when one is cited for the wrong one.
COUNTERPART = {
    "untoc-art18": "untoc-art16",
    "uncac-art46": "uncac-art44",
    "european-mla-convention-1959": "european-extradition-convention-1957",
    "bilateral-mla-treaty": "bilateral-extradition-treaty",
}
COUNTERPART |= {v: k for k, v in COUNTERPART.items()}

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

# What an offence is, for statistics (exchange.stats; docs/statistics.md maps each to
# HTCDS/CTDC). Optional on an offence: a form that does not say counts as not recorded.
OFFENCE_CATEGORIES = _vocab(
    "offence category",
    Term(
        "trafficking-sexual-exploitation",
        pb.OFFENCE_CATEGORY_TRAFFICKING_SEXUAL_EXPLOITATION,
        "Trafficking for sexual exploitation",
    ),
    Term(
        "trafficking-forced-labour",
        pb.OFFENCE_CATEGORY_TRAFFICKING_FORCED_LABOUR,
        "Trafficking for forced labour or services",
    ),
    Term(
        "trafficking-other",
        pb.OFFENCE_CATEGORY_TRAFFICKING_OTHER,
        "Trafficking for another purpose",
    ),
    Term("forced-labour", pb.OFFENCE_CATEGORY_FORCED_LABOUR, "Forced labour (not trafficking)"),
    Term("smuggling", pb.OFFENCE_CATEGORY_SMUGGLING, "Smuggling of migrants"),
    Term("other", pb.OFFENCE_CATEGORY_OTHER, "Other offence"),
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
