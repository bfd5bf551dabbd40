"""One agency, two node processes, one PostgreSQL, behind one address: any replica serves
any call, the outbox is shared with no duplicate delivery, and killing either replica with
SIGKILL while traffic flows both ways loses nothing.

GB-NCA runs as replicas A and B over one database (shared identity and data directory, as
a shared volume would give them); a TCP balancer (node/devtools/balancer.py,
standing in for HAProxy or nginx `stream`, docs/operators.md) holds the federation and
officer addresses the directory and the credentials name. FR-OCRTEH is one ordinary node.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.client import NodeCallError, OfficerClient
from node.devtools.balancer import TcpBalancer, replica_of
from node.devtools.databases import TEST_PG_ENV, pg_databases
from node.devtools.federation import (
    DEMO_AGENCIES,
    NodeProcess,
    build_federation,
    mlax_command,
)

pytestmark = pytest.mark.integration

PASS, OFFICER_PASS = b"node-pass", b"officer-pass"
GB, FR = "GB-NCA", "FR-OCRTEH"
TO_FR = int(os.environ.get("MLAX_REPLICA_MESSAGES", "200"))
TO_GB = TO_FR // 2
ENV = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")
RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"}


@pytest.fixture
def databases() -> Iterator[dict[str, str]]:
    base = os.environ.get(TEST_PG_ENV)
    if not base:
        pytest.skip(f"{TEST_PG_ENV} is not set: replicas share one PostgreSQL")
    tag = uuid.uuid4().hex[:8]
    names = {GB: f"mlax_replicas_{tag}_gb", FR: f"mlax_replicas_{tag}_fr"}
    with pg_databases(base, list(names.values())) as urls:
        yield {a: urls[n] for a, n in names.items()}


def _send_all(
    client: OfficerClient, to: str, count: int, tag: str, sent: set[str], stop: threading.Event
) -> None:
    """Submit `count` notes, each retried with its idempotency key until accepted."""
    for i in range(count):
        while not stop.is_set():
            try:
                m = client.send(
                    to,
                    subject=f"{tag} {i}",
                    text=f"{tag} body {i}",
                    message_type="note",
                    idempotency_key=f"{tag}-{i}",
                )
                sent.add(m.message_id)
                break
            except NodeCallError as e:
                if e.status not in RETRYABLE:  # a refusal fails the test
                    raise
                time.sleep(0.05)


def _retrying(call, what: str, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except NodeCallError as e:
            if e.status not in RETRYABLE or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {e}") from e
            time.sleep(0.2)


def _wait_all_delivered(client: OfficerClient, count: int, timeout: float) -> list[object]:
    deadline = time.monotonic() + timeout
    while True:
        outbox = _retrying(lambda: client.outbox(limit=1000), "outbox")
        if len(outbox) >= count and all(m.state == "delivered" for m in outbox):
            return list(outbox)
        assert time.monotonic() < deadline, Counter(m.state for m in outbox)
        time.sleep(0.5)


def _mlax(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mlax_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        check=False,
    )


def test_two_replicas_share_one_database_and_a_killed_one_loses_nothing(
    tmp_path: Path, databases: dict[str, str]
) -> None:
    fed = build_federation(
        tmp_path,
        PASS,
        OFFICER_PASS,
        agencies=DEMO_AGENCIES[:2],
        db_urls=databases,
        delivery={"lease_seconds": 2.0, "rpc_timeout_seconds": 1.5},
    )
    gb = fed.nodes[GB]
    replicas = [NodeProcess(replica_of(gb, n), ENV) for n in ("a", "b")]
    fr = NodeProcess(fed.nodes[FR], ENV)
    federation_lb = TcpBalancer(
        gb.federation_port, [("127.0.0.1", r.setup.federation_port) for r in replicas]
    )
    officer_lb = TcpBalancer(
        gb.officer_port, [("127.0.0.1", r.setup.officer_port) for r in replicas]
    )
    stop = threading.Event()
    with federation_lb, officer_lb:
        # Both replicas start at once on the fresh database: one migrates, the other waits.
        for r in (*replicas, fr):
            r.start(wait=0)
        for r in (*replicas, fr):
            r.wait_ready(NodeProcess.READY_SECONDS)
        gb_officer = OfficerClient.from_bundle(gb.credentials["officer"], OFFICER_PASS, 5)
        fr_officer = OfficerClient.from_bundle(
            fed.nodes[FR].credentials["officer"], OFFICER_PASS, 10
        )
        to_fr: set[str] = set()
        to_gb: set[str] = set()
        senders = [
            threading.Thread(target=_send_all, args=(gb_officer, FR, TO_FR, "gb", to_fr, stop)),
            threading.Thread(target=_send_all, args=(fr_officer, GB, TO_GB, "fr", to_gb, stop)),
        ]
        rng = random.Random(int(os.environ.get("MLAX_REPLICA_SEED", "11")))
        kills = Counter[str]()
        try:
            for t in senders:
                t.start()
            # Chaos: SIGKILL one replica, then the other, while traffic flows both ways;
            # the balancer sends new connections to the one still up.
            for round_ in range(4):
                if round_ >= 2 and not any(t.is_alive() for t in senders):
                    break  # each replica was killed at least once
                time.sleep(rng.uniform(0.2, 0.8))
                victim = replicas[round_ % 2]
                victim.kill()
                kills[victim.setup.root.name] += 1
                time.sleep(rng.uniform(0.2, 1.0))
                victim.start(wait=NodeProcess.READY_SECONDS)
            for t in senders:
                t.join(timeout=240)
            assert not any(t.is_alive() for t in senders), "submissions did not complete"
            assert len(kills) == 2, kills
            assert (len(to_fr), len(to_gb)) == (TO_FR, TO_GB)

            # Every message arrived exactly once, each way.
            gb_out = _wait_all_delivered(gb_officer, TO_FR, 180)
            assert {m.message_id for m in gb_out} == to_fr  # type: ignore[attr-defined]
            fr_in = [m.message_id for m in fr_officer.inbox(limit=1000)]
            assert len(fr_in) == len(set(fr_in)) == TO_FR, "a message was lost or doubled"
            assert set(fr_in) == to_fr
            fr_out = _wait_all_delivered(fr_officer, TO_GB, 180)
            assert {m.message_id for m in fr_out} == to_gb  # type: ignore[attr-defined]
            gb_in = [m.message_id for m in _retrying(lambda: gb_officer.inbox(limit=1000), "in")]
            assert len(gb_in) == len(set(gb_in)) == TO_GB
            assert set(gb_in) == to_gb
        finally:
            stop.set()
            gb_officer.close() if "gb_officer" in locals() else None
            fr_officer.close() if "fr_officer" in locals() else None
            codes = [r.stop() for r in (*replicas, fr)]
        assert codes == [0, 0, 0], [r.log_tail() for r in (*replicas, fr)]

    # Both replicas did the agency's work: each delivered messages and stored some.
    for r in replicas:
        events = [json.loads(line).get("event") for line in r.log_path.read_text().splitlines()]
        assert "delivered" in events, f"{r.setup.root.name} delivered nothing"

    # One ledger, one consistent tree: every submission, receipt and arrival ledgered
    # exactly once, and the export of the shared database verifies offline.
    out = tmp_path / "gb-ledger.mlaxlog"
    exported = _mlax("audit", "export", "--config", replicas[0].setup.config, "--out", out)
    assert exported.returncode == 0, exported.stderr
    verified = _mlax("audit", "verify", out, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True, report
    kinds = Counter(json.loads(entry)["kind"] for entry in _entries(out))
    assert kinds["message.submitted"] == TO_FR
    assert kinds["receipt.stored"] == TO_FR
    assert kinds["message.received"] == TO_GB


def _entries(export: Path) -> list[bytes]:
    """The ledger entries (canonical JSON) of an export file."""
    from exchange.ledger.export import iter_records

    with export.open("rb") as f:
        return [r.entry.entry for r in iter_records(f.read) if r.WhichOneof("record") == "entry"]
