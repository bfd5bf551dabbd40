"""A federation the size of the 2017 Call to Action: 37 agencies, each a real node process
(`mlax node serve`) on loopback with SQLite, under a 3-of-5 signed directory.

What the members and their officers observe: a new directory version installed on one
node reaches all 37; one officer's note to each of the 36 peers is receipted; an MLA
request to a peer is received, acknowledged and accepted; a victim-identification query
to all 36 peers gets a hit or a no-hit from each; and witnessing stays bounded: each
node's checkpoints carry the cosignatures of the three witnesses assigned to it
(exchange/ledger/witnesses.py), and no other member was asked.

The nodes run with a smaller footprint (`SMALL_FOOTPRINT`: fewer listener threads,
slower polling), settings any operator has. Start-up is CPU-bound (each node imports for
about a second), so 37 nodes take about half a minute on two cores. The long variant,
with memory, latency and a 2-agency baseline, is bench/bench_federation37.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from exchange import forms
from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.directory import Directory, SignedDirectory
from exchange.encoding import now_ms
from exchange.errors import MlaxError
from exchange.ledger import Checkpoint, verify_cosignature
from exchange.ledger.names import log_origin, witness_verifiers
from exchange.ledger.note import parse_note
from exchange.ledger.witnesses import assigned_witnesses, witness_epoch
from keys.admin import load_admin
from keys.directory_file import read_signed_directory, write_directory_file
from keys.identity import load_identity
from node.client import NodeCallError, OfficerClient
from node.client.cases import CaseClient
from node.client.matching import MatchClient
from node.devtools.federation import (
    LARGE_FEDERATION,
    LARGE_WITNESSES,
    SMALL_DELIVERY,
    SMALL_LISTENER,
    Federation,
    NodeProcess,
    build_federation,
    member_agencies,
    start_all,
    stop_all,
)

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation-37")]

PASS, OFFICER_PASS = b"pw37", b"opw37"
AGENCIES = member_agencies(37)
IDS = [a for a, _ in AGENCIES]
GB, NG, KR = "GB-NCA", "NG-NAPTIP", "KR-MLA"
K = LARGE_WITNESSES  # witnesses per checkpoint, as the config says
FORMS = Path(__file__).resolve().parents[2] / "deploy" / "forms"
CONFIG = LARGE_FEDERATION
# Each node asks every peer for a newer directory this often: 37 x 36 calls per period.
DIRECTORY_SYNC_SECONDS = 10.0
RECORDS = """ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth
V-0001,Blessing,Okonkwo,F,1999-04-12,NGA,Benin City
V-0002,Mohammed,Al-Rashid,M,1995,SYR,Aleppo
"""
KR_RECORDS = """ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth
KR-V-01,Min-jung,Park,F,2002-07-19,PRK,Hamhung
"""


@dataclass
class Federation37:
    fed: Federation
    nodes: dict[str, NodeProcess]
    started_at: float
    startup_seconds: float
    clients: dict[tuple[str, str], OfficerClient]
    channels: dict[str, grpc.Channel]

    def client(self, agency: str, role: str = "officer") -> OfficerClient:
        if (agency, role) not in self.clients:
            path = self.fed.nodes[agency].credentials[role]
            self.clients[agency, role] = OfficerClient.from_bundle(path, OFFICER_PASS, timeout=60)
        return self.clients[agency, role]

    def directory(self) -> Directory:
        return Directory.from_bytes(read_signed_directory(self.fed.directory_file).directory)

    def peer(self, target: str) -> fgrpc.FederationStub:
        """`target`'s federation service, called as a member would (GB, or FR for GB)."""
        if target not in self.channels:
            caller = "FR-OCRTEH" if target == GB else GB
            ident = load_identity(self.fed.nodes[caller].root / "keys", PASS)
            card = self.directory().agency(target)
            assert card is not None
            creds = grpc.ssl_channel_credentials(
                card.tls_certificate_pem, ident.tls_private_key_pem(), ident.tls_certificate_pem()
            )
            self.channels[target] = grpc.secure_channel(
                card.endpoint, creds, options=[("grpc.ssl_target_name_override", "127.0.0.1")]
            )
        return fgrpc.FederationStub(self.channels[target])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `predicate` until it holds (a failed call counts as false); seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return time.monotonic() - started
        except (NodeCallError, grpc.RpcError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout} s")


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation37]:
    env = dict(
        os.environ,
        MLAX_KDF_PROFILE="test",
        MLAX_KEY_PASSPHRASE=PASS.decode(),
        MLAX_OFFICER_PASSPHRASE=OFFICER_PASS.decode(),
    )
    env.pop("MLAX_CREDENTIAL", None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAX_KDF_PROFILE", "test")
        fed = build_federation(
            tmp_path_factory.mktemp("federation-37"),
            PASS,
            OFFICER_PASS,
            agencies=AGENCIES,
            threshold=3,
            admins=5,
            delivery={**SMALL_DELIVERY, "directory_sync_seconds": DIRECTORY_SYNC_SECONDS},
            extra_config=CONFIG,
            listener=SMALL_LISTENER,
        )
    nodes = {agency: NodeProcess(setup, env) for agency, setup in fed.nodes.items()}
    started_at = time.time()
    live = Federation37(fed, nodes, started_at, 0.0, {}, {})
    try:
        live.startup_seconds = start_all(list(nodes.values()), timeout=240)
        yield live
    finally:
        for c in live.clients.values():
            c.close()
        for ch in live.channels.values():
            ch.close()
        codes = stop_all(list(nodes.values()))
    crashed = {a: c for a, c in codes.items() if c != 0}
    assert not crashed, {a: nodes[a].log_tail() for a in crashed}


def test_37_agencies_directory_messages_case_matching_and_bounded_witnessing(
    federation: Federation37, cli: Cli, tmp_path: Path, record_property: Callable[..., None]
) -> None:
    live = federation
    record_property("startup_seconds", round(live.startup_seconds, 1))
    assert len(live.directory().agencies) == 37

    # (a) A new directory version, signed by three of the five administrators (not the
    # first three), installed by NG's operator, reaches all 37 nodes through their syncs.
    v1 = read_signed_directory(live.fed.directory_file)
    d1 = Directory.from_bytes(v1.directory)
    at = now_ms()
    d2 = replace(d1, version=2, issued_at=at, expires_at=at + (d1.expires_at - d1.issued_at))
    signed = SignedDirectory(d2.to_bytes())
    for admin in (live.fed.admin_dirs[1], live.fed.admin_dirs[2], live.fed.admin_dirs[4]):
        signed = signed.signed_by(load_admin(admin, PASS).signing_key)
    v2_file = tmp_path / "directory-v2.json"
    write_directory_file(v2_file, signed)
    installed = cli.run(
        "node", "directory", "update", v2_file, "--config", live.fed.nodes[NG].config
    )
    assert installed.returncode == 0, installed.stderr
    behind = set(IDS)

    def everyone_has_v2() -> bool:
        for agency in sorted(behind):
            request = fpb.GetDirectoryRequest(have_version=2)  # the version, not the document
            answer = live.peer(agency).GetDirectory(request, timeout=10)
            if answer.version == 2:
                behind.discard(agency)
        return not behind

    propagated = wait_for(everyone_has_v2, 120, f"directory version 2 did not reach {behind}")
    record_property("directory_propagation_seconds", round(propagated, 1))

    # (b) One officer's note to each of the 36 peers: each receipted, each in the inbox.
    gb = live.client(GB)
    sent = {
        peer: gb.send(peer, subject=f"Call to Action roll call {peer}", text="Please confirm.")
        for peer in IDS
        if peer != GB
    }
    pending = dict(sent)

    def all_delivered() -> bool:
        for peer, info in list(pending.items()):
            if gb.show(info.message_id, content=False).info.state == "delivered":
                del pending[peer]
        return not pending

    fan_out = wait_for(all_delivered, 120, f"messages to {sorted(pending)} were not receipted")
    record_property("fan_out_36_seconds", round(fan_out, 1))
    for peer, info in sent.items():
        assert info.message_id in {m.message_id for m in live.client(peer).inbox(limit=50)}

    # (c) An MLA request to the 37th member, approved (four-eyes), received, acknowledged
    # and accepted.
    cases = CaseClient(gb, retry_wait=0.2)
    data = tomllib.loads((FORMS / "mla-request.toml").read_text())
    data["requested_authority"] = {"agency_id": KR, "name": "Central authority KR"}
    ref = cases.create(forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms()))
    case_ref = ref.summary.case_ref
    assert cases.act(case_ref, "submit").summary.awaiting_approval
    CaseClient(live.client(GB, "supervisor")).approve(case_ref)
    kr = CaseClient(live.client(KR), retry_wait=0.2)
    wait_for(lambda: kr.get(case_ref).summary.state == "submitted", 60, "no case at KR")
    for action, state in (("acknowledge", "acknowledged"), ("accept", "accepted")):
        kr.act(case_ref, action)

        def reached(state: str = state) -> bool:
            summary = cases.get(case_ref).summary
            return summary.state == state and not summary.pending_action

        wait_for(reached, 60, f"GB did not see the case {state}")

    # (d) Victim identification: one query to all 36 peers, a hit or no-hit from each.
    (tmp_path / "ng.csv").write_text(RECORDS, encoding="utf-8")
    (tmp_path / "kr.csv").write_text(KR_RECORDS, encoding="utf-8")
    MatchClient(live.client(NG)).load(tmp_path / "ng.csv")
    MatchClient(live.client(KR)).load(tmp_path / "kr.csv")
    matcher = MatchClient(gb)
    latency: dict[str, float] = {}
    for person, holder in (
        ({"given_name": "Blessing", "family_name": "Okonkwo", "date_of_birth": "1999-04-12"}, NG),
        ({"given_name": "Min-jung", "family_name": "Park", "date_of_birth": "2002-07-19"}, KR),
    ):
        started = time.monotonic()
        answers = {a.peer: a for a in matcher.query([person], timeout_ms=60_000)}
        latency[holder] = round(time.monotonic() - started, 2)
        record_property(f"query_36_seconds_{holder}", latency[holder])
        assert set(answers) == set(IDS) - {GB}
        results = {peer: a.result for peer, a in answers.items()}
        assert results[holder] == "hit", answers[holder].detail
        assert {r for p, r in results.items() if p != holder} == {"no-hit"}, results

    # (e) Bounded witnessing, as peers and auditors see it: each node's latest checkpoint
    # carries valid cosignatures of the witnesses assigned to it and of no one else.
    directory = live.directory()
    fed_id = directory.federation_id

    def allowed(log: str) -> set[str]:
        epochs = range(witness_epoch(int(live.started_at)), witness_epoch(int(time.time())) + 1)
        return {w for e in epochs for w in assigned_witnesses(directory, log, e, K)}

    def cosigners(log: str) -> set[str]:
        record = live.peer(log).GetCheckpoint(lpb.GetCheckpointRequest(), timeout=10)
        checkpoint = Checkpoint.parse(parse_note(record.note).text)
        assert checkpoint.origin == log_origin(fed_id, log)
        found = set()
        for line in record.cosignatures:
            for agency, verifiers in witness_verifiers(directory, log).items():
                for v in verifiers:
                    try:
                        verify_cosignature(checkpoint, line, v)
                    except MlaxError:
                        continue
                    found.add(agency)
        assert len(found) == len(record.cosignatures), "a cosignature did not verify"
        return found

    cosigned: dict[str, set[str]] = {}

    def witnessed() -> bool:
        for log in IDS:
            cosigned[log] = cosigners(log)
        return all(len(c) >= K for c in cosigned.values())

    wait_for(witnessed, 90, "not every node's latest checkpoint has three cosignatures")
    for log, found in cosigned.items():
        assert found <= allowed(log), (log, found, allowed(log))
    # The witnesses' side: which logs each node was asked to witness (and did), from its
    # database. Nobody witnessed a log it was not assigned to.
    origins = {log_origin(fed_id, log): log for log in IDS}
    witnessed_by: dict[str, list[str]] = {log: [] for log in IDS}
    for witness, setup in live.fed.nodes.items():
        db = sqlite3.connect(f"file:{setup.root / 'data' / 'node.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT origin FROM witness_state").fetchall()
        finally:
            db.close()
        for (origin,) in rows:
            witnessed_by[origins[origin]].append(witness)
    for log, witnesses in witnessed_by.items():
        assert set(witnesses) <= allowed(log), (log, witnesses)
        assert len(witnesses) >= K
    print(
        json.dumps(
            {
                "agencies": 37,
                "startup_seconds": round(live.startup_seconds, 1),
                "directory_propagation_seconds": round(propagated, 1),
                "fan_out_36_seconds": round(fan_out, 1),
                "query_36_seconds": latency,
                "witnesses_per_log": max(len(w) for w in witnessed_by.values()),
            }
        )
    )
