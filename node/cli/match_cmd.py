"""`mlax match ...`: victim identification across the federation (hit / no-hit)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from node.cli.common import (
    CredOpt,
    JsonOpt,
    cli_errors,
    err_say,
    fail,
    format_time,
    officer_client,
    print_json,
    say,
    warn,
)
from node.client import MatchAnswer
from node.client.matching import OUTCOMES, MatchClient, outcome_of, read_batch

match_app = typer.Typer(no_args_is_help=True)
# How often a long load or key rotation says how far it is (on stderr).
PROGRESS_SECONDS = 5.0
# A load this small finishes in seconds: no progress lines.
PROGRESS_RECORDS = 10_000


@match_app.command("load")
@cli_errors
def load(
    file: Annotated[Path, typer.Argument(help="CSV: ref,given_name,family_name,sex,...")],
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Also remove this ref (repeat).")
    ] = None,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Load (add or update) this agency's victim records; they never leave the node."""
    if not file.is_file():
        fail(f"No such file: {file}.")
    shown_at = [time.monotonic()]

    def progress(sent: int, total: int) -> None:
        # A load of many records takes minutes: say how far it is every few seconds.
        now = time.monotonic()
        if json_out or total < PROGRESS_RECORDS:
            return
        if sent == total:
            # The node encodes as it reads: what is sent ahead of it is what the transport
            # holds (a few MB), so the rest of the wait is short.
            err_say(f"All {total:,} records sent; the node is encoding the last of them.")
        elif now - shown_at[0] >= PROGRESS_SECONDS:
            shown_at[0] = now
            err_say(f"{sent:,} of {total:,} records sent to the node.")

    with officer_client(cred) as c:
        resp = MatchClient(c).load(file, tuple(remove or ()), progress)
    if json_out:
        print_json(resp.to_json())
    else:
        say(
            f"{resp.added} added, {resp.updated} updated, {resp.unchanged} unchanged, "
            f"{resp.removed} removed; {resp.records} records held, index version "
            f"{resp.index_version}."
        )


