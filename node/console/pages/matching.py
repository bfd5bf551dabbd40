"""Victim identification in the console: ask the federation whether it holds a person.

The officer types one person, or uploads a CSV batch with the columns of
`exchange.matching.records.QUERY_COLUMNS`; both are checked here with the same
`parse_query_row` the SDK and the node use, so a bad date is answered beside the form
before any peer spends quota on it. Names and dates only ever arrive in a POST body: a
result set holds, in memory only, under a random id, for the 20 latest searches of this
console, the people searched (to prefill a follow-up), the query numbers, the batch's
own row labels, and each peer's answer (result, band, the opaque reference, a sentence).
None of it goes into a URL, a log line or the browser's storage. A hit leads to a
follow-up request (a victim-identification case) naming the person sought, prefilled
from the search and editable; its reference, result set and query number are POSTed,
never put in a URL.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
import structlog
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from exchange.csv_cells import csv_cell
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError, MalformedError
from exchange.forms.base import FormFieldError, FormFieldTooLargeError
from exchange.forms.vocab import URGENCIES, VICTIM_ID_PURPOSES
from exchange.matching.records import QUERY_COLUMNS, parse_query_row
from exchange.policy import Role
from node.client import NodeCallError
from node.client.matching import read_batch_text
from node.client.results import MatchAnswer
from node.console.app import Console, Refused, flash, redirect
from node.console.security import Session

log = structlog.get_logger("mlax.console.matching")

STATE_KEY = "matching.results"
# Result sets kept per console: enough to go back to recent searches, bounded in memory.
MAX_RESULT_SETS = 20
# A batch row's own label (its `ref` column, else its line) is cut to this many characters.
MAX_LABEL_CHARS = 128
# Bad rows of a batch listed at once (the rest are counted).
MAX_LISTED_ROWS = 20
_READERS = frozenset({Role.OFFICER, Role.SUPERVISOR})
_COLUMN_ERROR = re.compile(r"Line \d+, column (\w+): (.*)", re.DOTALL)
_FIELD_ERROR = re.compile(r"Field (\w+): (.*)", re.DOTALL)


# Spreadsheets run a cell that starts with one of these as a formula.
@dataclass(frozen=True)
class QueryField:
    name: str
    label: str
    hint: str = ""
    choices: tuple[tuple[str, str], ...] = ()

    @property
    def dom_id(self) -> str:
        return "f-" + self.name.replace("_", "-")


_FIELDS = {
    "given_name": QueryField(
        "given_name", "Given name", "In any script, as the person or a document gives it."
    ),
    "family_name": QueryField(
        "family_name",
        "Family name",
        "A given or a family name is required; a match needs two name parts.",
    ),
    "sex": QueryField(
        "sex",
        "Sex",
        choices=(("", "not known"), ("F", "F (female)"), ("M", "M (male)"), ("X", "X (other)")),
    ),
    "date_of_birth": QueryField(
        "date_of_birth",
        "Date of birth",
        "YYYY, YYYY-MM or YYYY-MM-DD; a match needs at least the year.",
    ),
    "nationality": QueryField(
        "nationality", "Nationality", "ISO 3166 country code, such as NGA or NG."
    ),
    "place_of_birth": QueryField("place_of_birth", "Place of birth"),
}
QUERY_FIELDS = tuple(
    _FIELDS.get(c) or QueryField(c, c.replace("_", " ").capitalize()) for c in QUERY_COLUMNS
)

# What each answer shows: a word that differs for every state (colour is never the only
# signal) and the class that styles it.
_STATES = {
    ("hit", "strong"): ("hit (strong)", "result-hit-strong"),
    ("hit", "possible"): ("hit (possible)", "result-hit-possible"),
    ("no-hit", ""): ("no hit", "result-no-hit"),
    ("unmatchable", ""): ("unmatchable", "result-unmatchable"),
    ("over-quota", ""): ("over quota", "result-over-quota"),
    ("unavailable", ""): ("unavailable", "result-unavailable"),
    ("error", ""): ("error", "result-error"),
}


@dataclass(frozen=True)
class AnswerRow:
    """One peer's answer to one person, as the results table shows it."""

    query: int
    label: str
    peer: str
    result: str
    band: str
    word: str
    css: str
    reference: str
    detail: str

    @property
    def is_hit(self) -> bool:
        return self.result == "hit" and bool(self.reference)


