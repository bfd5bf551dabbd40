"""The officer SDK for victim identification: load records, ask the federation, follow up.

matching = MatchClient(OfficerClient.from_bundle(Path("alice.json"), b"passphrase"))
matching.load(Path("victims.csv"))
for answer in matching.query([{"given_name": "Ana", "family_name": "Popescu"}]):
    print(answer.peer, answer.result, answer.band)
person = {"given_name": "Ana", "family_name": "Popescu", "date_of_birth": "1998"}
matching.follow_up(answer.reference, person=person, purpose="victim-assistance",
                   justification="...")
matching.check(case_ref).agreement            # at the holder: "matches", "weak", ...
matching.disclose(case_ref)                   # its supervisor
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from exchange import forms
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange._proto.mlax.v1 import officer_pb2_grpc as ogrpc
from exchange.encoding import now_ms
from exchange.errors import ConflictError, InputError, InvalidFieldError
from exchange.forms.requests import VICTIM_SOUGHT, victim_sought
from exchange.forms.spec import Ctx, check_message
from exchange.matching.records import (
    QUERY_COLUMNS,
    RECORD_COLUMNS,
    parse_csv_row,
    parse_query_row,
)
from node.client.cases import CaseClient
from node.client.officer import OfficerClient
from node.client.results import CaseView, Disclosure, MatchAnswer, RecordsLoaded

PERSON_FIELDS = QUERY_COLUMNS
# The columns of a batch query file: the person's, and an optional label of one's own.
QUERY_FILE_COLUMNS = ("ref", *QUERY_COLUMNS)
_BATCH = 1000
# The slowest encoding rate a load's deadline allows for (records/s, a busy single core).
LOAD_RATE_FLOOR = 50


def person(fields: Mapping[str, str | None]) -> mpb.MatchPerson:
    return mpb.MatchPerson(**{f: (fields.get(f) or "").strip() for f in PERSON_FIELDS})


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str | None]]]:
    """CSV rows with their line numbers (the header is line 1)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise InvalidFieldError(f"{path} is empty: it needs a header line.")
        for row in reader:
            yield reader.line_num, dict(row)


@dataclass
class Batch:
    """A batch file read and checked whole: the people it can ask about, and the rows it
    cannot, each with its line number (the header is line 1) and why."""

    people: list[dict[str, str | None]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)


MAX_LABEL_CHARS = 200


def read_batch(path: Path) -> Batch:
    """Every row of a batch query file, checked as the node will check it."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidFieldError(f"{path} is not UTF-8 text.") from None
    return read_batch_text(text, str(path))


def read_batch_text(text: str, name: str = "The CSV file") -> Batch:
    """A batch query file's text, checked whole: a header that is not the query columns
    (plus an optional `ref`) refuses the file; a bad row is listed with its line number
    (the header is line 1) and why, and the other rows can still be asked about."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    batch = Batch()
    try:
        header = reader.fieldnames
        if not header:
            raise InvalidFieldError(f"{name} is empty: its first line must name the columns.")
        unknown = [c for c in header if c not in QUERY_FILE_COLUMNS]
        missing = [c for c in QUERY_COLUMNS if c not in header]
        if unknown or missing:
            wrong = f"has no column {missing[0]}" if missing else f"has a column {unknown[0]!r}"
            raise InvalidFieldError(
                f"{name}, line 1 {wrong}: the columns are {','.join(QUERY_COLUMNS)}, "
                "with an optional ref column for your own label."
            )
        for row in reader:
            line = reader.line_num
            if None in row:
                batch.problems.append((line, f"Line {line}: more values than the header names."))
                continue
            person = {f: row.get(f) for f in PERSON_FIELDS}
            try:
                parse_query_row(person, line)
            except InputError as e:
                batch.problems.append((line, e.message))
                continue
            batch.people.append(person)
            label = (row.get("ref") or "").strip() or f"line {line}"
            batch.labels.append(label[:MAX_LABEL_CHARS])
            batch.lines.append(line)
    except csv.Error as e:
        raise InvalidFieldError(f"{name}, line {reader.line_num}: not CSV ({e}).") from None
    return batch


# What became of one person asked about: every answer read as one of four outcomes.
OUTCOMES = ("hit", "no-hit", "unmatchable", "not-answered")
NOT_ANSWERED = frozenset({"over-quota", "unavailable", "error"})


