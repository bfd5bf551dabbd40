"""A statistics coordinator named in the directory, live (issue 16; docs/statistics.md):
two agencies release, a supervisor of each approves, only the coordinator receives the
releases, and the coordinator's `mlax stats federation --format csv --out F` publishes
the combined table with HTCDS/CTDC column names.

A small federation of its own (its own xdist group): the shared one's directory names no
coordinator, and changing it there would change where every other test's releases go.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from exchange.envelope import MessageType
from keys.admin import load_admin
from keys.directory_file import read_signed_directory
from node.client import NodeCallError, OfficerClient
from node.client.stats import StatsClient
from node.config import load_config
from node.devtools.federation import NodeProcess, build_federation, start_all, stop_all
from node.services.trust import TrustedDirectory
from node.storage.db import Database

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("stats_coordinator")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"
COORDINATOR = NG


def _release_recipients(root: Path) -> list[str]:
    """Where a node's approved releases were queued (its outbox), read from its database."""
    conn = sqlite3.connect(f"file:{root / 'data' / 'node.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT peer FROM messages WHERE direction = 'out' AND message_type = ?",
            (MessageType.STATISTICS_RELEASE.value,),
        ).fetchall()
    finally:
        conn.close()
    return sorted(r[0] for r in rows)


def test_only_the_coordinator_receives_releases_and_publishes_the_table(
    cli: Cli, tmp_path: Path
) -> None:
    passphrase = cli.env["MLAX_KEY_PASSPHRASE"].encode()
    officer_passphrase = cli.env["MLAX_OFFICER_PASSPHRASE"].encode()
    fed = build_federation(tmp_path / "fed", passphrase, officer_passphrase)

    # The administrators name the coordinator (a directory change, signed k of n) and each
    # node trusts the new version before it starts.
    named = cli.run("directory", "stats-coordinators", COORDINATOR, "--file", fed.directory_file)
    assert named.returncode == 0, named.stderr
    signed = read_signed_directory(fed.directory_file)
    for admin in fed.admin_dirs[:2]:
        signed = signed.signed_by(load_admin(admin, passphrase).signing_key)
    for setup in fed.nodes.values():
        db = Database(load_config(setup.config).database_url)
        try:
            installed = TrustedDirectory(db).install(signed.to_bytes(), "operator")
        finally:
            db.close()
        assert installed.statistics_coordinators == (COORDINATOR,)

    nodes = [NodeProcess(s, cli.env) for s in fed.nodes.values()]
    clients: list[OfficerClient] = []

    def client(agency: str, role: str = "officer") -> StatsClient:
        c = OfficerClient.from_bundle(
            fed.nodes[agency].credentials[role], officer_passphrase, timeout=10
        )
        clients.append(c)
        return StatsClient(c)

    try:
        start_all(nodes, NodeProcess.READY_SECONDS)
        today = dt.datetime.now(dt.UTC).date()
        start, end = f"{today.year}-01-01", today.isoformat()
        for agency in (GB, FR):
            draft = client(agency).draft(start, end)
            assert draft.summary is not None
            final = client(agency, "supervisor").approve(draft.summary.release_id)
            assert final.summary is not None
            assert final.summary.state == "final"
            # Queued to the coordinator only, in the approving transaction.
            assert _release_recipients(fed.nodes[agency].root) == [COORDINATOR]

        ng = client(NG)
        deadline = time.monotonic() + 30
        while True:  # polls the coordinator's state: NOT_FOUND until a release arrives
            try:
                if ng.federation(start, end)["agencies"] == [FR, GB]:
                    break
            except NodeCallError:
                pass
            assert time.monotonic() < deadline, "NG did not receive both releases in 30 s"
            time.sleep(0.05)
        # A member that is not the coordinator holds its own release only.
        assert client(FR).federation(start, end)["agencies"] == [FR]

        out = tmp_path / "federation.csv"
        published = cli.run(
            "stats",
            "federation",
            "--from",
            start,
            "--to",
            end,
            "--format",
            "csv",
            "--out",
            out,
            "--as",
            fed.nodes[NG].credentials["officer"],
        )
        assert published.returncode == 0, published.stderr
        reader = csv.DictReader(io.StringIO(out.read_text()))
        rows = list(reader)
        columns = reader.fieldnames or []
        # HTCDS/CTDC names where a field exists there; every dimension has its column.
        assert {"gender", "ageBroad", "citizenship"} <= set(columns)
        assert {"sex", "age_band", "nationality"}.isdisjoint(columns)
        assert {"refusal_ground", "disclosure", "offence_category"} <= set(columns)
        assert {r["period_start"] for r in rows} == {start}
        # Each released cell sums the two agencies that released it or left it out (their
        # cells are the same, but for each one's peers); the coordinator released nothing.
        assert rows
        assert all(
            int(r["agencies_reporting"]) + int(r["agencies_suppressed"]) == 2
            for r in rows
            if r["table"] != "cases_by_peer"
        )
        citizenship = {r["citizenship"] for r in rows if r["table"].endswith("_nationality")}
        assert citizenship <= {"FR", "GB", "NG", "other", "not_recorded"}
    finally:
        for c in clients:
            c.close()
        codes = stop_all(nodes)
    assert set(codes.values()) == {0}, codes
