"""Nothing lost, nothing done twice: sender and receiver killed with SIGKILL mid-run.

A few hundred messages go from GB-NCA to FR-OCRTEH while a chaos thread kills one node
or the other at random moments and restarts it. Officers retry failed submissions with
the same idempotency key, as the SDK allows. Afterwards every message has arrived
exactly once and every receipt verifies against the directory.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from exchange.directory import Directory
from exchange.encoding import parse_uuid
from exchange.receipt import Receipt, verify_receipt
from keys.directory_file import read_signed_directory
from node.client import NodeCallError, OfficerClient
from node.devtools.federation import DEMO_AGENCIES, NodeProcess, build_federation

pytestmark = pytest.mark.integration

PASS, OFFICER_PASS = b"node-pass", b"officer-pass"
MESSAGES = int(os.environ.get("MLAX_CRASH_MESSAGES", "200"))
ENV = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")


def _submit_all(
    client: OfficerClient, count: int, sent: dict[str, str], stop: threading.Event
) -> None:
    """Submit `count` messages, retrying each with its idempotency key until accepted."""
    for i in range(count):
        key = f"crash-{i}"
        while not stop.is_set():
            try:
                m = client.send(
                    "FR-OCRTEH",
                    subject=f"message {i}",
                    text=f"body {i} " + "x" * 1000,
                    message_type="note",
                    case_ref="CRASH-1",
                    idempotency_key=key,
                )
                sent[m.message_id] = key
                break
            except NodeCallError as e:
                # Only "the node is down" is worth retrying; any refusal fails the test.
                if e.status not in {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"}:
                    raise
                time.sleep(0.05)


def test_sigkill_sender_and_receiver_loses_and_duplicates_nothing(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    fed = build_federation(
        tmp_path,
        PASS,
        OFFICER_PASS,
        agencies=DEMO_AGENCIES[:2],
        db_urls=storage,
        delivery={"lease_seconds": 2.0, "rpc_timeout_seconds": 1.5},
    )
    gb = NodeProcess(fed.nodes["GB-NCA"], ENV)
    fr = NodeProcess(fed.nodes["FR-OCRTEH"], ENV)
    gb.start()
    fr.start()
    sender = OfficerClient.from_bundle(fed.nodes["GB-NCA"].credentials["officer"], OFFICER_PASS, 5)
    receiver = OfficerClient.from_bundle(
        fed.nodes["FR-OCRTEH"].credentials["officer"], OFFICER_PASS, 10
    )
    sent: dict[str, str] = {}
    stop = threading.Event()
    submitter = threading.Thread(target=_submit_all, args=(sender, MESSAGES, sent, stop))
    rng = random.Random(int(os.environ.get("MLAX_CRASH_SEED", "7")))
    kills = {"GB-NCA": 0, "FR-OCRTEH": 0}
    try:
        submitter.start()
        # Chaos: kill one node or the other at random points while traffic flows.
        for round_ in range(8):
            if not submitter.is_alive():
                break
            time.sleep(rng.uniform(0.2, 1.2))
            victim = (gb, fr)[round_ % 2]
            victim.kill()
            kills[victim.setup.agency] += 1
            time.sleep(rng.uniform(0.0, 0.5))
            victim.start()
        submitter.join(timeout=180)
        assert not submitter.is_alive(), "submissions did not complete"
        assert kills["GB-NCA"] > 0
        assert kills["FR-OCRTEH"] > 0
        assert len(sent) == MESSAGES

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = [m.state for m in sender.outbox(limit=1000)]
            if len(states) >= MESSAGES and all(s == "delivered" for s in states):
                break
            time.sleep(0.5)
        outbox = sender.outbox(limit=1000)
        assert len(outbox) == MESSAGES, "an accepted submission was lost or doubled at the sender"
        assert {m.state for m in outbox} == {"delivered"}

        inbox = receiver.inbox(limit=1000)
        received_ids = [m.message_id for m in inbox]
        assert len(received_ids) == len(set(received_ids)) == MESSAGES, "duplicate or lost"
        assert set(received_ids) == set(sent)

        directory = Directory.from_bytes(read_signed_directory(fed.directory_file).directory)
        ledger_indexes = set()
        for m in outbox:
            detail = sender.show(m.message_id, content=False)
            assert detail.evidence.receipt_verified
            body = verify_receipt(
                Receipt.from_bytes(detail.evidence.receipt),
                directory,
                message_id=parse_uuid(m.message_id),
                envelope_digest=bytes.fromhex(detail.evidence.envelope_digest),
                receiver="FR-OCRTEH",
                sender="GB-NCA",
            )
            ledger_indexes.add(body.ledger_index)
        assert len(ledger_indexes) == MESSAGES, "two deliveries share one receiver ledger entry"

        sample = rng.sample(sorted(sent), 5)
        for mid in sample:
            detail = receiver.show(mid)
            assert detail.subject is not None
            assert detail.subject.startswith("message ")
            assert sent[mid] == f"crash-{detail.subject.split()[1]}"
    finally:
        stop.set()
        sender.close()
        receiver.close()
        assert gb.stop() == 0, gb.log_tail()
        assert fr.stop() == 0, fr.log_tail()
