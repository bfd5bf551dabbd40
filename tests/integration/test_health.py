"""Honest health on a real node process: readiness turns NOT_SERVING, with its cause in
`mlax node health` and /metrics, when the database cannot be written or the directory
has expired, and comes back by itself; liveness stays SERVING. Also what an operator can
observe of a peer refused in the TLS handshake (docs/operators.md sections 14 and 15).

One node (GB-NCA alone in its directory), started once for the module with a short
readiness interval and gRPC's C core logging at INFO (the documented workaround for
handshake rejections).
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from exchange.directory import Directory, SignedDirectory
from exchange.encoding import now_ms
from keys.admin import load_admin
from keys.directory_file import read_signed_directory, write_directory_file
from keys.identity import read_card
from node.client import OfficerClient
from node.devtools.federation import DEMO_AGENCIES, Federation, NodeProcess, build_federation
from node.devtools.federation import free_port as _free_port

if TYPE_CHECKING:
    # Only the type: which `conftest` module a plain import finds depends on collection order.
    from conftest import Cli

# The passphrases conftest's base environment gives every `mlax` process.
PASSPHRASE, OFFICER_PASSPHRASE = b"pw", b"opw"

# One node for the module: its tests run on one xdist worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("health")]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
READINESS = "mlax.v1.Readiness"


@dataclass
class HealthNode:
    fed: Federation
    node: NodeProcess
    metrics_port: int
    officer: OfficerClient

    @property
    def config(self) -> Path:
        return self.node.setup.config

    @property
    def db_path(self) -> Path:
        return self.node.setup.root / "data" / "node.db"

    def metrics(self) -> dict[str, float]:
        """`name{label=value}` (or `name`) -> value, for the readiness metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.startswith(("mlax_ready", "mlax_readiness")):
                    labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                    out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def health(self, service: str) -> int:
        stub = health_pb2_grpc.HealthStub(self.officer._channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return int(reply.status)

    def wait_metric(self, key: str, value: float, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.metrics().get(key) != value:
            assert time.monotonic() < deadline, (key, value, self.metrics())
            time.sleep(0.1)

    def log_events(self, event: str) -> list[dict[str, object]]:
        out = []
        for line in self.node.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                doc = json.loads(line)
                if doc.get("event") == event:
                    out.append(doc)
        return out


@pytest.fixture(scope="module")
def hnode(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> Iterator[HealthNode]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAX_KDF_PROFILE", "test")
        port = _free_port()
        fed = build_federation(
            tmp_path_factory.mktemp("health"),
            PASSPHRASE,
            OFFICER_PASSPHRASE,
            agencies=DEMO_AGENCIES[:1],
            extra_config=(
                f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
                "\n[health]\ncheck_interval_seconds = 0.2\nprobe_timeout_seconds = 0.5\n"
            ),
        )
        setup = next(iter(fed.nodes.values()))
        node = NodeProcess(setup, {**cli.env, "GRPC_VERBOSITY": "INFO"})
        node.start()
        officer = OfficerClient.from_bundle(setup.credentials["officer"], OFFICER_PASSPHRASE)
        try:
            yield HealthNode(fed, node, port, officer)
        finally:
            officer.close()
            code = node.stop()
        assert code == 0, node.log_tail()


def test_an_unwritable_database_makes_the_node_not_ready_until_it_is_writable(
    hnode: HealthNode, cli: Cli
) -> None:
    ok = cli.run("node", "health", "--config", hnode.config)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("ready")
    assert hnode.health(READINESS) == SERVING
    # Another process holds the write lock (an sqlite3 shell in a transaction, a backup
    # tool): every write of the node now waits and then fails. (chmod on the file does
    # not make writes fail: connections already open keep writing, and root ignores it.)
    holder = sqlite3.connect(hnode.db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        hnode.wait_metric("mlax_readiness_cause{cause=database}", 1)
        took = time.monotonic() - started
        assert took < 5, took
        assert hnode.metrics()["mlax_ready"] == 0
        assert hnode.health(READINESS) == NOT_SERVING
        assert hnode.health("") == SERVING  # liveness: the process still serves
        assert hnode.health("mlax.v1.Officer") == SERVING
        down = cli.run("node", "health", "--config", hnode.config)
        assert down.returncode == 1, down.stdout + down.stderr
        assert down.stdout.startswith("not ready: database")
        assert "The node cannot write to its database" in down.stdout
        assert "what to do:" in down.stdout
        as_json = cli.run("node", "health", "--config", hnode.config, "--json")
        assert as_json.returncode == 1
        assert [c["cause"] for c in json.loads(as_json.stdout)["causes"]] == ["database"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    hnode.wait_metric("mlax_ready", 1)
    assert hnode.health(READINESS) == SERVING
    assert cli.run("node", "health", "--config", hnode.config).returncode == 0
    changes = [(e["ready"], e["causes"]) for e in hnode.log_events("readiness_changed")]
    assert changes[-2:] == [(False, ["database"]), (True, [])]


def _install(hnode: HealthNode, cli: Cli, tmp: Path, version: int, expires_in_ms: int) -> None:
    current = read_signed_directory(hnode.fed.directory_file)
    base = Directory.from_bytes(current.directory)
    at = now_ms()
    directory = replace(base, version=version, issued_at=at, expires_at=at + expires_in_ms)
    signed = SignedDirectory(directory.to_bytes())
    for admin in hnode.fed.admin_dirs[:2]:
        signed = signed.signed_by(load_admin(admin, PASSPHRASE).signing_key)
    path = tmp / f"directory-v{version}.json"
    write_directory_file(path, signed)
    done = cli.run("node", "directory", "update", path, "--config", hnode.config)
    assert done.returncode == 0, done.stderr


def test_an_expired_directory_makes_the_node_not_ready_until_a_newer_one_is_installed(
    hnode: HealthNode, cli: Cli, tmp_path: Path
) -> None:
    hnode.wait_metric("mlax_ready", 1)
    # Long enough for the install to finish first on a busy machine (it refuses an expired
    # directory), short enough to wait for.
    _install(hnode, cli, tmp_path, 2, expires_in_ms=15_000)
    hnode.wait_metric("mlax_readiness_cause{cause=directory_expired}", 1, timeout=60)
    assert hnode.health(READINESS) == NOT_SERVING
    down = cli.run("node", "health", "--config", hnode.config)
    assert down.returncode == 1
    assert down.stdout.startswith("not ready: directory_expired")
    assert "mlax node directory update FILE" in down.stdout
    _install(hnode, cli, tmp_path, 3, expires_in_ms=180 * 86_400_000)
    hnode.wait_metric("mlax_ready", 1)
    assert hnode.health(READINESS) == SERVING


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, cert.public_bytes(serialization.Encoding.PEM)


def test_a_handshake_rejection_is_seen_only_in_grpc_core_logs(hnode: HealthNode) -> None:
    # No server-side hook exists for a failed handshake in gRPC Python (grpc/grpc#38665):
    # no call reaches the node, so no interceptor, metric or JSON event sees it. What an
    # operator can see is gRPC core's own line, with GRPC_VERBOSITY=INFO (or debug).
    setup = hnode.node.setup
    key, cert = _self_signed()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read_card(setup.root / "keys").tls_certificate_pem,
        private_key=key,
        certificate_chain=cert,
    )
    before = hnode.node.log_path.read_text(errors="replace").count("Handshake failed")
    with (
        grpc.secure_channel(
            f"127.0.0.1:{setup.federation_port}",
            creds,
            options=[("grpc.ssl_target_name_override", "127.0.0.1")],
        ) as channel,
        pytest.raises(grpc.RpcError) as exc,
    ):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    # The refused peer's symptom: UNAVAILABLE, never a status from the node.
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    deadline = time.monotonic() + 30  # the node's log line, written at once when not busy
    while True:
        lines = [
            ln
            for ln in hnode.node.log_path.read_text(errors="replace").splitlines()
            if "Handshake failed" in ln
        ]
        if len(lines) > before or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(lines) > before, hnode.node.log_tail()
    assert "CERTIFICATE_VERIFY_FAILED" in lines[-1]
    assert hnode.node.running
    assert hnode.metrics()["mlax_ready"] == 1
