"""Casework commands: `mlax case ...`, `mlax cases`, `mlax attach`, `mlax download`,
`mlax forward`. All go through the SDK (node.client.cases), as a web console would."""

from __future__ import annotations

import json
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from exchange import forms
from exchange.case import Action
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError
from node.cli.common import (
    CredOpt,
    JsonOpt,
    cli_errors,
    console,
    fail,
    format_time,
    officer_client,
    print_json,
    print_table,
    say,
    warn,
)
from node.cli.safe_text import shown
from node.client import CaseSummary, CaseView, NodeCallError
from node.client.cases import ACTIONS, CaseClient

case_app = typer.Typer(no_args_is_help=True)

_TYPES = {t.value: t for t in forms.CaseType}
# The `mlax case` command that takes each action.
_COMMAND_OF = {
    "submit": "submit",
    "acknowledge": "ack",
    "request_info": "request-info",
    "provide_info": "provide-info",
    "accept": "accept",
    "refuse": "refuse",
    "start_execution": "start",
    "report_partial": "execute --partial",
    "report_executed": "execute",
    "withdraw": "withdraw",
    "close": "close",
}
_TYPE_HELP = ", ".join(_TYPES)


def _load_form_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise InvalidFieldError(f"{path} is not valid {path.suffix[1:].upper()}: {e}.") from None
    if not isinstance(data, dict):
        raise InvalidFieldError(f"{path} must hold one form (a table of fields).")
    return data


def _summary_line(s: CaseSummary) -> str:
    line = f"{s.case_ref}  {s.case_type}  {s.role} party with {s.peer}  state: {s.state}"
    if s.awaiting_approval:
        line += "  (awaiting a supervisor's approval)"
    if s.held_at:
        line += "  (on legal hold)"
    if s.pending_action:
        line += f"  (sending {s.pending_action}: {s.pending_delivery or 'queued'})"
    if len(s.queued_actions) > 1:
        waiting = ", ".join(s.queued_actions[1:])
        line += f"  (then {waiting}; {s.local_state} once all arrive)"
    if s.overdue:
        line += f"  OVERDUE: {', '.join(s.overdue)}"
    return line


def _say_field(label: str, value: str) -> None:
    """One `label: value` row of a form or step; a value of several lines goes below its
    label, each line indented further, so no line of it can pose as a row of its own."""
    lines = value.replace("\r\n", "\n").split("\n")
    if len(lines) == 1:
        say(f"  {label}: {value}")
        return
    say(f"  {label}:")
    for line in lines:
        say(f"      {line}")


def _print_case(view: CaseView) -> None:
    s = view.summary
    say(_summary_line(s))
    say(f"  urgency {s.urgency}; opened {format_time(s.opened_at)}; step {s.seq}")
    if s.ack_due:
        say(f"  acknowledgement due {format_time(s.ack_due)}")
    if s.response_due:
        say(f"  response due {format_time(s.response_due)}")
    if s.requested_deadline:
        say(f"  requested deadline {format_time(s.requested_deadline)}")
    if s.approved_by:
        say(f"  approved by {s.approved_by}")
    if s.last_error:
        say(f"  last problem: {s.last_error}")
    if s.held_at:
        why = f": {s.hold_reason}" if s.hold_reason else ""
        say(f"  on legal hold since {format_time(s.held_at)} by {s.held_by}{why}")
    if s.purged:
        say(f"  content (request and steps' details) {s.purged}")
    if s.allowed_actions:
        commands = dict.fromkeys(_COMMAND_OF.get(a, a) for a in s.allowed_actions)
        say(f"  you may: {', '.join(commands)}")
    if view.form is not None:
        say("Request:")
        for label, value in forms.describe_form(view.form):
            _say_field(label, value)
    table = Table(title=f"Timeline of {shown(s.case_ref)}")
    for col in ("step", "when (UTC)", "by", "action", "state after", "message"):
        table.add_column(col)
    for e in view.timeline:
        table.add_row(
            str(e.seq),
            format_time(e.at),
            shown(f"{e.agency} ({e.officer})" if e.officer else e.agency),
            shown(e.action.replace("_", "-")),
            shown(e.state_after),
            shown(e.message_id),
        )
    print_table(table)
    for e in view.timeline:
        if e.details is not None:
            rows = forms.describe_details(e.details)
            if rows:
                say(f"Step {e.seq} ({e.action.replace('_', '-')}):")
                for label, value in rows:
                    _say_field(label, value)
    if view.attachments:
        files = Table(title="Attachments")
        for col in ("attachment id", "name", "size", "direction", "state", "sha256"):
            files.add_column(col)
        for a in view.attachments:
            files.add_row(
                shown(a.attachment_id),
                shown(a.name),
                str(a.size),
                shown(a.direction),
                shown(a.purged or a.state),
                a.sha256.hex()[:16] + "…" if a.sha256 else "-",
            )
        print_table(files)