@dataclass
class ResultSet:
    rid: str
    at: int
    people: int
    batch: bool
    peers: tuple[str, ...]
    rows: list[AnswerRow] = field(default_factory=list)
    # The people searched, in query order (memory only): what a follow-up is prefilled with.
    sought: tuple[Mapping[str, str], ...] = ()

    def person(self, query: int) -> Mapping[str, str]:
        """The person of query number `query` (1-based, as the table shows it), or none."""
        return self.sought[query - 1] if 0 < query <= len(self.sought) else {}

    def count(self, result: str) -> int:
        return sum(1 for r in self.rows if r.result == result)


def _row(answer: MatchAnswer, labels: Sequence[str]) -> AnswerRow:
    result, band = answer.result, answer.band
    word, css = _STATES.get((result, band if result == "hit" else ""), ("", ""))
    detail = answer.detail
    if not word:
        if result == "hit":
            word, css = f"hit ({band or 'no band'})", "result-hit-possible"
        else:
            word, css = "error", "result-error"
            detail = detail or f"Your node gave an answer this console does not know: {result}."
    index = answer.query
    label = labels[index] if 0 <= index < len(labels) else ""
    return AnswerRow(
        query=index + 1,
        label=label,
        peer=answer.peer,
        result=result,
        band=band if result == "hit" else "",
        word=word,
        css=css,
        reference=answer.reference if result == "hit" else "",
        detail=detail,
    )


def _results(console: Console) -> OrderedDict[str, ResultSet]:
    found = console.state.get(STATE_KEY)
    if not isinstance(found, OrderedDict):
        found = OrderedDict()
        console.state[STATE_KEY] = found
    return found


def _keep(console: Console, result: ResultSet) -> None:
    sets = _results(console)
    sets[result.rid] = result
    while len(sets) > MAX_RESULT_SETS:
        sets.popitem(last=False)


def _result_set(console: Console, rid: str) -> ResultSet:
    found = _results(console).get(rid)
    if found is None:
        raise Refused(
            "There are no such results in this console: it keeps the results of its "
            f"{MAX_RESULT_SETS} latest searches, until it stops.",
            404,
        )
    return found


def _readers_only(console: Console) -> None:
    if console.role not in _READERS:
        raise Refused(
            "Victim identification is for officers and supervisors; this credential cannot search.",
            403,
        )


def _chosen_peers(console: Console, post: FormData) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(str(p) for p in post.getlist("peer")))
    for p in chosen:
        if p not in console.me.peers:
            raise Refused(f"{p} is not a peer of your node.")
    return chosen


def _cell(value: object) -> str:
    """A CSV cell (`exchange.csv_cells`): control and format characters shown as escapes
    (a peer's sentence may carry them), and never a formula a spreadsheet would run."""
    return str(csv_cell(value if isinstance(value, str) else str(value)))


def _form_page(
    console: Console,
    request: Request,
    session: Session,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    problem: str = "",
    batch_problem: str = "",
    peers: Sequence[str] = (),
    status: int = 200,
) -> Response:
    values, errors = values or {}, errors or {}
    fields = [
        {
            "f": f,
            "value": values.get(f.name, ""),
            "error": errors.get(f.name, ""),
        }
        for f in QUERY_FIELDS
    ]
    recent = list(reversed(_results(console).values()))
    return console.render(
        request,
        session,
        "match.html",
        {
            "fields": fields,
            "problem": problem,
            "batch_problem": batch_problem,
            "peers": console.me.peers,
            "chosen": tuple(peers),
            "columns": ",".join(QUERY_COLUMNS),
            "max_csv_bytes": console.settings.max_csv_bytes,
            "recent": recent,
        },
        status=status,
    )


