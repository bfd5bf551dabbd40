"""An auditor finds every edit made to a node's ledger behind its back.

A small federation runs, exchanges messages, signs and cross-witnesses checkpoints, and
stops. Then each test edits a copy of FR-OCRTEH's database directly (as an insider with
database access would) and runs `mlax audit export` and `mlax audit verify` on it: the
verification fails, naming the first bad index and what was done.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from node.client import OfficerClient
from node.devtools.federation import (
    DEMO_AGENCIES,
    Federation,
    NodeProcess,
    build_federation,
    mlax_command,
)

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ledger-tamper")]

PASS, OFFICER_PASS = b"node-pass", b"officer-pass"
FAST_LEDGER = "[ledger]\ncheckpoint_interval_seconds = 0.3\nwitness_interval_seconds = 0.6\n"
ENV = dict(
    os.environ,
    MLAX_KEY_PASSPHRASE=PASS.decode(),
    MLAX_OFFICER_PASSPHRASE=OFFICER_PASS.decode(),
    MLAX_KDF_PROFILE="test",
)


def _mlax(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mlax_command(), *map(str, args)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def stopped_federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    """Two nodes that exchanged messages and witnessed each other, then stopped."""
    root = tmp_path_factory.mktemp("tamper")
    fed = build_federation(
        root,
        PASS,
        OFFICER_PASS,
        agencies=DEMO_AGENCIES[:2],
        extra_config=FAST_LEDGER,
    )
    procs = [NodeProcess(s, ENV) for s in fed.nodes.values()]
    for p in procs:
        p.start(wait=0)
    for p in procs:
        p.wait_ready(60)
    gb = OfficerClient.from_bundle(fed.nodes["GB-NCA"].credentials["officer"], OFFICER_PASS)
    fr = OfficerClient.from_bundle(fed.nodes["FR-OCRTEH"].credentials["officer"], OFFICER_PASS)
    try:
        for i in range(12):
            gb.send("FR-OCRTEH", subject=f"request {i}", text="x", message_type="note")
            if i % 4 == 0:
                # Let checkpoints and cosignatures land in between, so there are several.
                time.sleep(1.0)
        deadline = time.monotonic() + 30
        while not all(m.state == "delivered" for m in gb.outbox(50)):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for m in fr.inbox(5):
            fr.show(m.message_id)  # officer reads are ledgered too
        time.sleep(2.0)  # final checkpoint and its cosignature
    finally:
        gb.close()
        fr.close()
        for p in procs:
            assert p.stop() == 0
    return fed


def _tampered(fed: Federation, tmp_path: Path, edit: Callable[[sqlite3.Connection], None]) -> Path:
    """Copy FR's node directory, apply `edit` to the copy's database, return its config."""
    src = fed.nodes["FR-OCRTEH"].root
    dst = tmp_path / "fr-copy"
    shutil.copytree(src, dst)
    conn = sqlite3.connect(dst / "data" / "node.db")
    with conn:
        edit(conn)
    conn.close()
    return dst / "node.toml"


def _audit(config: Path, tmp_path: Path) -> tuple[int, dict[str, object]]:
    out = tmp_path / "ledger.export"
    exported = _mlax("audit", "export", "--config", config, "--out", out)
    assert exported.returncode == 0, exported.stderr
    verified = _mlax("audit", "verify", out, "--json")
    assert "Traceback" not in verified.stderr
    return verified.returncode, json.loads(verified.stdout)


def _first_problem(report: dict[str, object]) -> dict[str, object]:
    problems = report["problems"]
    assert isinstance(problems, list)
    assert problems, report
    first = problems[0]
    assert isinstance(first, dict)
    return first


def _size(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM ledger_entries").fetchone()[0])


def test_untouched_ledger_verifies(stopped_federation: Federation, tmp_path: Path) -> None:
    code, report = _audit(_tampered(stopped_federation, tmp_path, lambda c: None), tmp_path)
    assert code == 0, report
    assert report["ok"] is True
    assert report["cosigned_by"] == {"GB-NCA": report["cosigned_by"]["GB-NCA"]}  # type: ignore[index]
    assert report["checkpoints"] >= 2  # type: ignore[operator]


def test_changed_entry_is_reported_as_modified(
    stopped_federation: Federation, tmp_path: Path
) -> None:
    def edit(c: sqlite3.Connection) -> None:
        row = c.execute("SELECT entry FROM ledger_entries WHERE idx = 7").fetchone()
        c.execute(
            "UPDATE ledger_entries SET entry = ? WHERE idx = 7",
            (row[0].replace(b"GB-NCA", b"NG-NAPTIP"),),
        )

    code, report = _audit(_tampered(stopped_federation, tmp_path, edit), tmp_path)
    assert code == 1
    assert _first_problem(report)["index"] == 7
    assert _first_problem(report)["kind"] == "modified"


def test_deleted_entry_is_reported_as_missing(
    stopped_federation: Federation, tmp_path: Path
) -> None:
    code, report = _audit(
        _tampered(
            stopped_federation,
            tmp_path,
            lambda c: c.execute("DELETE FROM ledger_entries WHERE idx = 5"),
        ),
        tmp_path,
    )
    assert code == 1
    assert (_first_problem(report)["index"], _first_problem(report)["kind"]) == (5, "missing")


def test_inserted_entry_is_reported_as_inserted(
    stopped_federation: Federation, tmp_path: Path
) -> None:
    def edit(c: sqlite3.Connection) -> None:
        n = _size(c)
        for idx in range(n - 1, 3, -1):  # shift 4.. up by one, from the top
            c.execute("UPDATE ledger_entries SET idx = idx + 1 WHERE idx = ?", (idx,))
        forged = c.execute(
            "SELECT kind, at, entry, salt, commitment FROM ledger_entries WHERE idx = 3"
        ).fetchone()
        c.execute(
            "INSERT INTO ledger_entries (idx, kind, at, entry, salt, commitment) "
            "VALUES (4, ?, ?, ?, ?, ?)",
            forged,
        )

    code, report = _audit(_tampered(stopped_federation, tmp_path, edit), tmp_path)
    assert code == 1
    assert (_first_problem(report)["index"], _first_problem(report)["kind"]) == (4, "inserted")


def test_swapped_entries_are_reported_as_reordered(
    stopped_federation: Federation, tmp_path: Path
) -> None:
    def edit(c: sqlite3.Connection) -> None:
        c.execute("UPDATE ledger_entries SET idx = -1 WHERE idx = 6")
        c.execute("UPDATE ledger_entries SET idx = 6 WHERE idx = 9")
        c.execute("UPDATE ledger_entries SET idx = 9 WHERE idx = -1")

    code, report = _audit(_tampered(stopped_federation, tmp_path, edit), tmp_path)
    assert code == 1
    assert (_first_problem(report)["index"], _first_problem(report)["kind"]) == (6, "reordered")


def test_truncated_tail_is_reported(stopped_federation: Federation, tmp_path: Path) -> None:
    cut = {"at": 0}

    def edit(c: sqlite3.Connection) -> None:
        cut["at"] = _size(c) - 4
        c.execute("DELETE FROM ledger_entries WHERE idx >= ?", (cut["at"],))

    code, report = _audit(_tampered(stopped_federation, tmp_path, edit), tmp_path)
    assert code == 1
    first = _first_problem(report)
    assert first["kind"] == "truncated"
    assert first["index"] == cut["at"]


def test_replaced_checkpoint_is_reported(stopped_federation: Federation, tmp_path: Path) -> None:
    sizes: list[int] = []

    def edit(c: sqlite3.Connection) -> None:
        rows = c.execute("SELECT size, note FROM ledger_checkpoints ORDER BY size").fetchall()
        size, note = rows[0]
        sizes.append(size)
        body, _, sig = note.partition(b"\n\n")
        lines = body.split(b"\n")
        lines[2] = b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="  # another root
        c.execute(
            "UPDATE ledger_checkpoints SET note = ? WHERE size = ?",
            (b"\n".join(lines) + b"\n\n" + sig, size),
        )

    code, report = _audit(_tampered(stopped_federation, tmp_path, edit), tmp_path)
    assert code == 1
    first = _first_problem(report)
    assert first["kind"] == "checkpoint_signature"
    assert str(sizes[0]) in str(first["detail"])
