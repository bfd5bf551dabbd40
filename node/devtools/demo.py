"""`mlax demo`: a local three-agency federation that shows the product working.

Builds identities, a 2-of-3 signed directory and officer credentials, and starts three
real node processes on loopback, and shows each node's readiness. Then: an MLA case with
four-eyes approval, a request for information and evidence sent and downloaded; an
extradition case; a note that its handling code keeps from being forwarded; victim
identification (hit, no hit, follow-up and disclosure); a node killed with SIGKILL while
messages are queued to it, restarted, and every message arriving exactly once; a
differentially private statistics release, approved and combined into the federation
table; an online backup of a running node; the audit of all three ledgers.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from exchange import forms
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.case import Action
from exchange.directory import Directory, verify_directory
from exchange.encoding import now_ms
from exchange.errors import MlaxError, Status
from exchange.ledger.audit import AuditReport, verify_export
from keys.directory_file import read_signed_directory
from node.client import CaseSummary, CaseView, MessageInfo, NodeCallError, OfficerClient
from node.client.cases import CaseClient
from node.client.matching import MatchClient
from node.client.stats import StatsClient
from node.config import load_config
from node.devtools.federation import DEMO_AGENCIES, Federation, NodeProcess, build_federation
from node.storage.backup import backup, read_manifest

DEMO_PASSPHRASE = b"demo-node-passphrase"
DEMO_OFFICER_PASSPHRASE = b"demo-officer-passphrase"
# Checkpoints and witnessing every second or two, so the demo shows them within its run.
DEMO_LEDGER = "[ledger]\ncheckpoint_interval_seconds = 0.5\nwitness_interval_seconds = 1.0\n"
# Every wait is a poll against a deadline, never a fixed sleep. The deadlines are far above
# what an idle laptop needs (a few seconds) so that the demo also passes on a loaded
# 2-core machine (tests/integration/test_demo_under_load.py).
WAIT_SECONDS = 180.0
NODE_START_SECONDS = 180.0
NODE_STOP_SECONDS = 60.0
CALL_SECONDS = 60.0  # deadline of one call to a node (an 8 MiB upload is one call)

console = Console()


class DemoError(MlaxError):
    """The demo did not see what it shows: the CLI prints this sentence and exits 1."""

    status = Status.FAILED_PRECONDITION


# Fictional requests (every name and reference is invented); deploy/forms has full ones.
MLA_FORM: dict[str, object] = {
    "requesting_authority": {"agency_id": "GB-NCA", "name": "National Crime Agency"},
    "requested_authority": {"agency_id": "NG-NAPTIP", "name": "NAPTIP"},
    "legal_basis": ["untoc-art18", "palermo-protocol"],
    "urgency": "urgent",
    "urgency_reason": "The suspect is expected to move the proceeds abroad.",
    "summary_of_facts": (
        "Eleven women recruited in Benin City were made to work 80-hour weeks in Salford; "
        "their wages went to accounts in Nigeria controlled by the suspects."
    ),
    "offences": [
        {
            "description": "Human trafficking for labour exploitation.",
            "legal_provision": "Modern Slavery Act 2015, s. 2",
            "maximum_penalty": "Life imprisonment",
        }
    ],
    "assistance_sought": ["banking-records", "freezing-of-assets"],
    "contact_officer": {"name": "DS Helen Marsh", "email": "helen.marsh@nca.example"},
    "language": "en",
}
DEMO_VICTIMS = """ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth
NG-V-0001,Blessing,Okonkwo,F,1999-04-12,NGA,Benin City
NG-V-0002,Олена,Шевченко,F,2001-11-03,UKR,Kharkiv
NG-V-0003,Mohammed,Al-Rashid,M,1995,SYR,Aleppo
"""
EXTRADITION_FORM: dict[str, object] = {
    "kind": "provisional-arrest",
    "requesting_authority": {"agency_id": "GB-NCA", "name": "National Crime Agency"},
    "requested_authority": {"agency_id": "FR-OCRTEH", "name": "OCRTEH"},
    "legal_basis": ["european-extradition-convention-1957"],
    "urgency": "urgent",
    "urgency_reason": "The person sought is about to leave France.",
    "summary_of_facts": "The recruiter of the eleven women is in Lyon under a false name.",
    "person_sought": {
        "family_name": "IGBINEDION",
        "given_names": "Efosa Daniel",
        "nationalities": ["NG"],
        "last_known_location": "Lyon",
    },
    "warrants_or_judgments": [
        {
            "kind": "arrest-warrant",
            "reference": "WMC/2026/118342",
            "issuing_authority": "Westminster Magistrates' Court",
            "issued_on": "2026-10-02",
        }
    ],
    "offences": [
        {
            "description": "Human trafficking for labour exploitation.",
            "legal_provision": "Modern Slavery Act 2015, s. 2",
            "maximum_penalty": "Life imprisonment",
        }
    ],
    "contact_officer": {"name": "DS Helen Marsh", "email": "helen.marsh@nca.example"},
    "language": "en",
}


def _step(n: int, title: str) -> None:
    console.rule(f"[bold cyan]{n}. {title}")


def _wait(
    what: str, check: Callable[[], bool], timeout: float = WAIT_SECONDS, every: float = 0.1
) -> None:
    """Poll `check` until it is true; DemoError once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            if check():
                return
        except NodeCallError as e:  # e.g. the case has not reached the peer yet
            last = f" (last answer: {e.status})"
        if time.monotonic() >= deadline:
            raise DemoError(f"The demo waited {timeout:.0f} s for {what} in vain{last}.")
        time.sleep(every)


