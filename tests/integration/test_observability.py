"""What operators observe: JSON logs without content, Prometheus metrics, health, and a
newer directory spreading from one node to its peers."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from keys.admin import load_admin
from keys.directory_edit import remove_agency
from keys.directory_file import read_signed_directory, write_directory_file
from node.client import Credential, OfficerClient
from node.client.officer import _server_name
from node.devtools.federation import (
    DEMO_AGENCIES,
    NodeProcess,
    build_federation,
    free_port,
    mlax_command,
)

pytestmark = pytest.mark.integration

PASS, OFFICER_PASS = b"node-pass", b"officer-pass"
ENV = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")
SECRET_SUBJECT = "Victim Maria Ionescu born 1999"
SECRET_TEXT = "Seen at the farm near Almeria with passport AB1234567"


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _metric_value(text: str, name: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_logs_metrics_health_and_directory_propagation(tmp_path: Path) -> None:
    import subprocess

    ports = {a: free_port() for a, _ in DEMO_AGENCIES}
    fed = build_federation(
        tmp_path,
        PASS,
        OFFICER_PASS,
        delivery={"directory_sync_seconds": 0.5},
    )
    for agency, setup in fed.nodes.items():
        text = setup.config.read_text()
        setup.config.write_text(text + f'\n[metrics]\nlisten = "127.0.0.1:{ports[agency]}"\n')
    procs = {a: NodeProcess(s, ENV) for a, s in fed.nodes.items()}
    for p in procs.values():
        p.start(wait=0)
    for p in procs.values():
        p.wait_ready(NodeProcess.READY_SECONDS)
    gb = OfficerClient.from_bundle(fed.nodes["GB-NCA"].credentials["officer"], OFFICER_PASS)
    fr = OfficerClient.from_bundle(fed.nodes["FR-OCRTEH"].credentials["officer"], OFFICER_PASS)
    try:
        sent = gb.send("FR-OCRTEH", subject=SECRET_SUBJECT, text=SECRET_TEXT, message_type="note")
        deadline = time.monotonic() + 20
        while gb.show(sent.message_id, content=False).info.state != "delivered":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert fr.show(sent.message_id).text == SECRET_TEXT

        # Metrics: counted on both sides, by peer; outbox depth exported.
        gb_metrics = _metrics(ports["GB-NCA"])
        assert _metric_value(gb_metrics, "mlax_messages_sent_total", 'peer="FR-OCRTEH"') == 1
        assert "mlax_delivery_latency_seconds_count 1.0" in gb_metrics
        assert "mlax_outbox_depth" in gb_metrics
        fr_metrics = _metrics(ports["FR-OCRTEH"])
        assert _metric_value(fr_metrics, "mlax_messages_received_total", 'peer="GB-NCA"') == 1

        # Health checking answers on the officer listener (mutual TLS as an officer).
        cred = Credential.load(fed.nodes["GB-NCA"].credentials["officer"], OFFICER_PASS)
        creds = grpc.ssl_channel_credentials(
            cred.server_certificate, cred.private_key_pem, cred.certificate
        )
        opts = [("grpc.ssl_target_name_override", _server_name(cred.server_certificate))]
        with grpc.secure_channel(cred.endpoint, creds, options=opts) as chan:
            resp = health_pb2_grpc.HealthStub(chan).Check(
                health_pb2.HealthCheckRequest(service="mlax.v1.Officer"), timeout=5
            )
            assert resp.status == health_pb2.HealthCheckResponse.SERVING

        # A newer directory installed on one node reaches the others through the peers.
        signed = read_signed_directory(fed.directory_file)
        v2 = remove_agency(signed, "NG-NAPTIP").signed
        for admin in fed.admin_dirs[:2]:
            v2 = v2.signed_by(load_admin(admin, PASS).signing_key)
        v2_file = tmp_path / "directory-v2.json"
        write_directory_file(v2_file, v2)
        cfg = str(fed.nodes["GB-NCA"].config)
        run = subprocess.run(
            [*mlax_command(), "node", "directory", "update", str(v2_file), "--config", cfg],
            env=ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        rollback = subprocess.run(
            [
                *mlax_command(),
                "node",
                "directory",
                "update",
                str(fed.directory_file),
                "--config",
                cfg,
            ],
            env=ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        assert rollback.returncode == 1
        assert "not newer" in rollback.stderr
        deadline = time.monotonic() + 20
        while fr.whoami().directory_version != 2:
            assert time.monotonic() < deadline, "FR did not adopt the newer directory"
            time.sleep(0.2)
        assert "NG-NAPTIP" not in fr.whoami().peers
        with pytest.raises(Exception, match="not a member"):
            gb.send("NG-NAPTIP", subject="x", text="y")
    finally:
        gb.close()
        fr.close()
        codes = {a: p.stop() for a, p in procs.items()}
    assert codes == {a: 0 for a in procs}

    # Logs: every line is JSON, and no content, subject or person's name appears.
    for agency, p in procs.items():
        raw = p.log_path.read_text()
        for token in ("Maria", "Ionescu", "Almeria", "AB1234567", "passport"):
            assert token not in raw, f"{agency} logged content: {token}"
        events = [json.loads(line)["event"] for line in raw.splitlines() if line.strip()]
        assert "node_ready" in events
        assert "node_stopped" in events
    assert any(
        json.loads(line).get("event") == "directory_adopted"
        for line in procs["FR-OCRTEH"].log_path.read_text().splitlines()
    )
