"""A holder rotates its OPRF key between real nodes: a querier keeps its hits before,
during and after the overlap, the old key is refused once retired, and a token domain the
holder does not publish is refused in one sentence."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.matching import oprf
from exchange.matching.tokens import TOKEN_DOMAIN
from node.client.matching import MatchAnswer, MatchClient

if TYPE_CHECKING:
    from conftest import Cli, LiveFederation

GB, FR = "GB-NCA", "FR-OCRTEH"
# People no other test looks for, held by FR only.
RECORDS = """ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth
FR-R-1,Zsuzsanna,Vörösmarty-Kálnoky,F,1997-08-21,HUN,Pécs
FR-R-2,Teodor,Wiśniewski-Brzęk,M,1993-02-14,POL,Gdańsk
"""
PERSON = {"given_name": "Zsuzsanna", "family_name": "Vorosmarty-Kalnoky",
          "date_of_birth": "1997-08-21"}  # fmt: skip
OVERLAP_HOURS = 0.003  # 10.8 s: the steps "during" must fit in it on a busy machine


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_a_key_rotation_keeps_hits_through_the_overlap_and_then_retires_the_old_key(
    live: LiveFederation, cli: Cli, tmp_path: Path
) -> None:
    csv = tmp_path / "fr.csv"
    csv.write_text(RECORDS, encoding="utf-8")
    loaded = cli.json("match", "load", csv, "--as", live.credential(FR, "officer"), "--json")
    held = int(loaded["records"])  # uint64: a string in the protobuf JSON mapping
    assert held >= 2
    querier = MatchClient(live.client(GB))

    def fr_answer() -> MatchAnswer:
        (answer,) = querier.query([PERSON], peers=[FR])
        return answer

    before = fr_answer()
    assert before.result == "hit", before.detail

    # Officers may not rotate; a supervisor may, and is shown the outcome.
    refused = cli.refusal(cli.run("match", "rotate-key", "--as", live.credential(FR, "officer")))
    assert "RotateMatchKey" in refused or "supervisor" in refused
    rotated = cli.json(
        "match", "rotate-key", "--overlap-hours", str(OVERLAP_HOURS),
        "--as", live.credential(FR, "supervisor"), "--json",
    )  # fmt: skip
    old, new = rotated["old_key_id"], rotated["key_id"]
    assert old != new
    assert (rotated["token_domain"], rotated["records"]) == (TOKEN_DOMAIN, held)

    # During the overlap GB's copy is still of the old generation: served, and it hits.
    fed = fgrpc.FederationStub(live.peer_channel(GB, FR))
    _, element = oprf.blind(os.urandom(8))

    def evaluate(key_id: str, domain: int = TOKEN_DOMAIN) -> mpb.MatchEvaluateResponse:
        request = mpb.MatchEvaluateRequest(
            query_id=os.urandom(16), blinded_elements=[element], key_id=key_id,
            token_domain=domain,
        )  # fmt: skip
        return fed.MatchEvaluate(request, timeout=10)  # type: ignore[no-any-return]

    assert evaluate(old).key_id == old
    during = fr_answer()
    assert (during.result, during.reference) == ("hit", before.reference)

    # After the overlap: the old key is refused by name, and GB's next query copies the
    # new index and still hits the same record.
    time.sleep(max(0.0, rotated["retire_at_ms"] / 1000 - time.time()) + 0.5)
    with pytest.raises(grpc.RpcError) as retired:
        evaluate(old)
    assert retired.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"its current key is {new}" in (retired.value.details() or "")
    after = fr_answer()
    assert (after.result, after.reference) == ("hit", before.reference)
    assert evaluate("").key_id == new

    # A token domain FR does not publish: refused, naming both domains.
    with pytest.raises(grpc.RpcError) as foreign:
        evaluate("", TOKEN_DOMAIN + 1)
    assert foreign.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (foreign.value.details() or "").startswith(
        f"{FR} publishes token domain {TOKEN_DOMAIN}; this query uses domain {TOKEN_DOMAIN + 1}:"
    )

    # The holder's ledger: the rotation by the supervisor, then the retirement; no secret.
    live.wait_for(
        lambda: any(k == "match.key_retired" for k, _ in live.ledger_kinds(FR)), 20, "no retirement"
    )
    entries = [(k, f) for k, f in live.ledger_kinds(FR) if k.startswith("match.key_")]
    rotation = next(f for k, f in entries if k == "match.key_rotated")
    assert (rotation["old_key_id"], rotation["key_id"]) == (old, new)
    assert rotation["officer"] == "fr-ocrteh-supervisor"
    assert ("match.key_retired", old) in [(k, f.get("key_id")) for k, f in entries]