def _ready(proc: NodeProcess) -> None:
    """Wait for a started node to listen; DemoError naming its log if it does not."""
    try:
        proc.wait_ready(NODE_START_SECONDS)
    except (RuntimeError, TimeoutError) as e:
        verb = "exited" if isinstance(e, RuntimeError) else "did not start in time"
        raise DemoError(f"The {proc.setup.agency} node {verb}; see {proc.log_path}.") from e


def _witnessed_audit(agency: str, auditor: OfficerClient, directory: Directory) -> AuditReport:
    """An auditor's check of a node's ledger, once every peer has cosigned a checkpoint of it."""
    seen: list[AuditReport] = []

    def witnessed() -> bool:
        seen[:] = [verify_export(auditor.export_ledger(), trusted_directory=directory)]
        return not seen[0].ok or len(seen[0].cosigned_by) >= len(DEMO_AGENCIES) - 1

    _wait(f"{agency}'s checkpoints to be cosigned by its peers", witnessed, every=0.5)
    return seen[0]


def _messages_table(title: str, messages: list[MessageInfo]) -> Table:
    table = Table(title=title)
    for col in ("message id", "peer", "type", "case", "state", "tries", "last error"):
        table.add_column(col, no_wrap=col != "last error")
    for m in messages:
        colour = {"delivered": "green", "received": "green", "retrying": "yellow"}.get(
            m.state, "red"
        )
        table.add_row(
            m.message_id[:8] + "…",
            m.peer,
            m.message_type,
            m.case_ref or "-",
            f"[{colour}]{m.state}[/]",
            str(m.attempts),
            (m.last_error or "")[:60],
        )
    return table


def _details(action: Action, **fields: object) -> fpb.TransitionDetails:
    return forms.details_from_mapping(action, fields)


def _ref(view: CaseView, attachment_id: str) -> dict[str, object]:
    a = next(a for a in view.attachments if a.attachment_id == attachment_id)
    return {
        "attachment_id": a.attachment_id,
        "name": a.name,
        "sha256": bytes(a.sha256).hex(),
        "size": a.size,
    }


def _wait_case(cases: CaseClient, ref: str, state: str) -> CaseView:
    seen: list[CaseView] = []

    def reached() -> bool:
        seen[:] = [cases.get(ref)]
        return seen[0].summary.state == state and not seen[0].summary.pending_action

    _wait(f"case {ref} to be {state}", reached)
    return seen[0]


def _timeline_table(view: CaseView) -> Table:
    table = Table(title=f"mlax case show {view.summary.case_ref}")
    for col in ("step", "by", "action", "state after", "digest"):
        table.add_column(col)
    for e in view.timeline:
        table.add_row(
            str(e.seq),
            f"{e.agency} ({e.officer})",
            e.action.replace("_", "-"),
            e.state_after,
            bytes(e.digest).hex()[:12] + "…",
        )
    return table


def _cases_table(cases: list[CaseSummary]) -> Table:
    table = Table(title="mlax cases (UK)")
    for col in ("case", "type", "peer", "urgency", "state", "approved by"):
        table.add_column(col)
    for c in cases:
        table.add_row(c.case_ref, c.case_type, c.peer, c.urgency, c.state, c.approved_by)
    return table


