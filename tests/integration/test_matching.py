"""Victim identification between real nodes: hit and no-hit, the follow-up disclosure,
what the holder records of a query, quotas, and a peer that is down."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.matching import oprf
from exchange.matching.tokens import TOKEN_DOMAIN
from node.client import OfficerClient
from node.client.cases import CaseClient
from node.client.matching import MatchClient
from node.devtools.federation import DEMO_AGENCIES, NodeProcess, build_federation

if TYPE_CHECKING:
    from conftest import Cli, LiveFederation

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"

RECORDS = """ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth
NG-V-0001,Blessing,Okonkwo,F,1999-04-12,NGA,Benin City
NG-V-0002,Олена,Шевченко,F,2001-11-03,UKR,Kharkiv
NG-V-0003,Mohammed,Al-Rashid,M,1995,SYR,Aleppo
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_hit_no_hit_and_a_disclosure_on_follow_up(
    live: LiveFederation, cli: Cli, tmp_path: Path
) -> None:
    ng_officer, ng_sup = live.credential(NG, "officer"), live.credential(NG, "supervisor")
    gb_officer, gb_sup = live.credential(GB, "officer"), live.credential(GB, "supervisor")
    loaded = cli.json("match", "load", _write(tmp_path, "v.csv", RECORDS), "--as", ng_officer,
                      "--json")  # fmt: skip
    assert loaded["added"] == 3 or loaded["unchanged"] == 3

    # A transliterated, re-ordered spelling with the same birth date is found at NG only.
    out = cli.run(
        "match", "query", "--given-name", "Olena", "--family-name", "Shevchenko",
        "--dob", "2001-11-03", "--as", gb_officer, "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (answer,) = [json.loads(line) for line in out.stdout.splitlines()]
    ng, fr = answer["answers"][NG], answer["answers"][FR]
    assert ng["result"] == "hit"
    assert ng["band"] in ("strong", "possible")
    assert ng["reference"].startswith(f"{NG}:")
    assert fr["result"] == "no-hit"
    # Nothing about the records themselves travels: only the band and the reference.
    assert set(ng) == {"result", "band", "reference"}

    out = cli.run(
        "match", "query", "--given-name", "Maria", "--family-name", "Gonzalez",
        "--dob", "1980-01-01", "--as", gb_officer, "--json",
    )  # fmt: skip
    (miss,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert {a["result"] for a in miss["answers"].values()} == {"no-hit"}

    # What the holder recorded of the queries: counts and ids, never a name.
    evaluated = [f for k, f in live.ledger_kinds(NG) if k == "match.evaluated" and f["peer"] == GB]
    assert len(evaluated) >= 2
    assert all(set(f) == {"kind", "at", "peer", "query_id", "elements"} for f in evaluated)
    ng_text = json.dumps(live.ledger_kinds(NG)) + live.nodes[NG].log_path.read_text()
    for secret in ("Olena", "Shevchenko", "Maria", "Gonzalez", "2001-11-03"):
        assert secret not in ng_text
    gb_text = json.dumps(live.ledger_kinds(GB)) + live.nodes[GB].log_path.read_text()
    for secret in ("Olena", "Shevchenko"):
        assert secret not in gb_text

    # The follow-up: a victim-identification case, approved on both sides.
    out = cli.run(
        "match", "follow-up", ng["reference"], "--given-name", "Olena",
        "--family-name", "Shevchenko", "--date-of-birth", "2001-11-03",
        "--purpose", "victim-assistance",
        "--justification", "A possible victim was found in Manchester; she needs assistance.",
        "--contact-email", "liaison@nca.example", "--as", gb_officer, "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    ref = json.loads(out.stdout)["summary"]["case_ref"]
    assert cli.run("case", "approve", ref, "--as", gb_sup).returncode == 0
    ng_cases = CaseClient(live.client(NG))
    live.wait_for(lambda: ng_cases.get(ref).summary.state == "submitted", 20, "no case at NG")
    for action in ("acknowledge", "accept", "start-execution"):
        ng_cases.act(ref, action)
        live.wait_for(
            lambda: not ng_cases.get(ref).summary.pending_action, 20, f"{action} not receipted"
        )
    # Disclosure is the holder supervisor's decision.
    refused = cli.refusal(cli.run("match", "disclose", ref, "--as", ng_officer))
    assert "supervisor" in refused or "may not call Disclose" in refused
    out = cli.run("match", "disclose", ref, "--as", ng_sup)
    assert out.returncode == 0, out.stderr
    gb_cases = CaseClient(live.client(GB))
    live.wait_for(lambda: gb_cases.get(ref).summary.state == "executed", 20, "no disclosure")
    shown = cli.run("case", "show", ref, "--content", "--as", gb_officer)
    assert "Шевченко" in shown.stdout
    assert "NG-V-0002" not in shown.stdout  # the holder's own reference stays at the holder
    disclosed = [f for k, f in live.ledger_kinds(NG) if k == "match.disclosed"]
    assert [f["case_ref"] for f in disclosed].count(ref) == 1


@pytest.mark.integration
def test_quota_stops_enumeration_and_a_down_peer_is_reported(tmp_path: Path) -> None:
    passphrase, officer_pass = b"node-pass", b"officer-pass"
    env = dict(os.environ, MLAX_KEY_PASSPHRASE=passphrase.decode(), MLAX_KDF_PROFILE="test")
    fed = build_federation(
        tmp_path / "fed",
        passphrase,
        officer_pass,
        extra_config="[matching]\nevaluations_per_hour = 300\nsync_interval_seconds = 3600\n",
    )
    (gb, _), (fr, _), (ng, _) = DEMO_AGENCIES
    nodes = {a: NodeProcess(s, env) for a, s in fed.nodes.items()}
    for n in nodes.values():
        n.start()
    clients: list[OfficerClient] = []

    def client(agency: str) -> MatchClient:
        c = OfficerClient.from_bundle(fed.nodes[agency].credentials["officer"], officer_pass)
        clients.append(c)
        return MatchClient(c)

    try:
        client(ng).load(_write(tmp_path, "v.csv", RECORDS))
        querier = client(gb)
        person = {"given_name": "Blessing", "family_name": "Okonkwo", "date_of_birth": "1999-04-12"}
        first = {a.peer: a for a in querier.query([person])}
        assert first[ng].result == "hit", first[ng].detail
        # A batch that cannot fit the quota whole (48 used, 6 x 48 more > 300) is refused
        # at once, saying how many fit, and costs nothing: the next single query still hits.
        evaluated = _evaluated(fed, ng)
        batch = [{**person, "given_name": f"Batch{i}"} for i in range(6)]
        refused = [a for a in querier.query(batch) if a.peer == ng]
        assert {a.result for a in refused} == {"over-quota"}
        assert "this query needs 288 (6 people); 5 people fit now" in refused[0].detail
        assert _evaluated(fed, ng) == evaluated
        again = {a.peer: a for a in querier.query([person])}
        assert again[ng].result == "hit", again[ng].detail
        # Enumeration: one guess after another until NG's quota for GB runs out.
        results = []
        for i in range(40):
            guess = {"given_name": f"Guess{i}", "family_name": "Okonkwo", "date_of_birth": "1999"}
            answers = {a.peer: a for a in querier.query([guess])}
            results.append(answers[ng].result)
            if answers[ng].result == "over-quota":
                # The holder names itself, the querier, and when the quota starts afresh.
                assert f"{ng} allows {gb} 300 blind evaluations an hour" in answers[ng].detail
                assert "starts afresh at" in answers[ng].detail
                # Every peer counts the same guesses: each refuses, and says so at once.
                assert answers[fr].result == "over-quota"
                break
        assert results[-1] == "over-quota", results
        # NG refuses a raw call over quota too, and ledgered the refusal.
        stub = fgrpc.FederationStub(_peer_channel(fed, gb, ng))
        _, blinded = oprf.blind(b"anything")
        with pytest.raises(grpc.RpcError) as e:
            stub.MatchEvaluate(
                mpb.MatchEvaluateRequest(
                    query_id=os.urandom(16),
                    blinded_elements=[blinded] * 300,
                    token_domain=TOKEN_DOMAIN,
                ),
                timeout=10,
            )
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # A peer that is down is reported within the timeout, not waited for.
        nodes[fr].kill()
        started = time.monotonic()
        answers = {a.peer: a for a in querier.query([person], timeout_ms=2000)}
        assert time.monotonic() - started < 15
        assert answers[fr].result == "unavailable"
        assert answers[ng].result == "over-quota"
    finally:
        for c in clients:
            c.close()
        for n in nodes.values():
            n.stop()


def _evaluated(fed: object, agency: str) -> int:
    """How many `match.evaluated` entries the agency's ledger holds (read-only)."""
    db = fed.nodes[agency].root / "data" / "node.db"  # type: ignore[attr-defined]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        (n,) = conn.execute(
            "SELECT count(*) FROM ledger_entries WHERE kind = 'match.evaluated'"
        ).fetchone()
    finally:
        conn.close()
    return int(n)


def _peer_channel(fed: object, as_agency: str, target: str) -> grpc.Channel:
    from exchange.directory import Directory
    from keys.directory_file import read_signed_directory
    from keys.identity import load_identity

    setups = fed.nodes  # type: ignore[attr-defined]
    ident = load_identity(setups[as_agency].root / "keys", b"node-pass")
    directory = Directory.from_bytes(
        read_signed_directory(fed.directory_file).directory  # type: ignore[attr-defined]
    )
    card = directory.agency(target)
    assert card is not None
    creds = grpc.ssl_channel_credentials(
        root_certificates=card.tls_certificate_pem,
        private_key=ident.tls_private_key_pem(),
        certificate_chain=ident.tls_certificate_pem(),
    )
    return grpc.secure_channel(
        card.endpoint, creds, options=[("grpc.ssl_target_name_override", "127.0.0.1")]
    )


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_a_single_query_too_thin_to_match_reads_like_a_batch_and_costs_no_quota(
    live: LiveFederation, cli: Cli, tmp_path: Path
) -> None:
    gb_officer = live.credential(GB, "officer")
    evaluated_before = sum(1 for k, _ in live.ledger_kinds(NG) if k == "match.evaluated")
    single = cli.run(
        "match", "query", "--given-name", "Madonna", "--dob", "1990", "--as", gb_officer,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    assert f"{NG}: unmatchable: Too little to match" in single.stdout
    batch_file = _write(
        tmp_path,
        "thin.csv",
        "ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth\nt1,Madonna,,,1990,,\n",
    )
    batch = cli.run("match", "query", "--batch", batch_file, "--as", gb_officer, "--json")
    assert batch.returncode == 0, batch.stderr
    (doc,) = [json.loads(line) for line in batch.stdout.splitlines()]
    assert doc["outcome"] == "unmatchable"
    assert {a["result"] for a in doc["answers"].values()} == {"unmatchable"}
    # Nobody was asked to evaluate anything for them.
    assert sum(1 for k, _ in live.ledger_kinds(NG) if k == "match.evaluated") == evaluated_before
    queried = [f for k, f in live.ledger_kinds(GB) if k == "match.query"]
    assert queried[-1]["unmatchable"] == queried[-1]["queries"] == 1