def _cases_client(cred: Path | None) -> CaseClient:
    return CaseClient(officer_client(cred))


def _done(view: CaseView, json_out: bool) -> None:
    if json_out:
        print_json(view.to_json())
    else:
        say(_summary_line(view.summary))


@case_app.command("new")
@cli_errors
def new(
    case_type: Annotated[str, typer.Option("--type", help=f"One of: {_TYPE_HELP}.")],
    to: Annotated[str, typer.Option("--to", help="The requested agency's id.")] = "",
    form_file: Annotated[
        Path | None, typer.Option("--form", help="A TOML or JSON form (docs/forms.md).")
    ] = None,
    legal_basis: Annotated[
        list[str] | None, typer.Option("--legal-basis", help="Legal basis slug (repeat).")
    ] = None,
    offence: Annotated[
        list[str] | None, typer.Option("--offence", help="An offence, described (repeat).")
    ] = None,
    facts: Annotated[str | None, typer.Option("--facts", help="Summary of the facts.")] = None,
    assistance: Annotated[
        list[str] | None, typer.Option("--assistance", help="Assistance sought slug (repeat).")
    ] = None,
    urgency: Annotated[str | None, typer.Option(help="emergency, urgent or ordinary.")] = None,
    urgency_reason: Annotated[str | None, typer.Option("--urgency-reason")] = None,
    deadline: Annotated[
        str | None, typer.Option("--deadline", help="Requested deadline (YYYY-MM-DD).")
    ] = None,
    contact: Annotated[str | None, typer.Option("--contact", help="Contact officer name.")] = None,
    contact_email: Annotated[str | None, typer.Option("--contact-email")] = None,
    language: Annotated[str | None, typer.Option(help="Language of the request (BCP 47).")] = None,
    handling: Annotated[
        list[str] | None, typer.Option("--handling", help="Handling code (repeat).")
    ] = None,
    named: Annotated[
        list[str] | None, typer.Option("--named", help="Officer allowed to read (repeat).")
    ] = None,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Draft a new case from a form file and/or flags; it stays here until submitted."""
    if case_type not in _TYPES:
        fail(f"--type must be one of {_TYPE_HELP}.", 2)
    data: dict[str, Any] = _load_form_file(form_file) if form_file else {}
    flags: dict[str, Any] = {
        "legal_basis": legal_basis or None,
        "offences": [{"description": o} for o in offence] if offence else None,
        "summary_of_facts": facts,
        "assistance_sought": assistance or None,
        "urgency": urgency,
        "urgency_reason": urgency_reason,
        "requested_deadline": deadline,
        "language": language,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if contact or contact_email:
        officer = dict(data.get("contact_officer") or {})
        officer.update({k: v for k, v in (("name", contact), ("email", contact_email)) if v})
        data["contact_officer"] = officer
    cases = _cases_client(cred)
    with cases.client:
        agency = cases.client.credential.agency
        data.setdefault("requesting_authority", {"agency_id": agency, "name": agency})
        if to:
            data.setdefault("requested_authority", {"agency_id": to, "name": to})
        form = forms.form_from_mapping(_TYPES[case_type], data, now_ms=now_ms())
        view = cases.create(
            form, recipient=to, handling=tuple(handling or ()), restricted_to=tuple(named or ())
        )
    if json_out:
        print_json(view.to_json())
    else:
        say(f"Drafted case {view.summary.case_ref} (not sent: `mlax case submit` sends it).")


def _act(
    case_ref: str,
    action: Action,
    details: dict[str, Any],
    cred: Path | None,
    json_out: bool,
    expected_seq: int = 0,
) -> None:
    built = forms.details_from_mapping(action, details) if action is not Action.SUBMIT else None
    cases = _cases_client(cred)
    with cases.client:
        view = cases.act(case_ref, action.value, built, expected_seq)
    _done(view, json_out)


SeqOpt = Annotated[
    int,
    typer.Option(
        "--expected-step", help="Refuse if the case moved past this step (0: don't check)."
    ),
]


@case_app.command("submit")
@cli_errors
def submit(case_ref: str, cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """Send a draft; where four-eyes applies it waits for a supervisor's approval."""
    _act(case_ref, Action.SUBMIT, {}, cred, json_out)


@case_app.command("approve")
@cli_errors
def approve(case_ref: str, cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """Supervisor: sign and send a draft another officer submitted (four-eyes)."""
    cases = _cases_client(cred)
    with cases.client:
        view = cases.approve(case_ref)
    _done(view, json_out)


@case_app.command("ack")
@cli_errors
def ack(
    case_ref: str,
    reference: Annotated[str, typer.Option(help="Your own file reference.")] = "",
    note: Annotated[str, typer.Option()] = "",
    expected_step: SeqOpt = 0,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requested party: acknowledge receipt of a request."""
    details = {k: v for k, v in (("reference", reference), ("note", note)) if v}
    _act(case_ref, Action.ACKNOWLEDGE, details, cred, json_out, expected_step)


@case_app.command("request-info")
@cli_errors
def request_info(
    case_ref: str,
    question: Annotated[list[str], typer.Option("--question", help="A question (repeat).")],
    reply_by: Annotated[str, typer.Option("--reply-by", help="YYYY-MM-DD.")] = "",
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requested party: ask for more information (pauses the response clock)."""
    details: dict[str, Any] = {"questions": question}
    if reply_by:
        details["reply_by"] = reply_by
    _act(case_ref, Action.REQUEST_INFO, details, cred, json_out)


@case_app.command("provide-info")
@cli_errors
def provide_info(
    case_ref: str,
    answers: Annotated[str, typer.Option("--answers", help="The answers.")],
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requesting party: answer a request for more information."""
    _act(case_ref, Action.PROVIDE_INFO, {"answers": answers}, cred, json_out)


@case_app.command("accept")
@cli_errors
def accept(
    case_ref: str,
    condition: Annotated[
        list[str] | None, typer.Option("--condition", help="A condition of use (repeat).")
    ] = None,
    note: Annotated[str, typer.Option()] = "",
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requested party: accept the request for execution."""
    details: dict[str, Any] = {"conditions": condition} if condition else {}
    if note:
        details["note"] = note
    _act(case_ref, Action.ACCEPT, details, cred, json_out)


@case_app.command("refuse")
@cli_errors
def refuse(
    case_ref: str,
    ground: Annotated[list[str], typer.Option("--ground", help="Refusal ground slug (repeat).")],
    explanation: Annotated[str, typer.Option("--explanation", help="The reasons, stated.")],
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requested party: refuse, on stated grounds."""
    details = {"grounds": ground, "explanation": explanation}
    _act(case_ref, Action.REFUSE, details, cred, json_out)


@case_app.command("start")
@cli_errors
def start(
    case_ref: str,
    authority: Annotated[str, typer.Option("--authority", help="Executing authority.")] = "",
    note: Annotated[str, typer.Option()] = "",
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requested party: start executing an accepted request."""
    details = {k: v for k, v in (("executing_authority", authority), ("note", note)) if v}
    _act(case_ref, Action.START_EXECUTION, details, cred, json_out)


@case_app.command("execute")
@cli_errors
def execute(
    case_ref: str,
    summary: Annotated[str, typer.Option("--summary", help="What was done.")],
    partial: Annotated[bool, typer.Option("--partial", help="More will follow.")] = False,
    assistance: Annotated[
        list[str] | None, typer.Option("--assistance", help="Assistance executed slug (repeat).")
    ] = None,
    evidence: Annotated[
        list[str] | None,
        typer.Option("--evidence", help="Attachment id sent with this case (repeat)."),
    ] = None,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requested party: report partial (--partial) or full execution, citing evidence."""
    details: dict[str, Any] = {"summary": summary}
    if assistance:
        details["assistance_executed"] = assistance
    if evidence:
        cases = _cases_client(cred)
        with cases.client:
            files = {a.attachment_id: a for a in cases.get(case_ref).attachments}
        refs = []
        for attachment_id in evidence:
            a = files.get(attachment_id)
            if a is None:
                fail(f"Case {case_ref} has no attachment {attachment_id}.")
            refs.append(
                {
                    "attachment_id": a.attachment_id,
                    "name": a.name,
                    "sha256": a.sha256.hex(),
                    "size": a.size,
                }
            )
        details["evidence"] = refs
    action = Action.REPORT_PARTIAL if partial else Action.REPORT_EXECUTED
    _act(case_ref, action, details, cred, json_out)


@case_app.command("withdraw")
@cli_errors
def withdraw(
    case_ref: str,
    reason: Annotated[str, typer.Option("--reason", help="Why the request is withdrawn.")],
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requesting party: withdraw the request."""
    _act(case_ref, Action.WITHDRAW, {"reason": reason}, cred, json_out)


@case_app.command("close")
@cli_errors
def close(
    case_ref: str,
    outcome: Annotated[str, typer.Option("--outcome")] = "",
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requesting party: close a settled case."""
    _act(case_ref, Action.CLOSE, {"outcome": outcome} if outcome else {}, cred, json_out)


@case_app.command("show")
@cli_errors
def show(
    case_ref: str,
    content: Annotated[
        bool, typer.Option("--content", help="Include the form and details (ledgered).")
    ] = False,
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A case's state, clocks, timeline and attachments."""
    cases = _cases_client(cred)
    with cases.client:
        view = cases.get(case_ref, content)
    if json_out:
        print_json(view.to_json())
    else:
        _print_case(view)


@case_app.command("hold")
@cli_errors
def hold(
    case_ref: str,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept on the case).")],
    cred: CredOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Supervisor: put a case on legal hold: none of its content is purged until released."""
    cases = _cases_client(cred)
    with cases.client:
        view = cases.hold(case_ref, reason)
    _done(view, json_out)


@case_app.command("release-hold")
@cli_errors
def release_hold(case_ref: str, cred: CredOpt = None, json_out: JsonOpt = False) -> None:
    """Supervisor: lift a case's legal hold; its retention periods apply again."""
    cases = _cases_client(cred)
    with cases.client:
        view = cases.release_hold(case_ref)
    _done(view, json_out)


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=not console.is_terminal,
        disable=not console.is_terminal,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(case_app, name="case", help="Draft, submit and answer MLA and extradition cases.")

    @app.command("cases")
    @cli_errors
    def cases_cmd(
        state: Annotated[
            list[str] | None, typer.Option("--state", help="Only cases in this state (repeat).")
        ] = None,
        peer: Annotated[str, typer.Option("--peer", help="Only cases with this agency.")] = "",
        overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue cases.")] = False,
        awaiting: Annotated[
            bool, typer.Option("--awaiting-approval", help="Only drafts awaiting approval.")
        ] = False,
        case_type: Annotated[str, typer.Option("--type", help=f"One of: {_TYPE_HELP}.")] = "",
        open_only: Annotated[bool, typer.Option("--open", help="Leave out closed cases.")] = False,
        limit: Annotated[int, typer.Option()] = 100,
        cred: CredOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """List cases, overdue legal clocks flagged."""
        client = _cases_client(cred)
        with client.client:
            found = client.cases(
                states=tuple(state or ()),
                peer=peer,
                overdue_only=overdue,
                awaiting_approval=awaiting,
                case_type=case_type,
                open_only=open_only,
                limit=limit,
            )
        if json_out:
            print_json([c.to_json() for c in found])
            return
        now = now_ms()
        table = Table(title="Cases")
        for col in ("case", "type", "role", "peer", "urgency", "state", "due (UTC)", "flags"):
            table.add_column(col)
        for c in found:
            due = min((d for d in (c.ack_due, c.response_due) if d), default=0)
            flags = []
            clocks = c.clocks(now)
            late = [k.name for k in clocks if k.status == "overdue"]
            soon = [k.name for k in clocks if k.status == "due-soon"]
            if late:
                flags.append("[bold red]OVERDUE " + shown(",".join(late)) + "[/]")
            if soon:
                flags.append("[yellow]due soon " + shown(",".join(soon)) + "[/]")
            if c.awaiting_approval:
                flags.append("awaiting approval")
            if c.pending_action:
                flags.append(f"sending {shown(c.pending_action)}")
            table.add_row(
                shown(c.case_ref),
                shown(c.case_type),
                shown(c.role),
                shown(c.peer),
                shown(c.urgency),
                shown(c.state),
                format_time(due) if due else "-",
                " ".join(flags),
            )
        print_table(table)

    @app.command("attach")
    @cli_errors
    def attach(
        case_ref: str,
        file: Path,
        description: Annotated[str, typer.Option()] = "",
        handling: Annotated[
            list[str] | None, typer.Option("--handling", help="Handling code (repeat).")
        ] = None,
        named: Annotated[
            list[str] | None, typer.Option("--named", help="Officer allowed to read (repeat).")
        ] = None,
        chunk_kib: Annotated[
            int, typer.Option("--chunk-kib", help="Chunk size, 256 to 1024 KiB.")
        ] = 1024,
        resume: Annotated[
            str, typer.Option("--resume", help="Resume this upload id after a failure.")
        ] = "",
        cred: CredOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Upload an evidence file to your node; it then goes to the case's other party."""
        if not file.is_file():
            fail(f"No such file: {file}.")
        client = _cases_client(cred)
        size = file.stat().st_size
        upload_id = resume or secrets.token_hex(16)
        with client.client, _bar() as bar:
            task = bar.add_task(f"upload {shown(file.name)}", total=size)
            try:
                status = client.attach(
                    case_ref,
                    file,
                    progress=lambda n: bar.update(task, completed=n),
                    chunk_size=chunk_kib * 1024,
                    upload_id=upload_id,
                    handling=tuple(handling or ()),
                    restricted_to=tuple(named or ()),
                    description=description,
                )
            except NodeCallError as e:
                if e.status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
                    warn(
                        f"Resume this upload with: mlax attach {case_ref} {file} "
                        f"--resume {upload_id}"
                    )
                raise
        if json_out:
            print_json(status.to_json())
        else:
            say(
                f"Attached {file.name} to {case_ref} as {status.attachment_id}; "
                f"it goes to the other party with message {status.message_id}."
            )

    @app.command("download")
    @cli_errors
    def download(
        case_ref: str,
        attachment: Annotated[str, typer.Argument(help="Attachment id, or its file name.")],
        out: Annotated[Path, typer.Option("--out", help="Where to save it.")],
        follow: Annotated[
            bool,
            typer.Option(
                "--follow",
                help="Start while the node is still receiving it, and follow it as it "
                "arrives (the file still appears only once complete and verified).",
            ),
        ] = False,
        cred: CredOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Save a case's attachment; the file appears only once its signed digest matches."""
        if out.exists():
            fail(f"{out} already exists; choose another --out.")
        client = _cases_client(cred)
        with client.client:
            files = client.get(case_ref).attachments
            chosen = [a for a in files if attachment in (a.attachment_id, a.name)]
            if not chosen:
                fail(f"Case {case_ref} has no attachment {attachment}.")
            if len(chosen) > 1:
                fail(f"Several attachments of {case_ref} are named {attachment}; give its id.")
            a = chosen[0]
            with _bar() as bar:
                task = bar.add_task(f"download {shown(a.name)}", total=a.size)
                info = client.download(
                    a.attachment_id,
                    out,
                    progress=lambda n: bar.update(task, completed=n),
                    follow=follow,
                )
        if json_out:
            print_json(info.to_json())
        else:
            say(f"Saved {a.name} to {out}: SHA-256 {info.sha256.hex()} verified.")

    @app.command("forward")
    @cli_errors
    def forward_cmd(
        message_id: str,
        to: Annotated[str, typer.Option("--to", help="The agency to pass it to.")],
        note: Annotated[str, typer.Option()] = "",
        cred: CredOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Pass an inbound note to another agency, if its handling codes allow."""
        client = _cases_client(cred)
        with client.client:
            m = client.forward(message_id, to, note)
        if json_out:
            print_json(m.to_json())
        else:
            say(f"Forwarded as {m.message_id} to {to}.")


__all__ = ["ACTIONS", "register"]