@match_app.command("rotate-key")
@cli_errors
def rotate_key(
    overlap_hours: Annotated[
        float,
        typer.Option(
            "--overlap-hours",
            help="Keep serving the old key this long (0: the node's key_overlap_hours).",
        ),
    ] = 0.0,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Supervisor or admin: a new OPRF key for this agency's published index.

    Every record is re-encoded under the new key; peers are served the old index for the
    overlap while they copy the new one, then the old key and its values are deleted.
    """
    shown_at = [time.monotonic()]

    def progress(p: mpb.RotateMatchKeyProgress) -> None:
        now = time.monotonic()
        if not json_out and not p.done and now - shown_at[0] >= PROGRESS_SECONDS:
            shown_at[0] = now
            err_say(f"{p.encoded:,} of {p.total:,} records re-encoded under the new key.")

    with officer_client(cred) as c:
        done = MatchClient(c).rotate_key(overlap_hours, progress)
    if json_out:
        print_json(
            {
                "old_key_id": done.old_key_id,
                "key_id": done.new_key_id,
                "token_domain": done.token_domain,
                "records": done.encoded,
                "retire_at_ms": done.retire_at_ms,
            }
        )
    else:
        say(
            f"Key {done.new_key_id} is current ({done.encoded:,} records, token domain "
            f"{done.token_domain}); key {done.old_key_id} is served until "
            f"{format_time(done.retire_at_ms)}."
        )


@match_app.command("remove")
@cli_errors
def remove(
    refs: Annotated[list[str], typer.Argument(help="Refs of the records to remove.")],
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove records: their data is erased and peers drop them at their next sync."""
    with officer_client(cred) as c:
        resp = MatchClient(c).remove(refs)
    if json_out:
        print_json(resp.to_json())
    else:
        say(f"{resp.removed} removed; {resp.records} records held.")


# Exit status of `mlax match query` when some agency did not answer for someone (over
# quota, unavailable, an error): their "no hit" is unknown, and a script must not read it
# as an answer.
EXIT_NOT_ANSWERED = 4
MAX_LISTED_PROBLEMS = 20
_WORDS = {
    "no-hit": "no hit",
    "unmatchable": "unmatchable",
    "over-quota": "NOT ANSWERED (over quota)",
    "unavailable": "NOT ANSWERED (unavailable)",
    "error": "NOT ANSWERED (error)",
}


@match_app.command("query")
@cli_errors
def query(
    given_name: Annotated[str, typer.Option("--given-name")] = "",
    family_name: Annotated[str, typer.Option("--family-name")] = "",
    dob: Annotated[
        str, typer.Option("--dob", "--date-of-birth", help="YYYY-MM-DD, YYYY-MM or YYYY.")
    ] = "",
    sex: Annotated[str, typer.Option("--sex", help="F, M or X.")] = "",
    nationality: Annotated[str, typer.Option("--nationality", help="ISO 3166 code.")] = "",
    place_of_birth: Annotated[str, typer.Option("--place-of-birth")] = "",
    batch: Annotated[
        Path | None, typer.Option("--batch", help="CSV of people to look for (same columns).")
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Ask about the valid rows of --batch and list the others."
        ),
    ] = False,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="Ask only this agency (repeat).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each peer.")] = 10.0,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask every peer whether it holds this person: hit (strong/possible) or no hit.

    Each person's outcome is one of: hit (with its band and reference), no hit,
    unmatchable (too little to match, with why), or not answered by some agency (over
    quota, unavailable or an error, with why). Exit status 0 when every agency answered
    for everyone, 4 when some did not.
    """
    skipped: list[tuple[int, str]] = []
    if batch is not None:
        if any((given_name, family_name, dob, sex, nationality, place_of_birth)):
            fail("Give either --batch or the person's fields, not both.", 2)
        if not batch.is_file():
            fail(f"No such file: {batch}.")
        read = read_batch(batch)
        if read.problems and not skip_invalid:
            _list_problems(read.problems)
            fail(
                f"{batch} has {len(read.problems)} row(s) that cannot be asked about; nothing "
                "was asked (--skip-invalid asks about the rest)."
            )
        skipped = read.problems
        people, labels = read.people, read.labels
        if not people:
            fail(f"{batch} holds no one to look for.")
    else:
        if skip_invalid:
            fail("--skip-invalid goes with --batch.", 2)
        people = [
            {
                "given_name": given_name,
                "family_name": family_name,
                "date_of_birth": dob,
                "sex": sex,
                "nationality": nationality,
                "place_of_birth": place_of_birth,
            }
        ]
        labels = ["query"]
    answers: list[list[MatchAnswer]] = [[] for _ in people]
    with officer_client(cred) as c:
        for a in MatchClient(c).query(people, tuple(peer or ()), int(timeout * 1000)):
            answers[a.query].append(a)
    outcomes = [outcome_of(found) for found in answers]
    if json_out:
        for i, found in enumerate(answers):
            doc = {
                "query": i,
                "label": labels[i],
                "outcome": outcomes[i],
                "answers": {a.peer: _answer_json(a) for a in found},
            }
            sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
        for line, why in skipped:
            sys.stdout.write(json.dumps({"line": line, "skipped": why}, sort_keys=True) + "\n")
    else:
        _print_outcomes(labels, answers, outcomes, single=batch is None)
        for line, why in skipped:
            say(f"skipped line {line}: {why}")
    if "not-answered" in outcomes:
        raise typer.Exit(EXIT_NOT_ANSWERED)


def _answer_json(a: MatchAnswer) -> dict[str, str]:
    entry = {"result": a.result}
    for key in ("band", "reference", "detail"):
        if value := getattr(a, key):
            entry[key] = value
    return entry


def _word(a: MatchAnswer) -> str:
    if a.result == "hit":
        return f"HIT ({a.band}), reference {a.reference}"
    word = _WORDS.get(a.result, f"NOT ANSWERED ({a.result})")
    return f"{word}: {a.detail}" if a.detail and a.result != "no-hit" else word


def _print_outcomes(
    labels: list[str], answers: list[list[MatchAnswer]], outcomes: list[str], single: bool
) -> None:
    for label, found in zip(labels, answers, strict=True):
        ordered = sorted(found, key=lambda a: a.peer)
        if single:
            for a in ordered:
                say(f"{a.peer}: {_word(a)}")
        else:
            say(f"{label}: " + "; ".join(f"{a.peer} {_word(a)}" for a in ordered))
    counts = {o: outcomes.count(o) for o in OUTCOMES}
    if not single:
        say(
            f"{len(outcomes)} people: {counts['hit']} with a hit, {counts['no-hit']} no hit, "
            f"{counts['unmatchable']} unmatchable, {counts['not-answered']} not answered by "
            "every agency."
        )
    hit = next((a for found in answers for a in found if a.result == "hit"), None)
    if hit is not None:
        say(
            "A hit names no one: to ask the holder for the identity, open a follow-up "
            "naming the person you looked for, as you asked: "
            f"mlax match follow-up {hit.reference} --given-name ... --family-name ... "
            "--date-of-birth ... [--sex ... --nationality ... --place-of-birth ...] "
            '--purpose victim-assistance --justification "..." --contact-email you@agency.example'
        )
    if counts["not-answered"]:
        warn(
            "Some agencies did not answer for everyone: their 'no hit' is unknown, not a no. "
            "Ask again later for those people."
        )


def _list_problems(problems: list[tuple[int, str]]) -> None:
    for _, why in problems[:MAX_LISTED_PROBLEMS]:
        err_say(why)
    if len(problems) > MAX_LISTED_PROBLEMS:
        err_say(f"... and {len(problems) - MAX_LISTED_PROBLEMS} more.")


@match_app.command("follow-up")
@cli_errors
def follow_up(
    reference: Annotated[str, typer.Argument(help="The reference of a hit.")],
    purpose: Annotated[
        str,
        typer.Option(
            help="victim-assistance, repatriation, criminal-proceedings or family-tracing."
        ),
    ],
    justification: Annotated[str, typer.Option(help="Why the identity is needed.")],
    given_name: Annotated[
        str, typer.Option("--given-name", help="The person you looked for, as you asked.")
    ] = "",
    family_name: Annotated[str, typer.Option("--family-name")] = "",
    date_of_birth: Annotated[
        str, typer.Option("--date-of-birth", "--dob", help="YYYY-MM-DD, YYYY-MM or YYYY.")
    ] = "",
    sex: Annotated[str, typer.Option("--sex", help="F, M or X.")] = "",
    nationality: Annotated[str, typer.Option("--nationality", help="ISO 3166 code.")] = "",
    place_of_birth: Annotated[str, typer.Option("--place-of-birth")] = "",
    legal_basis: Annotated[
        list[str] | None, typer.Option("--legal-basis", help="Legal basis slug (repeat).")
    ] = None,
    contact_email: Annotated[
        str, typer.Option("--contact-email", help="How the holder reaches you.")
    ] = "",
    contact_phone: Annotated[str, typer.Option("--contact-phone")] = "",
    urgency: Annotated[str, typer.Option()] = "ordinary",
    urgency_reason: Annotated[str, typer.Option("--urgency-reason")] = "",
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask the holder of a hit for the identity: a victim-identification case.

    It names the person you are looking for (the fields of your query): the holder
    checks that person against the record behind the reference before its supervisor
    discloses anything.
    """
    person = {
        "given_name": given_name,
        "family_name": family_name,
        "sex": sex,
        "date_of_birth": date_of_birth,
        "nationality": nationality,
        "place_of_birth": place_of_birth,
    }
    if not any(person.values()):
        fail(
            "Give the person you are looking for, as in your query: --given-name, "
            "--family-name, --date-of-birth (and --sex, --nationality, --place-of-birth).",
            2,
        )
    if not (contact_email or contact_phone):
        fail("Give --contact-email or --contact-phone: the holder must be able to reach you.", 2)
    with officer_client(cred) as c:
        contact = {"name": c.credential.officer}
        if contact_email:
            contact["email"] = contact_email
        if contact_phone:
            contact["phone"] = contact_phone
        view = MatchClient(c).follow_up(
            reference,
            person=person,
            purpose=purpose,
            justification=justification,
            legal_basis=tuple(legal_basis or ("palermo-protocol",)),
            urgency=urgency,
            urgency_reason=urgency_reason,
            contact=contact,
        )
    if json_out:
        print_json(view.to_json())
    else:
        s = view.summary
        waiting = " (awaiting a supervisor's approval)" if s.awaiting_approval else ""
        say(f"Opened case {s.case_ref} to {s.peer}{waiting}.")