async def _ask(
    console: Console,
    people: list[dict[str, str | None]],
    peers: tuple[str, ...],
    labels: list[str],
    batch: bool,
) -> str:
    """Ask the peers, keep the answers under a new random id and return the id."""
    answers: list[MatchAnswer] = await console.call(
        lambda: list(console.matching.query(people, peers))
    )
    rows = sorted((_row(a, labels) for a in answers), key=lambda r: (r.query, r.peer))
    result = ResultSet(
        rid=secrets.token_urlsafe(16),
        at=now_ms(),
        people=len(people),
        batch=batch,
        peers=peers or console.me.peers,
        rows=rows,
        sought=tuple({c: (p.get(c) or "").strip() for c in QUERY_COLUMNS} for p in people),
    )
    _keep(console, result)
    log.info(
        "console_match_query",
        people=len(people),
        peers=len(result.peers),
        hits=result.count("hit"),
    )
    return result.rid


def _read_batch(data: bytes) -> tuple[list[dict[str, str | None]], list[str]]:
    """The people and row labels of an uploaded CSV, read by the SDK's batch reader (the
    CLI's own); every bad row is named by its line, and then nothing is asked."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidFieldError("The CSV file is not UTF-8 text.") from None
    batch = read_batch_text(text)
    if batch.problems:
        listed = [why for _, why in batch.problems[:MAX_LISTED_ROWS]]
        more = len(batch.problems) - len(listed)
        raise InvalidFieldError(
            f"{len(batch.problems)} row(s) cannot be asked about: "
            + " ".join(listed)
            + (f" And {more} more." if more > 0 else "")
        )
    if not batch.people:
        raise InvalidFieldError("The CSV file holds no one to look for.")
    return batch.people, batch.labels


def _follow_up_page(
    console: Console,
    request: Request,
    session: Session,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    status: int = 200,
) -> Response:
    reference = values.get("reference", "")
    rid = values.get("rid", "")
    known = {"purpose", "justification", "urgency", "urgency_reason", "email", "phone"}
    stray = [
        m if not p else f"{p}: {m}"
        for p, m in errors.items()
        if p not in known and p not in QUERY_COLUMNS
    ]
    person = [
        {"f": f, "value": values.get(f.name, ""), "error": errors.get(f.name, "")}
        for f in QUERY_FIELDS
    ]
    return console.render(
        request,
        session,
        "match_follow_up.html",
        {
            "reference": reference,
            "holder": reference.rpartition(":")[0],
            # Only the id of results this console holds goes back into a link.
            "rid": rid if rid in _results(console) else "",
            "query": values.get("query", ""),
            "person": person,
            "values": {k: values.get(k, "") for k in known},
            "errors": {k: errors.get(k, "") for k in (*known, *QUERY_COLUMNS)},
            "problem": "; ".join(stray),
            "purposes": [(t.slug, t.label) for t in VICTIM_ID_PURPOSES],
            "urgencies": [(t.slug, t.label) for t in URGENCIES],
        },
        status=status,
    )


_FOLLOW_UP_FIELDS = {
    "contact_officer.email": "email",
    "contact_officer.phone": "phone",
    "contact_officer": "email",
    # The person sought: its fields are the query's; a missing person is a missing name.
    "person": "family_name",
    **{f"person.{c}": c for c in QUERY_COLUMNS},
}


def register(console: Console) -> None:
    @console.page("/match", methods=("GET", "POST"))
    async def match(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        if request.method == "GET":
            return _form_page(console, request, session)
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        values = {c: str(post.get(c, "")) for c in QUERY_COLUMNS}
        peers = _chosen_peers(console, post)

        def refused(message: str, pattern: re.Pattern[str]) -> Response:
            # The sentence beside its field when it names one, and above the form.
            found = pattern.fullmatch(message)
            column, sentence = found.groups() if found else ("", message)
            return _form_page(
                console,
                request,
                session,
                values=values,
                errors={column: sentence} if column in values else {},
                problem=f"Nothing was searched: {sentence}",
                peers=peers,
                status=400,
            )

        try:
            parse_query_row(values, 1)
        except InvalidFieldError as e:
            return refused(str(e), _COLUMN_ERROR)
        try:
            rid = await _ask(console, [dict(values)], peers, ["query"], batch=False)
        except NodeCallError as e:
            if e.code != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            # The node's own word on a person it will not take.
            return refused(str(e), _FIELD_ERROR)
        return redirect(f"/match/results/{rid}")

    @console.page("/match/batch", methods=("POST",))
    async def batch(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        peers = _chosen_peers(console, post)
        upload = post.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return _form_page(
                console,
                request,
                session,
                batch_problem="Choose a CSV file of the people to look for.",
                peers=peers,
                status=400,
            )
        try:
            people, labels = _read_batch(await upload.read())
            rid = await _ask(console, people, peers, labels, batch=True)
        except (InvalidFieldError, MalformedError, NodeCallError) as e:
            if isinstance(e, NodeCallError) and e.code != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return _form_page(
                console,
                request,
                session,
                batch_problem=f"Nothing was searched: {e}",
                peers=peers,
                status=400,
            )
        finally:
            await upload.close()
        return redirect(f"/match/results/{rid}")

    # Before the page route, whose {rid} would also take "<id>.csv".
    @console.page("/match/results/{rid}.csv")
    async def results_csv(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        result = _result_set(console, request.path_params["rid"])
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["query", "label", "peer", "result", "band", "reference", "detail"])
        for r in result.rows:
            writer.writerow(
                [
                    _cell(v)
                    for v in (r.query, r.label, r.peer, r.word, r.band, r.reference, r.detail)
                ]
            )
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="match-results-{result.rid}.csv"'
            },
        )

    @console.page("/match/results/{rid}")
    async def results(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        result = _result_set(console, request.path_params["rid"])
        return console.render(
            request,
            session,
            "match_results.html",
            {
                "r": result,
                "hits": result.count("hit"),
                "holders": sorted({row.peer for row in result.rows if row.is_hit}),
            },
        )

    @console.page("/match/follow-up", methods=("POST",))
    async def follow_up_form(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        reference = str(post.get("reference", "")).strip()
        if not reference:
            raise Refused("A follow-up starts from the reference of a hit; none was given.")
        rid, query = str(post.get("rid", "")), str(post.get("query", ""))
        values = {"reference": reference, "rid": rid, "query": query, "urgency": "ordinary"}
        # Prefilled with the person searched for, while this console still holds the search.
        found = _results(console).get(rid)
        if found is not None and query.isdigit():
            values |= found.person(int(query))
        return _follow_up_page(console, request, session, values, {})

    @console.page("/match/follow-up/open", methods=("POST",))
    async def follow_up_open(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        keys = ("reference", "rid", "query", "purpose", "justification", "urgency")
        fields = (*keys, "urgency_reason", "email", "phone", *QUERY_COLUMNS)
        values = {k: str(post.get(k, "")) for k in fields}
        values["reference"] = values["reference"].strip()
        contact = {"name": console.officer}
        for k in ("email", "phone"):
            if values[k].strip():
                contact[k] = values[k].strip()
        try:
            view = await console.call(
                console.matching.follow_up,
                values["reference"],
                person={c: values[c] for c in QUERY_COLUMNS},
                purpose=values["purpose"],
                justification=values["justification"],
                urgency=values["urgency"] or "ordinary",
                urgency_reason=values["urgency_reason"],
                contact=contact,
            )
        except (FormFieldError, FormFieldTooLargeError) as e:
            path = _FOLLOW_UP_FIELDS.get(e.field, e.field)
            sentence = str(e).removeprefix(f"Field {e.field}: ")
            return _follow_up_page(console, request, session, values, {path: sentence}, 400)
        s = view.summary
        if s.awaiting_approval:
            flash(
                session,
                f"Follow-up {s.case_ref} to {s.peer} saved; it waits for a supervisor's "
                "approval before it is sent.",
            )
        else:
            flash(session, f"Follow-up {s.case_ref} sent to {s.peer}.")
        log.info("console_match_follow_up", case_ref=s.case_ref, peer=s.peer)
        return redirect(f"/cases/{s.case_ref}")


__all__ = ["MAX_RESULT_SETS", "QUERY_FIELDS", "register"]
