"""Fixtures for integration tests: a live 3-agency federation of real `mlax node serve`
processes, shared by every test in the `federation` xdist group, and a CLI runner.

The federation is session scoped: with `pytest -n 2 --dist loadgroup` every test marked
`@pytest.mark.xdist_group("federation")` runs on the same worker, which builds and
starts the three nodes once (about 2 s) and stops them at the end of the session.
Tests that share it must leave it usable: they create their own officers before
changing one, and wait for what they send to be delivered. They must also pass when
the group is split over workers (each worker then starts its own federation): with
pytest 9.2 and pytest-xdist 3.8, `loadgroup` silently stops grouping
(pytest-dev/pytest-xdist#1386), so no test may rely on another having run first.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from exchange.agency import AgencyCard
from exchange.directory import Directory
from keys.directory_file import read_signed_directory
from keys.identity import AgencyIdentity, load_identity
from node.client import NodeCallError, OfficerClient
from node.config import load_config
from node.devtools.databases import pg_databases
from node.devtools.federation import (
    DEMO_AGENCIES,
    Federation,
    NodeProcess,
    build_federation,
    free_port,
    mlax_command,
)
from node.services.officers import OfficerCA, add_officer, set_officer, write_bundle
from node.storage.db import Database

PASSPHRASE = b"pw"
OFFICER_PASSPHRASE = b"opw"


def base_env(**extra: str) -> dict[str, str]:
    """The environment of every `mlax` process the tests start."""
    env = dict(os.environ)
    env.pop("MLAX_CREDENTIAL", None)
    env.update(
        {
            "MLAX_KDF_PROFILE": "test",
            "MLAX_KEY_PASSPHRASE": PASSPHRASE.decode(),
            "MLAX_OFFICER_PASSPHRASE": OFFICER_PASSPHRASE.decode(),
            # Rich must not wrap or colour what the tests parse.
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "TERM": "dumb",
        }
    )
    env.update(extra)
    return env


@dataclass
class Cli:
    """Runs the `mlax` console script of this installation as a user would."""

    env: dict[str, str]

    def run(
        self, *args: str | Path, env: dict[str, str | None] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `mlax ARGS`; `env` adds variables to the base environment, None removes one."""
        merged = {**self.env, **(env or {})}
        return subprocess.run(
            [*mlax_command(), *map(str, args)],
            env={k: v for k, v in merged.items() if v is not None},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def json(self, *args: str | Path) -> Any:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    @staticmethod
    def refusal(
        result: subprocess.CompletedProcess[str], code: int = 1, grpc_log_ok: bool = False
    ) -> str:
        """Assert the command failed with `code` and one sentence on stderr; return it.

        With `grpc_log_ok`, lines that gRPC's C core logs itself (`E1129 07:15:48...`)
        are tolerated beside the sentence.
        """
        assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        if grpc_log_ok:
            lines = [ln for ln in lines if not re.match(r"[DIWE]\d{4} \d\d:\d\d:", ln)]
        assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
        assert lines[0].startswith("error: "), lines[0]
        sentence = lines[0].removeprefix("error: ")
        assert sentence.endswith((".", ")")), sentence
        return sentence


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli(base_env())


@dataclass
class LiveFederation:
    """Three running nodes and what tests need to talk to them."""

    fed: Federation
    nodes: dict[str, NodeProcess]
    metrics_ports: dict[str, int]
    cli: Cli
    officer_passphrase: bytes = OFFICER_PASSPHRASE
    _clients: dict[tuple[str, str], OfficerClient] = field(default_factory=dict)
    _identities: dict[str, AgencyIdentity] = field(default_factory=dict)
    _channels: list[grpc.Channel] = field(default_factory=list)

    # -- files and keys ---------------------------------------------------------------

    def config(self, agency: str) -> Path:
        return self.fed.nodes[agency].config

    def credential(self, agency: str, role: str = "officer") -> Path:
        return self.fed.nodes[agency].credentials[role]

    def directory(self) -> Directory:
        return Directory.from_bytes(read_signed_directory(self.fed.directory_file).directory)

    def card(self, agency: str) -> AgencyCard:
        card = self.directory().agency(agency)
        assert card is not None
        return card

    def identity(self, agency: str) -> AgencyIdentity:
        if agency not in self._identities:
            keys = self.fed.nodes[agency].root / "keys"
            self._identities[agency] = load_identity(keys, PASSPHRASE)
        return self._identities[agency]

    # -- officer side -----------------------------------------------------------------

    def client(self, agency: str, role: str = "officer") -> OfficerClient:
        """A cached SDK client for one of the officers `build_federation` issued."""
        key = (agency, role)
        if key not in self._clients:
            self._clients[key] = OfficerClient.from_bundle(
                self.credential(agency, role), OFFICER_PASSPHRASE, timeout=10
            )
        return self._clients[key]

    def add_officer(
        self, agency: str, name: str, role: str = "officer", *, via_cli: bool = False
    ) -> Path:
        """Issue a new officer credential on the agency's (running) node: with
        `mlax officer add`, or in process with node.services.officers.add_officer (faster)."""
        setup = self.fed.nodes[agency]
        out = setup.root / f"{name}.json"
        if via_cli:
            result = self.cli.run(
                "officer", "add", name, "--config", setup.config, "--role", role, "--out", out
            )
            assert result.returncode == 0, result.stderr
            return out
        cfg = load_config(setup.config)
        db = Database(cfg.database_url)
        try:
            bundle = add_officer(
                db,
                OfficerCA.load_or_create(cfg.node.data_dir, agency, PASSPHRASE),
                name=name,
                role=role,
                agency=agency,
                endpoint=cfg.officer.listen,
                server_cert_pem=self.card(agency).tls_certificate_pem,
                bundle_passphrase=self.officer_passphrase,
            )
        finally:
            db.close()
        write_bundle(out, bundle)
        return out

    def set_officer(self, agency: str, name: str, **changes: Any) -> None:
        """node.services.officers.set_officer on the agency database (`mlax officer set`)."""
        db = Database(load_config(self.config(agency)).database_url)
        try:
            set_officer(db, name, **changes)
        finally:
            db.close()

    def wait_delivered(self, sender: OfficerClient, message_id: str, timeout: float = 15) -> None:
        def delivered() -> bool:
            return sender.show(message_id, content=False).info.state == "delivered"

        self.wait_for(delivered, timeout, f"message {message_id} was not delivered")

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `predicate` (a refused or failed call counts as false) until it holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except NodeCallError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{what} within {timeout} s")

    def inbox_ids(self, agency: str) -> set[str]:
        return {m.message_id for m in self.client(agency).inbox(limit=1000)}

    # -- federation side --------------------------------------------------------------

    def federation_channel(
        self,
        target: str,
        *,
        private_key_pem: bytes | None,
        certificate_pem: bytes | None,
        max_send_bytes: int = 64 * 1024 * 1024,
    ) -> grpc.Channel:
        """A channel to `target`'s federation port presenting the given client TLS key."""
        card = self.card(target)
        creds = grpc.ssl_channel_credentials(
            root_certificates=card.tls_certificate_pem,
            private_key=private_key_pem,
            certificate_chain=certificate_pem,
        )
        options = [
            ("grpc.ssl_target_name_override", "127.0.0.1"),
            ("grpc.max_send_message_length", max_send_bytes),
        ]
        channel = grpc.secure_channel(card.endpoint, creds, options=options)
        self._channels.append(channel)
        return channel

    def peer_channel(self, as_agency: str, target: str) -> grpc.Channel:
        """A channel to `target` with `as_agency`'s real TLS credentials."""
        ident = self.identity(as_agency)
        return self.federation_channel(
            target,
            private_key_pem=ident.tls_private_key_pem(),
            certificate_pem=ident.tls_certificate_pem(),
        )

    # -- observation ------------------------------------------------------------------

    def log_events(self, agency: str, event: str) -> list[dict[str, Any]]:
        """The node's JSON log lines whose event is `event`."""
        out = []
        for line in self.nodes[agency].log_path.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("event") == event:
                out.append(doc)
        return out

    def rejected_count(self, agency: str, reason: str) -> float:
        """mlax_messages_rejected_total{reason=...} scraped from the node's metrics."""
        url = f"http://127.0.0.1:{self.metrics_ports[agency]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        prefix = f'mlax_messages_rejected_total{{reason="{reason}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.removeprefix(prefix))
        return 0.0

    def ledger_kinds(self, agency: str) -> list[tuple[str, dict[str, Any]]]:
        """The node's ledger entries (kind, fields), read from its SQLite database."""
        db = self.fed.nodes[agency].root / "data" / "node.db"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute("SELECT kind, entry FROM ledger_entries ORDER BY idx").fetchall()
        finally:
            conn.close()
        return [(kind, json.loads(entry) if entry else {}) for kind, entry in rows]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        for ch in self._channels:
            ch.close()


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> Iterator[LiveFederation]:
    """GB-NCA, FR-OCRTEH and NG-NAPTIP running as real node processes on loopback."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAX_KDF_PROFILE", "test")
        fed = build_federation(
            tmp_path_factory.mktemp("federation"), PASSPHRASE, OFFICER_PASSPHRASE
        )
        metrics_ports: dict[str, int] = {}
        for agency, setup in fed.nodes.items():
            metrics_ports[agency] = free_port()
            with setup.config.open("a") as f:
                f.write(f'\n[metrics]\nlisten = "127.0.0.1:{metrics_ports[agency]}"\n')
                # Emergency cases run on seconds here, so a test can watch a clock run out;
                # no other test opens one.
                f.write(
                    "\n[cases]\nemergency_ack_seconds = 2\nemergency_response_seconds = 4\n"
                    "clock_check_seconds = 0.5\n"
                )
        nodes = {agency: NodeProcess(setup, base_env()) for agency, setup in fed.nodes.items()}
        try:
            for proc in nodes.values():
                proc.start(wait=0)
            for proc in nodes.values():
                proc.wait_ready(30)
            federation = LiveFederation(fed, nodes, metrics_ports, cli)
            yield federation
            federation.close()
        finally:
            codes = {agency: proc.stop() for agency, proc in nodes.items()}
        # A node that crashed during the session fails the last test's teardown loudly.
        for agency, code in codes.items():
            assert code == 0, f"{agency} exited with {code}: {nodes[agency].log_tail()}"


# -- storage for tests that run their own two-node federation ------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Database URLs for the first two demo agencies: SQLite ({}), or fresh PostgreSQL
    databases (dropped afterwards) when MLAX_TEST_PG_URL is set."""
    if request.param == "sqlite":
        yield {}
        return
    url = os.environ.get("MLAX_TEST_PG_URL")
    if not url:
        pytest.skip("MLAX_TEST_PG_URL is not set")
    tag = uuid.uuid4().hex[:8]
    agencies = [a for a, _ in DEMO_AGENCIES[:2]]
    names = [f"mlax_crash_{tag}_{a.split('-')[0].lower()}" for a in agencies]
    with pg_databases(url, names) as urls:
        yield {a: urls[n] for a, n in zip(agencies, names, strict=True)}