# How each agreement reads in a sentence about the person sought and the record.
_AGREEMENT = {
    "matches": "matches the record",
    "weak": "agrees only weakly with the record (a possible hit)",
    "does-not-match": "does NOT match the record",
}


def _agreement(agreement: str) -> str:
    return f"the person sought {_AGREEMENT.get(agreement, agreement)}"


@match_app.command("check")
@cli_errors
def check(case_ref: str, cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """Holder's supervisor: how the person a follow-up seeks agrees with the record behind
    its reference, and whether `mlax match disclose` would go now. Changes nothing."""
    with officer_client(cred) as c:
        found = MatchClient(c).check(case_ref)
    if json_out:
        print_json(found.to_json())
        return
    say(f"Case {case_ref}: {_agreement(found.agreement)} ({found.agreement}).")
    if found.allowed:
        say("A disclosure would go now: mlax match disclose " + case_ref)
    else:
        say(f"A disclosure would be refused now: {found.problem}")


@match_app.command("disclose")
@cli_errors
def disclose(
    case_ref: str,
    override_mismatch: Annotated[
        bool,
        typer.Option(
            "--override-mismatch",
            help="Disclose although the person sought does not match the record (ledgered).",
        ),
    ] = False,
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why, with --override-mismatch; the ledger keeps its length and digest only.",
        ),
    ] = "",
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Holder's supervisor: disclose the identity a follow-up case asks for (ledgered).

    The node first checks the person the follow-up seeks against the record (see `mlax
    match check`): a person who does not match is refused unless you pass
    --override-mismatch with a --reason.
    """
    if reason and not override_mismatch:
        fail("--reason goes with --override-mismatch.", 2)
    if override_mismatch and not reason.strip():
        fail("--override-mismatch needs a --reason: say why the identity goes anyway.", 2)
    with officer_client(cred) as c:
        done = MatchClient(c).disclose(
            case_ref, override_reason=reason if override_mismatch else None
        )
    if json_out:
        print_json(done.to_json())
        return
    peer = done.case.summary.peer if done.case is not None else "the requesting agency"
    how = " on your override" if done.overridden else ""
    say(
        f"Disclosed the identity in case {case_ref} to {peer}{how}; "
        f"{_agreement(done.agreement)} ({done.agreement})."
    )


def register(app: typer.Typer) -> None:
    app.add_typer(match_app, name="match", help="Victim identification: hit / no-hit matching.")
