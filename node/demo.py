"""`mlax demo`: a local three-agency federation that shows the product working.

Builds identities, a 2-of-3 signed directory and officer credentials, starts three real
node processes on loopback, runs an MLA request and its answer, shows the receipts,
then kills a node with SIGKILL while messages are queued to it, restarts it, and shows
that every message arrived exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from exchange.directory import Directory, verify_directory
from exchange.encoding import now_ms
from exchange.ledger.audit import verify_export
from exchange.receipt import Receipt
from keys.directory_file import read_signed_directory
from node.client import MessageInfo, OfficerClient
from node.federation import DEMO_AGENCIES, Federation, NodeProcess, build_federation

DEMO_PASSPHRASE = b"demo-node-passphrase"
DEMO_OFFICER_PASSPHRASE = b"demo-officer-passphrase"
# Checkpoints and witnessing every second or two, so the demo shows them within its run.
DEMO_LEDGER = "[ledger]\ncheckpoint_interval_seconds = 0.5\nwitness_interval_seconds = 1.0\n"

console = Console()


def _step(n: int, title: str) -> None:
    console.rule(f"[bold cyan]{n}. {title}")


def _wait(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


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


def _client(fed: Federation, agency: str, role: str = "officer") -> OfficerClient:
    return OfficerClient.from_bundle(
        fed.nodes[agency].credentials[role], DEMO_OFFICER_PASSPHRASE, timeout=10
    )


def run_demo(root: Path | None = None, keep: bool = False) -> None:
    workdir = root or Path(tempfile.mkdtemp(prefix="mlax-demo-"))
    env = dict(os.environ, MLAX_KEY_PASSPHRASE=DEMO_PASSPHRASE.decode())
    nodes: dict[str, NodeProcess] = {}
    clients: list[OfficerClient] = []
    try:
        _step(1, "Three agencies create their identities; three administrators sign the directory")
        started = time.monotonic()
        fed = build_federation(
            workdir, DEMO_PASSPHRASE, DEMO_OFFICER_PASSPHRASE, extra_config=DEMO_LEDGER
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
            proc.wait_ready(60)
            pid = proc.proc.pid if proc.proc else "-"
            console.print(
                f"  {agency:10} federation 127.0.0.1:{proc.setup.federation_port}  "
                f"officer 127.0.0.1:{proc.setup.officer_port}  pid {pid}"
            )
        gb, fr, ng = (_client(fed, a) for a, _ in DEMO_AGENCIES)
        clients += [gb, fr, ng]

        _step(3, "A UK liaison officer sends an MLA request to France")
        request = gb.send(
            "FR-OCRTEH",
            subject="MLA request: bank records, Operation Meridian",
            text=(
                "Under UNTOC art. 18 we request the account records of two companies suspected "
                "of laundering the proceeds of forced labour in agriculture. Deadline 30 days."
            ),
            message_type="note",
            case_ref="GB-2026-0042",
            handling=("no-onward-transmission",),
        )
        console.print(f"  queued {request.message_id} (sealed with HPKE to France's key)")
        _wait(
            "delivery", lambda: gb.show(request.message_id, content=False).info.state == "delivered"
        )
        detail = gb.show(request.message_id, content=False)
        receipt = Receipt.from_bytes(detail.evidence.receipt).parsed()
        verdict = (
            "[green]verified[/]" if detail.evidence.receipt_verified else "[red]NOT verified[/]"
        )
        stored = dt.datetime.fromtimestamp(receipt.received_at / 1000, dt.UTC)
        console.print(
            Panel.fit(
                f"state: [green]delivered[/]\n"
                f"receipt signed by {receipt.receiver} with key {receipt.receiver_key_id}: "
                f"{verdict}\n"
                f"stored at {stored:%H:%M:%S.%f} UTC "
                f"as entry {receipt.ledger_index} of France's audit ledger\n"
                f"envelope digest {detail.evidence.envelope_digest}\n"
                f"submit to receipt: {detail.info.delivered_at - detail.info.created_at} ms",
                title="Delivery evidence at the sender",
            )
        )

        _step(4, "France reads the request and answers")
        inbound = fr.inbox()
        console.print(_messages_table("France's inbox", inbound))
        read = fr.show(request.message_id)
        console.print(f"  [bold]{read.subject}[/]\n  {read.text}")
        console.print(
            f"  handling codes: {', '.join(read.info.handling_codes)} (the read is ledgered)"
        )
        answer = fr.reply(
            request.message_id, text="Acknowledged. Records requested from two banks."
        )
        _wait("the answer", lambda: any(m.message_id == answer.message_id for m in gb.inbox()))
        got = gb.show(answer.message_id)
        console.print(f"  UK receives: [bold]{got.subject}[/] — {got.text}")
        console.print(f"  (in reply to {got.info.in_reply_to})")

        _step(5, "Crash: France's node is killed with SIGKILL while the UK sends more")
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
        time.sleep(1.5)
        outbox = [
            m
            for m in gb.outbox(20)
            if m.message_id in {q.message_id for q in queued} | {to_nigeria.message_id}
        ]
        console.print(_messages_table("UK outbox while France is down", outbox))
        console.print(
            "  A dead peer delays only its own messages: Nigeria's was delivered at once."
        )

        _step(6, "France's node restarts; the queued messages arrive exactly once")
        nodes["FR-OCRTEH"].start()
        ids = {q.message_id for q in queued}
        _wait(
            "redelivery",
            lambda: all(m.state == "delivered" for m in gb.outbox(20) if m.message_id in ids),
        )
        inbox_ids = [m.message_id for m in fr.inbox(100)]
        for q in queued:
            console.print(f"  {q.message_id}: received {inbox_ids.count(q.message_id)} time(s)")
        if any(inbox_ids.count(q.message_id) != 1 for q in queued):
            raise RuntimeError("a message was lost or duplicated")
        if not all(gb.show(q.message_id, content=False).evidence.receipt_verified for q in queued):
            raise RuntimeError("a receipt did not verify")
        console.print("  [green]every message delivered exactly once, every receipt verified[/]")

        _step(7, "Audit: every node's ledger is signed, witnessed by its peers and verified")
        _wait(
            "France's checkpoint to cover the last delivery",
            lambda: (p := gb.delivery_proof(queued[-1].message_id)).verified and p.cosignatures > 0,
            timeout=30,
        )
        proof = gb.delivery_proof(queued[-1].message_id)
        console.print(
            f"  UK checks France's ledger: entry {proof.ledger_index} records the delivery, in "
            f"France's signed checkpoint of {proof.tree_size} entries "
            f"([green]inclusion proof verified[/], {proof.cosignatures} cosignature(s))"
        )
        time.sleep(2.5)  # one more checkpoint and witnessing round
        table = Table(title="mlax audit verify (auditor credential on each node)")
        for col in ("agency", "entries", "checkpoints", "cosigned by", "result"):
            table.add_column(col)
        for agency, _ in DEMO_AGENCIES:
            with _client(fed, agency, "auditor") as auditor:
                report = verify_export(auditor.export_ledger(), trusted_directory=directory)
            witnesses = ", ".join(f"{a} ({n})" for a, n in sorted(report.cosigned_by.items()))
            verdict = "[green]OK[/]" if report.ok else f"[red]{report.problems[0].detail}[/]"
            table.add_row(agency, str(report.entries), str(report.checkpoints), witnesses, verdict)
            if not report.ok:
                raise RuntimeError(f"the ledger of {agency} does not verify")
        console.print(table)

        _step(8, "Clean shutdown (SIGTERM: in-flight calls finish, then the worker and database)")
    finally:
        for c in clients:
            c.close()
        for agency, proc in nodes.items():
            code = proc.stop()
            console.print(f"  {agency} stopped (exit {code})")
        if keep or root is not None:
            console.print(f"Files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