def outcome_of(answers: Sequence[MatchAnswer]) -> str:
    """A person's outcome over every peer's answer: a hit anywhere; else not answered if
    some peer did not answer (its no might have been a hit); else unmatchable or no hit."""
    results = {a.result for a in answers}
    if "hit" in results:
        return "hit"
    if results & NOT_ANSWERED:
        return "not-answered"
    if "unmatchable" in results:
        return "unmatchable"
    return "no-hit"


class MatchClient:
    """Matching calls on one's own node, over an OfficerClient's channel."""

    def __init__(self, client: OfficerClient) -> None:
        self.client = client

    @property
    def _stub(self) -> ogrpc.OfficerStub:
        return self.client._stub

    def load(
        self,
        path: Path,
        remove: Sequence[str] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> RecordsLoaded:
        """Add or update the records of a CSV file (and remove `remove`), in one version.

        Every row is checked here first, in a pass that keeps nothing, so a bad file is
        refused before anything is sent; then the rows stream to the node in parts of
        1,000 (the node encodes them as they arrive), calling `progress(sent, total)`
        after each part. A million-row file never sits in memory.
        """
        total = 0
        for line, row in read_rows(path):
            parse_csv_row(row, line)  # the node checks again; this names the line early
            total += 1

        def rows() -> Iterator[mpb.MatchRecordRow]:
            for line, row in read_rows(path):
                yield mpb.MatchRecordRow(
                    ref=(row.get("ref") or "").strip(), person=person(row), line=line
                )

        return self._load(rows(), total, remove, progress)

    def remove(self, refs: Sequence[str]) -> RecordsLoaded:
        return self._load(iter(()), 0, refs, None)

    def _load(
        self,
        rows: Iterator[mpb.MatchRecordRow],
        total: int,
        remove: Sequence[str],
        progress: Callable[[int, int], None] | None,
    ) -> RecordsLoaded:
        def parts() -> Iterator[mpb.LoadRecordsRequest]:
            first, sent = True, 0
            while True:
                batch = list(itertools.islice(rows, _BATCH))
                if not batch and not first:
                    return
                yield mpb.LoadRecordsRequest(rows=batch, remove=list(remove) if first else [])
                first, sent = False, sent + len(batch)
                if progress is not None and batch:
                    progress(sent, total)

        try:
            resp: mpb.LoadRecordsResponse = self._stub.LoadRecords(
                parts(), timeout=self.client.timeout + total / LOAD_RATE_FLOOR
            )
        except grpc.RpcError as e:
            raise self.client.call_error(e) from None
        return RecordsLoaded.from_proto(resp)

    def rotate_key(
        self,
        overlap_hours: float = 0.0,
        progress: Callable[[mpb.RotateMatchKeyProgress], None] | None = None,
    ) -> mpb.RotateMatchKeyProgress:
        """Supervisor or admin: a new OPRF key generation for this agency's published index
        (every record re-encoded), the old one served for `overlap_hours` (0: the node's
        default). Returns the final progress (`done`); the rotation goes on in the node
        if this call is cut off."""
        try:
            last: mpb.RotateMatchKeyProgress | None = None
            for last in self._stub.RotateMatchKey(
                mpb.RotateMatchKeyRequest(overlap_hours=overlap_hours), timeout=None
            ):
                if progress is not None:
                    progress(last)
        except grpc.RpcError as e:
            raise self.client.call_error(e) from None
        if last is None or not last.done:
            raise ConflictError("The node ended the key rotation call before it finished.")
        return last

    def query(
        self,
        people: Sequence[Mapping[str, str | None]],
        peers: Sequence[str] = (),
        timeout_ms: int = 0,
    ) -> Iterator[MatchAnswer]:
        """Each peer's answers, as they arrive (a peer that is down answers 'unavailable')."""
        for i, p in enumerate(people):
            parse_query_row({f: p.get(f) for f in PERSON_FIELDS}, i + 1)
        req = mpb.MatchQueryRequest(
            queries=[person(p) for p in people], peers=list(peers), timeout_ms=timeout_ms
        )
        stream = self._stub.MatchQuery(req, timeout=self.client.timeout + 60 + len(people) / 10)
        try:
            for answer in stream:
                yield MatchAnswer.from_proto(answer)
        except grpc.RpcError as e:
            raise self.client.call_error(e) from None

    def follow_up(
        self,
        reference: str,
        *,
        person: Mapping[str, str | None],
        purpose: str,
        justification: str,
        legal_basis: Sequence[str] = ("palermo-protocol",),
        urgency: str = "ordinary",
        urgency_reason: str = "",
        contact: Mapping[str, str] | None = None,
        language: str = "en",
        handling: Sequence[str] = (),
        restricted_to: Sequence[str] = (),
    ) -> CaseView:
        """Open a victim-identification case to the holder of a hit, and submit it.

        `person` is the person you are looking for, with the fields of a query
        (`PERSON_FIELDS`): the holder grades it against the record behind the reference
        before its supervisor discloses anything, so give them as you asked. `handling`
        and `restricted_to` are the case's handling codes and, for `named-officers-only`,
        the holder's officers who may read it (and so act on it and disclose).
        """
        holder = reference.rpartition(":")[0]
        own = self.client.credential.agency
        data: dict[str, Any] = {
            "requesting_authority": {"agency_id": own, "name": own},
            "requested_authority": {"agency_id": holder, "name": holder},
            "match_reference": reference,
            "person": sought(person),
            "purpose": purpose,
            "legal_basis": list(legal_basis),
            "justification": justification,
            "urgency": urgency,
            "contact_officer": dict(contact or {"name": self.client.credential.officer}),
            "language": language,
        }
        if urgency_reason:
            data["urgency_reason"] = urgency_reason
        form = forms.form_from_mapping(forms.CaseType.VICTIM_ID, data, now_ms=now_ms())
        cases = CaseClient(self.client)
        ref = cases.create(
            form, recipient=holder, handling=tuple(handling), restricted_to=tuple(restricted_to)
        ).summary.case_ref
        return cases.act(ref, "submit")

    def check(self, case_ref: str) -> Disclosure:
        """Holder's supervisor: how the person a follow-up seeks agrees with the record
        behind its reference, and whether a disclosure would go now. Changes nothing."""
        return self._disclose(mpb.DiscloseRequest(case_ref=case_ref, check_only=True))

    def disclose(self, case_ref: str, *, override_reason: str | None = None) -> Disclosure:
        """Holder's supervisor: send the identity behind a follow-up case (ledgered).

        Refused (FAILED_PRECONDITION) when the person sought does not match the record,
        unless `override_reason` says why it goes anyway: the ledger records the override.
        """
        return self._disclose(
            mpb.DiscloseRequest(
                case_ref=case_ref,
                override_mismatch=override_reason is not None,
                override_reason=override_reason or "",
            )
        )

    def _disclose(self, request: mpb.DiscloseRequest) -> Disclosure:
        try:
            resp: opb.DiscloseResponse = self._stub.Disclose(request, timeout=self.client.timeout)
        except grpc.RpcError as e:
            raise self.client.call_error(e) from None
        return Disclosure.from_proto(resp)


def sought(fields: Mapping[str, str | None]) -> dict[str, str]:
    """The person a follow-up seeks, as a `VictimSought` table: checked by the rules of a
    query and normalised like one (alpha-3 nationality, upper-case sex, a canonical date),
    so what the holder grades is what a query would have asked. Empty fields left out;
    a bad one raises `FormFieldError` naming it (`person.date_of_birth`)."""
    unknown = sorted(k for k in fields if k not in PERSON_FIELDS)
    if unknown:
        raise InvalidFieldError(
            f"{unknown[0]!r} is not a field of a person: {', '.join(PERSON_FIELDS)}."
        )
    given = fpb.VictimSought(**{f: (fields.get(f) or "") for f in PERSON_FIELDS})
    check_message(VICTIM_SOUGHT, given, "person", Ctx(now_ms=None))
    values = vars(victim_sought(given))
    values["date_of_birth"] = str(values["date_of_birth"] or "")
    return {f: values[f] for f in PERSON_FIELDS if values[f]}


__all__ = [
    "NOT_ANSWERED",
    "OUTCOMES",
    "PERSON_FIELDS",
    "RECORD_COLUMNS",
    "Batch",
    "MatchClient",
    "outcome_of",
    "person",
    "read_batch",
    "read_batch_text",
    "read_rows",
    "sought",
]
