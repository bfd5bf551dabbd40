"""The follow-up to a hit between real nodes (issue 14, privacy hole 2): a follow-up names
the person the querier is looking for, the holder grades that person against the record
behind the reference, and its supervisor cannot disclose a record the person does not
match without an explicit, ledgered override.

The hole: handles are published in the index, so a querier could copy one for a record
it never queried, open a follow-up naming it, and be sent the identity."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.matching.tokens import TOKEN_DOMAIN
from node.client import NodeCallError, OfficerClient
from node.client.cases import CaseClient
from node.client.matching import MatchClient

if TYPE_CHECKING:
    from conftest import Cli, LiveFederation

GB, NG = "GB-NCA", "NG-NAPTIP"

# Held at NG only; unlike anything other tests load or ask about.
RECORDS = """ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth
NG-FU-0001,Nneka,Adebayo,F,2004-02-14,NGA,Ibadan
NG-FU-0002,Folake,Ogunleye,F,1996-07-08,NGA,Abeokuta
"""
SOUGHT = ["--given-name", "Nneka", "--family-name", "Adebayo", "--date-of-birth", "2004-02-14"]
# Somebody the holder does not hold: what a querier fishing with a copied handle names.
STRANGER = ["--given-name", "Halima", "--family-name", "Yusuf", "--date-of-birth", "1990-03-03"]
FOLLOW_UP = [
    "--purpose", "victim-assistance",
    "--justification", "A possible victim was found in Leeds; she needs assistance.",
    "--contact-email", "liaison@nca.example",
]  # fmt: skip


@pytest.fixture(scope="module")
def hit(live: LiveFederation, cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> str:
    """NG holds the records; GB asked for Nneka Adebayo and got this reference."""
    path = tmp_path_factory.mktemp("followup") / "victims.csv"
    path.write_text(RECORDS, encoding="utf-8")
    loaded = cli.json("match", "load", path, "--as", live.credential(NG), "--json")
    assert int(loaded["records"]) >= 2
    out = cli.run("match", "query", *SOUGHT, "--peer", NG, "--as", live.credential(GB), "--json")
    assert out.returncode == 0, out.stderr
    (doc,) = [json.loads(line) for line in out.stdout.splitlines()]
    answer = doc["answers"][NG]
    assert answer["result"] == "hit", answer
    return str(answer["reference"])


def _open(live: LiveFederation, cli: Cli, reference: str, person: list[str]) -> str:
    """GB opens and approves a follow-up; NG acknowledges, accepts and starts execution."""
    out = cli.run("match", "follow-up", reference, *person, *FOLLOW_UP,
                  "--as", live.credential(GB), "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    ref = str(json.loads(out.stdout)["summary"]["case_ref"])
    assert (
        cli.run("case", "approve", ref, "--as", live.credential(GB, "supervisor")).returncode == 0
    )
    ng_cases = CaseClient(live.client(NG))
    live.wait_for(lambda: ng_cases.get(ref).summary.state == "submitted", 20, "no case at NG")
    for action in ("acknowledge", "accept", "start-execution"):
        ng_cases.act(ref, action)
        live.wait_for(
            lambda: not ng_cases.get(ref).summary.pending_action, 20, f"{action} not receipted"
        )
    return ref


def _disclosed(live: LiveFederation, ref: str) -> list[dict[str, Any]]:
    return [f for k, f in live.ledger_kinds(NG) if k == "match.disclosed" and f["case_ref"] == ref]


def _published_handles(live: LiveFederation) -> list[bytes]:
    """The handles of NG's published index, as any peer fetches them."""
    stub = fgrpc.FederationStub(live.peer_channel(GB, NG))
    chunks = stub.GetMatchIndex(mpb.MatchIndexRequest(token_domain=TOKEN_DOMAIN), timeout=30)
    return [bytes(e.handle) for c in chunks for e in c.entries if not e.removed]


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_a_copied_handle_buys_no_identity_without_a_ledgered_override(
    live: LiveFederation, cli: Cli, hit: str
) -> None:
    # GB never asked about any record but Nneka's; it takes another handle from the index.
    honest = bytes.fromhex(hit.rpartition(":")[2])
    copied = next(h for h in sorted(_published_handles(live)) if h != honest)
    ref = _open(live, cli, f"{NG}:{copied.hex()}", STRANGER)
    ng_sup = live.credential(NG, "supervisor")

    # The supervisor sees that the person sought is not the record, before anything goes.
    checked = MatchClient(live.client(NG, "supervisor")).check(ref)
    assert checked.agreement == "does-not-match"
    assert not checked.allowed
    assert "does not match" in checked.problem
    said = cli.run("match", "check", ref, "--as", ng_sup)
    assert "does NOT match the record" in said.stdout

    refused = cli.refusal(cli.run("match", "disclose", ref, "--as", ng_sup))
    assert "does not match the record" in refused
    # Nothing was sent: the case still waits for its report at NG, GB has no identity.
    assert CaseClient(live.client(NG)).get(ref).summary.state == "in_execution"
    assert _disclosed(live, ref) == []
    at_gb = CaseClient(live.client(GB)).get(ref, content=True)
    assert [e.action for e in at_gb.timeline if e.action == "report_executed"] == []
    assert at_gb.form is not None
    assert at_gb.form.victim_id.person.given_name == "Halima"  # what GB sent, nothing more

    # An override needs a reason.
    no_reason = cli.run("match", "disclose", ref, "--override-mismatch", "--as", ng_sup)
    assert no_reason.returncode == 2
    assert "--reason" in no_reason.stderr

    reason = "Court order 2026/118 asks for this record whoever asks."
    out = cli.run("match", "disclose", ref, "--override-mismatch", "--reason", reason,
                  "--as", ng_sup, "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert done["agreement"] == "does-not-match"
    assert done["disclosed"]
    assert done["overridden"]
    gb_cases = CaseClient(live.client(GB))
    live.wait_for(lambda: gb_cases.get(ref).summary.state == "executed", 20, "no disclosure")
    report = cli.run("case", "show", ref, "--content", "--as", live.credential(GB)).stdout
    assert "does not match this record (disclosed on the supervisor's override)" in report
    (entry,) = _disclosed(live, ref)
    assert entry["agreement"] == "does-not-match"
    assert entry["overridden"] is True
    assert entry["reason_chars"] == len(reason)
    assert entry["reason_sha256"] == hashlib.sha256(reason.encode()).hexdigest()
    assert "Court order" not in json.dumps(live.ledger_kinds(NG))


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_an_honest_follow_up_after_a_hit_matches_and_is_disclosed(
    live: LiveFederation, cli: Cli, hit: str
) -> None:
    ref = _open(live, cli, hit, SOUGHT)
    ng_sup = live.credential(NG, "supervisor")
    checked = cli.json("match", "check", ref, "--as", ng_sup, "--json")
    assert checked["agreement"] == "matches"
    assert checked["allowed"] is True
    # A reason without an override is refused and changes nothing.
    stray = cli.run("match", "disclose", ref, "--reason", "because", "--as", ng_sup)
    assert stray.returncode == 2

    out = cli.run("match", "disclose", ref, "--as", ng_sup)
    assert out.returncode == 0, out.stderr
    assert "the person sought matches the record (matches)" in out.stdout
    gb_cases = CaseClient(live.client(GB))
    live.wait_for(lambda: gb_cases.get(ref).summary.state == "executed", 20, "no disclosure")
    report = cli.run("case", "show", ref, "--content", "--as", live.credential(GB)).stdout
    assert "Ibadan" in report
    assert "Abeokuta" not in report
    (entry,) = _disclosed(live, ref)
    assert (entry["agreement"], entry["overridden"]) == ("matches", False)
    assert "reason_sha256" not in entry
    # What the holder's log says of it: no name of the person sought or disclosed.
    log = live.nodes[NG].log_path.read_text()
    for secret in ("Nneka", "Adebayo", "Halima", "Yusuf"):
        assert secret not in log


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_a_follow_up_without_the_person_is_refused_by_the_form_rules(
    live: LiveFederation, cli: Cli, hit: str
) -> None:
    out = cli.run("match", "follow-up", hit, *FOLLOW_UP, "--as", live.credential(GB))
    assert out.returncode == 2
    assert "--given-name" in out.stderr
    # The node's own form rules, for a client that skips the CLI's.
    form = fpb.CaseForm(
        victim_id=fpb.VictimIdRequest(
            requesting_authority=fpb.Authority(agency_id=GB, name=GB),
            requested_authority=fpb.Authority(agency_id=NG, name=NG),
            match_reference=hit,
            purpose=fpb.VICTIM_ID_PURPOSE_VICTIM_ASSISTANCE,
            legal_basis=[fpb.LegalBasis(instrument=fpb.LEGAL_INSTRUMENT_PALERMO_PROTOCOL)],
            justification="A possible victim was found in Leeds.",
            contact_officer=fpb.ContactOfficer(name="DS Marsh", email="marsh@nca.example"),
            language="en",
        )
    )
    with pytest.raises(NodeCallError) as refused:
        CaseClient(live.client(GB)).create(form, recipient=NG)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(refused.value).startswith("Field person: the person you are looking for")
    # A person who breaks the rules of a query is refused the same way, naming the field.
    form.victim_id.person.CopyFrom(fpb.VictimSought(given_name="Nneka", date_of_birth="14/02/2004"))
    with pytest.raises(NodeCallError) as bad:
        CaseClient(live.client(GB)).create(form, recipient=NG)
    assert str(bad.value).startswith("Field person.date_of_birth:")


@pytest.mark.integration
@pytest.mark.xdist_group("federation")
def test_only_a_supervisor_who_may_read_the_follow_up_discloses(
    live: LiveFederation, hit: str
) -> None:
    """A follow-up restricted to one of the holder's officers: another supervisor of the
    holder may not disclose on it (nor check it), the named supervisor may."""
    name = f"ng-named-{uuid.uuid4().hex[:6]}"
    named = live.add_officer(NG, name, "supervisor")
    view = MatchClient(live.client(GB)).follow_up(
        hit,
        person={"given_name": "Nneka", "family_name": "Adebayo", "date_of_birth": "2004-02-14"},
        purpose="victim-assistance",
        justification="A possible victim was found in Leeds; she needs assistance.",
        contact={"name": "liaison", "email": "liaison@nca.example"},
        handling=("named-officers-only",),
        restricted_to=(name,),
    )
    ref = view.summary.case_ref
    CaseClient(live.client(GB, "supervisor")).approve(ref)
    with OfficerClient.from_bundle(named, live.officer_passphrase, timeout=10) as holder:
        ng_cases = CaseClient(holder)
        live.wait_for(lambda: ng_cases.get(ref).summary.state == "submitted", 20, "no case at NG")
        for action in ("acknowledge", "accept", "start-execution"):
            ng_cases.act(ref, action)
            live.wait_for(
                lambda: not ng_cases.get(ref).summary.pending_action, 20, f"{action} not receipted"
            )
        other = MatchClient(live.client(NG, "supervisor"))
        for attempt in (lambda: other.check(ref), lambda: other.disclose(ref)):
            with pytest.raises(NodeCallError) as refused:
                attempt()
            assert refused.value.status == "PERMISSION_DENIED"
            assert "restricted to named officers" in refused.value.message
        assert _disclosed(live, ref) == []
        refusals = [
            f
            for k, f in live.ledger_kinds(NG)
            if k == "case.action_refused" and f["case_ref"] == ref
        ]
        assert {(f["action"], f["reason"]) for f in refusals} == {
            ("disclose", "restricted_to_named_officers")
        }
        done = MatchClient(holder).disclose(ref)
        assert done.disclosed
    (entry,) = _disclosed(live, ref)
    assert entry["supervisor"] == name
