"""Online backup and restore (`mlax node backup`, `mlax node restore`).

GB-NCA is backed up while messages flow to FR-OCRTEH (FR down for a moment, so the
backup's outbox holds undelivered messages), keeps working until FR has cosigned a
checkpoint past the backup, and is then restored from the backup on a fresh
data dir. The restored ledger verifies, messages in the backup's outbox are re-sent and
FR keeps one copy of each, new messages flow, and FR sees no split view: GB's ledger
resumes from the backup with `node.restored`, and GB does not offer FR a proof from the
checkpoint whose entries it lost; once FR's operator acknowledges the restore (keeping
the old checkpoint in FR's ledger as evidence), FR cosigns GB again. A damaged backup
is refused with one sentence.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from node.client import OfficerClient
from node.devtools.federation import DEMO_AGENCIES, NodeProcess, build_federation

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.integration

GB, FR = "GB-NCA", "FR-OCRTEH"
PASS, OFFICER_PASS = b"node-pass", b"officer-pass"
ENV = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")
NODE_PASS: dict[str, str | None] = {"MLAX_KEY_PASSPHRASE": PASS.decode()}  # seals the backup
LOAD = 120  # messages sent around the backup (listings stay within one page)
AFTER_BACKUP = 10  # of which at least these many after it
LEDGER = "[ledger]\ncheckpoint_interval_seconds = 0.5\nwitness_interval_seconds = 0.5\n"


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.2)


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_backup_under_load_then_restore_on_a_fresh_data_dir(tmp_path: Path, cli: Cli) -> None:
    fed = build_federation(
        tmp_path, PASS, OFFICER_PASS, agencies=DEMO_AGENCIES[:2], extra_config=LEDGER
    )
    gb_setup = fed.nodes[GB]
    gb, fr = NodeProcess(gb_setup, ENV), NodeProcess(fed.nodes[FR], ENV)
    gb.start(wait=0)
    fr.start(wait=0)
    gb.wait_ready(NodeProcess.READY_SECONDS)
    fr.wait_ready(NodeProcess.READY_SECONDS)
    sender = OfficerClient.from_bundle(gb_setup.credentials["officer"], OFFICER_PASS, 10)
    receiver = OfficerClient.from_bundle(fed.nodes[FR].credentials["officer"], OFFICER_PASS, 10)
    fr_db = fed.nodes[FR].root / "data" / "node.db"
    backup_dir = tmp_path / "backup"
    sent: list[str] = []
    stop = threading.Event()

    backed_up = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set() and i < LOAD:
            if i == LOAD - AFTER_BACKUP:
                # However slow the backup, some messages are left to send after it: the
                # flow waits for it here instead of running out before it ends.
                backed_up.wait(600)
            m = sender.send(FR, subject=f"m{i}", text="x" * 2000, message_type="note")
            sent.append(m.message_id)
            i += 1
            time.sleep(0.03)  # a steady flow through the backup, not a burst before it

    flow = threading.Thread(target=load)
    try:
        flow.start()
        _wait_for(lambda: len(sent) >= 20, 60, "20 messages sent")
        # FR down for a moment: the backup's outbox then holds messages not yet delivered.
        assert fr.stop() == 0, fr.log_tail()
        _wait_for(lambda: len(sent) >= 30, 60, "30 messages sent")
        took, before = time.monotonic(), len(sent)
        made = cli.run(
            "node", "backup", "--config", gb_setup.config, "--out", backup_dir, env=NODE_PASS
        )
        took, after_backup = time.monotonic() - took, len(sent)
        backed_up.set()
        assert made.returncode == 0, made.stderr
        fr.start()
        flow.join(60)
        queued = _query(
            backup_dir / "database" / "node.db",
            "SELECT count(*) FROM messages WHERE direction = 'out' AND state != 'delivered'",
        )
        assert int(str(queued[0][0])) >= 10
        assert len(sent) == LOAD
        # The backup (a process of its own, a second or more) ran while the flow sent.
        assert before < after_backup <= LOAD - AFTER_BACKUP, "no message flowed during it"
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        backup_size = manifest["ledger"]["size"]
        assert backup_size > 0
        paths = {f["path"] for f in manifest["files"]}
        assert {"database/node.db", "node.toml", "data/officer-ca.key"} <= paths
        assert any(p.startswith("identity/") for p in paths)

        # FR cosigns a checkpoint of GB past the backup: those entries are about to be lost.
        def fr_witnessed_past_backup() -> bool:
            rows = _query(fr_db, "SELECT size FROM witness_state WHERE origin LIKE '%GB-NCA%'")
            return bool(rows) and int(str(rows[0][0])) > backup_size + 5

        _wait_for(fr_witnessed_past_backup, 60, "FR cosigned GB past the backup")
        _wait_for(
            lambda: {m.state for m in sender.outbox(limit=1000)} == {"delivered"},
            60,
            "GB delivered everything",
        )
        assert gb.stop() == 0, gb.log_tail()

        # A damaged backup is refused before anything is written.
        damaged = tmp_path / "damaged"
        shutil.copytree(backup_dir, damaged)
        with (damaged / "database" / "node.db").open("r+b") as f:
            f.seek(200)
            f.write(b"\xff")
        refused = cli.run(
            "node", "restore", "--from", damaged, "--data-dir", tmp_path / "x", env=NODE_PASS
        )
        assert "database/node.db does not match its SHA-256" in cli.refusal(refused)
        assert not (tmp_path / "x").exists()
        # So is a forged one: the same damage with the manifest's SHA-256 brought in line by
        # someone without the node passphrase; and the right backup under a wrong passphrase.
        doc = json.loads((damaged / "manifest.json").read_text())
        (entry,) = [f for f in doc["files"] if f["path"] == "database/node.db"]
        entry["sha256"] = hashlib.sha256(
            (damaged / "database" / "node.db").read_bytes()
        ).hexdigest()
        (damaged / "manifest.json").write_text(json.dumps(doc))
        forged = cli.run(
            "node", "restore", "--from", damaged, "--data-dir", tmp_path / "x", env=NODE_PASS
        )
        assert "does not match its seal" in cli.refusal(forged)
        wrong = tmp_path / "wrong-pass"
        wrong.write_text("not the node passphrase\n")
        refused = cli.run(
            "node", "restore", "--from", backup_dir, "--data-dir", tmp_path / "x",
            "--passphrase-file", wrong,
        )  # fmt: skip
        assert "does not match its seal" in cli.refusal(refused)
        assert not (tmp_path / "x").exists()

        # Restore on a fresh data dir (the old one is gone) and start the node on it.
        (gb_setup.root / "data").rename(tmp_path / "gb-data-lost")
        restored = cli.run(
            "node",
            "restore",
            "--from",
            backup_dir,
            "--data-dir",
            gb_setup.root / "data",
            "--json",
            env=NODE_PASS,
        )
        assert restored.returncode == 0, restored.stderr
        assert json.loads(restored.stdout)["restored_index"] == backup_size

        # The restored ledger verifies, node.restored included.
        export = tmp_path / "ledger.export"
        exported = cli.run("audit", "export", "--config", gb_setup.config, "--out", export)
        assert exported.returncode == 0, exported.stderr
        verified = cli.run("audit", "verify", export, "--json")
        assert verified.returncode == 0, verified.stdout
        assert json.loads(verified.stdout)["ok"] is True

        gb.start()
        # Delivery resumes: what was queued in the backup arrives once, new messages flow.
        after = sender.send(FR, subject="after restore", text="y", message_type="note")
        _wait_for(
            lambda: {m.state for m in sender.outbox(limit=1000)} == {"delivered"},
            60,
            "the restored GB delivered its outbox",
        )
        inbox = [m.message_id for m in receiver.inbox(limit=1000)]
        assert len(inbox) == len(set(inbox))
        assert after.message_id in inbox
        assert set(sent) <= set(inbox)

        # Peers accept it: FR took the new message. GB's ledger now grows past the size
        # FR cosigned before the restore, and FR records no split view: GB says which
        # witness holds entries it lost, once, and offers it no proof.
        fr_known = int(str(_query(fr_db, "SELECT size FROM witness_state")[0][0]))
        gb_db = gb_setup.root / "data" / "node.db"

        def gb_size() -> int:
            return int(str(_query(gb_db, "SELECT size FROM ledger_head")[0][0]))

        while gb_size() <= fr_known + 10:
            sender.send(FR, subject="grow", text="z", message_type="note")
        time.sleep(3)  # several checkpoint and witness rounds at 0.5 s
        assert _query(fr_db, "SELECT count(*) FROM split_view_evidence") == [(0,)]
        assert int(str(_query(fr_db, "SELECT size FROM witness_state")[0][0])) == fr_known
        lines = [json.loads(x) for x in gb.log_path.read_text().splitlines()]
        lost = [x for x in lines if x.get("event") == "witness_holds_lost_entries"]
        assert len(lost) == 1, lost
        assert lost[0]["witness"] == FR
        assert lost[0]["known_size"] == fr_known
        assert lost[0]["restored_from"] == backup_size

        # FR's operator, told of the restore, acknowledges it: the old checkpoint goes into
        # FR's ledger as evidence, and FR cosigns the restored GB afresh.
        fr_config = fed.nodes[FR].config
        early = cli.run(
            "node",
            "acknowledge-restore",
            GB,
            "--config",
            fr_config,
            "--restored-from",
            str(fr_known),
        )
        assert "is within the restored ledger" in cli.refusal(early)
        acked = cli.run(
            "node",
            "acknowledge-restore",
            GB,
            "--config",
            fr_config,
            "--restored-from",
            str(backup_size),
        )
        assert acked.returncode == 0, acked.stderr
        assert f"entries {backup_size} to {fr_known - 1}" in acked.stdout
        kept = _query(
            fr_db, "SELECT entry FROM ledger_entries WHERE kind = 'witness.restore_acknowledged'"
        )
        assert len(kept) == 1
        evidence = json.loads(cast(bytes, kept[0][0]))
        assert evidence["known_size"] == fr_known
        assert evidence["known_note"].startswith("mlax.")
        _wait_for(
            lambda: bool(_query(fr_db, "SELECT size FROM witness_state")),
            30,
            "FR cosigned the restored GB",
        )
        assert _query(fr_db, "SELECT count(*) FROM split_view_evidence") == [(0,)]
        print(f"backup of {len(paths)} files took {took:.2f} s under load")
    finally:
        stop.set()
        backed_up.set()  # a flow waiting for the backup stops too
        sender.close()
        receiver.close()
        gb.stop()
        assert fr.stop() == 0, fr.log_tail()