def _readiness_table(fed: Federation) -> Table:
    """Each node's readiness as `mlax node health` reads it: from its metrics endpoint
    (`mlax_ready`, `mlax_readiness_cause`), which answers even when the database is stuck."""
    from node.health import metrics_url, scrape_readiness

    table = Table(title="mlax node health")
    for col in ("agency", "ready", "causes"):
        table.add_column(col)
    for agency, setup in fed.nodes.items():
        ready, values, _ = scrape_readiness(metrics_url(f"127.0.0.1:{setup.metrics_port}"))
        causes = sorted(name for name, value in values.items() if value)
        shown = "[green]ready[/]" if ready == 1 and not causes else "[red]not ready[/]"
        table.add_row(agency, shown, ", ".join(causes) or "-")
    return table


def _stats_table(title: str, table: dict[str, Any], agency: str) -> Table:
    """Per statistics table of a federation table: cells with a value, cells every agency
    suppressed, and `agency`'s epsilon and noise's standard deviation."""
    out = Table(title=title)
    out.add_column("table", no_wrap=True)
    for col in ("shown", "suppressed", "epsilon", "noise sd"):
        out.add_column(col, justify="right")
    for share in table["per_agency"]:
        if share["agency"] != agency:
            continue
        name = share["table"]
        out.add_row(
            name,
            str(sum(c["table"] == name for c in table["cells"])),
            str(table["suppressed"].get(name, 0)),
            f"{share['epsilon']:.3f}",
            f"{share['noise_sd']:.1f}",
        )
    return out


def _client(fed: Federation, agency: str, role: str = "officer") -> OfficerClient:
    return OfficerClient.from_bundle(
        fed.nodes[agency].credentials[role], DEMO_OFFICER_PASSPHRASE, timeout=CALL_SECONDS
    )


def _serve_consoles(fed: Federation, env: dict[str, str], step: int) -> None:
    """Keep the federation up with a web console per demo officer until Ctrl-C/SIGTERM."""
    from node.devtools.consoles import start_consoles

    stop: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    consoles = start_consoles(
        fed, dict(env, MLAX_OFFICER_PASSPHRASE=DEMO_OFFICER_PASSPHRASE.decode())
    )
    try:
        _step(step, "The web console: work the same federation in your browser")
        console.print("  Open a link in your browser; each signs in once (a new one is printed")
        console.print("  at sign-out by the console itself):")
        for c in consoles:
            url = c.sign_in_url(NODE_START_SECONDS)
            console.print(f"  {c.agency} {c.role}: {url}", soft_wrap=True, highlight=False)
        console.print(
            "  Each console is `mlax console --credential <file>` for one officer (passphrase "
            f"{DEMO_OFFICER_PASSPHRASE.decode()!r}). Press Ctrl-C to stop the federation."
        )
        while not stop:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for c in consoles:
            c.stop()
        signal.signal(signal.SIGTERM, previous)


