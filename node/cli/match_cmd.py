"""`mlax match ...`: victim identification across the federation (hit / no-hit)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from node.cli.common import CredOpt, JsonOpt, cli_errors, fail, officer_client, print_json, say
from node.client.matching import PERSON_FIELDS, MatchClient, read_rows

match_app = typer.Typer(no_args_is_help=True)


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
    with officer_client(cred) as c:
        resp = MatchClient(c).load(file, tuple(remove or ()))
    if json_out:
        print_json(resp.to_json())
    else:
        say(
            f"{resp.added} added, {resp.updated} updated, {resp.unchanged} unchanged, "
            f"{resp.removed} removed; {resp.records} records held, index version "
            f"{resp.index_version}."
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


@match_app.command("query")
@cli_errors
def query(
    given_name: Annotated[str, typer.Option("--given-name")] = "",
    family_name: Annotated[str, typer.Option("--family-name")] = "",
    dob: Annotated[str, typer.Option("--dob", help="YYYY-MM-DD, YYYY-MM or YYYY.")] = "",
    sex: Annotated[str, typer.Option("--sex", help="F, M or X.")] = "",
    nationality: Annotated[str, typer.Option("--nationality", help="ISO 3166 code.")] = "",
    place_of_birth: Annotated[str, typer.Option("--place-of-birth")] = "",
    batch: Annotated[
        Path | None, typer.Option("--batch", help="CSV of people to look for (same columns).")
    ] = None,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="Ask only this agency (repeat).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each peer.")] = 10.0,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask every peer whether it holds this person: hit (strong/possible) or no hit."""
    labels: list[str] = []
    if batch is not None:
        if any((given_name, family_name, dob, sex, nationality, place_of_birth)):
            fail("Give either --batch or the person's fields, not both.", 2)
        people = []
        for line, row in read_rows(batch):
            labels.append((row.get("ref") or "").strip() or f"line {line}")
            people.append({f: row.get(f) for f in PERSON_FIELDS})
        if not people:
            fail(f"{batch} holds no one to look for.")
    else:
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
        labels.append("query")
    results: list[dict[str, object]] = [
        {"query": i, "label": labels[i], "answers": {}} for i in range(len(people))
    ]
    with officer_client(cred) as c:
        for a in MatchClient(c).query(people, tuple(peer or ()), int(timeout * 1000)):
            entry = {"result": a.result}
            if a.band:
                entry["band"] = a.band
            if a.reference:
                entry["reference"] = a.reference
            if a.detail:
                entry["detail"] = a.detail
            results[a.query]["answers"][a.peer] = entry  # type: ignore[index]
            if not json_out and batch is None:
                _print_answer(a.peer, entry)
    if json_out:
        for r in results:
            sys.stdout.write(json.dumps(r, sort_keys=True) + "\n")
    elif batch is not None:
        for r in results:
            answers = r["answers"]
            assert isinstance(answers, dict)
            hits = [
                f"{p} ({a['band']})" for p, a in sorted(answers.items()) if a["result"] == "hit"
            ]
            say(f"{r['label']}: " + (", ".join(hits) if hits else "no hit"))


def _print_answer(peer: str, entry: dict[str, str]) -> None:
    result = entry["result"]
    if result == "hit":
        say(f"{peer}: HIT ({entry['band']}), reference {entry['reference']}")
    elif result == "no-hit":
        say(f"{peer}: no hit")
    else:
        say(f"{peer}: {result}: {entry.get('detail', '')}")


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
    """Ask the holder of a hit for the identity: a victim-identification case."""
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


@match_app.command("disclose")
@cli_errors
def disclose(case_ref: str, cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """Holder's supervisor: disclose the identity a follow-up case asks for (ledgered)."""
    with officer_client(cred) as c:
        view = MatchClient(c).disclose(case_ref)
    if json_out:
        print_json(view.to_json())
    else:
        say(f"Disclosed the identity in case {case_ref} to {view.summary.peer}.")


def register(app: typer.Typer) -> None:
    app.add_typer(match_app, name="match", help="Victim identification: hit / no-hit matching.")
