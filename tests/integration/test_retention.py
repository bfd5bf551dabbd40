"""Retention on real node processes: the purge job deletes delivered message content
past its period, the message reads "purged on DATE under RULE" in the CLI, a purge
killed halfway (SIGKILL between two batches) completes after the restart, the ledger
still verifies, and a supervisor's legal hold is placed and lifted through the CLI.

The purge logic itself (cases, evidence, holds, abandoned uploads, a purge cut off
before its blobs went, both stores) is covered in-process by tests/node/test_retention_purge.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from exchange.ledger.export import iter_records
from node.client import OfficerClient
from node.devtools.federation import DEMO_AGENCIES, NodeProcess, build_federation, mlax_command
from node.services.retention import PAUSE_ENV

pytestmark = pytest.mark.integration

PASS, OFFICER_PASS = b"node-pass", b"officer-pass"
ENV = dict(
    os.environ,
    MLAX_KEY_PASSPHRASE=PASS.decode(),
    MLAX_OFFICER_PASSPHRASE=OFFICER_PASS.decode(),
    MLAX_KDF_PROFILE="test",
    COLUMNS="200",
    NO_COLOR="1",
)
GB, FR = "GB-NCA", "FR-OCRTEH"
NOTES = 3
FORMS = Path(__file__).resolve().parents[2] / "deploy" / "forms"


def _mlax(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mlax_command(), *map(str, args)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _purge_events(node: NodeProcess) -> list[dict[str, object]]:
    lines = node.log_path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == "retention_purged"]


def test_purge_killed_halfway_completes_and_the_ledger_verifies(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    fed = build_federation(
        tmp_path, PASS, OFFICER_PASS, agencies=DEMO_AGENCIES[:2], db_urls=storage
    )
    gb_setup = fed.nodes[GB]
    with gb_setup.config.open("a") as f:
        # One message per batch, a purge every half second, content kept one second.
        f.write(
            "\n[retention]\nmessage_content_seconds = 1\npurge_interval_seconds = 0.5\n"
            "purge_batch = 1\n"
        )
    # Each batch pauses 30 s after its commit: the test kills the node in that pause.
    gb = NodeProcess(gb_setup, {**ENV, PAUSE_ENV: "30"})
    fr = NodeProcess(fed.nodes[FR], ENV)
    gb.start()
    fr.start()
    officer = gb_setup.credentials["officer"]
    supervisor = gb_setup.credentials["supervisor"]
    try:
        with OfficerClient.from_bundle(officer, OFFICER_PASS, 10) as client:
            ids = [
                client.send(FR, subject=f"note {i}", text="Meet at the port.").message_id
                for i in range(NOTES)
            ]

        def delivered() -> bool:
            with OfficerClient.from_bundle(officer, OFFICER_PASS, 10) as c:
                return all(m.state == "delivered" for m in c.outbox(limit=10))

        _wait(delivered, "the notes to be delivered")
        # The first batch commits, then the job pauses: kill the node there.
        _wait(lambda: bool(_purge_events(gb)), "the first purge batch")
        gb.kill()
        assert len(_purge_events(gb)) == 1

        gb.env = ENV  # no pause from here on
        gb.start()

        def all_purged() -> bool:
            with OfficerClient.from_bundle(officer, OFFICER_PASS, 10) as c:
                return all(c.show(message_id).purged for message_id in ids)

        _wait(all_purged, "every note to read as purged")
        # The CLI shows the purge where the content was; what the audit needs stays.
        text = _mlax("show", ids[0], "--as", officer).stdout
        assert "content purged on " in text
        assert "under retention rule message_content:1s" in text
        assert "Meet at the port." not in text
        assert "envelope digest" in text

        # Legal hold through the CLI: supervisors only, placed and lifted, each ledgered.
        form = tmp_path / "form.json"
        data = tomllib.loads((FORMS / "mla-request.toml").read_text())
        data["requested_authority"] = {"agency_id": FR, "name": "OCRTEH"}
        form.write_text(json.dumps(data, default=str))
        made = _mlax("case", "new", "--type", "mla", "--form", form, "--as", officer, "--json")
        assert made.returncode == 0, made.stderr
        ref = json.loads(made.stdout)["summary"]["case_ref"]
        refused = _mlax("case", "hold", ref, "--reason", "Court order", "--as", officer)
        assert refused.returncode != 0
        assert "officer role may not call HoldCase" in refused.stderr
        held = _mlax("case", "hold", ref, "--reason", "Court order", "--as", supervisor)
        assert held.returncode == 0, held.stderr
        assert "(on legal hold)" in held.stdout
        shown_case = _mlax("case", "show", ref, "--as", officer)
        assert "on legal hold since" in shown_case.stdout
        released = _mlax("case", "release-hold", ref, "--as", supervisor)
        assert released.returncode == 0, released.stderr
        assert "(on legal hold)" not in released.stdout
    finally:
        codes = [gb.stop(), fr.stop()]
    assert codes == [0, 0], gb.log_tail()

    # Every batch ledgered once, all content gone, and the ledger still verifies.
    out = tmp_path / "gb.mlaxlog"
    exported = _mlax("audit", "export", "--config", gb_setup.config, "--out", out)
    assert exported.returncode == 0, exported.stderr
    verified = _mlax("audit", "verify", out, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    with out.open("rb") as f:
        kinds = [
            json.loads(r.entry.entry)
            for r in iter_records(f.read)
            if r.WhichOneof("record") == "entry" and r.entry.entry
        ]
    purges = [e for e in kinds if e["kind"] == "retention.purged"]
    assert sum(e["count"] for e in purges) == NOTES
    assert {e["rule"] for e in purges} == {"message_content:1s"}
    assert [e["kind"] for e in kinds if e["kind"].startswith("case.hold")] == [
        "case.hold_placed",
        "case.hold_released",
    ]


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