def run_demo(root: Path | None = None, keep: bool = False, consoles: bool = False) -> None:
    workdir = root or Path(tempfile.mkdtemp(prefix="mlax-demo-"))
    env = dict(os.environ, MLAX_KEY_PASSPHRASE=DEMO_PASSPHRASE.decode())
    nodes: dict[str, NodeProcess] = {}
    clients: list[OfficerClient] = []
    finished = False
    try:
        _step(1, "Three agencies create their identities; three administrators sign the directory")
        started = time.monotonic()
        fed = build_federation(
            workdir,
            DEMO_PASSPHRASE,
            DEMO_OFFICER_PASSPHRASE,
            extra_config=DEMO_LEDGER,
            metrics=True,
        )
        signed = read_signed_directory(fed.directory_file)
        directory: Directory = verify_directory(signed.to_bytes(), None, now_ms())
        table = Table(
            title=f"Federation directory '{directory.federation_id}' v{directory.version}"
        )
        for col in ("agency", "name", "node endpoint", "keys"):
            table.add_column(col)
        for card in directory.agencies:
            algs = ", ".join(k.algorithm.label for k in (*card.signing_keys, *card.encryption_keys))
            table.add_row(card.agency_id, card.name[:40], card.endpoint, algs)
        console.print(table)
        console.print(
            f"Signed by {len(signed.signatures)} of {len(directory.admins)} administrators "
            f"(threshold {directory.threshold}) and verified. Private keys are encrypted with "
            f"Argon2id, files 0600 ({time.monotonic() - started:.1f} s). Files: {workdir}"
        )

        _step(2, "Each agency starts its node (real processes, mutual TLS, SQLite)")
        for agency, setup in fed.nodes.items():
            nodes[agency] = NodeProcess(setup, env)
            nodes[agency].start(wait=0)
        for agency, proc in nodes.items():
            _ready(proc)
            pid = proc.proc.pid if proc.proc else "-"
            console.print(
                f"  {agency:10} federation 127.0.0.1:{proc.setup.federation_port}  "
                f"officer 127.0.0.1:{proc.setup.officer_port}  pid {pid}"
            )
        gb, fr, ng = (_client(fed, a) for a, _ in DEMO_AGENCIES)
        clients += [gb, fr, ng]

        _step(3, "Readiness: each node says whether it is fit to take work")
        console.print(_readiness_table(fed))
        console.print(
            "  Read from each node's metrics endpoint (mlax_ready, mlax_readiness_cause): "
            "ready while the database takes writes, the disk has room, and the directory, "
            "keys and TLS certificate are valid. A balancer asks the same of the gRPC "
            "health service mlax.v1.Readiness."
        )

        _step(4, "An MLA request, drafted, approved by a supervisor (four-eyes) and sent")
        gb_cases, ng_cases = CaseClient(gb), CaseClient(ng)
        gb_sup = _client(fed, "GB-NCA", "supervisor")
        clients.append(gb_sup)
        mla = forms.form_from_mapping(forms.CaseType.MLA, MLA_FORM, now_ms=now_ms())
        ref = gb_cases.create(mla, handling=("no-onward-transmission",)).summary.case_ref
        console.print(f"  drafted {ref}: {', '.join(v for _, v in forms.describe_form(mla)[:2])}")
        gb_cases.act(ref, "submit")
        console.print(
            f"  submitted: [yellow]waiting for a supervisor[/] ({ref} stays on the UK node)"
        )
        CaseClient(gb_sup).approve(ref)
        console.print("  gb-nca-supervisor signs the approval with their credential; it is sent")
        _wait_case(ng_cases, ref, "submitted")

        _step(5, "Nigeria works the case: acknowledge, ask, accept, execute with evidence")
        ng_cases.act(ref, "acknowledge", _details(Action.ACKNOWLEDGE, reference="NAPTIP/2026/117"))
        _wait_case(gb_cases, ref, "acknowledged")
        ng_cases.act(
            ref,
            "request-info",
            _details(Action.REQUEST_INFO, questions=["Full names of witnesses W1 and W2?"]),
        )
        _wait_case(gb_cases, ref, "more_info_requested")
        gb_cases.act(
            ref, "provide-info", _details(Action.PROVIDE_INFO, answers="Annex 2 lists them.")
        )
        _wait_case(ng_cases, ref, "acknowledged")
        ng_cases.act(ref, "accept", _details(Action.ACCEPT, conditions=["Speciality rule."]))
        _wait_case(gb_cases, ref, "accepted")
        ng_cases.act(ref, "start-execution")
        _wait_case(gb_cases, ref, "in_execution")
        evidence = workdir / "bank-records-eko-commercial.csv"
        with evidence.open("wb") as f:
            for _ in range(8):
                f.write(os.urandom(1 << 20))
        up = ng_cases.attach(ref, evidence)
        console.print(
            f"  Nigeria uploads {evidence.name} (8 MiB): encrypted chunk by chunk, its SHA-256 "
            "signed in the envelope"
        )
        _wait(
            "the evidence",
            lambda: any(
                a.attachment_id == up.attachment_id and a.state == "available"
                for a in gb_cases.get(ref).attachments
            ),
        )
        ng_cases.act(
            ref,
            "report-executed",
            _details(
                Action.REPORT_EXECUTED,
                summary="Bank records produced; accounts frozen.",
                evidence=[_ref(ng_cases.get(ref), up.attachment_id)],
            ),
        )
        _wait_case(gb_cases, ref, "executed")
        saved = workdir / "received-bank-records.csv"
        gb_cases.download(up.attachment_id, saved)
        console.print(f"  UK downloads the evidence: SHA-256 [green]verified[/] ({saved.name})")
        gb_cases.act(ref, "close", _details(Action.CLOSE, outcome="Evidence received."))
        gb_view, ng_view = _wait_case(gb_cases, ref, "closed"), _wait_case(ng_cases, ref, "closed")
        console.print(_timeline_table(gb_view))
        same = gb_view.summary.head_digest == ng_view.summary.head_digest
        console.print(
            f"  both nodes hold the same signed history: head digest "
            f"{bytes(gb_view.summary.head_digest).hex()[:16]}… "
            + ("[green]identical[/]" if same else "[red]DIFFERENT[/]")
        )
        if not same:
            raise DemoError("The two nodes disagree on the case history.")

        _step(6, "An extradition request to France: provisional arrest, executed and closed")
        fr_cases = CaseClient(fr)
        ext = forms.form_from_mapping(forms.CaseType.EXTRADITION, EXTRADITION_FORM, now_ms=now_ms())
        eref = gb_cases.create(ext).summary.case_ref
        gb_cases.act(eref, "submit")
        CaseClient(gb_sup).approve(eref)
        _wait_case(fr_cases, eref, "submitted")
        for action, state in (
            ("acknowledge", "acknowledged"),
            ("accept", "accepted"),
            ("start-execution", "in_execution"),
        ):
            fr_cases.act(eref, action)
            _wait_case(gb_cases, eref, state)
        arrest_file = workdir / "arrest-report.pdf"
        arrest_file.write_bytes(os.urandom(300_000))
        arrest = fr_cases.attach(eref, arrest_file)
        _wait(
            "the arrest report",
            lambda: any(a.state == "available" for a in gb_cases.get(eref).attachments),
        )
        fr_cases.act(
            eref,
            "report-executed",
            _details(
                Action.REPORT_EXECUTED,
                summary="Person sought arrested in Lyon; hearing set.",
                evidence=[_ref(fr_cases.get(eref), arrest.attachment_id)],
            ),
        )
        _wait_case(gb_cases, eref, "executed")
        gb_cases.act(eref, "close")
        _wait_case(fr_cases, eref, "closed")
        console.print(_cases_table(gb_cases.cases()))

        _step(7, "Handling codes: a note marked no-onward-transmission cannot be forwarded")
        note = gb.send(
            "FR-OCRTEH",
            subject="Source protection",
            text="The informant's identity must not leave your service.",
            handling=("no-onward-transmission",),
        )
        _wait("the note", lambda: gb.show(note.message_id, content=False).info.state == "delivered")
        evidence_of = gb.show(note.message_id, content=False).evidence
        console.print(
            "  delivered: France's signed receipt "
            + ("[green]verified[/]" if evidence_of.receipt_verified else "[red]NOT verified[/]")
            + f", entry {evidence_of.ledger_index} of France's audit ledger"
        )
        try:
            fr_cases.forward(note.message_id, "NG-NAPTIP")
            raise DemoError("A note marked no-onward-transmission was forwarded.")
        except NodeCallError as e:
            console.print(
                f"  France tries to forward it to Nigeria: [red]{e.status}[/] {e.message}"
            )
            console.print("  (the attempt is in France's audit ledger)")

        _step(8, "Victim identification: hit / no hit, then a formal follow-up")
        records = workdir / "naptip-victims.csv"
        records.write_text(DEMO_VICTIMS, encoding="utf-8")
        ng_match, gb_match = MatchClient(ng), MatchClient(gb)
        hit, sought, asked = "", {}, 0
        loaded = ng_match.load(records)
        console.print(
            f"  Nigeria loads {loaded.records} victim records: they stay on its node; peers "
            "get only OPRF-encoded match tokens under Nigeria's key"
        )
        for who in (
            {"given_name": "Olena", "family_name": "Shevchenko", "date_of_birth": "2001-11-03"},
            {"given_name": "Maria", "family_name": "Gonzalez", "date_of_birth": "1980-01-01"},
        ):
            console.print(
                f"  UK asks the federation about {who['given_name']} {who['family_name']} "
                f"({who['date_of_birth']}); the names never leave the UK node:"
            )
            asked += 1
            for a in gb_match.query([who]):
                shown = (
                    f"HIT ({a.band}), reference {a.reference}" if a.result == "hit" else a.result
                )
                console.print(f"    {a.peer}: {shown}")
                if a.result == "hit":
                    hit, sought = a.reference, who
        if not hit:
            raise DemoError("The victim known to Nigeria was not found.")
        # The follow-up names the person the UK looked for: Nigeria checks it against the
        # record behind the reference before its supervisor discloses anything.
        follow = gb_match.follow_up(
            hit,
            person=sought,
            purpose="victim-assistance",
            justification="A possible victim found in Manchester needs assistance and protection.",
            contact={"name": "DS Helen Marsh", "email": "helen.marsh@nca.example"},
        )
        vref = follow.summary.case_ref
        CaseClient(gb_sup).approve(vref)
        _wait_case(ng_cases, vref, "submitted")
        for action, state in (
            ("acknowledge", "acknowledged"),
            ("accept", "accepted"),
            ("start-execution", "in_execution"),
        ):
            ng_cases.act(vref, action)
            _wait_case(gb_cases, vref, state)
        ng_sup = _client(fed, "NG-NAPTIP", "supervisor")
        clients.append(ng_sup)
        checked = MatchClient(ng_sup).check(vref)
        console.print(
            f"  Nigeria's supervisor checks the person the UK seeks against the record: "
            f"{checked.agreement}"
        )
        MatchClient(ng_sup).disclose(vref)
        _wait_case(gb_cases, vref, "executed")
        disclosed = next(
            e for e in gb_cases.get(vref, content=True).timeline if e.action == "report_executed"
        )
        console.print(
            f"  follow-up {vref}: approved at both ends; Nigeria's supervisor discloses:\n    "
            + (disclosed.details or fpb.TransitionDetails()).report.summary.replace("\n", "\n    ")
        )

        _step(9, "Crash: France's node is killed with SIGKILL while the UK sends more")
        nodes["FR-OCRTEH"].kill()
        console.print("  FR-OCRTEH node killed (kill -9); the UK keeps working")
        queued = [
            gb.send(
                "FR-OCRTEH",
                subject=f"Supplementary information {i + 1}",
                text=f"Additional detail number {i + 1} for the case.",
                message_type="note",
                case_ref="GB-2026-0042",
            )
            for i in range(5)
        ]
        to_nigeria = gb.send(
            "NG-NAPTIP",
            subject="Victim support contact",
            text="Requesting a contact point for victim support.",
            case_ref="GB-2026-0043",
        )
        _wait(
            "Nigeria's delivery",
            lambda: gb.show(to_nigeria.message_id, content=False).info.state == "delivered",
        )
        # Shown once every message to France has been tried and failed at least once.
        _wait(
            "the first attempts to reach France",
            lambda: all(
                m.state == "retrying"
                for m in gb.outbox(20)
                if m.message_id in {q.message_id for q in queued}
            ),
        )
        outbox = [
            m
            for m in gb.outbox(20)
            if m.message_id in {q.message_id for q in queued} | {to_nigeria.message_id}
        ]
        console.print(_messages_table("UK outbox while France is down", outbox))
        console.print(
            "  A dead peer delays only its own messages: Nigeria's was delivered at once."
        )

        _step(10, "France's node restarts; the queued messages arrive exactly once")
        nodes["FR-OCRTEH"].start(wait=0)
        _ready(nodes["FR-OCRTEH"])
        ids = {q.message_id for q in queued}
        _wait(
            "redelivery",
            lambda: all(m.state == "delivered" for m in gb.outbox(20) if m.message_id in ids),
        )
        inbox_ids = [m.message_id for m in fr.inbox(100)]
        for q in queued:
            console.print(f"  {q.message_id}: received {inbox_ids.count(q.message_id)} time(s)")
        if any(inbox_ids.count(q.message_id) != 1 for q in queued):
            raise DemoError("A message was lost or duplicated.")
        if not all(gb.show(q.message_id, content=False).evidence.receipt_verified for q in queued):
            raise DemoError("A receipt did not verify.")
        console.print("  [green]every message delivered exactly once, every receipt verified[/]")

        _step(11, "Statistics: the UK releases this year's figures with differential privacy")
        year = datetime.now(UTC).year
        start, end = f"{year}-01-01", f"{year}-12-31"
        drafted = StatsClient(gb).draft(start, end).summary
        if drafted is None:
            raise DemoError("The statistics release was not drafted.")
        console.print(
            f"  gb-nca-officer drafts a release of {start} to {end}: counts of the UK's cases "
            "and queries, with noise drawn now (OpenDP)"
        )
        final = StatsClient(gb_sup).approve(drafted.release_id)
        console.print(
            "  gb-nca-supervisor signs its digest (four-eyes): final, sent to the UK's peers"
        )
        ng_stats = StatsClient(ng)
        received: list[dict[str, Any]] = []

        def release_received() -> bool:
            received[:] = [ng_stats.federation(start, end)]
            return "GB-NCA" in received[0]["agencies"]

        _wait("Nigeria to receive the UK's release", release_received)
        table_of = received[0]
        console.print(
            _stats_table(
                f"mlax stats federation on Nigeria's node ({year})",
                table_of,
                "GB-NCA",
            )
        )
        threshold = int(final.document["privacy"]["threshold"])
        shown_cells, hidden = len(table_of["cells"]), sum(table_of["suppressed"].values())
        few = f"{len(gb_cases.cases())} cases and {asked} persons asked about"
        if not shown_cells:
            console.print(
                f"  cells whose noisy count is under {threshold} are suppressed: with {few}, "
                f"all {hidden} of them"
            )
        else:
            # A count is at most the number of cases or persons: all far below the threshold.
            console.print(
                f"  cells whose noisy count is under {threshold} are suppressed: {hidden} of "
                f"{hidden + shown_cells}. With {few}, every true count is under {threshold}: "
                f"the {shown_cells} shown are there by noise alone"
            )
        spent = next(b for b in final.budget if b.year == year)
        console.print(
            f"  epsilon {drafted.epsilon:g} spent; {year}'s budget {spent.budget:g}, "
            f"[green]{spent.left:g} left[/] (no true value is stored, logged or sent)"
        )

        _step(12, "Backup: the UK's node is backed up while it runs")
        uk = fed.nodes["GB-NCA"]
        done = backup(
            load_config(uk.config), uk.config, workdir / "backups" / "gb-nca", DEMO_PASSPHRASE
        )
        # checks the seal (under the node passphrase), then every file's size and SHA-256
        manifest = read_manifest(done.out, DEMO_PASSPHRASE)
        listed = manifest["files"]
        console.print(
            f"  mlax node backup: {len(listed)} files, {sum(f['size'] for f in listed):,} "
            f"bytes, ledger size {manifest['ledger']['size']} "
            "([green]manifest sealed under the node passphrase; every file matches its "
            "SHA-256[/])"
        )
        console.print(
            "  A consistent SQLite snapshot, then the evidence files, the encrypted key "
            "files and the config; `mlax node restore` checks them before writing anything."
        )

        _step(13, "Audit: every node's ledger is signed, witnessed by its peers and verified")
        _wait(
            "France's checkpoint to cover the last delivery",
            lambda: (p := gb.delivery_proof(queued[-1].message_id)).verified and p.cosignatures > 0,
        )
        proof = gb.delivery_proof(queued[-1].message_id)
        console.print(
            f"  UK checks France's ledger: entry {proof.ledger_index} records the delivery, in "
            f"France's signed checkpoint of {proof.tree_size} entries "
            f"([green]inclusion proof verified[/], {proof.cosignatures} cosignature(s))"
        )
        table = Table(title="mlax audit verify (auditor credential on each node)")
        for col in ("agency", "entries", "checkpoints", "cosigned by", "result"):
            table.add_column(col)
        for agency, _ in DEMO_AGENCIES:
            with _client(fed, agency, "auditor") as auditor:
                report = _witnessed_audit(agency, auditor, directory)
            witnesses = ", ".join(f"{a} ({n})" for a, n in sorted(report.cosigned_by.items()))
            verdict = "[green]OK[/]" if report.ok else f"[red]{report.problems[0].detail}[/]"
            table.add_row(agency, str(report.entries), str(report.checkpoints), witnesses, verdict)
            if not report.ok:
                console.print(table)
                raise DemoError(f"The audit ledger of {agency} does not verify.")
        console.print(table)

        if consoles:
            _serve_consoles(fed, env, 14)
        else:
            console.print(
                "  To work this federation in your browser: [bold]make demo-console[/] "
                "(or mlax demo --console: the same demo, then a web console per officer)."
            )
        _step(
            15 if consoles else 14,
            "Clean shutdown (SIGTERM: in-flight calls finish, then the worker and database)",
        )
        finished = True
    finally:
        for c in clients:
            c.close()
        for agency, proc in nodes.items():
            code = proc.stop(NODE_STOP_SECONDS)
            console.print(f"  {agency} stopped (exit {code})")
        if not finished:
            console.print(f"Files kept in {workdir} (node logs: {workdir}/*/node.log)")
        elif keep or root is not None:
            console.print(f"Files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
