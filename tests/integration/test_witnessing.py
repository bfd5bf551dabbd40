"""A node witnessing a peer's ledger refuses forged and inconsistent checkpoints, and
keeps the evidence of a split view: in its database, its ledger and its log."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import grpc
import pytest
from nacl.signing import SigningKey

from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.directory import Directory
from exchange.ledger import Checkpoint, sign_checkpoint, verify_cosignature
from exchange.ledger.names import log_origin, witness_verifiers
from keys.directory_file import read_signed_directory
from keys.identity import load_identity
from node.client import OfficerClient
from node.devtools.federation import DEMO_AGENCIES, NodeProcess, build_federation

pytestmark = pytest.mark.integration

PASS, OFFICER_PASS = b"node-pass", b"officer-pass"
ENV = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")
# The real nodes must not witness each other during the test: we play GB's log by hand.
QUIET_LEDGER = "[ledger]\nwitness_interval_seconds = 3600.0\n"


def test_forged_and_inconsistent_checkpoints_are_refused_and_the_evidence_kept(
    tmp_path: Path,
) -> None:
    fed = build_federation(
        tmp_path, PASS, OFFICER_PASS, agencies=DEMO_AGENCIES[:2], extra_config=QUIET_LEDGER
    )
    fr_node = NodeProcess(fed.nodes["FR-OCRTEH"], ENV)
    fr_node.start()
    directory = Directory.from_bytes(read_signed_directory(fed.directory_file).directory)
    gb = load_identity(fed.nodes["GB-NCA"].root / "keys", PASS)
    fr_card = directory.agency("FR-OCRTEH")
    assert fr_card is not None
    creds = grpc.ssl_channel_credentials(
        fr_card.tls_certificate_pem, gb.tls_private_key_pem(), gb.tls_certificate_pem()
    )
    origin = log_origin(directory.federation_id, "GB-NCA")
    gb_key = gb.sender().signing_key
    channel = grpc.secure_channel(
        fr_card.endpoint, creds, options=[("grpc.ssl_target_name_override", "127.0.0.1")]
    )
    fr = fgrpc.FederationStub(channel)

    def add(
        size: int, root: bytes, old_size: int, key: SigningKey = gb_key
    ) -> lpb.AddCheckpointResponse:
        note = sign_checkpoint(Checkpoint(origin, size, root), origin, key)
        resp: lpb.AddCheckpointResponse = fr.AddCheckpoint(
            lpb.AddCheckpointRequest(old_size=old_size, note=note), timeout=10
        )
        return resp

    try:
        # A checkpoint signed by a key that is not GB's: refused, nothing remembered.
        with pytest.raises(grpc.RpcError) as forged:
            add(5, b"\x01" * 32, 0, key=SigningKey.generate())
        assert forged.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # GB's real checkpoint: cosigned, and the cosignature verifies with FR's key.
        first = add(5, b"\x01" * 32, 0)
        assert not first.conflict
        (fr_witness,) = witness_verifiers(directory, "GB-NCA")["FR-OCRTEH"]
        verify_cosignature(Checkpoint(origin, 5, b"\x01" * 32), first.cosignature, fr_witness)

        # An older size: the C2SP conflict answer, telling GB what FR last cosigned.
        stale = add(3, b"\x02" * 32, 0)
        assert stale.conflict
        assert stale.known_size == 5

        # The same size with another root, both validly signed by GB: a split view.
        with pytest.raises(grpc.RpcError) as split:
            add(5, b"\x03" * 32, 5)
        assert split.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "two different roots" in (split.value.details() or "")

        # The honest history still extends: FR keeps cosigning the original branch only.
        assert add(5, b"\x01" * 32, 5).cosignature

        auditor = OfficerClient.from_bundle(
            fed.nodes["FR-OCRTEH"].credentials["auditor"], OFFICER_PASS
        )
        kinds = [
            json.loads(r.entry.entry)
            for r in auditor.export_ledger()
            if r.HasField("entry") and r.entry.entry
        ]
        auditor.close()
        alerts = [k for k in kinds if k["kind"] == "witness.split_view"]
        assert len(alerts) == 1
        assert alerts[0]["peer"] == "GB-NCA"
        assert alerts[0]["conclusive"] is True
    finally:
        channel.close()
        assert fr_node.stop() == 0

    lines = fr_node.log_path.read_text().splitlines()
    log = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(e["event"] == "split_view_detected" and e["peer"] == "GB-NCA" for e in log)
    db = sqlite3.connect(fed.nodes["FR-OCRTEH"].root / "data" / "node.db")
    rows = db.execute("SELECT origin, known_note, new_note, conclusive FROM split_view_evidence")
    (row,) = rows.fetchall()
    db.close()
    assert row[0] == origin
    assert Checkpoint.parse(row[1].split(b"\n\n")[0].decode() + "\n").root_hash == b"\x01" * 32
    assert Checkpoint.parse(row[2].split(b"\n\n")[0].decode() + "\n").root_hash == b"\x03" * 32
    assert row[3] == 1
