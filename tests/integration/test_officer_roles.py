"""Officer roles and credentials against real nodes: who may call what, and what they see
when refused (SDK: NodeCallError with the status; CLI: one sentence, exit 1 or 3)."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import pytest

from node.client import Credential, NodeCallError, OfficerClient

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Cli, LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR = "GB-NCA", "FR-OCRTEH"


@pytest.fixture(scope="module")
def delivered_to_fr(live: LiveFederation) -> str:
    """A message from GB that FR holds, for read and list tests."""
    gb = live.client(GB)
    sent = gb.send(FR, subject="for the roles tests", text="role-test content", case_ref="R-1")
    live.wait_delivered(gb, sent.message_id)
    return sent.message_id


def test_auditor_cannot_submit(live: LiveFederation, cli: Cli) -> None:
    auditor, officer = live.client(GB, "auditor"), live.client(GB, "officer")
    outbox = {m.message_id for m in officer.outbox(limit=1000)}
    refusals = live.rejected_count(GB, "role")
    with pytest.raises(NodeCallError) as exc:
        auditor.send(FR, subject="not allowed", text="auditors do not send")
    assert exc.value.status == "PERMISSION_DENIED"
    assert "auditor" in exc.value.message
    assert live.rejected_count(GB, "role") == refusals + 1
    assert any(
        e.get("officer") == "gb-nca-auditor" and e.get("call") == "Submit"
        for e in live.log_events(GB, "officer_refused")
    )

    result = cli.run(
        "send", "--as", live.credential(GB, "auditor"), "--to", FR, "--subject", "s", "--body", "b"
    )
    assert "auditor" in cli.refusal(result, 1)
    assert {m.message_id for m in officer.outbox(limit=1000)} == outbox


def test_auditor_lists_and_sees_evidence_but_not_content(
    live: LiveFederation, cli: Cli, delivered_to_fr: str
) -> None:
    auditor = live.client(FR, "auditor")
    listed = {m.message_id: m for m in auditor.inbox(limit=1000)}
    assert delivered_to_fr in listed
    meta = auditor.show(delivered_to_fr, content=False)
    assert meta.subject is None
    assert meta.text is None
    assert meta.evidence.receipt  # the receipt FR issued
    reads_before = [k for k, _ in live.ledger_kinds(FR) if k == "content.read"]

    with pytest.raises(NodeCallError) as exc:
        auditor.show(delivered_to_fr)
    assert exc.value.status == "PERMISSION_DENIED"
    assert [k for k, _ in live.ledger_kinds(FR) if k == "content.read"] == reads_before
    assert (
        auditor.show(delivered_to_fr, content=False).info.read_at == listed[delivered_to_fr].read_at
    )

    with pytest.raises(NodeCallError) as exc:
        next(iter(auditor.watch()))
    assert exc.value.status == "PERMISSION_DENIED"

    sentence = cli.refusal(cli.run("show", delivered_to_fr, "--as", live.credential(FR, "auditor")))
    assert "Auditors" in sentence


def _foreign_credential(live: LiveFederation, tmp_path: Path) -> Path:
    """GB's officer credential, pointed at FR's officer port (as if copied across)."""
    doc = json.loads(live.credential(GB).read_text())
    fr_doc = json.loads(live.credential(FR).read_text())
    doc["endpoint"] = fr_doc["endpoint"]
    doc["server_certificate"] = fr_doc["server_certificate"]
    path = tmp_path / "gb-officer-at-fr.json"
    path.write_text(json.dumps(doc))
    return path


def test_another_nodes_officer_is_refused(
    live: LiveFederation, cli: Cli, tmp_path: Path, delivered_to_fr: str
) -> None:
    path = _foreign_credential(live, tmp_path)
    fr = live.client(FR)
    outbox = {m.message_id for m in fr.outbox(limit=1000)}
    with OfficerClient.from_bundle(path, live.officer_passphrase, timeout=10) as foreign:
        for call in (
            foreign.whoami,
            lambda: foreign.inbox(),
            lambda: foreign.show(delivered_to_fr),
            lambda: foreign.send(GB, subject="s", text="t"),
        ):
            with pytest.raises(NodeCallError) as exc:
                call()
            # Refused in the mutual-TLS handshake (FACTS.md: UNAVAILABLE) or by the node.
            assert exc.value.status in {"UNAVAILABLE", "UNAUTHENTICATED"}
    assert {m.message_id for m in fr.outbox(limit=1000)} == outbox
    assert live.nodes[FR].running

    result = cli.run("inbox", "--as", path)
    cli.refusal(result, 3 if result.returncode == 3 else 1)


def test_deactivated_officer_is_refused_on_the_next_call(live: LiveFederation, cli: Cli) -> None:
    cred = live.add_officer(FR, "fr-temp")
    with OfficerClient.from_bundle(cred, live.officer_passphrase, timeout=10) as temp:
        assert temp.whoami().officer == "fr-temp"
        done = cli.run("officer", "set", "fr-temp", "--inactive", "--config", live.config(FR))
        assert done.returncode == 0, done.stderr
        # Same channel, next call: the role table is read on every call.
        with pytest.raises(NodeCallError) as exc:
            temp.inbox()
        assert exc.value.status == "UNAUTHENTICATED"
        refused = cli.run("inbox", "--as", cred)
        assert "not an active officer" in cli.refusal(refused, 1)
        changed = [
            f
            for k, f in live.ledger_kinds(FR)
            if k == "officer.changed" and f["officer"] == "fr-temp"
        ]
        assert changed
        assert changed[-1]["active"] is False

        # Reactivated, then demoted to auditor: each takes effect on the next call.
        live.set_officer(FR, "fr-temp", active=True, role="auditor")
        assert temp.whoami().role == "auditor"
        with pytest.raises(NodeCallError) as exc:
            temp.send(GB, subject="s", text="t")
        assert exc.value.status == "PERMISSION_DENIED"


def test_officer_set_unknown_name_is_one_sentence(live: LiveFederation, cli: Cli) -> None:
    result = cli.run("officer", "set", "nobody", "--inactive", "--config", live.config(FR))
    assert "nobody" in cli.refusal(result, 1)


def test_named_officers_only(live: LiveFederation, cli: Cli) -> None:
    named_cred = live.add_officer(FR, "fr-named", via_cli=True)
    gb = live.client(GB)
    sent = gb.send(
        FR,
        subject="eyes only",
        text="for fr-named only",
        handling=("named-officers-only",),
        restricted_to=("fr-named",),
    )
    live.wait_delivered(gb, sent.message_id)
    mid = sent.message_id

    for role in ("officer", "supervisor"):
        regular = live.client(FR, role)
        with pytest.raises(NodeCallError) as exc:
            regular.show(mid)
        assert exc.value.status == "PERMISSION_DENIED"
        meta = regular.show(mid, content=False)
        assert meta.restricted_to == ("fr-named",)
        assert meta.info.handling_codes == ("named-officers-only",)
        assert meta.info.read_at == 0, "a refused read must not mark the message read"
    refused = [
        f
        for k, f in live.ledger_kinds(FR)
        if k == "content.read_refused" and f["message_id"] == mid
    ]
    assert {f["officer"] for f in refused} == {"fr-ocrteh-officer", "fr-ocrteh-supervisor"}
    cli.refusal(cli.run("show", mid, "--as", live.credential(FR)), 1)

    with OfficerClient.from_bundle(named_cred, live.officer_passphrase, timeout=10) as named:
        shown = named.show(mid)
    assert shown.text == "for fr-named only"
    assert shown.info.read_at > 0
    reads = [f for k, f in live.ledger_kinds(FR) if k == "content.read" and f["message_id"] == mid]
    assert [f["officer"] for f in reads] == ["fr-named"]
    # The sender rereads what they sent; another officer at GB may not.
    assert gb.show(mid).text == "for fr-named only"
    with pytest.raises(NodeCallError) as exc:
        live.client(GB, "supervisor").show(mid)
    assert exc.value.status == "PERMISSION_DENIED"


# -- credentials that cannot be used at all (no node involved) -----------------------------


def test_wrong_credential_passphrase_is_one_sentence(live: LiveFederation, cli: Cli) -> None:
    result = cli.run("inbox", "--as", live.credential(FR), env={"MLAX_OFFICER_PASSPHRASE": "no"})
    assert "passphrase" in cli.refusal(result, 1)


def test_not_a_credential_file_is_one_sentence(cli: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2, 3]")
    assert "credential" in cli.refusal(cli.run("inbox", "--as", junk), 1)


def test_credential_with_tampered_certificate_is_refused(
    live: LiveFederation, tmp_path: Path
) -> None:
    # GB officer's certificate with FR officer's key: the TLS handshake cannot complete.
    fr_cred = Credential.load(live.credential(FR), live.officer_passphrase)
    gb_cred = Credential.load(live.credential(GB), live.officer_passphrase)
    mixed = dataclasses.replace(fr_cred, certificate=gb_cred.certificate)
    with OfficerClient(mixed, timeout=10) as client, pytest.raises(NodeCallError) as exc:
        client.whoami()
    assert exc.value.status in {"UNAVAILABLE", "UNAUTHENTICATED"}
